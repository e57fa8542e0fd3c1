"""Pixel routes of the retrieve service: WADO-RS frames (PS3.18 §10.4) and WADO-URI (PS3.18 §9).
Pixel codecs load only when one of these is called. Rendered and thumbnail resources are
``rendered_routes``."""

from __future__ import annotations

import io
from collections.abc import Callable

from pydicom import dcmread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..blobs.keys import stored_key
from ..errors import NotFound
from ..records import StoredInstance
from ..retrieve import frame_source as fs
from ..retrieve import frames as fr
from ..retrieve import negotiation, wado_uri
from ..retrieve import size_policy as policy
from ..retrieve.streams import Body, bytes_body
from . import delivery
from .http import base_url, path_uid
from .services import Services


def routes(svc: Services) -> list[Route]:
    workers = svc.settings.retrieve_concurrency

    def _instance(study: str, series: str, sop: str) -> StoredInstance:
        found = svc.index.list_instances(study, series, sop)
        if not found:
            raise NotFound(f"instance {sop} is not stored here")
        return found[0]

    def _data(inst: StoredInstance) -> bytes:
        return svc.blobs.get(stored_key(inst))

    def _frames_answer(
        inst: StoredInstance, numbers: list[int], fmt: negotiation.FrameFormat, location: str
    ) -> tuple[policy.Size, Callable[[], Body]]:
        """The answer's size (exact when frames are sent as stored, from the frame table) and its
        body, written part by part: frames read by range through the pool where the table is known,
        else from the object read whole once."""
        stored_ts = inst.transfer_syntax_uid
        table = fs.stored_table(inst, svc.blobs)
        data: bytes | None = None
        if table is None and inst.frames_state == "":
            table, data = fs.first_read(inst, svc.blobs, svc.index, svc.settings.max_indexed_frame_table_bytes)
        if table is None or (inst.number_of_frames <= 1 and not fr.by_range(fmt, stored_ts, table)):
            # no table; or one frame to decode, where the whole object is one read instead of two
            ds = dcmread(io.BytesIO(data if data is not None else _data(inst)))
            fr.require_pixels(ds)
            size = policy.frames_size(inst, len(numbers), native_exact=False, location=location)
            return size, lambda: fr.streamed_frames(
                numbers, fmt, location, lambda n: fr.frame_representation(ds, n, fmt), workers=1
            )
        whole = data
        read = fs.ranged_reader(svc.blobs, inst) if whole is None else (lambda start, end: whole[start:end])
        if fr.by_range(fmt, stored_ts, table):
            found = table
            body = fr.streamed_frames(
                numbers,
                fmt,
                location,
                lambda n: fr.ranged_part(found, read, stored_ts, n, fmt),
                workers=workers,
                label=fr.ranged_label(stored_ts, found, fmt),
                lengths=lambda n: fr.ranged_length(found, n),
            )
            assert body.length is not None
            return policy.Size(body.length), lambda: body
        source = fs.FrameSource(read, table)
        largest = max(table.byte_range(n)[1] - table.byte_range(n)[0] for n in numbers)
        size = policy.frames_size(inst, len(numbers), native_exact=False, location=location, stored_frame=largest)
        return size, lambda: fr.streamed_frames(
            numbers, fmt, location, lambda n: fr.frame_representation(source.dataset(n), 1, fmt), workers=workers
        )

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
        size, body = _frames_answer(inst, numbers, fmt, location)
        return delivery.send(svc, size, policy.frames_answer(), body, single_part=not fmt.multipart)

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
