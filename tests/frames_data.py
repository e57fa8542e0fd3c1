"""Pixel-data instances generated at test time for the frame-table tests and the ingest benchmark:
native (16-bit, bit-packed, YBR_FULL_422, big endian), RLE and JPEG multi-frames."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MULTIFRAME_GRAYSCALE_WORD = "1.2.840.10008.5.1.4.1.1.7.3"
MULTIFRAME_GRAYSCALE_BYTE = "1.2.840.10008.5.1.4.1.1.7.2"


def dataset(
    rows: int,
    cols: int,
    frames: int = 1,
    *,
    bits: int = 16,
    samples: int = 1,
    photometric: str = "MONOCHROME2",
    ts: str = ExplicitVRLittleEndian,
    sop_class: str = MULTIFRAME_GRAYSCALE_WORD,
    **attrs: Any,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "FRAMES-1"
    ds.PatientName = "FRAMES^TEST"
    ds.StudyDate = "20250101"
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames > 1 or sop_class != CT:
        ds.NumberOfFrames = frames
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def noise(frames: int, rows: int, cols: int, *, dtype: Any = np.uint16, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 4096 if dtype == np.uint16 else 256
    return rng.integers(0, top, size=(frames, rows, cols), dtype=dtype)


def native(arr: np.ndarray, **kw: Any) -> tuple[bytes, list[bytes]]:
    """A native little-endian instance of ``arr`` (frames, rows, cols) and each frame's bytes."""
    frames, rows, cols = arr.shape
    ds = dataset(rows, cols, frames, bits=arr.dtype.itemsize * 8, **kw)
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    return part10(ds), [f.astype(f.dtype.newbyteorder("<")).tobytes() for f in arr]


def ct_slice() -> tuple[bytes, list[bytes]]:
    """A 512 × 512 16-bit CT slice."""
    return native(noise(1, 512, 512), sop_class=CT)


def big_endian(arr: np.ndarray) -> tuple[bytes, list[bytes]]:
    """Explicit VR Big Endian 16-bit, and each frame's little-endian bytes."""
    frames, rows, cols = arr.shape
    ds = dataset(rows, cols, frames, ts=ExplicitVRBigEndian)
    ds.PixelData = arr.astype(">u2").tobytes()
    ds["PixelData"].VR = "OW"
    return part10(ds), [f.astype("<u2").tobytes() for f in arr]


def bit_packed(frames: int, rows: int, cols: int) -> tuple[bytes, list[bytes]]:
    """BitsAllocated 1 with a frame size that is not a whole number of bytes; each frame packed
    on its own (first pixel in bit 0)."""
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2, size=(frames, rows * cols), dtype=np.uint8)
    ds = dataset(rows, cols, frames, bits=1, sop_class="1.2.840.10008.5.1.4.1.1.7.1")
    ds.PixelData = np.packbits(bits.reshape(-1), bitorder="little").tobytes()
    return part10(ds), [np.packbits(b, bitorder="little").tobytes() for b in bits]


def ybr_422(frames: int, rows: int, cols: int) -> tuple[bytes, list[bytes]]:
    """Native YBR_FULL_422: Rows × Columns × 2 bytes a frame (odd total: one pad byte)."""
    size = rows * cols * 2
    data = np.random.default_rng(3).integers(0, 256, size=frames * size, dtype=np.uint8).tobytes()
    ds = dataset(
        rows, cols, frames, bits=8, samples=3, photometric="YBR_FULL_422", sop_class="1.2.840.10008.5.1.4.1.1.7.4"
    )
    ds.PixelData = data
    ds["PixelData"].VR = "OB"
    return part10(ds), [data[i * size : (i + 1) * size] for i in range(frames)]


def rle(arr: np.ndarray) -> bytes:
    frames, rows, cols = arr.shape
    ds = dataset(rows, cols, frames, bits=16)
    ds.compress(RLELossless, arr, generate_instance_uid=False)
    return part10(ds)


def jpeg_frames(frames: int, rows: int, cols: int, *, odd_last: bool = True) -> list[bytes]:
    """Baseline JPEGs (Pillow) of 8-bit noise; with ``odd_last`` the last one has an odd length."""
    from PIL import Image

    out = []
    for i in range(frames):
        seed = i
        while True:
            pixels = np.random.default_rng(seed).integers(0, 256, size=(rows, cols), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels, mode="L").save(buf, format="JPEG", quality=80)
            data = buf.getvalue()
            if not odd_last or i < frames - 1 or len(data) % 2 == 1:
                break
            seed += 1000
        out.append(data)
    return out


def encapsulated(
    frames: list[bytes], ts: str = JPEGBaseline8Bit, *, fragments_per_frame: int = 1, bot: bool = True, **kw: Any
) -> bytes:
    ds = dataset(64, 64, len(frames), bits=8, ts=ts, sop_class=MULTIFRAME_GRAYSCALE_BYTE, **kw)
    ds.PixelData = encapsulate(frames, fragments_per_frame=fragments_per_frame, has_bot=bot)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.LossyImageCompression = "01"
    return part10(ds)


def large_native_file(
    path: str,
    total_bytes: int,
    *,
    rows: int = 1024,
    cols: int = 1024,
    meta: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
) -> int:
    """Write a native 16-bit multi-frame of about ``total_bytes`` to ``path`` frame by frame (never
    held whole in memory); returns the number of frames. ``meta`` overrides file meta elements
    (a file meta group that disagrees with the data set), ``attrs`` data set elements."""
    frame = rows * cols * 2
    frames = max(1, total_bytes // frame)
    ds = dataset(rows, cols, frames, **(attrs or {}))
    ds.PixelData = b""
    head = part10(ds)
    if meta:  # written as given (``part10`` would set the media storage UIDs from the data set)
        for keyword, value in meta.items():
            setattr(ds.file_meta, keyword, value)
        ds.preamble = bytes(128)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=False)
        head = out.getvalue()
    # The empty Pixel Data element is last: rewrite its length and append the frames.
    assert head[-12:-8] == b"\xe0\x7f\x10\x00"
    length = frames * frame
    with open(path, "wb") as fh:
        fh.write(head[:-4] + length.to_bytes(4, "little"))
        for chunk in _frames(frames, rows, cols):
            fh.write(chunk)
    return frames


def _frames(frames: int, rows: int, cols: int) -> Iterator[bytes]:
    base = np.arange(rows * cols, dtype=np.uint16).reshape(rows, cols)
    for i in range(frames):
        yield ((base + i) % 4096).astype("<u2").tobytes()
