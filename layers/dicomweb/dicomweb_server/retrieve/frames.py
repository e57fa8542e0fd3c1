"""WADO-RS frames (PS3.18 §10.4.1.1.3): finding a frame's bytes in an instance, as stored, decoded
to Explicit VR Little Endian, or as JPEG."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from ..errors import BadRequest, NotAcceptable, NotFound
from ..formats import multipart
from ..formats.media import MULTIPART_RELATED, OCTET_STREAM, MediaType
from ..frame_table import EncapsulatedFrames, FrameTable, NativeFrames
from . import render
from .negotiation import FRAME_DEFAULT_SYNTAX, FrameFormat

if TYPE_CHECKING:
    from .streams import Body


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


#: Reads bytes [start, end) of the stored object (an S3 range GET, or a slice of bytes at hand).
RangeReader = Callable[[int, int], bytes]

_BIG_ENDIAN = "1.2.840.10008.1.2.2"


def by_range(fmt: FrameFormat, stored_ts: str, table: FrameTable | None) -> bool:
    """Whether the frames asked for are stored bytes a frame table locates (no decoding): the
    stored encoding (``*`` or its own UID), or native pixel data as Explicit VR Little Endian."""
    if table is None:
        return False
    if fmt.kind != "octet":
        return False  # image/* frames are checked (and re-encoded where needed) on the whole object
    if fmt.transfer_syntax in (None, stored_ts):
        return True
    return isinstance(table, NativeFrames) and fmt.transfer_syntax == ExplicitVRLittleEndian


def read_frame(table: FrameTable, read: RangeReader, number: int, *, little_endian: bool = True) -> bytes:
    """Frame ``number`` (1-based) read with one range of the stored object: an encapsulated frame's
    fragments exactly as stored (padding included); a native frame on its own (bit-packed frames
    re-aligned to their first bit; big-endian words swapped when ``little_endian``)."""
    start, end = table.byte_range(number)
    raw = read(start, end)
    if isinstance(table, EncapsulatedFrames):
        return b"".join(raw[at - start : at - start + length] for at, length in table.fragments(number))
    if table.swap > 1 and little_endian:
        raw = _swapped(raw, table.swap)
    first_bit, bits = table.bit_span(number)
    skip_bits = first_bit - (start - table.offset) * 8
    if skip_bits % 8 == 0 and bits % 8 == 0:
        return raw[skip_bits // 8 : skip_bits // 8 + bits // 8]
    import numpy as np

    unpacked = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
    return bytes(np.packbits(unpacked[skip_bits : skip_bits + bits], bitorder="little").tobytes())


def _swapped(raw: bytes, unit: int) -> bytes:
    whole = len(raw) // unit * unit
    out = bytearray(raw[:whole])
    for i in range(unit):
        out[i::unit] = raw[unit - 1 - i : whole : unit]
    return bytes(out) + raw[whole:]


def ranged_part(
    table: FrameTable, read: RangeReader, stored_ts: str, number: int, fmt: FrameFormat
) -> tuple[bytes, MediaType]:
    """Frame ``number`` as (payload, Content-Type), read by range (``by_range`` says when)."""
    label = ranged_label(stored_ts, table, fmt)
    return read_frame(table, read, number, little_endian=label.param("transfer-syntax") != _BIG_ENDIAN), label


def ranged_label(stored_ts: str, table: FrameTable, fmt: FrameFormat) -> MediaType:
    """The Content-Type of every frame read by range: the stored syntax, or Explicit VR Little
    Endian for native frames (big-endian ones are given little endian, and labelled so)."""
    label = fmt.transfer_syntax or stored_ts
    if isinstance(table, NativeFrames) and stored_ts == _BIG_ENDIAN and fmt.transfer_syntax is None:
        label = ExplicitVRLittleEndian  # as stored, but little endian: labelled as what it is
    return MediaType(OCTET_STREAM, {"transfer-syntax": label})


def ranged_length(table: FrameTable, number: int) -> int:
    """The length of frame ``number`` as ``read_frame`` gives it, known from the table alone."""
    if isinstance(table, EncapsulatedFrames):
        return sum(length for _, length in table.fragments(number))
    return -(-table.frame_bits // 8)


def streamed_frames(
    numbers: list[int],
    fmt: FrameFormat,
    location: str,
    produce: Callable[[int], tuple[bytes, MediaType]],
    *,
    workers: int,
    label: MediaType | None = None,
    lengths: Callable[[int], int] | None = None,
    boundary: str | None = None,
) -> Body:
    """The frames answer written part by part (PS3.18 §8.6.1.2): ``produce(n)`` gives frame ``n``'s
    payload and Content-Type, run for up to ``workers`` frames at once and written in order (so
    memory holds about one frame per worker). The bytes are exactly ``formats.multipart.encode``'s
    for the same parts, with the parts' transfer syntax as the body's ``transfer-syntax``.

    ``label``: every part's Content-Type when known beforehand (frames read as stored), so nothing
    is read before the body is; else the first frame is produced here, to name the body's type (and
    to fail cleanly, before any status line, if it cannot be). ``lengths(n)``: each payload's length
    when known from the frame table, which makes the body's length exact."""
    from .streams import Body, closing, ordered, part_header

    def headers(n: int, ctype: MediaType) -> dict[str, str]:
        return {"Content-Type": str(ctype), "Content-Location": f"{location}/frames/{n}"}

    if not fmt.multipart:
        n = numbers[0]
        if label is not None and lengths is not None:
            return Body((produce(n)[0] for _ in (0,)), str(label), lengths(n))
        payload, ctype = produce(n)
        return Body(iter((payload,)), str(ctype), len(payload))
    boundary = boundary or multipart.new_boundary()
    results: Iterator[tuple[bytes, MediaType]] = ordered(numbers, produce, workers)
    if label is None:
        first = next(results)
        label = first[1]
        results = chain((first,), results)
    ts = label.param("transfer-syntax")
    params = {"transfer-syntax": ts} if ts else {}
    content_type = str(MediaType(MULTIPART_RELATED, {"type": fmt.media_type, **params, "boundary": boundary}))
    length = None
    if lengths is not None:
        length = sum(len(part_header(boundary, headers(n, label))) + lengths(n) + 2 for n in numbers)
        length += len(closing(boundary))

    def chunks() -> Iterator[bytes]:
        for n, (payload, ctype) in zip(numbers, results, strict=True):
            yield part_header(boundary, headers(n, ctype))
            yield payload
            yield b"\r\n"
        yield closing(boundary)

    return Body(chunks(), content_type, length)


def frame_as_jpeg(ds: Dataset, number: int) -> bytes:
    """A JPEG for frame ``number``: the stored bitstream when it is JPEG Baseline (and a JPEG decoder
    reads its colours right), else rendered."""
    if str(ds.file_meta.TransferSyntaxUID) == JPEGBaseline8Bit:
        stored = stored_frame(ds, number)
        # An RGB bitstream without Adobe's APP14 marker is read as YCbCr by every JPEG decoder.
        if str(ds.get("PhotometricInterpretation", "")).upper() != "RGB" or b"Adobe" in stored[:4096]:
            return stored
    return render.render(ds, number, "image/jpeg")


def _decode_error(exc: Exception) -> NotAcceptable:
    return NotAcceptable(
        f"the frame cannot be decompressed here ({type(exc).__name__}); ask with transfer-syntax=* to get it as stored"
    )


def _decoded(ds: Dataset, number: int, *, as_rgb: bool) -> Any:
    from pydicom.pixels.utils import pixel_array

    try:
        return pixel_array(ds, index=number - 1, raw=False, as_rgb=as_rgb)
    except (ValueError, RuntimeError, NotImplementedError) as exc:
        raise _decode_error(exc) from None


def _to_422(arr: Any) -> bytes:
    """Full-resolution YCbCr (rows × columns × 3) in the native YBR_FULL_422 layout of PS3.3
    §C.7.6.3.1.2: Y1 Y2 Cb Cr for each horizontal pair, the chroma of the pair averaged."""
    import numpy as np

    rows, columns = arr.shape[:2]
    pairs = arr[:, : columns - columns % 2].reshape(rows, columns // 2, 2, 3).astype(np.uint16)
    y1, y2 = pairs[:, :, 0, 0], pairs[:, :, 1, 0]
    cb = (pairs[:, :, 0, 1] + pairs[:, :, 1, 1] + 1) // 2
    cr = (pairs[:, :, 0, 2] + pairs[:, :, 1, 2] + 1) // 2
    return bytes(np.stack([y1, y2, cb, cr], axis=-1).astype(np.uint8).tobytes())


def native_frame(ds: Dataset, number: int) -> bytes:
    """Frame ``number`` as Explicit VR Little Endian pixel bytes, in the colour space the instance's
    attributes announce (so that the metadata describes them): a native little-endian frame as
    stored, a big-endian one swapped, a compressed one decoded; a YBR_FULL_422 JPEG frame is given
    the native 4:2:2 layout its Photometric Interpretation says."""
    ts = UID(ds.file_meta.TransferSyntaxUID)
    if not ts.is_compressed:
        if ts != ExplicitVRBigEndian:
            return stored_frame(ds, number)
        arr = _decoded(ds, number, as_rgb=False)
        return bytes(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
    arr = _decoded(ds, number, as_rgb=False)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422" and arr.ndim == 3:
        return _to_422(arr)
    return bytes(arr.astype(arr.dtype.newbyteorder("<")).tobytes())


def encoded_frame(ds: Dataset, number: int, target: str) -> bytes:
    """Frame ``number`` compressed as ``target`` (JPEG-LS or JPEG 2000 lossless) with pydicom's
    encoders; a 406 naming what the frame can be given as when the instance cannot take it."""
    from pydicom.pixels.encoders.base import get_encoder

    from .transcode import Pixels, _as_rgb, _decoded_photometric, producible, syntax_name

    stored = str(ds.file_meta.TransferSyntaxUID)
    px = Pixels.from_dataset(ds)
    if target not in producible(stored, px):
        raise NotAcceptable(
            f"frames of this instance (stored as {syntax_name(stored)}, {px.photometric}, "
            f"{px.bits_stored} of {px.bits_allocated} bits) cannot be encoded as {syntax_name(target)}; "
            f"ask for application/octet-stream (transfer-syntax={ExplicitVRLittleEndian} or *)"
        )
    arr = _decoded(ds, number, as_rgb=_as_rgb(stored, px.photometric))
    return bytes(
        get_encoder(UID(target)).encode(
            arr,
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            samples_per_pixel=px.samples,
            bits_allocated=px.bits_allocated,
            bits_stored=px.bits_stored,
            pixel_representation=px.pixel_representation or 0,
            photometric_interpretation=_decoded_photometric(stored, px.photometric),
            number_of_frames=1,
            planar_configuration=0,
        )
    )


def png_frame(ds: Dataset, number: int) -> bytes:
    """Frame ``number`` as a lossless PNG of its pixel values: grayscale (8 or 16 bits, unsigned) or
    8-bit colour as RGB."""
    from PIL import Image

    from .transcode import Pixels

    px = Pixels.from_dataset(ds)
    mono = px.samples == 1 and px.photometric in ("MONOCHROME1", "MONOCHROME2")
    colour = px.samples == 3 and px.bits_allocated == 8
    if not ((mono and px.bits_allocated in (8, 16) and px.pixel_representation == 0) or colour):
        raise NotAcceptable(
            f"frames of this instance ({px.photometric}, {px.bits_allocated}-bit"
            f"{', signed' if px.pixel_representation else ''}) cannot be given as image/png, which holds unsigned "
            "8/16-bit grayscale or 8-bit colour; ask for application/octet-stream"
        )
    arr = _decoded(ds, number, as_rgb=True)
    out = io.BytesIO()
    if colour:
        Image.fromarray(arr.astype("uint8"), "RGB").save(out, format="PNG")
    elif px.bits_allocated == 8:
        Image.fromarray(arr.astype("uint8"), "L").save(out, format="PNG")
    else:
        Image.fromarray(arr.astype("<u2")).save(out, format="PNG")  # mode I;16
    return out.getvalue()


def frame_representation(ds: Dataset, number: int, fmt: FrameFormat) -> tuple[bytes, MediaType]:
    """One frame in the negotiated representation, and its Content-Type (PS3.18 §8.7.3.5.3):
    ``<media>; transfer-syntax=<uid>`` (image/png has none). A function of the instance, so any
    fetch path (whole object or byte range) can call it."""
    stored = str(ds.file_meta.TransferSyntaxUID)
    # deflate is no pixel encoding: a frame of a deflated instance is native Explicit VR Little Endian
    stored_pixels = ExplicitVRLittleEndian if stored == DeflatedExplicitVRLittleEndian else stored
    wanted = fmt.transfer_syntax
    if fmt.kind == "octet":
        if wanted is None or wanted == stored:
            return stored_frame(ds, number), _labelled(OCTET_STREAM, stored_pixels)
        if wanted == ExplicitVRLittleEndian:
            return native_frame(ds, number), _labelled(OCTET_STREAM, ExplicitVRLittleEndian)
        raise NotAcceptable(
            f"frames are stored as {stored}; they can be returned as stored "
            f"(transfer-syntax=*) or as {ExplicitVRLittleEndian}, not {wanted}"
        )
    if fmt.kind == "png":
        return png_frame(ds, number), MediaType("image/png")
    media = fmt.media_type
    if wanted is None or wanted == stored:
        if fmt.kind == "jpeg" and stored == JPEGBaseline8Bit:
            return frame_as_jpeg(ds, number), _labelled(media, JPEGBaseline8Bit)
        if stored in SYNTAXES_OF[fmt.kind]:
            return stored_frame(ds, number), _labelled(media, stored)
        if wanted is not None:
            raise NotAcceptable(f"frames are stored as {stored}, which is no {media} transfer syntax")
        wanted = FRAME_DEFAULT_SYNTAX[fmt.kind]
    if fmt.kind == "jpeg" and wanted == JPEGBaseline8Bit:
        return frame_as_jpeg(ds, number), _labelled(media, JPEGBaseline8Bit)
    if fmt.kind in ("jls", "jp2") and wanted == FRAME_DEFAULT_SYNTAX[fmt.kind]:
        return encoded_frame(ds, number, wanted), _labelled(media, wanted)
    raise NotAcceptable(
        f"frames are stored as {stored}; as {media} they are available as "
        f"transfer-syntax={FRAME_DEFAULT_SYNTAX[fmt.kind]}, or as stored when stored in a {media} syntax"
    )


SYNTAXES_OF = {
    "jpeg": (JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1),
    "jls": (JPEGLSLossless, JPEGLSNearLossless),
    "jp2": (JPEG2000Lossless, JPEG2000),
}


def _labelled(media: str, ts: str) -> MediaType:
    return MediaType(media, {"transfer-syntax": ts})
