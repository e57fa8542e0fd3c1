"""QIDO-RS routes (PS3.18 §10.6)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import NotFound
from ..formats.media import negotiate_dicom_model
from ..retrieve import size_policy as policy
from ..search import query as qido
from ..search import results
from .http import base_url, dicom_model_response, path_uid, warning_header
from .services import Services

MORE_RESULTS = "There are additional results that can be requested"


def _media(request: Request) -> str:
    return negotiate_dicom_model(request.headers.get("accept"), "the search result")


def _query(request: Request, svc: Services, level: qido.Level) -> qido.Query:
    return qido.parse_query(
        list(request.query_params.multi_items()),
        level,
        default_limit=svc.settings.qido_default_limit,
        max_limit=svc.settings.qido_max_limit,
    )


def routes(svc: Services) -> list[Route]:
    def respond(request: Request, query: qido.Query, media: str, found: list[Any], more: bool) -> Response:
        warnings = list(query.warnings) + ([MORE_RESULTS] if more else [])
        response = dicom_model_response(found, media, headers=warning_header(warnings, request))
        policy.check_measured(len(response.body), policy.search_answer(), svc.settings.max_response_bytes)
        return response

    def study_or_404(study: str) -> None:
        if svc.index.get_study(study) is None:
            raise NotFound(f"study {study} is not stored here")

    def studies(request: Request) -> Response:
        media, query = _media(request), _query(request, svc, qido.Level.STUDY)
        found, more = svc.index.search_studies(query)
        base = base_url(request, svc.settings)
        return respond(request, query, media, [results.study_result(s, query, base) for s in found], more)

    def series(request: Request) -> Response:
        media, query = _media(request), _query(request, svc, qido.Level.SERIES)
        study = path_uid(request, "study")
        found, more = svc.index.search_series(study, query)
        if not found:
            study_or_404(study)
        base = base_url(request, svc.settings)
        return respond(request, query, media, [results.series_result(s, query, base) for s in found], more)

    def instances(request: Request) -> Response:
        media, query = _media(request), _query(request, svc, qido.Level.INSTANCE)
        study = path_uid(request, "study")
        series_uid = path_uid(request, "series") if "series" in request.path_params else None
        found, more = svc.index.search_instances(study, series_uid, query)
        if not found:
            study_or_404(study)
        base = base_url(request, svc.settings)
        return respond(request, query, media, [results.instance_result(i, query, base) for i in found], more)

    return [
        Route("/studies", studies, methods=["GET"]),
        Route("/studies/{study}/series", series, methods=["GET"]),
        Route("/studies/{study}/instances", instances, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances", instances, methods=["GET"]),
    ]
