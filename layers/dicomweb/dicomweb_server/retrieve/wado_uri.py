"""WADO-URI (PS3.18 §9): the query parameters of ``/wadouri?requestType=WADO&...``, what they ask
for, and the answer (a rendered image or the DICOM object).

Parameter names are case-insensitive. ``rows``/``columns`` bound the rendered size (aspect kept);
``windowCenter``/``windowWidth`` are a linear VOI window; ``frameNumber`` is 1-based.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

from pydicom import dcmread

from ..errors import BadRequest, NotAcceptable
from ..formats.media import DICOM, JPEG_TYPES, RENDERED_TYPES, parse_media_type
from ..records import StoredInstance
from ..uids import validate_uid
from . import frames, render
from . import size_policy as policy
from .instances import transcode
from .negotiation import negotiate_rendered

PARAMS = {
    "requesttype", "studyuid", "seriesuid", "objectuid", "contenttype", "framenumber", "windowcenter",
    "windowwidth", "rows", "columns", "imagequality", "transfersyntax", "charset",
}  # fmt: skip
#: Recognised but not supported: refused by name rather than ignored.
REFUSED = {"anonymize", "annotation", "region", "presentationuid", "presentationseriesuid"}
_UIDS = {"studyuid": "studyUID", "seriesuid": "seriesUID", "objectuid": "objectUID"}


@dataclass(frozen=True)
class WadoUriRequest:
    study_uid: str
    series_uid: str
    sop_uid: str
    #: contentType values in the client's order; empty means "the default for this object".
    content_types: tuple[str, ...]
    frame: int
    window: render.Window | None
    size: tuple[int, int] | None
    quality: int
    transfer_syntax: str | None


def parse(query: Mapping[str, str]) -> WadoUriRequest:
    """Validate WADO-URI parameters or raise ``BadRequest`` naming the wrong one."""
    params = {k.lower(): v for k, v in query.items()}
    unknown = set(params) - PARAMS - REFUSED
    if unknown:
        raise BadRequest(f"unknown WADO-URI parameter(s) {', '.join(sorted(unknown))}")
    refused = set(params) & REFUSED
    if refused:
        raise BadRequest(f"WADO-URI parameter(s) {', '.join(sorted(refused))} are not supported")
    if params.get("requesttype") != "WADO":
        raise BadRequest(f"requestType must be WADO, got {params.get('requesttype')!r}")
    uids = {}
    for key, label in _UIDS.items():
        if not params.get(key):
            raise BadRequest(f"{label} is required")
        uids[key] = validate_uid(params[key], label)
    content_types = tuple(c.strip() for c in (params.get("contenttype") or "").split(",") if c.strip())
    window = None
    if params.get("windowcenter") or params.get("windowwidth"):
        window = render.parse_window(f"{params.get('windowcenter', '')},{params.get('windowwidth', '')}")
    rows = render.positive_int(params.get("rows"), "rows")
    cols = render.positive_int(params.get("columns"), "columns")
    return WadoUriRequest(
        study_uid=uids["studyuid"],
        series_uid=uids["seriesuid"],
        sop_uid=uids["objectuid"],
        content_types=content_types,
        frame=render.positive_int(params.get("framenumber"), "frameNumber") or 1,
        window=window,
        size=(cols or rows or 0, rows or cols or 0) if (rows or cols) else None,
        quality=render.positive_int(params.get("imagequality"), "imageQuality") or 90,
        transfer_syntax=params.get("transfersyntax") or None,
    )


def planned_size(request: WadoUriRequest, instance: StoredInstance) -> policy.Size:
    """What the answer will weigh: the object for application/dicom, else one rendered frame."""
    first = request.content_types[0] if request.content_types else None
    has_image = bool(policy.decoded_frame_bytes(instance))
    if (first and parse_media_type(first, header="contentType").type == DICOM) or (not first and not has_image):
        return policy.instances_size([instance], request.transfer_syntax)
    return policy.rendered_size(instance)


def answer(request: WadoUriRequest, instance: StoredInstance, data: bytes) -> tuple[bytes, str]:
    """The body and media type: the first contentType this object can be given as."""
    ds = dcmread(io.BytesIO(data))
    requested = request.content_types or (("image/jpeg",) if frames.has_pixels(ds) else (DICOM,))
    for wanted in requested:
        mtype = parse_media_type(wanted, header="contentType").type
        if mtype == DICOM:
            ts = request.transfer_syntax
            if ts and ts != instance.transfer_syntax_uid:
                data = transcode(data, instance.transfer_syntax_uid, ts, instance.sop_uid)
            return data, DICOM
        if mtype in RENDERED_TYPES or mtype in JPEG_TYPES:
            media = negotiate_rendered(None, explicit=mtype)
            frames.parse_frame_list(str(request.frame), instance.number_of_frames)
            body = render.render(
                ds, request.frame, media, window=request.window, quality=request.quality, size=request.size
            )
            return body, media
    shown = ",".join(request.content_types)
    raise NotAcceptable(
        f"contentType {shown!r} is not available; use image/jpeg, image/png, image/gif or application/dicom"
    )
