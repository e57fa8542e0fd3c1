"""Frames and rendered images: the stored bytes of a frame, and a frame rendered for display as
JPEG or PNG (PS3.18 §8.3.5 and §10.4.1.1.3 rendered resources, §9 WADO-URI).

Rendering follows PS3.3 §C.11.2.1.2: the Modality LUT (rescale slope/intercept), then a linear
VOI window (the request's, else the dataset's first window, else the frame's own pixel range) to
8 bits; MONOCHROME1 is inverted so that it displays as stored; color images stay color (YBR is
converted to RGB by pydicom). Pixel codecs (numpy, Pillow, pylibjpeg) are imported only here, so
the search and store functions never load them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import UID, JPEGBaseline8Bit

from ..errors import BadRequest, NotAcceptable, NotFound

RENDERED_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}


@dataclass(frozen=True)
class Window:
    center: float
    width: float


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


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0] if len(value) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _frame_array(ds: Dataset, number: int) -> Any:
    from pydicom.pixels.utils import pixel_array

    try:
        return pixel_array(ds, index=number - 1, raw=False)
    except Exception as exc:
        raise NotAcceptable(
            f"the frame cannot be decoded for rendering ({type(exc).__name__}); "
            "ask for application/octet-stream with transfer-syntax=* to get it as stored"
        ) from None


def to_8bit(ds: Dataset, arr: Any, window: Window | None = None) -> Any:
    """Display-ready uint8 pixels for one frame (grayscale HxW or color HxWx3)."""
    import numpy as np

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        arr = apply_color_lut(arr, ds)
        photometric = "RGB"
    if arr.ndim == 3 and photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if arr.dtype != np.uint8:
            top = float(2 ** int(ds.get("BitsStored", 8)) - 1) or 1.0
            arr = np.clip(arr.astype(np.float64) * 255.0 / top, 0, 255)
        return arr.astype(np.uint8)
    values = arr.astype(np.float64)
    slope = _first(ds.get("RescaleSlope")) or 1.0
    intercept = _first(ds.get("RescaleIntercept")) or 0.0
    values = values * slope + intercept
    if window is None:
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        if center is not None and width is not None and width >= 1:
            window = Window(center, width)
    if window is not None:
        c, w = window.center, max(window.width, 1.0)
        scaled = ((values - (c - 0.5)) / max(w - 1.0, 1.0) + 0.5) * 255.0
    else:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    out = np.clip(scaled, 0, 255).astype(np.uint8)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def encode_image(pixels: Any, media_type: str, quality: int = 90, size: tuple[int, int] | None = None) -> bytes:
    from PIL import Image

    fmt = RENDERED_TYPES.get(media_type)
    if fmt is None:
        raise NotAcceptable(f"cannot render as {media_type}; available: {', '.join(RENDERED_TYPES)}")
    image = Image.fromarray(pixels)
    if size is not None:
        image.thumbnail(size)
    out = io.BytesIO()
    if fmt == "JPEG":
        image.save(out, format="JPEG", quality=max(1, min(quality, 100)))
    else:
        image.save(out, format=fmt)
    return out.getvalue()


def render(
    ds: Dataset,
    number: int,
    media_type: str,
    *,
    window: Window | None = None,
    quality: int = 90,
    size: tuple[int, int] | None = None,
) -> bytes:
    """Frame ``number`` (1-based) rendered as ``media_type`` (image/jpeg, image/png, image/gif)."""
    require_pixels(ds)
    if media_type not in RENDERED_TYPES:
        raise NotAcceptable(f"cannot render as {media_type}; available: {', '.join(RENDERED_TYPES)}")
    return encode_image(to_8bit(ds, _frame_array(ds, number), window), media_type, quality, size)


def frame_as_jpeg(ds: Dataset, number: int) -> bytes:
    """A JPEG for frame ``number``: the stored bitstream when it is JPEG Baseline, else rendered."""
    if str(ds.file_meta.TransferSyntaxUID) == JPEGBaseline8Bit:
        return stored_frame(ds, number)
    return render(ds, number, "image/jpeg")
