"""STOW-RS routes (PS3.18 §10.5)."""

from __future__ import annotations

import logging
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import BadRequest
from ..formats import dicom_xml
from ..formats.media import DICOM_XML, parse_media_type
from ..settings import Settings
from ..store import stow
from .http import base_url, json_response, path_uid, warning_header
from .services import Services

log = logging.getLogger("dicomweb.stow")


def _deadline(request: Request, settings: Settings) -> float | None:
    """When the request must stop starting instances (``time.monotonic()``): the Lambda's remaining
    time (Mangum passes its context) or the STOW time budget, less the margin; None when neither."""
    left: list[float] = []
    context = request.scope.get("aws.context")
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        left.append(context.get_remaining_time_in_millis() / 1000)
    if settings.stow_time_budget_ms:
        left.append(settings.stow_time_budget_ms / 1000)
    if not left:
        return None
    return time.monotonic() + min(left) - settings.stow_time_margin_ms / 1000


def routes(svc: Services) -> list[Route]:
    async def store(request: Request) -> Response:
        study = path_uid(request, "study") if "study" in request.path_params else None
        raw_type = request.headers.get("content-type")
        if not raw_type:
            raise BadRequest('Content-Type is missing; expected multipart/related; type="application/dicom"')
        ctype = parse_media_type(raw_type)
        part_type = stow.check_request_type(ctype)
        media = stow.negotiate_store_response(request.headers.get("accept"), part_type)
        base = base_url(request, svc.settings)
        length = request.headers.get("content-length")
        limit, uploads = svc.settings.max_request_bytes, f"{base}/uploads"
        stow.require_body_size(int(length) if length and length.isdigit() else None, limit, uploads)
        body = await request.body()
        stow.require_body_size(len(body), limit, uploads)
        deadline = _deadline(request, svc.settings)
        outcome = await run_in_threadpool(
            stow.store,
            body,
            ctype,
            index=svc.index,
            blobs=svc.blobs,
            base_url=base,
            study_uid=study,
            max_metadata_bytes=svc.settings.max_indexed_metadata_bytes,
            bulk_threshold=svc.settings.bulk_data_threshold,
            max_frame_table_bytes=svc.settings.max_indexed_frame_table_bytes,
            duplicate_policy=svc.settings.duplicate_policy,
            deadline=deadline,
            parser=svc.parser,
        )
        log.info("stow", extra={"stored": len(outcome.stored), "failed": len(outcome.failed)})
        dataset = stow.response_dataset(outcome, base, study)
        headers = warning_header(outcome.warning_messages, request)
        if outcome.unavailable is not None:
            headers.update(outcome.unavailable.headers())
        if media == DICOM_XML:
            return Response(
                dicom_xml.to_xml(dataset), status_code=outcome.status, media_type=DICOM_XML, headers=headers
            )
        return json_response(dataset, status=outcome.status, media_type=media, headers=headers)

    return [
        Route("/studies", store, methods=["POST"]),
        Route("/studies/{study}", store, methods=["POST"]),
    ]
