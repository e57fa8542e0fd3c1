"""WADO-RS frames and rendered resources (PS3.18 §10.4.1.1.3, §8.3.5.1), and their media negotiation.

``image/dicom+jpeg`` (seen in the wild, not in the standard) is served as ``image/jpeg``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from ..errors import BadRequest, NotAcceptable
from ..formats import multipart
from ..formats.media import JPEG_TYPES, MULTIPART_RELATED, OCTET_STREAM, MediaType, parse_accept
from . import render as pixels


@dataclass(frozen=True)
class FrameFormat:
    """What a frames request wants: ``jpeg`` (rendered or passed through) or ``octet`` (pixel bytes);
    for octet, the transfer syntax (None = as stored, ``*``), and whether the body is multipart."""

    kind: str
    transfer_syntax: str | None
    multipart: bool


def _octet_syntax(r: MediaType) -> str | None:
    """The transfer syntax asked for: ``*`` means as stored (None); absent means Explicit VR Little
    Endian, the default of application/octet-stream (PS3.18 Table 8.7.3-5)."""
    ts = r.param("transfer-syntax")
    if ts == "*":
        return None
    return ts or ExplicitVRLittleEndian


def negotiate_frames(accept: str | None, single_frame: bool) -> FrameFormat:
    for r in parse_accept(accept):
        if r.type == MULTIPART_RELATED:
            part = (r.param("type") or OCTET_STREAM).lower()
            if part in JPEG_TYPES or part == "image/*":
                return FrameFormat("jpeg", JPEGBaseline8Bit, True)
            if part in (OCTET_STREAM, "application/*"):
                return FrameFormat("octet", _octet_syntax(r), True)
            if part == "*/*":
                return FrameFormat("octet", None, True)
        elif r.type in JPEG_TYPES and single_frame:
            return FrameFormat("jpeg", JPEGBaseline8Bit, False)
        elif r.type == OCTET_STREAM and single_frame:
            return FrameFormat("octet", _octet_syntax(r), False)
        elif r.type == "image/*":
            return FrameFormat("jpeg", JPEGBaseline8Bit, True)
        elif r.type in ("*/*", "application/*"):
            return FrameFormat("octet", None, True)
    raise NotAcceptable(
        f"cannot satisfy Accept: {accept}; frames are available as "
        'multipart/related; type="application/octet-stream" (transfer-syntax=* for the stored encoding) '
        'or multipart/related; type="image/jpeg"'
    )


def _native_bytes(ds: Dataset, number: int) -> bytes:
    from pydicom.pixels.utils import pixel_array

    try:
        return bytes(pixel_array(ds, index=number - 1, raw=True).tobytes())
    except Exception as exc:
        raise NotAcceptable(
            f"the frame cannot be decompressed here ({type(exc).__name__}); "
            "ask with transfer-syntax=* to get it as stored"
        ) from None


def frame_parts(data: bytes, numbers: list[int], fmt: FrameFormat, location: str) -> list[tuple[bytes, dict[str, str]]]:
    """Each requested frame as (payload, part headers)."""
    ds = dcmread(io.BytesIO(data))
    pixels.require_pixels(ds)
    stored_ts = str(ds.file_meta.TransferSyntaxUID)
    out: list[tuple[bytes, dict[str, str]]] = []
    for n in numbers:
        if fmt.kind == "jpeg":
            payload, ctype = (
                pixels.frame_as_jpeg(ds, n),
                MediaType("image/jpeg", {"transfer-syntax": JPEGBaseline8Bit}),
            )
        elif fmt.transfer_syntax is None or fmt.transfer_syntax == stored_ts:
            payload, ctype = pixels.stored_frame(ds, n), MediaType(OCTET_STREAM, {"transfer-syntax": stored_ts})
        elif fmt.transfer_syntax == ExplicitVRLittleEndian:
            payload = pixels.stored_frame(ds, n) if stored_ts in ("1.2.840.10008.1.2",) else _native_bytes(ds, n)
            ctype = MediaType(OCTET_STREAM, {"transfer-syntax": fmt.transfer_syntax})
        else:
            raise NotAcceptable(
                f"frames are stored as {stored_ts}; they can be returned as stored "
                f"(transfer-syntax=*) or as {ExplicitVRLittleEndian}, not {fmt.transfer_syntax}"
            )
        out.append((payload, {"Content-Type": str(ctype), "Content-Location": f"{location}/frames/{n}"}))
    return out


def render_frames_body(
    data: bytes, numbers: list[int], fmt: FrameFormat, location: str, boundary: str | None = None
) -> tuple[bytes, str]:
    parts = frame_parts(data, numbers, fmt, location)
    if not fmt.multipart:
        payload, headers = parts[0]
        return payload, headers["Content-Type"]
    part_type = "image/jpeg" if fmt.kind == "jpeg" else OCTET_STREAM
    params = {"transfer-syntax": fmt.transfer_syntax} if fmt.kind == "octet" and fmt.transfer_syntax else None
    return multipart.encode(parts, part_type, boundary=boundary, params=params)


def negotiate_rendered(accept: str | None, explicit: str | None = None) -> str:
    """The image type for a rendered resource: image/jpeg unless the client prefers png or gif."""
    if explicit:
        wanted = explicit.strip().lower()
        if wanted in JPEG_TYPES:
            return "image/jpeg"
        if wanted in pixels.RENDERED_TYPES:
            return wanted
        raise NotAcceptable(f"cannot render as {explicit}; available: {', '.join(pixels.RENDERED_TYPES)}")
    for r in parse_accept(accept):
        if r.type in JPEG_TYPES:
            return "image/jpeg"
        if r.type in pixels.RENDERED_TYPES:
            return r.type
        if r.type in ("*/*", "image/*"):
            return "image/jpeg"
    raise NotAcceptable(
        f"cannot satisfy Accept: {accept}; rendered images are available as {', '.join(pixels.RENDERED_TYPES)}"
    )


def parse_window(text: str | None) -> pixels.Window | None:
    """``window=center,width[,function]`` (PS3.18 §8.3.5.1.4); only the linear function."""
    if not text:
        return None
    items = [t.strip() for t in text.split(",")]
    try:
        center, width = float(items[0]), float(items[1])
    except (IndexError, ValueError):
        raise BadRequest(f"window={text!r}: expected center,width[,linear]") from None
    if len(items) > 2 and items[2].lower() not in ("linear", "linear_exact"):
        raise BadRequest(f"window function {items[2]!r} is not supported (use linear)")
    if width < 1:
        raise BadRequest("window width must be at least 1")
    return pixels.Window(center, width)
