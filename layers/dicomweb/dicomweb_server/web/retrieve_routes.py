"""WADO-RS routes (PS3.18 §10.4): studies, series and instances, and their metadata."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import NotFound, PayloadTooLarge
from ..records import StoredInstance
from ..retrieve import instances as wado
from .http import base_url, dicom_model_response, path_uid
from .services import Services


def _target(request: Request) -> tuple[str, str | None, str | None, str]:
    study = path_uid(request, "study")
    series = path_uid(request, "series") if "series" in request.path_params else None
    sop = path_uid(request, "instance") if "instance" in request.path_params else None
    what = "instance" if sop else "series" if series else "study"
    return study, series, sop, what


def routes(svc: Services) -> list[Route]:
    def _instances(target: tuple[str, str | None, str | None, str], with_metadata: bool) -> list[StoredInstance]:
        study, series, sop, what = target
        found = svc.index.list_instances(study, series, sop, with_metadata=with_metadata)
        if not found:
            raise NotFound(f"{what} {sop or series or study} is not stored here")
        return found

    def retrieve(request: Request) -> Response:
        target = _target(request)
        _, _, sop, what = target
        fmt = wado.negotiate_instances(request.headers.get("accept"), single_allowed=sop is not None)
        found = _instances(target, with_metadata=False)
        base = base_url(request, svc.settings)
        if fmt.jpeg_frames:
            body, content_type = wado.render_jpeg_frames(found, svc.blobs, base)
            if len(body) > svc.settings.max_response_bytes:
                raise PayloadTooLarge(
                    f"the {what} as JPEG is {len(body)} bytes, above this server's response "
                    f"limit of {svc.settings.max_response_bytes} bytes; retrieve its series "
                    "or instances one by one"
                )
        else:
            wado.check_size(found, svc.settings.max_response_bytes, what, base)
            body, content_type = wado.render_instances(found, svc.blobs, fmt)
        return Response(body, headers={"Content-Type": content_type})

    def metadata(request: Request) -> Response:
        media = wado.negotiate_metadata(request.headers.get("accept"))
        found = _instances(_target(request), with_metadata=True)
        return dicom_model_response(
            wado.metadata(found, svc.blobs),
            media,
            max_bytes=svc.settings.max_response_bytes,
            too_large_hint="ask for the metadata of each series (or instance) instead",
        )

    return [
        Route("/studies/{study}", retrieve, methods=["GET"]),
        Route("/studies/{study}/metadata", metadata, methods=["GET"]),
        Route("/studies/{study}/series/{series}", retrieve, methods=["GET"]),
        Route("/studies/{study}/series/{series}/metadata", metadata, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}", retrieve, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}/metadata", metadata, methods=["GET"]),
    ]
