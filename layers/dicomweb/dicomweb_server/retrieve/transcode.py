"""Transcoding one Part-10 instance to another transfer syntax (PS3.18 §8.7.3.5, PS3.5 §8 and §A):
which syntaxes an instance can be given in, and the bytes in that syntax.

Everything here is a function of an instance's bytes (or, for the choice, of the attributes the
index keeps), so any fetch path can call it. Decoding and encoding go through pydicom 3
(``Dataset.decompress`` / ``Dataset.compress`` with pylibjpeg, pylibjpeg-openjpeg and pyjpegls);
JPEG Baseline, which pydicom cannot encode, through Pillow. Codecs load on first use only.

Rules, beyond pydicom's encoding profiles (PS3.5 Table 8.2-1 and friends):

* An instance without pixel data can be given in any offered syntax: its data set is Explicit VR
  Little Endian whatever the label (PS3.5 §A.4).
* A lossy JPEG source (and YBR_ICT/YBR_RCT JPEG 2000) decodes to RGB, as PS3.5 §8.2.1 describes;
  a lossless YBR_FULL source keeps YBR_FULL, so that a lossless target keeps the stored values.
* A native YBR_FULL_422 source can be given natively (Explicit VR Little Endian, Deflated) or as
  JPEG Baseline, not in a lossless compressed syntax (none takes its subsampled layout).
* JPEG Baseline only for 8-bit unsigned sources, MONOCHROME1/2 or colour (not PALETTE COLOR),
  at quality 90 with 4:2:2 chroma (YBR_FULL_422); the result says LossyImageCompression 01.
* Explicit VR Big Endian sources are rewritten little endian: Pixel Data through pydicom's decoder,
  other OW/OF/OL/OD/OV values swapped.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    RLELossless,
)

from ..errors import NotAcceptable
from ..formats import dicom_json as dj

#: What this server can produce, in the order it offers them (PS3.18 Table 8.7.3-2 default first).
OFFERED: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLSLossless,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
)
NATIVE_OUT = (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
_ENCODED_BY_PYDICOM = (RLELossless, JPEGLSLossless, JPEG2000Lossless)
#: Decoders that convert colour to RGB on their own (PS3.5 §8.2.1).
_LOSSY_JPEG = (JPEGBaseline8Bit, JPEGExtended12Bit)
_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Pixels:
    """What decides which syntaxes an instance can take: its pixel description."""

    has_pixels: bool
    photometric: str = ""
    samples: int = 1
    bits_allocated: int = 0
    bits_stored: int = 0
    #: None when not known (the index does not keep it): any value the profile allows.
    pixel_representation: int | None = None
    float_pixels: bool = False

    @classmethod
    def from_attrs(cls, attrs: dj.DicomJson) -> Pixels:
        """From the instance attributes the index keeps (Rows, BitsAllocated, ...)."""

        def num(tag: str, default: int) -> int:
            try:
                return int(dj.first(attrs, tag, default) or default)
            except (TypeError, ValueError):
                return default

        rows, bits = num("00280010", 0), num("00280100", 0)
        if not rows or not bits:
            return cls(False)
        return cls(
            True,
            str(dj.first(attrs, "00280004", "MONOCHROME2") or "MONOCHROME2").upper(),
            num("00280002", 1),
            bits,
            num("00280101", bits),
            None,
        )

    @classmethod
    def from_dataset(cls, ds: Dataset) -> Pixels:
        float_pixels = "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
        if "PixelData" not in ds and not float_pixels:
            return cls(False)
        bits = int(ds.get("BitsAllocated", 0) or 0)
        return cls(
            True,
            str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper(),
            int(ds.get("SamplesPerPixel", 1) or 1),
            bits,
            int(ds.get("BitsStored", bits) or bits),
            int(ds.get("PixelRepresentation", 0) or 0),
            float_pixels,
        )


def _decodable(ts: str) -> bool:
    uid = UID(ts)
    if not uid.is_compressed:
        return True
    from pydicom.pixels.decoders.base import get_decoder

    try:
        return bool(get_decoder(uid).is_available)
    except NotImplementedError:
        return False


def _decoded_photometric(ts: str, photometric: str) -> str:
    """The Photometric Interpretation after decoding (what an encoder is given)."""
    if UID(ts).is_compressed and photometric.startswith("YBR") and (photometric != "YBR_FULL" or ts in _LOSSY_JPEG):
        return "RGB"
    return photometric


def _as_rgb(ts: str, photometric: str) -> bool:
    return _decoded_photometric(ts, photometric) == "RGB" and photometric != "RGB"


def _fits_profile(target: str, photometric: str, px: Pixels) -> bool:
    from pydicom.pixels.encoders.base import ENCODING_PROFILES

    for pi, spp, reprs, allocated, stored in ENCODING_PROFILES.get(UID(target), []):
        if (
            pi == photometric
            and spp == px.samples
            and (px.pixel_representation is None or px.pixel_representation in reprs)
            and px.bits_allocated in allocated
            and px.bits_stored in stored
        ):
            return True
    return False


def producible(stored_ts: str, px: Pixels) -> list[str]:
    """The syntaxes this server can give an instance in: the stored one first, then ``OFFERED``."""
    out = [stored_ts]
    if not px.has_pixels:
        return out + [ts for ts in OFFERED if ts != stored_ts]
    if px.float_pixels or not _decodable(stored_ts):
        return out + [ts for ts in NATIVE_OUT if ts != stored_ts and not UID(stored_ts).is_compressed]
    photometric = _decoded_photometric(stored_ts, px.photometric)
    for ts in OFFERED:
        if ts == stored_ts:
            continue
        if ts in NATIVE_OUT:
            ok = True
        elif ts == JPEGBaseline8Bit:
            colour = photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") and px.samples == 3
            mono = photometric in ("MONOCHROME1", "MONOCHROME2") and px.samples == 1
            ok = (colour or mono) and px.bits_allocated == 8 and px.bits_stored == 8 and px.pixel_representation != 1
        else:
            ok = _fits_profile(ts, photometric, px)
        if ok:
            out.append(ts)
    return out


def syntax_name(ts: str) -> str:
    uid = UID(ts)
    return f"{ts} ({uid.name})" if uid.name != ts else ts


def choose(stored_ts: str, px: Pixels, wanted: Sequence[str | None]) -> str | None:
    """The first of ``wanted`` (None = as stored) this instance can be given in, or None if none."""
    possible = producible(stored_ts, px)
    for ts in wanted:
        if ts is None:
            return stored_ts
        if ts in possible:
            return ts
    return None


def not_producible(sop_uid: str, stored_ts: str, px: Pixels, wanted: Iterable[str | None]) -> NotAcceptable:
    """The 406 for an instance none of ``wanted`` fits: it names what the instance can be given as."""
    asked = ", ".join("*" if ts is None else ts for ts in wanted)
    can = ", ".join(syntax_name(ts) for ts in producible(stored_ts, px)[1:])
    return NotAcceptable(
        f"instance {sop_uid} is stored as {syntax_name(stored_ts)} and cannot be given as transfer-syntax={asked}; "
        f"it is available as {can + ', ' if can else ''}or as stored (transfer-syntax=*)"
    )


def transcode(data: bytes, source: str, target: str, sop_uid: str) -> bytes:
    """The Part-10 instance ``data`` (stored as ``source``) in ``target``, or a 406 naming the syntaxes
    it can have (PS3.18 §8.7.3.5.2)."""
    return transcode_to_first(data, source, [target], sop_uid)[1]


def transcode_to_first(data: bytes, source: str, wanted: Sequence[str | None], sop_uid: str) -> tuple[str, bytes]:
    """The instance in the first of ``wanted`` (None = as stored) its pixel data can take, judged from
    the object itself: (syntax, bytes). A 406 naming what it can have when none fits."""
    if wanted and wanted[0] in (None, source):
        return source, data
    ds = dcmread(io.BytesIO(data))
    px = Pixels.from_dataset(ds)
    target = choose(source, px, wanted)
    if target is None:
        raise not_producible(sop_uid, source, px, wanted)
    if target == source:
        return source, data
    to_native_little_endian(ds)
    if px.has_pixels and target == JPEGBaseline8Bit:
        _encode_jpeg_baseline(ds)
    elif px.has_pixels and target in _ENCODED_BY_PYDICOM:
        ds.compress(UID(target), generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = UID(target)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return target, out.getvalue()


def to_native_little_endian(ds: Dataset) -> None:
    """Decode compressed pixel data, or rewrite big-endian values, so that ``ds`` is native little
    endian (Explicit VR Little Endian, or Implicit VR as stored); ``ds`` changes in place."""
    ts = UID(ds.file_meta.TransferSyntaxUID)
    if ts.is_compressed and "PixelData" in ds:
        photometric = str(ds.get("PhotometricInterpretation", "")).upper()
        ds.decompress(as_rgb=_as_rgb(ts, photometric), generate_instance_uid=False)
    elif ts == ExplicitVRBigEndian:
        _big_to_little_endian(ds)
    elif (
        ts.is_compressed
        or ts == DeflatedExplicitVRLittleEndian
        or ts not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    ):
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


def _swap(value: bytes, width: int) -> bytes:
    import numpy as np

    usable = len(value) - len(value) % width
    swapped = np.frombuffer(value[:usable], dtype=f">u{width}").astype(f"<u{width}").tobytes()
    return swapped + value[usable:]


def _swap_binary_values(ds: Dataset) -> None:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_binary_values(item)
        elif elem.tag != 0x7FE00010 and elem.VR in _SWAP_WIDTH and isinstance(elem.value, bytes):
            elem.value = _swap(elem.value, _SWAP_WIDTH[elem.VR])


def _big_to_little_endian(ds: Dataset) -> None:
    if "PixelData" in ds:
        from pydicom.pixels.utils import pixel_array

        if int(ds.BitsAllocated) == 1:
            ds.PixelData = _swap(ds.PixelData, 2)
        else:
            photometric = str(ds.get("PhotometricInterpretation", "")).upper()
            arr = pixel_array(ds, raw=True)
            ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            ds["PixelData"].VR = "OB" if int(ds.BitsAllocated) == 8 else "OW"
            if photometric == "YBR_FULL_422":  # the decoder returns full-resolution samples
                ds.PhotometricInterpretation = "YBR_FULL"
    _swap_binary_values(ds)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_original_encoding(False, True, ds.original_character_set)


def _values(ds: Dataset, keyword: str) -> list[Any]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str | int | float) else list(value)


def _encode_jpeg_baseline(ds: Dataset) -> None:
    """Encode native 8-bit pixel data as JPEG Baseline frames with Pillow (pydicom has no encoder)."""
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.pixels.utils import pixel_array

    before = len(ds.PixelData)
    arr: Any = pixel_array(ds, as_rgb=True)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    colour = int(ds.SamplesPerPixel) == 3
    frames = arr if count > 1 else arr[None]
    encoded = []
    for frame in frames:
        out = io.BytesIO()
        image = Image.fromarray(frame, "RGB" if colour else "L")
        image.save(out, format="JPEG", quality=JPEG_QUALITY, subsampling="4:2:2" if colour else 0)
        encoded.append(out.getvalue())
    ds.PixelData = encapsulate(encoded, has_bot=count > 1)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if colour:
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PlanarConfiguration = 0
    # PS3.3 §C.7.6.1.1.5: each lossy step adds its method and ratio to those before it
    earlier = str(ds.get("LossyImageCompression", "")) == "01"
    methods = _values(ds, "LossyImageCompressionMethod") if earlier else []
    ratios = _values(ds, "LossyImageCompressionRatio") if earlier else []
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = [*map(str, methods), "ISO_10918_1"]
    ds.LossyImageCompressionRatio = [*ratios, f"{before / max(sum(len(e) for e in encoded), 1):.2f}"[:16]]
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
