"""Pixel routes of the retrieve service: WADO-RS frames (PS3.18 §10.4) and WADO-URI (PS3.18 §9).
Pixel codecs load only when one of these is called. Rendered and thumbnail resources are
``rendered_routes``."""

from __future__ import annotations

from collections.abc import Callable

from pydicom.uid import UID
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..blobs.keys import stored_key
from ..errors import NotFound
from ..records import StoredInstance
from ..retrieve import frames as fr
from ..retrieve import negotiation, wado_uri
from ..retrieve import size_policy as policy
from ..retrieve.streams import bytes_body
from . import delivery
from .http import base_url, path_uid
from .services import Services


def routes(svc: Services) -> list[Route]:
    def _instance(study: str, series: str, sop: str) -> StoredInstance:
        found = svc.index.list_instances(study, series, sop)
        if not found:
            raise NotFound(f"instance {sop} is not stored here")
        return found[0]

    def _data(inst: StoredInstance) -> bytes:
        return svc.blobs.get(stored_key(inst))

    def _send(
        size: policy.Size, answer: policy.Answer, build: Callable[[], tuple[bytes, str]], *, single_part: bool = True
    ) -> Response:
        """Built whole (one object is read), then sent inline, streamed or redirected."""
        return delivery.send(svc, size, answer, lambda: bytes_body(*build()), single_part=single_part)

    def frames(request: Request) -> Response:
        study, series, sop = (path_uid(request, n) for n in ("study", "series", "instance"))
        numbers_text = str(request.path_params["frames"])
        fmt = negotiation.negotiate_frames(request.headers.get("accept"), single_frame="," not in numbers_text)
        inst = _instance(study, series, sop)
        numbers = fr.parse_frame_list(numbers_text, inst.number_of_frames)
        location = f"{base_url(request, svc.settings)}/studies/{study}/series/{series}/instances/{sop}"
        native = fmt.kind == "octet" and not UID(inst.transfer_syntax_uid).is_compressed
        size = policy.frames_size(inst, len(numbers), native_exact=native, location=location)
        return _send(
            size,
            policy.frames_answer(),
            lambda: fr.render_frames_body(_data(inst), numbers, fmt, location),
            single_part=not fmt.multipart,
        )

    def wado(request: Request) -> Response:
        req = wado_uri.parse(request.query_params)
        inst = _instance(req.study_uid, req.series_uid, req.sop_uid)
        size = wado_uri.planned_size(req, inst)
        answer = policy.instances_answer([inst], "instance", base_url(request, svc.settings))
        return _send(size, answer, lambda: wado_uri.answer(req, inst, _data(inst)))

    base = "/studies/{study}/series/{series}/instances/{instance}"
    return [
        Route(base + "/frames/{frames}", frames, methods=["GET"]),
        Route("/wadouri", wado, methods=["GET"]),
    ]
