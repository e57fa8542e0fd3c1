"""Pixel routes of the retrieve service: WADO-RS frames (PS3.18 §10.4) and WADO-URI (PS3.18 §9).
Pixel codecs load only when one of these is called. Rendered and thumbnail resources are
``rendered_routes``."""

from __future__ import annotations

from collections.abc import Callable

from pydicom.uid import UID
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import frame_table
from ..blobs.keys import frames_key, stored_key
from ..errors import NotFound
from ..frame_table import FrameTable
from ..ports import BlobNotFound
from ..records import StoredInstance
from ..retrieve import frames as fr
from ..retrieve import negotiation, wado_uri
from ..retrieve import size_policy as policy
from ..retrieve.streams import bytes_body
from ..store.failures import InvalidInstance
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

    def _table(inst: StoredInstance) -> FrameTable | None:
        if inst.frames_state == "aside":
            sidecar = frames_key(inst.study_uid, inst.series_uid, inst.sop_uid, inst.md5)
            try:
                return frame_table.decode(svc.blobs.get(sidecar))
            except (BlobNotFound, ValueError):
                return None
        return inst.frame_table

    def _first_read(inst: StoredInstance) -> tuple[FrameTable | None, bytes]:
        """An instance stored before frame tables were: read it whole once, and record its table."""
        from ..store.scan import scan

        data = _data(inst)
        try:
            table = scan(data).frame_table
        except InvalidInstance:
            return None, data
        if table is None or len(frame_table.encode(table)) <= svc.settings.max_indexed_frame_table_bytes:
            # (a table too large for the index waits for `dicomweb repair`, which writes its sidecar)
            svc.index.add_frame_table(inst.study_uid, inst.series_uid, inst.sop_uid, table)
        return table, data

    def _frames_body(
        inst: StoredInstance, numbers: list[int], fmt: negotiation.FrameFormat, location: str
    ) -> tuple[bytes, str]:
        stored_ts = inst.transfer_syntax_uid
        table = _table(inst)
        key = stored_key(inst)
        if table is not None and fr.by_range(fmt, stored_ts, table):
            parts = fr.ranged_frame_parts(
                table, lambda start, end: svc.blobs.get_range(key, start, end - 1), stored_ts, numbers, fmt, location
            )
            return fr.frames_body(parts, fmt)
        data: bytes | None = None
        if table is None and inst.frames_state == "":
            table, data = _first_read(inst)
        data = data if data is not None else _data(inst)
        if table is not None and fr.by_range(fmt, stored_ts, table):
            whole = data
            parts = fr.ranged_frame_parts(table, lambda start, end: whole[start:end], stored_ts, numbers, fmt, location)
            return fr.frames_body(parts, fmt)
        return fr.render_frames_body(data, numbers, fmt, location)

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
            lambda: _frames_body(inst, numbers, fmt, location),
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
