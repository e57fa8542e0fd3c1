"""QIDO-RS routes (PS3.18 §10.6)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import NotFound
from ..formats.media import negotiate_dicom_model
from ..ports import Page
from ..retrieve import size_policy as policy
from ..search import continuation, relational, results
from ..search import query as qido
from .http import base_url, dicom_model_response, path_uid, warning_header
from .services import Services

MORE_RESULTS = "There are additional results that can be requested"


def _media(request: Request) -> str:
    return negotiate_dicom_model(request.headers.get("accept"), "the search result")


def _query(request: Request, svc: Services, level: qido.Level, *, relational: bool = False) -> qido.Query:
    return qido.parse_query(
        list(request.query_params.multi_items()),
        level,
        default_limit=svc.settings.qido_default_limit,
        max_limit=svc.settings.qido_max_limit,
        read_budget=svc.settings.qido_read_budget,
        relational=relational,
    )


def _next_link(request: Request, svc: Services, query: qido.Query, cursor: str, skip: int) -> str:
    """``Link: <…>; rel="next"``: the same request resumed after ``cursor`` (offset dropped)."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k.lower() not in ("continuation", "offset")]
    kept.append(("continuation", continuation.encode(query, cursor, skip)))
    url = f"{base_url(request, svc.settings)}{request.url.path}?{urlencode(kept)}"
    return f'<{url}>; rel="next"'


def routes(svc: Services) -> list[Route]:
    def respond(request: Request, query: qido.Query, media: str, found: list[Any], page: Page[Any]) -> Response:
        warnings = list(query.warnings)
        if page.budget_spent is not None:
            warnings.append(
                f"The search stopped after reading {page.budget_spent} index entries; follow the next link to continue"
            )
        elif page.more:
            warnings.append(MORE_RESULTS)
        headers = warning_header(warnings, request)
        if page.cursor is not None:
            headers["Link"] = _next_link(request, svc, query, page.cursor, page.skip)
        if not found:  # PS3.18 §8.3.4.4.1: a search that matches nothing is 204, with no body
            return Response(status_code=204, headers=headers)
        response = dicom_model_response(found, media, headers=headers)
        policy.check_measured(len(response.body), policy.search_answer(), svc.settings.max_response_bytes)
        return response

    def study_or_404(study: str) -> None:
        if svc.index.get_study(study) is None:
            raise NotFound(f"study {study} is not stored here")

    def studies(request: Request) -> Response:
        media, query = _media(request), _query(request, svc, qido.Level.STUDY)
        page = svc.index.search_studies(query)
        base = base_url(request, svc.settings)
        return respond(request, query, media, [results.study_result(s, query, base) for s in page.items], page)

    def series(request: Request) -> Response:
        media, query = _media(request), _query(request, svc, qido.Level.SERIES)
        study = path_uid(request, "study")
        page = svc.index.search_series(study, query)
        if not page.items:
            study_or_404(study)
        base = base_url(request, svc.settings)
        return respond(request, query, media, [results.series_result(s, query, base) for s in page.items], page)

    def instances(request: Request) -> Response:
        media, query = _media(request), _query(request, svc, qido.Level.INSTANCE)
        study = path_uid(request, "study")
        series_uid = path_uid(request, "series") if "series" in request.path_params else None
        page = svc.index.search_instances(study, series_uid, query)
        if not page.items:
            study_or_404(study)
        base = base_url(request, svc.settings)
        return respond(request, query, media, [results.instance_result(i, query, base) for i in page.items], page)

    def all_series(request: Request) -> Response:
        media, query = _media(request), _query(request, svc, qido.Level.SERIES, relational=True)
        page = relational.search_series(svc.index, query)
        base = base_url(request, svc.settings)
        found = [results.series_result(s, query, base, with_study=True) for s in page.items]
        return respond(request, query, media, found, page)

    def all_instances(request: Request) -> Response:
        media, query = _media(request), _query(request, svc, qido.Level.INSTANCE, relational=True)
        page = relational.search_instances(svc.index, query)
        base = base_url(request, svc.settings)
        return respond(request, query, media, [results.instance_result(i, query, base) for i in page.items], page)

    return [
        Route("/studies", studies, methods=["GET"]),
        Route("/series", all_series, methods=["GET"]),
        Route("/instances", all_instances, methods=["GET"]),
        Route("/studies/{study}/series", series, methods=["GET"]),
        Route("/studies/{study}/instances", instances, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances", instances, methods=["GET"]),
    ]
