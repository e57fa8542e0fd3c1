"""WADO-RS frames (PS3.18 §10.4.1.1.3): finding a frame's bytes in an instance, as stored, decoded
to Explicit VR Little Endian, or as JPEG."""

from __future__ import annotations

import io

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit

from ..errors import BadRequest, NotAcceptable, NotFound
from ..formats import multipart
from ..formats.media import OCTET_STREAM, MediaType
from . import render
from .negotiation import FrameFormat


def frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def parse_frame_list(text: str, count: int) -> list[int]:
    """``1,3,5`` → [1, 3, 5]; each frame number must exist (1-based)."""
    frames: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise BadRequest(f"frame list {text!r}: {item!r} is not a frame number (1, 2, ...)")
        number = int(item)
        if number > count:
            raise NotFound(f"frame {number} does not exist; the instance has {count} frame{'s' * (count != 1)}")
        frames.append(number)
    return frames


def has_pixels(ds: Dataset) -> bool:
    return "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds


def require_pixels(ds: Dataset) -> None:
    if "PixelData" not in ds:
        raise NotAcceptable("the instance has no pixel data; it cannot be returned as frames or images")


def stored_frame(ds: Dataset, number: int) -> bytes:
    """The bytes of frame ``number`` (1-based) as stored: a native slice or the encapsulated frame."""
    require_pixels(ds)
    ts = str(ds.file_meta.TransferSyntaxUID)
    data: bytes = ds.PixelData
    count = frame_count(ds)
    if not UID(ts).is_compressed:
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1))
        pixels = int(ds.Rows) * int(ds.Columns) * samples
        if bits == 1:
            raise NotAcceptable("single-bit frames cannot be returned separately")
        size = pixels * bits // 8
        return data[(number - 1) * size : number * size]
    for index, frame in enumerate(generate_frames(data, number_of_frames=count), start=1):
        if index == number:
            # Fragments are padded to an even length; a JPEG ends at its EOI marker.
            return frame[:-1] if frame.endswith(b"\xff\xd9\x00") else frame
    raise NotFound(f"frame {number} is not in the encapsulated pixel data")


def frame_as_jpeg(ds: Dataset, number: int) -> bytes:
    """A JPEG for frame ``number``: the stored bitstream when it is JPEG Baseline, else rendered."""
    if str(ds.file_meta.TransferSyntaxUID) == JPEGBaseline8Bit:
        return stored_frame(ds, number)
    return render.render(ds, number, "image/jpeg")


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
    require_pixels(ds)
    stored_ts = str(ds.file_meta.TransferSyntaxUID)
    out: list[tuple[bytes, dict[str, str]]] = []
    for n in numbers:
        if fmt.kind == "jpeg":
            payload, ctype = (
                frame_as_jpeg(ds, n),
                MediaType("image/jpeg", {"transfer-syntax": JPEGBaseline8Bit}),
            )
        elif fmt.transfer_syntax is None or fmt.transfer_syntax == stored_ts:
            payload, ctype = stored_frame(ds, n), MediaType(OCTET_STREAM, {"transfer-syntax": stored_ts})
        elif fmt.transfer_syntax == ExplicitVRLittleEndian:
            payload = stored_frame(ds, n) if stored_ts in ("1.2.840.10008.1.2",) else _native_bytes(ds, n)
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
