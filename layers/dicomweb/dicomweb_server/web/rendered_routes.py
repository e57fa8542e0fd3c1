"""Rendered and thumbnail routes of the retrieve service (PS3.18 §10.4.1.1.4, §10.4.1.1.5) at study,
series, instance and frame level. What is shown is decided in ``retrieve.rendered``; pixel codecs
load only when an image is rendered."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import NotFound
from ..records import StoredInstance
from ..retrieve import frames as fr
from ..retrieve import render
from ..retrieve import rendered as rd
from ..retrieve import size_policy as policy
from .http import path_uid, warning_header
from .services import Services

_STUDY = "/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{instance}"
_FRAMES = _INSTANCE + "/frames/{frames}"
#: Query parameters the rendered resources know but do not act on (PS3.18 §8.3.5.1.1).
_IGNORED = {"annotation": "annotation is not supported; the image is rendered without annotations"}


def _accept(request: Request) -> str | None:
    """The ``accept`` query parameter replaces the Accept header when given (PS3.18 §8.3.3.1)."""
    return request.query_params.get("accept") or request.headers.get("accept")


def routes(svc: Services) -> list[Route]:
    settings = svc.settings
    limit = settings.max_response_bytes

    def _target(request: Request) -> tuple[StoredInstance, str, str | None]:
        """The instance a request shows, its level, and the frame list as written (None: none)."""
        params = request.path_params
        study = path_uid(request, "study")
        series = path_uid(request, "series") if "series" in params else None
        sop = path_uid(request, "instance") if "instance" in params else None
        found = svc.index.list_instances(study, series, sop)
        what = "instance" if sop else "series" if series else "study"
        if not found:
            raise NotFound(f"{what} {sop or series or study} is not stored here")
        if sop:
            return found[0], what, params.get("frames")
        chosen = rd.representative(found, what, series or study)
        if chosen.number_of_frames > 1:  # a listing has no frame tables: read this one's
            again = svc.index.list_instances(study, chosen.series_uid, chosen.sop_uid)
            chosen = again[0] if again else chosen
        return chosen, what, None

    def _image(body: bytes, media: str, warnings: list[str], request: Request) -> Response:
        headers = {"Content-Type": media, "Vary": "Accept", **warning_header(warnings, request)}
        return Response(body, headers=headers)

    def rendered(request: Request) -> Response:
        query = request.query_params
        presentation = rd.Presentation(
            window=render.parse_window(query.get("window")),
            viewport=render.parse_viewport(query.get("viewport"), settings.rendered_max_viewport),
            quality=render.parse_quality(query.get("quality")) or 90,
        )
        warnings = [message for name, message in _IGNORED.items() if name in query]
        instance, _, frame_text = _target(request)
        numbers = fr.parse_frame_list(frame_text, instance.number_of_frames) if frame_text else None
        media = rd.negotiate(_accept(request), several_frames=bool(numbers and len(numbers) > 1))
        rd.require_image(instance)
        chosen = numbers or rd.default_frames(instance, media)
        build: Callable[[], tuple[bytes, str]] = lambda: (  # noqa: E731
            rd.render_instance(svc.blobs, instance, chosen, media, presentation),
            media,
        )
        body, _ = policy.build_within(rd.planned_size(instance, len(chosen)), policy.rendered_answer(), limit, build)
        return _image(body, media, warnings, request)

    def thumbnail(request: Request) -> Response:
        viewport = render.parse_viewport(request.query_params.get("viewport"), settings.rendered_max_viewport)
        instance, _, frame_text = _target(request)
        if frame_text:
            frame = fr.parse_frame_list(frame_text, instance.number_of_frames)[0]
        else:
            frame = rd.thumbnail_frame(instance)
        media = rd.negotiate(_accept(request), several_frames=False)
        rd.require_image(instance)
        build: Callable[[], tuple[bytes, str]] = lambda: (  # noqa: E731
            rd.thumbnail(svc.blobs, instance, frame, media, viewport=viewport, size=settings.thumbnail_size),
            media,
        )
        body, _ = policy.build_within(rd.planned_size(instance, 1), policy.rendered_answer(), limit, build)
        return _image(body, media, [], request)

    return [
        *(Route(path + "/rendered", rendered, methods=["GET"]) for path in (_STUDY, _SERIES, _INSTANCE, _FRAMES)),
        *(Route(path + "/thumbnail", thumbnail, methods=["GET"]) for path in (_STUDY, _SERIES, _INSTANCE, _FRAMES)),
    ]
