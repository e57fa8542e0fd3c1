"""WADO-RS routes (PS3.18 §10.4): studies, series and instances, and their metadata."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import NotFound
from ..records import StoredInstance
from ..retrieve import instances as wado
from ..retrieve import metadata as wado_metadata
from ..retrieve import negotiation
from ..retrieve import size_policy as policy
from .http import base_url, dicom_model_response, path_uid
from .services import Services


def _target(request: Request) -> tuple[str, str | None, str | None, str]:
    study = path_uid(request, "study")
    series = path_uid(request, "series") if "series" in request.path_params else None
    sop = path_uid(request, "instance") if "instance" in request.path_params else None
    what = "instance" if sop else "series" if series else "study"
    return study, series, sop, what


def routes(svc: Services) -> list[Route]:
    limit = svc.settings.max_response_bytes

    def _instances(target: tuple[str, str | None, str | None, str], with_metadata: bool) -> list[StoredInstance]:
        study, series, sop, what = target
        found = svc.index.list_instances(study, series, sop, with_metadata=with_metadata)
        if not found:
            raise NotFound(f"{what} {sop or series or study} is not stored here")
        return found

    def retrieve(request: Request) -> Response:
        target = _target(request)
        _, _, sop, what = target
        fmt = negotiation.negotiate_instances(request.headers.get("accept"), single_allowed=sop is not None)
        found = _instances(target, with_metadata=False)
        base = base_url(request, svc.settings)
        answer = policy.instances_answer(found, what, base, as_jpeg=fmt.jpeg_frames)
        if fmt.jpeg_frames:
            size = policy.jpeg_frames_size(found)
            build = lambda: wado.render_jpeg_frames(found, svc.blobs, base)  # noqa: E731
        else:
            size = policy.instances_size(found if fmt.multipart else found[:1], fmt.transfer_syntax)
            build = lambda: wado.render_instances(found, svc.blobs, fmt)  # noqa: E731
        body, content_type = policy.build_within(size, answer, limit, build)
        return Response(body, headers={"Content-Type": content_type})

    def metadata(request: Request) -> Response:
        target = _target(request)
        media = negotiation.negotiate_metadata(request.headers.get("accept"))
        found = _instances(target, with_metadata=True)
        response = dicom_model_response(wado_metadata.metadata(found, svc.blobs), media)
        answer = policy.metadata_answer(found, target[3], base_url(request, svc.settings))
        policy.check_measured(len(response.body), answer, limit)
        return response

    return [
        Route("/studies/{study}", retrieve, methods=["GET"]),
        Route("/studies/{study}/metadata", metadata, methods=["GET"]),
        Route("/studies/{study}/series/{series}", retrieve, methods=["GET"]),
        Route("/studies/{study}/series/{series}/metadata", metadata, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}", retrieve, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}/metadata", metadata, methods=["GET"]),
    ]
