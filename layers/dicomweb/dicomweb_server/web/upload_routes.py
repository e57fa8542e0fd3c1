"""Upload-session routes (served by the store function; docs/uploads.md).

``POST /uploads``                              a session: presigned S3 URLs per file (201)
``GET /uploads/{session}``                     202 + Retry-After while files are pending, then the
                                               Store Instances Response (200 / 202 / 409)
``POST /uploads/{session}/files/{n}/complete`` join the parts of a multipart file
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import NotFound, UnsupportedMediaType
from ..formats import dicom_xml
from ..formats.media import DICOM_XML, parse_media_type
from ..store import stow, uploads
from .http import base_url, json_response, warning_header
from .services import Services


def routes(svc: Services) -> list[Route]:
    ports = svc.uploads
    assert ports is not None, "the store service needs upload ports"

    async def create(request: Request) -> Response:
        ctype = parse_media_type(request.headers.get("content-type") or "application/octet-stream")
        if ctype.type != "application/json":
            raise UnsupportedMediaType(f"an upload session request is application/json, not {ctype.type}")
        length = request.headers.get("content-length")
        stow.require_body_size(int(length) if length and length.isdigit() else None, svc.settings.max_request_bytes)
        body = await request.body()
        stow.require_body_size(len(body), svc.settings.max_request_bytes)
        answer = await run_in_threadpool(
            uploads.create_session, body, ports=ports, settings=svc.settings, base_url=base_url(request, svc.settings)
        )
        return json_response(answer, 201, "application/json", headers={"Location": answer["status"]})

    async def status(request: Request) -> Response:
        session_id = str(request.path_params["session"])
        media = stow.negotiate_store_response(request.headers.get("accept"), "application/dicom")
        base = base_url(request, svc.settings)
        found = await run_in_threadpool(uploads.session_status, session_id, ports=ports, base_url=base)
        outcome = found.outcome
        dataset = stow.response_dataset(outcome, base)
        messages = [f.message for f in outcome.failed]
        headers: dict[str, str] = {}
        if found.pending:
            messages.insert(
                0,
                f"upload session pending: {len(found.pending)} of {found.files} files not indexed yet; "
                "ask again after Retry-After",
            )
            headers["Retry-After"] = str(uploads.RETRY_AFTER_SECONDS)
        headers.update(warning_header(messages, request))
        if media == DICOM_XML:
            return Response(dicom_xml.to_xml(dataset), status_code=found.status, media_type=DICOM_XML, headers=headers)
        return json_response(dataset, status=found.status, media_type=media, headers=headers)

    async def complete(request: Request) -> Response:
        raw = str(request.path_params["file"])
        if not raw.isdigit() or len(raw) > 9:
            raise NotFound(f"no file {raw[:20]} in an upload session; files are numbered from 1")
        answer = await run_in_threadpool(
            uploads.complete_file, str(request.path_params["session"]), int(raw), ports=ports
        )
        return json_response(answer, 202, "application/json")

    return [
        Route("/uploads", create, methods=["POST"]),
        Route("/uploads/{session}", status, methods=["GET"]),
        Route("/uploads/{session}/files/{file}/complete", complete, methods=["POST"]),
    ]
