"""Real-size instances generated at test time (no DICOM files in the repository): a 512×512 16-bit
CT in Implicit VR, an Explicit VR Big Endian MR with an overlay, an 8-bit RGB photo, a JPEG Baseline
YBR_FULL_422 instance and an RLE Lossless multi-frame. Pixels are smooth shapes plus noise, so the
lossless codecs have real work to do and the lossy ones something to get wrong."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)


def _base(sop_class: str, syntax: str, rows: int, columns: int, **attrs: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID, ds.PatientName, ds.StudyDate, ds.Modality = "SYNTH-1", "SYNTH^PIXELS", "20240105", "OT"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Rows, ds.Columns = rows, columns
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def _phantom(rows: int, columns: int, seed: int, low: int, high: int, noise: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:rows, :columns]
    body = np.hypot((x - columns / 2) / (columns * 0.42), (y - rows / 2) / (rows * 0.36)) < 1
    organ = np.hypot((x - columns * 0.6) / (columns * 0.1), (y - rows * 0.45) / (rows * 0.12)) < 1
    arr = np.where(body, low + (high - low) * 0.5, low) + organ * (high - low) * 0.3
    arr = arr + rng.normal(0, noise, (rows, columns))
    return np.clip(arr, low, high)


def _part10(ds: Dataset, *, little_endian: bool = True, implicit: bool = False) -> bytes:
    out = io.BytesIO()
    if little_endian:
        ds.save_as(out, enforce_file_format=True)
    else:
        ds.preamble = b"\x00" * 128
        dcmwrite(out, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    return out.getvalue()


def ct_implicit(seed: int = 1) -> tuple[bytes, np.ndarray]:
    """A 512×512 CT slice, signed 16-bit (12 stored), Implicit VR Little Endian, rescaled to HU."""
    arr = _phantom(512, 512, seed, -1024, 2000, 40).astype(np.int16)
    ds = _base(CTImageStorage, ImplicitVRLittleEndian, 512, 512, Modality="CT")
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.WindowCenter, ds.WindowWidth = 0, 1, 40, 400
    ds.PixelData = arr.tobytes()
    return _part10(ds), arr


def mr_big_endian(seed: int = 2) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A 512×512 unsigned 16-bit MR in Explicit VR Big Endian, with an OW overlay plane."""
    arr = _phantom(512, 512, seed, 0, 4000, 60).astype(np.uint16)
    ds = _base(MRImageStorage, ExplicitVRBigEndian, 512, 512, Modality="MR")
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = arr.astype(">u2").tobytes()
    ds["PixelData"].VR = "OW"
    overlay = np.zeros((512, 512), dtype=np.uint8)
    overlay[100:140, 50:400] = 1
    packed = np.packbits(overlay.ravel(), bitorder="little").tobytes()
    ds.add_new(0x60000010, "US", 512)
    ds.add_new(0x60000011, "US", 512)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    # OW in big endian: each 16-bit word of the little-endian bit stream, byte-swapped
    ds.add_new(0x60003000, "OW", np.frombuffer(packed, "<u2").astype(">u2").tobytes())
    return _part10(ds, little_endian=False), arr, overlay


def _rgb(rows: int, columns: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:rows, :columns]
    r = 128 + 100 * np.sin(x / 37.0)
    g = 128 + 100 * np.cos(y / 23.0)
    b = (x + y) * 255.0 / (rows + columns)
    arr = np.stack([r, g, b], axis=-1) + rng.normal(0, 4, (rows, columns, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def _colour(ds: Dataset, photometric: str) -> None:
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, photometric, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0


def rgb8(seed: int = 3) -> tuple[bytes, np.ndarray]:
    """A 512×512 8-bit RGB secondary capture, Explicit VR Little Endian."""
    arr = _rgb(512, 512, seed)
    ds = _base(SecondaryCaptureImageStorage, ExplicitVRLittleEndian, 512, 512)
    _colour(ds, "RGB")
    ds.PixelData = arr.tobytes()
    return _part10(ds), arr


def jpeg_ybr422(seed: int = 4) -> tuple[bytes, np.ndarray]:
    """A 512×512 JPEG Baseline instance, YBR_FULL_422 (4:2:2 chroma), encoded by Pillow; returns the
    RGB pixels it was made from."""
    arr = _rgb(512, 512, seed)
    out = io.BytesIO()
    Image.fromarray(arr, "RGB").save(out, format="JPEG", quality=92, subsampling="4:2:2")
    ds = _base(SecondaryCaptureImageStorage, JPEGBaseline8Bit, 512, 512)
    _colour(ds, "YBR_FULL_422")
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([out.getvalue()])
    ds["PixelData"].VR = "OB"
    return _part10(ds), arr


def rle_multiframe(frames: int = 12, seed: int = 5) -> tuple[bytes, np.ndarray]:
    """A 256×256 16-bit multi-frame (``frames`` frames), RLE Lossless, compressed by pydicom."""
    arr = np.stack([_phantom(256, 256, seed + i, 0, 3000, 30) for i in range(frames)]).astype(np.uint16)
    ds = _base(MRImageStorage, ExplicitVRLittleEndian, 256, 256, Modality="MR")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.NumberOfFrames = 1, "MONOCHROME2", frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = arr.tobytes()
    ds.compress(RLELossless)
    return _part10(ds), arr
