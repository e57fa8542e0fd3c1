"""Pixel routes of the retrieve service: WADO-RS frames (PS3.18 §10.4) and WADO-URI (PS3.18 §9).
Pixel codecs load only when one of these is called. Rendered and thumbnail resources are
``rendered_routes``."""

from __future__ import annotations

import io
from collections.abc import Callable

from pydicom import dcmread
from pydicom.uid import UID
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..blobs.keys import stored_key
from ..errors import NotFound
from ..frame_table import FrameTable
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
        """The answer's size (exact when frames are sent as stored, from the frame table) and how to
        make its body, written part by part. Nothing is read before the size policy has decided."""
        stored_ts = inst.transfer_syntax_uid
        table = fs.stored_table(inst, svc.blobs)
        if table is None or (inst.number_of_frames <= 1 and not fr.by_range(fmt, stored_ts, table)):
            # no table; or one frame to decode, where the whole object is one read instead of two
            native = fmt.kind == "octet" and not UID(stored_ts).is_compressed
            size = policy.frames_size(inst, len(numbers), native_exact=native, location=location)
            return size, lambda: _from_whole(inst, numbers, fmt, location)
        read = fs.ranged_reader(svc.blobs, inst)
        if fr.by_range(fmt, stored_ts, table):
            body = _ranged(table, read, stored_ts, numbers, fmt, location)
            assert body.length is not None
            return policy.Size(body.length), lambda: body
        source = fs.FrameSource(read, table)
        largest = max(table.byte_range(n)[1] - table.byte_range(n)[0] for n in numbers)
        size = policy.frames_size(inst, len(numbers), native_exact=False, location=location, stored_frame=largest)
        return size, lambda: fr.streamed_frames(
            numbers, fmt, location, lambda n: fr.frame_representation(source.dataset(n), 1, fmt), workers=workers
        )

    def _ranged(
        table: FrameTable,
        read: fr.RangeReader,
        stored_ts: str,
        numbers: list[int],
        fmt: negotiation.FrameFormat,
        location: str,
    ) -> Body:
        """Frames as stored, each one range read through the pool; the length known beforehand."""
        return fr.streamed_frames(
            numbers,
            fmt,
            location,
            lambda n: fr.ranged_part(table, read, stored_ts, n, fmt),
            workers=workers,
            label=fr.ranged_label(stored_ts, table, fmt),
            lengths=lambda n: fr.ranged_length(table, n),
        )

    def _from_whole(inst: StoredInstance, numbers: list[int], fmt: negotiation.FrameFormat, location: str) -> Body:
        """Frames from the object read whole once. An instance stored before frame tables were gets
        its table recorded now (and later requests read by range)."""
        data: bytes | None = None
        table: FrameTable | None = None
        if inst.frames_state == "":
            table, data = fs.first_read(inst, svc.blobs, svc.index, svc.settings.max_indexed_frame_table_bytes)
        whole = data if data is not None else _data(inst)
        if table is None:  # its table unreadable (a corrupt sidecar): from the bytes at hand, so
            table = fs.table_of(whole)  # stored frames keep their exact bytes, padding included
        if table is not None and fr.by_range(fmt, inst.transfer_syntax_uid, table):
            return _ranged(table, lambda start, end: whole[start:end], inst.transfer_syntax_uid, numbers, fmt, location)
        ds = dcmread(io.BytesIO(whole))
        fr.require_pixels(ds)
        return fr.streamed_frames(numbers, fmt, location, lambda n: fr.frame_representation(ds, n, fmt), workers=1)

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
        answer = policy.frames_answer(size, len(numbers), policy.Limits.of(svc.settings), location)
        return delivery.send(svc, size, answer, body, single_part=not fmt.multipart)

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
