"""Rendering frames for display as JPEG, PNG or GIF (PS3.18 §8.3.5 rendered resources, §9 WADO-URI),
and the presentation parameters that steer it (window, viewport, quality).

The grayscale pipeline is PS3.3 §C.11 (and PS3.4 §N.2.1.1), done by pydicom's own functions on a
per-frame view of the dataset:

1. the Modality LUT (``apply_modality_lut``: Rescale Slope/Intercept or the Modality LUT Sequence),
2. the VOI LUT: the request's window; else the dataset's VOI LUT Sequence (pydicom's preference
   when both are present), else its first Window Center/Width with its VOI LUT Function; else the
   frame's own value range (``apply_windowing`` for LINEAR, LINEAR_EXACT and SIGMOID,
   ``apply_voi`` for a LUT),
3. to 8 bits, MONOCHROME1 inverted so that it displays as stored.

For enhanced multi-frame instances the Pixel Value Transformation and Frame VOI LUT macros of the
Shared and Per-frame Functional Groups replace the top-level values, frame by frame.

Colour stays colour: YBR is converted to RGB by pydicom's decoder (``convert_color_space``),
palette colour through ``apply_color_lut`` with 8- or 16-bit entries scaled to 8 bits. Pixel codecs
(numpy, Pillow, pylibjpeg) are imported inside the functions, so the search and store functions
never load them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from ..errors import BadRequest, NotAcceptable
from ..formats.media import RENDERED_TYPES

#: Largest rendered width or height a client may ask for, unless a setting says otherwise.
MAX_VIEWPORT = 4096

#: Request spellings of the VOI LUT functions (PS3.18 §8.3.5.1.4) → (0028,1056) values.
FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "linear_exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


@dataclass(frozen=True)
class Window:
    """A VOI window: center, width and the VOI LUT Function (PS3.3 §C.11.2.1.2, §C.11.2.1.3)."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True)
class Viewport:
    """``viewport=vw,vh[,sx,sy,sw,sh]`` (PS3.18 §8.3.5.1.3): the image, or the region of it that
    starts at (sx, sy) and is |sw| × |sh| pixels (None: to the image's edge; negative: flipped),
    scaled to fit vw × vh with its aspect ratio kept."""

    width: int
    height: int
    sx: int = 0
    sy: int = 0
    sw: int | None = None
    sh: int | None = None

    @property
    def has_region(self) -> bool:
        return bool(self.sx or self.sy or self.sw is not None or self.sh is not None)

    def key(self) -> str:
        """A short text naming this viewport (for cache keys)."""
        text = f"{self.width}x{self.height}"
        if self.has_region:
            text += f"-{self.sx}-{self.sy}-{'' if self.sw is None else self.sw}-{'' if self.sh is None else self.sh}"
        return text


# -- parameters -------------------------------------------------------------------------------------


def _number(text: str, what: str, original: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"window={original!r}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"window={original!r}: {what} must be a finite number")
    return value


def parse_window(text: str | None) -> Window | None:
    """``window=center,width[,function]`` (PS3.18 §8.3.5.1.4): function ``linear`` (the default),
    ``linear-exact`` or ``sigmoid``. The width must be at least 1 for linear (PS3.3
    §C.11.2.1.2.1) and above 0 for the others (§C.11.2.1.3)."""
    if not text:
        return None
    items = [t.strip() for t in text.split(",")]
    if len(items) not in (2, 3) or not items[0] or not items[1]:
        raise BadRequest(f"window={text!r}: expected center,width[,function]")
    center = _number(items[0], "center", text)
    width = _number(items[1], "width", text)
    name = items[2].lower() if len(items) == 3 and items[2] else "linear"
    function = FUNCTIONS.get(name)
    if function is None:
        raise BadRequest(f"window function {items[2]!r} is not supported (use linear, linear-exact or sigmoid)")
    if function == "LINEAR" and width < 1:
        raise BadRequest(f"window={text!r}: window width must be at least 1 for the linear function")
    if width <= 0:
        raise BadRequest(f"window={text!r}: window width must be greater than 0 for the {name} function")
    return Window(center, width, function)


def _int(text: str, name: str, original: str) -> int:
    value = text.strip()
    digits = value[1:] if value.startswith("-") else value
    if not digits.isdigit():
        raise BadRequest(f"viewport={original!r}: {name} {value!r} is not a whole number")
    return int(value)


def parse_viewport(text: str | None, max_size: int = MAX_VIEWPORT) -> Viewport | None:
    """``viewport=vw,vh[,sx,sy,sw,sh]`` (PS3.18 §8.3.5.1.3); vw and vh from 1 to ``max_size``."""
    if not text:
        return None
    items = text.split(",")
    if len(items) not in (2, 6):
        raise BadRequest(f"viewport={text!r}: expected width,height or width,height,sx,sy,sw,sh")
    try:
        vw, vh = (int(v) for v in items[:2])
    except ValueError:
        raise BadRequest(f"viewport={text!r}: expected width,height as whole numbers") from None
    if not (1 <= vw <= max_size and 1 <= vh <= max_size):
        raise BadRequest(f"viewport={text!r}: width and height must be between 1 and {max_size} pixels")
    if len(items) == 2:
        return Viewport(vw, vh)
    sx, sy = (_int(v, n, text) if v.strip() else 0 for v, n in zip(items[2:4], ("sx", "sy"), strict=True))
    sw, sh = (_int(v, n, text) if v.strip() else None for v, n in zip(items[4:6], ("sw", "sh"), strict=True))
    if sx < 0 or sy < 0:
        raise BadRequest(f"viewport={text!r}: sx and sy must not be negative")
    if sw == 0 or sh == 0:
        raise BadRequest(f"viewport={text!r}: sw and sh must not be 0 (negative flips the region)")
    return Viewport(vw, vh, sx, sy, sw, sh)


def parse_quality(value: str | None, name: str = "quality") -> int | None:
    """``quality`` (PS3.18 §8.3.5.1.5): a whole number from 1 to 100 (None when absent)."""
    if value is None or value == "":
        return None
    if not value.strip().isdigit() or not 1 <= int(value) <= 100:
        raise BadRequest(f"{name}={value!r} must be a whole number from 1 to 100")
    return int(value)


def positive_int(value: str | None, name: str) -> int | None:
    """A request parameter that must be a whole number of at least 1 (None when absent)."""
    if value is None or value == "":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise BadRequest(f"{name}={value!r} must be a positive whole number")
    return int(value)


# -- pixels ------------------------------------------------------------------------------------------

_IMAGE = ("PhotometricInterpretation", "BitsStored", "BitsAllocated", "PixelRepresentation", "SamplesPerPixel")
#: Modality LUT module (PS3.3 §C.11.1) and the Pixel Value Transformation macro (§C.7.6.16.2.9).
_MODALITY = ("RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence")
#: VOI LUT module (PS3.3 §C.11.2) and the Frame VOI LUT (with LUT) macro (§C.7.6.16.2.10).
_VOI = ("WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence")
_GROUPS = (("PixelValueTransformationSequence", _MODALITY), ("FrameVOILUTSequence", _VOI))


def frame_view(ds: Dataset, index: int) -> Dataset:
    """The image, Modality LUT and VOI LUT attributes that apply to frame ``index`` (0-based): the
    top-level ones, replaced by the Shared, then the Per-frame Functional Groups' macros."""
    view = Dataset()
    if hasattr(ds, "file_meta"):
        view.file_meta = ds.file_meta
    view.set_original_encoding(*ds.original_encoding)
    for keyword in _IMAGE + _MODALITY + _VOI:
        if keyword in ds:
            view[keyword] = ds[keyword]
    groups: list[Dataset] = []
    for sequence in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = ds.get(sequence) or []
        position = 0 if sequence.startswith("Shared") else index
        if position < len(items):
            groups.append(items[position])
    for group in groups:
        for macro, keywords in _GROUPS:
            items = group.get(macro) or []
            present = [k for k in keywords if items and k in items[0]]
            if not present:
                continue
            for keyword in keywords:
                if keyword in view:
                    del view[keyword]
            for keyword in present:
                view[keyword] = items[0][keyword]
    return view


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0] if len(value) else None
    try:
        number = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _windowing(values: Any, window: Window) -> Any:
    """``apply_windowing`` with an output range of exactly 0..255 (8 bits, unsigned, no rescale)."""
    import numpy as np
    from pydicom.pixels.processing import apply_windowing

    spec = Dataset()
    spec.PhotometricInterpretation = "MONOCHROME2"
    spec.BitsStored = 8
    spec.PixelRepresentation = 0
    spec.add_new(0x00281050, "FD", float(window.center))  # WindowCenter, exact (no DS rounding)
    spec.add_new(0x00281051, "FD", float(window.width))
    spec.VOILUTFunction = window.function
    with np.errstate(over="ignore"):  # a narrow sigmoid overflows exp() to inf: 0, as it should
        return apply_windowing(values, spec)


def _dataset_window(view: Dataset) -> Window | None:
    center, width = _first(view.get("WindowCenter")), _first(view.get("WindowWidth"))
    function = str(view.get("VOILUTFunction") or "LINEAR").upper()
    if center is None or width is None or function not in FUNCTIONS.values():
        return None
    if width < (1 if function == "LINEAR" else 1e-12):
        return None  # an unusable stored window: the frame's range is shown instead
    return Window(center, width, function)


def _voi_lut(values: Any, view: Dataset) -> Any | None:
    """The first VOI LUT of the view applied and scaled to 0..255, or None when it has none."""
    import numpy as np
    from pydicom.pixels.processing import apply_voi

    items = view.get("VOILUTSequence") or []
    if not items or "LUTDescriptor" not in items[0] or "LUTData" not in items[0]:
        return None
    entries, first_map, bits = (int(v) for v in items[0].LUTDescriptor)
    entries = entries or 65536
    if bits not in (8, *range(10, 17)):
        return None
    # pydicom indexes the LUT in its own integer type: clip first so that no value wraps around.
    indices = np.clip(np.rint(values), first_map, first_map + entries - 1).astype(np.int64)
    out = apply_voi(indices, view).astype(np.float64)
    return out * (255.0 / float(2**bits - 1))


def _to_uint8(scaled: Any) -> Any:
    import numpy as np

    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_8bit(ds: Dataset, arr: Any, window: Window | None = None, index: int = 0) -> Any:
    """Display-ready uint8 pixels for frame ``index`` (0-based) of ``ds``, decoded as ``arr``:
    grayscale HxW or colour HxWx3."""
    import numpy as np

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        rgb = apply_color_lut(arr, ds)
        descriptor = ds.get("RedPaletteColorLookupTableDescriptor") or [0, 0, 8]
        bits = int(descriptor[2]) if int(descriptor[2]) in (8, 16) else 16
        return _to_uint8(rgb.astype(np.float64) * (255.0 / float(2**bits - 1)))
    if arr.ndim == 3:
        if arr.dtype == np.uint8:
            return arr
        top = float(2 ** int(ds.get("BitsStored", 8)) - 1) or 1.0
        return _to_uint8(arr.astype(np.float64) * (255.0 / top))
    from pydicom.pixels.processing import apply_modality_lut

    view = frame_view(ds, index)
    values = apply_modality_lut(arr, view).astype(np.float64)
    scaled = None
    if window is not None:
        scaled = _windowing(values, window)
    else:
        scaled = _voi_lut(values, view)
        stored = _dataset_window(view) if scaled is None else None
        if stored is not None:
            scaled = _windowing(values, stored)
    if scaled is None:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    out = _to_uint8(scaled)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def _frame_array(ds: Dataset, number: int) -> Any:
    from pydicom.pixels.utils import pixel_array

    try:
        return pixel_array(ds, index=number - 1, raw=False)
    except (ValueError, NotImplementedError, RuntimeError, AttributeError, KeyError, TypeError) as exc:
        raise NotAcceptable(
            f"the frame cannot be decoded for rendering ({type(exc).__name__}); "
            "ask for application/octet-stream with transfer-syntax=* to get it as stored"
        ) from None


def _region(pixels: Any, viewport: Viewport) -> Any:
    rows, cols = pixels.shape[:2]
    if viewport.sx >= cols or viewport.sy >= rows:
        raise BadRequest(f"viewport region starts at ({viewport.sx},{viewport.sy}), outside the {cols}x{rows} image")
    width = cols - viewport.sx if viewport.sw is None else abs(viewport.sw)
    height = rows - viewport.sy if viewport.sh is None else abs(viewport.sh)
    out = pixels[viewport.sy : viewport.sy + height, viewport.sx : viewport.sx + width]
    if viewport.sw is not None and viewport.sw < 0:
        out = out[:, ::-1]
    if viewport.sh is not None and viewport.sh < 0:
        out = out[::-1]
    return out


def _fit(width: int, height: int, box: tuple[int, int], enlarge: bool) -> tuple[int, int]:
    scale = min(box[0] / width, box[1] / height)
    if not enlarge:
        scale = min(scale, 1.0)
    return max(1, min(box[0], round(width * scale))), max(1, min(box[1], round(height * scale)))


def _image(pixels: Any, size: tuple[int, int] | None, viewport: Viewport | None) -> Any:
    """A Pillow image: the region of the viewport scaled to fit it, or shrunk to fit ``size``."""
    import numpy as np
    from PIL import Image

    if viewport is not None and viewport.has_region:
        pixels = np.ascontiguousarray(_region(pixels, viewport))
    image = Image.fromarray(pixels)
    box = (viewport.width, viewport.height) if viewport is not None else size
    if box is not None:
        target = _fit(image.width, image.height, box, enlarge=viewport is not None)
        if target != image.size:
            image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image


def _save(images: list[Any], media_type: str, quality: int, durations: int = 100) -> bytes:
    fmt = RENDERED_TYPES.get(media_type)
    if fmt is None:
        raise NotAcceptable(f"cannot render as {media_type}; available: {', '.join(RENDERED_TYPES)}")
    out = io.BytesIO()
    if fmt == "JPEG":
        images[0].save(out, format="JPEG", quality=max(1, min(quality, 100)))
    elif fmt == "GIF" and len(images) > 1:
        images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    else:
        images[0].save(out, format=fmt)
    return out.getvalue()


def encode_image(pixels: Any, media_type: str, quality: int = 90, size: tuple[int, int] | None = None) -> bytes:
    """8-bit pixels as ``media_type``, shrunk to fit ``size`` when given."""
    return _save([_image(pixels, size, None)], media_type, quality)


def frame_duration_ms(ds: Dataset) -> int:
    """How long each frame of an animation shows: Frame Time (0018,1063), else the Cine Rate or
    Recommended Display Frame Rate, else 100 ms."""
    frame_time = _first(ds.get("FrameTime"))
    if frame_time and frame_time > 0:
        return max(10, round(frame_time))
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _first(ds.get(keyword))
        if rate and rate > 0:
            return max(10, round(1000 / rate))
    return 100


def require_pixels(ds: Dataset) -> None:
    if "PixelData" not in ds:
        raise NotAcceptable("the instance has no pixel data; it cannot be returned as frames or images")


def render_frames(
    ds: Dataset,
    numbers: Sequence[int],
    media_type: str,
    *,
    window: Window | None = None,
    quality: int = 90,
    size: tuple[int, int] | None = None,
    viewport: Viewport | None = None,
) -> bytes:
    """Frames ``numbers`` (1-based) rendered as one ``media_type`` image: several frames only as an
    animated image/gif (one frame at a time is decoded, so memory follows the 8-bit output)."""
    require_pixels(ds)
    return render_each(
        ((ds, n) for n in numbers),
        len(numbers),
        media_type,
        duration=frame_duration_ms(ds),
        window=window,
        quality=quality,
        size=size,
        viewport=viewport,
    )


def render_each(
    frames: Iterable[tuple[Dataset, int]],
    count: int,
    media_type: str,
    *,
    duration: int = 100,
    window: Window | None = None,
    quality: int = 90,
    size: tuple[int, int] | None = None,
    viewport: Viewport | None = None,
) -> bytes:
    """``count`` frames, each given as (dataset, frame number in it), rendered as one image: the
    whole instance with each of its frame numbers, or one single-frame dataset per frame
    (``frame_source.FrameSource.dataset``), produced one at a time."""
    if media_type not in RENDERED_TYPES:
        raise NotAcceptable(f"cannot render as {media_type}; available: {', '.join(RENDERED_TYPES)}")
    if count > 1 and media_type != "image/gif":
        raise NotAcceptable(f"{media_type} holds one frame; several frames are rendered only as image/gif")
    images = []
    for ds, n in frames:
        require_pixels(ds)
        images.append(_image(to_8bit(ds, _frame_array(ds, n), window, index=n - 1), size, viewport))
    return _save(images, media_type, quality, duration)


def render(
    ds: Dataset,
    number: int,
    media_type: str,
    *,
    window: Window | None = None,
    quality: int = 90,
    size: tuple[int, int] | None = None,
    viewport: Viewport | None = None,
) -> bytes:
    """Frame ``number`` (1-based) rendered as ``media_type`` (image/jpeg, image/png, image/gif).

    ``size`` shrinks the image to fit (WADO-URI rows/columns, never enlarged); ``viewport``
    crops and scales it to fit (WADO-RS)."""
    return render_frames(ds, [number], media_type, window=window, quality=quality, size=size, viewport=viewport)
