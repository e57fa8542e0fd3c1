"""Pixel routes of the retrieve service: WADO-RS frames and rendered resources (PS3.18 §10.4) and
WADO-URI (PS3.18 §9). Pixel codecs load only when one of these is called."""

from __future__ import annotations

import io

from pydicom import dcmread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..blobs.keys import instance_key
from ..errors import BadRequest, NotAcceptable, NotFound, PayloadTooLarge
from ..formats.media import DICOM, JPEG_TYPES, parse_media_type
from ..records import StoredInstance
from ..retrieve import frames as fr
from ..retrieve import render as pixels
from ..retrieve.instances import transcode
from ..uids import validate_uid
from .http import base_url, path_uid
from .services import Services

WADO_URI_PARAMS = {
    "requesttype", "studyuid", "seriesuid", "objectuid", "contenttype", "framenumber", "windowcenter",
    "windowwidth", "rows", "columns", "imagequality", "transfersyntax", "charset",
}  # fmt: skip
_REFUSED_WADO_URI = {"anonymize", "annotation", "region", "presentationuid", "presentationseriesuid"}


def _positive_int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise BadRequest(f"{name}={value!r} must be a positive whole number")
    return int(value)


def routes(svc: Services) -> list[Route]:
    def _instance(study: str, series: str, sop: str) -> tuple[StoredInstance, bytes]:
        found = svc.index.list_instances(study, series, sop)
        if not found:
            raise NotFound(f"instance {sop} is not stored here")
        return found[0], svc.blobs.get(instance_key(study, series, sop))

    def _limit(body: bytes) -> None:
        if len(body) > svc.settings.max_response_bytes:
            raise PayloadTooLarge(
                f"the response would be {len(body)} bytes, above the limit of "
                f"{svc.settings.max_response_bytes}; ask for fewer frames per request"
            )

    def frames(request: Request) -> Response:
        study, series, sop = (path_uid(request, n) for n in ("study", "series", "instance"))
        numbers_text = str(request.path_params["frames"])
        single = "," not in numbers_text
        fmt = fr.negotiate_frames(request.headers.get("accept"), single_frame=single)
        inst, data = _instance(study, series, sop)
        numbers = pixels.parse_frame_list(numbers_text, inst.number_of_frames)
        location = f"{base_url(request, svc.settings)}/studies/{study}/series/{series}/instances/{sop}"
        body, content_type = fr.render_frames_body(data, numbers, fmt, location)
        _limit(body)
        return Response(body, headers={"Content-Type": content_type})

    def rendered(request: Request) -> Response:
        study, series, sop = (path_uid(request, n) for n in ("study", "series", "instance"))
        media = fr.negotiate_rendered(request.headers.get("accept"))
        params = request.query_params
        window = fr.parse_window(params.get("window"))
        quality = _positive_int(params.get("quality"), "quality") or 90
        viewport = params.get("viewport")
        size = None
        if viewport:
            try:
                w, h = (int(v) for v in viewport.split(",")[:2])
            except ValueError:
                raise BadRequest(f"viewport={viewport!r}: expected width,height") from None
            size = (w, h)
        inst, data = _instance(study, series, sop)
        number = 1
        if "frames" in request.path_params:
            number = pixels.parse_frame_list(str(request.path_params["frames"]), inst.number_of_frames)[0]
        body = pixels.render(dcmread(io.BytesIO(data)), number, media, window=window, quality=quality, size=size)
        return Response(body, media_type=media)

    def wado_uri(request: Request) -> Response:
        params = {k.lower(): v for k, v in request.query_params.items()}
        unknown = set(params) - WADO_URI_PARAMS - _REFUSED_WADO_URI
        if unknown:
            raise BadRequest(f"unknown WADO-URI parameter(s) {', '.join(sorted(unknown))}")
        refused = set(params) & _REFUSED_WADO_URI
        if refused:
            raise BadRequest(f"WADO-URI parameter(s) {', '.join(sorted(refused))} are not supported")
        if params.get("requesttype") != "WADO":
            raise BadRequest(f"requestType must be WADO, got {params.get('requesttype')!r}")
        names = {"studyuid": "studyUID", "seriesuid": "seriesUID", "objectuid": "objectUID"}
        uids = {}
        for key, label in names.items():
            if not params.get(key):
                raise BadRequest(f"{label} is required")
            uids[key] = validate_uid(params[key], label)
        inst, data = _instance(uids["studyuid"], uids["seriesuid"], uids["objectuid"])
        ds = dcmread(io.BytesIO(data))
        requested = [c.strip() for c in (params.get("contenttype") or "").split(",") if c.strip()]
        if not requested:
            requested = ["image/jpeg"] if pixels.has_pixels(ds) else [DICOM]
        for wanted in requested:
            mtype = parse_media_type(wanted, header="contentType").type
            if mtype == DICOM:
                ts = params.get("transfersyntax")
                if ts and ts != inst.transfer_syntax_uid:
                    data = transcode(data, inst.transfer_syntax_uid, ts, inst.sop_uid)
                return Response(data, media_type=DICOM)
            if mtype in pixels.RENDERED_TYPES or mtype in JPEG_TYPES:
                media = fr.negotiate_rendered(None, explicit=mtype)
                number = _positive_int(params.get("framenumber"), "frameNumber") or 1
                pixels.parse_frame_list(str(number), inst.number_of_frames)
                window = None
                if params.get("windowcenter") or params.get("windowwidth"):
                    window = fr.parse_window(f"{params.get('windowcenter', '')},{params.get('windowwidth', '')}")
                rows, cols = _positive_int(params.get("rows"), "rows"), _positive_int(params.get("columns"), "columns")
                size = (cols or rows or 0, rows or cols or 0) if (rows or cols) else None
                quality = _positive_int(params.get("imagequality"), "imageQuality") or 90
                body = pixels.render(ds, number, media, window=window, quality=quality, size=size)
                return Response(body, media_type=media)
        raise NotAcceptable(
            f"contentType {params.get('contenttype')!r} is not available; use image/jpeg, "
            "image/png, image/gif or application/dicom"
        )

    base = "/studies/{study}/series/{series}/instances/{instance}"
    return [
        Route(base + "/frames/{frames}", frames, methods=["GET"]),
        Route(base + "/rendered", rendered, methods=["GET"]),
        Route(base + "/frames/{frames}/rendered", rendered, methods=["GET"]),
        Route("/wadouri", wado_uri, methods=["GET"]),
    ]
