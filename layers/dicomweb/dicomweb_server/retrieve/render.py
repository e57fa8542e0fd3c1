"""Rendering a frame for display as JPEG, PNG or GIF (PS3.18 §8.3.5 rendered resources, §9 WADO-URI),
and the presentation parameters that steer it (window, viewport, quality).

Rendering follows PS3.3 §C.11.2.1.2: the Modality LUT (rescale slope/intercept), then a linear
VOI window (the request's, else the dataset's first window, else the frame's own pixel range) to
8 bits; MONOCHROME1 is inverted so that it displays as stored; color images stay color (YBR is
converted to RGB by pydicom). Pixel codecs (numpy, Pillow, pylibjpeg) are imported inside the
functions, so the search and store functions never load them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from ..errors import BadRequest, NotAcceptable
from ..formats.media import RENDERED_TYPES

#: Largest rendered width or height a client may ask for.
MAX_VIEWPORT = 16384


@dataclass(frozen=True)
class Window:
    center: float
    width: float


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
    top: float | None = None
    if photometric == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        arr = apply_color_lut(arr, ds)
        photometric = "RGB"
        # the entries' own depth (PS3.3 §C.7.6.3.1.5: 8 or 16 bits), not the index's BitsStored
        top = float(2 ** (8 * arr.dtype.itemsize) - 1)
    if arr.ndim == 3 and photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if arr.dtype != np.uint8:
            top = top or float(2 ** int(ds.get("BitsStored", 8)) - 1) or 1.0
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
    if "PixelData" not in ds:
        raise NotAcceptable("the instance has no pixel data; it cannot be returned as frames or images")
    if media_type not in RENDERED_TYPES:
        raise NotAcceptable(f"cannot render as {media_type}; available: {', '.join(RENDERED_TYPES)}")
    return encode_image(to_8bit(ds, _frame_array(ds, number), window), media_type, quality, size)


def parse_window(text: str | None) -> Window | None:
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
    return Window(center, width)


def parse_viewport(text: str | None) -> tuple[int, int] | None:
    """``viewport=width,height`` (PS3.18 §8.3.5.1.3): the largest size the image is scaled to fit."""
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.split(",")[:2])
    except ValueError:
        raise BadRequest(f"viewport={text!r}: expected width,height") from None
    if not (1 <= w <= MAX_VIEWPORT and 1 <= h <= MAX_VIEWPORT):
        raise BadRequest(f"viewport={text!r}: width and height must be between 1 and {MAX_VIEWPORT} pixels")
    return (w, h)


def positive_int(value: str | None, name: str) -> int | None:
    """A request parameter that must be a whole number of at least 1 (None when absent)."""
    if value is None or value == "":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise BadRequest(f"{name}={value!r} must be a positive whole number")
    return int(value)
