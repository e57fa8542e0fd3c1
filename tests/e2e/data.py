"""The studies the viewer test opens, generated at test time (nothing committed):

* a 200-slice 512×512 16-bit CT series (a phantom: a body ellipse with a sphere that moves through
  the slices, so every slice differs);
* a 30-frame JPEG Baseline ultrasound (8-bit colour, YBR_FULL_422 as cameras write it);
* a 24-frame RLE Lossless X-ray angiography run;
* a highdicom segmentation (SEG) of the sphere in the CT series.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    UltrasoundMultiFrameImageStorage,
    XRayAngiographicImageStorage,
    generate_uid,
)

SIZE = 512


def _sphere_radius(n: int, slices: int) -> float:
    """The sphere's radius in slice ``n``: an ellipsoid that crosses every slice of the series."""
    z = n - slices / 2
    return float(max(0.0, 90.0**2 - (z * 0.4) ** 2) ** 0.5)


@dataclass(frozen=True)
class Study:
    name: str
    study_uid: str
    series_uid: str
    files: list[Path]
    frames: int  # pixel requests the viewer should make for the series shown (a SEG: its one instance)


def _base(sop_class: str, study_uid: str, series_uid: str, modality: str, patient: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = patient
    ds.PatientID = f"E2E-{study_uid[-8:]}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = "20261201"
    ds.StudyTime = "120000"
    ds.SeriesDate = "20261201"
    ds.AccessionNumber = f"E2E{study_uid[-6:]}"
    ds.StudyID = "1"
    ds.StudyDescription = f"E2E {modality}"
    ds.SeriesDescription = f"E2E {modality} series"
    ds.SeriesNumber = 1
    ds.Modality = modality
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "serverless-dicomweb e2e"
    return ds


def _save(ds: Dataset, folder: Path, name: str) -> Path:
    path = folder / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def ct_series(folder: Path, slices: int = 200) -> tuple[Study, list[Dataset]]:
    study_uid, series_uid, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    body = ((xx - 256) / 220.0) ** 2 + ((yy - 256) / 180.0) ** 2 <= 1.0
    out, datasets = [], []
    for n in range(slices):
        sphere = (xx - 300) ** 2 + (yy - 230) ** 2 <= _sphere_radius(n, slices) ** 2
        hu = np.full((SIZE, SIZE), -1000, dtype=np.int32)
        hu[body] = 40 + ((xx[body] + yy[body] + n) % 64) - 32
        hu[sphere & body] = 300
        ds = _base(CTImageStorage, study_uid, series_uid, "CT", "E2E^CT")
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = n + 1
        ds.FrameOfReferenceUID = frame_of_reference
        ds.ImagePositionPatient = [-250.0, -250.0, float(n)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceLocation = float(n)
        ds.SliceThickness = 1.0
        ds.PixelSpacing = [0.9765625, 0.9765625]
        ds.Rows = ds.Columns = SIZE
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        ds.KVP = 120
        ds.PixelData = (hu + 1024).astype(np.uint16).tobytes()
        out.append(_save(ds, folder, f"ct{n:03d}"))
        datasets.append(ds)
    return Study("ct-200", study_uid, series_uid, out, slices), datasets


def _jpeg(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame, "RGB").save(buf, "JPEG", quality=90, subsampling=1)  # 4:2:2
    return buf.getvalue()


def us_jpeg(folder: Path, frames: int = 30) -> Study:
    study_uid, series_uid = generate_uid(), generate_uid()
    rows, cols = 480, 640
    yy, xx = np.mgrid[0:rows, 0:cols]
    encoded = []
    for n in range(frames):
        frame = np.zeros((rows, cols, 3), dtype=np.uint8)
        fan = (np.hypot(xx - cols / 2, yy) < 440) & (np.abs(xx - cols / 2) < yy * 0.8)
        speckle = ((xx * 7 + yy * 13 + n * 31) % 97).astype(np.uint8)
        frame[fan] = np.stack([speckle[fan] * 2, speckle[fan] * 2, speckle[fan] * 2], axis=-1)
        frame[20:40, 20 + n * 10 : 40 + n * 10] = (230, 60, 40)  # a moving coloured marker
        encoded.append(_jpeg(frame))
    ds = _base(UltrasoundMultiFrameImageStorage, study_uid, series_uid, "US", "E2E^US")
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.InstanceNumber = 1
    ds.NumberOfFrames = frames
    ds.FrameTime = 33.3
    ds.FrameIncrementPointer = (0x0018, 0x1063)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    return Study("us-jpeg-30", study_uid, series_uid, [_save(ds, folder, "us")], frames)


def xa_rle(folder: Path, frames: int = 24) -> Study:
    study_uid, series_uid = generate_uid(), generate_uid()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    ds = _base(XRayAngiographicImageStorage, study_uid, series_uid, "XA", "E2E^XA")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.InstanceNumber = 1
    ds.NumberOfFrames = frames
    ds.FrameTime = 66.7
    ds.FrameIncrementPointer = (0x0018, 0x1063)
    ds.Rows = ds.Columns = SIZE
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    stack = np.empty((frames, SIZE, SIZE), dtype=np.uint8)
    for n in range(frames):
        vessel = np.abs(yy - (256 + 120 * np.sin((xx + n * 12) / 60.0))) < 6
        stack[n] = 180 - ((xx // 32 + yy // 32) % 2) * 20
        stack[n][vessel] = 40
    ds.PixelData = stack.tobytes()
    ds.compress(RLELossless, encoding_plugin="pydicom")
    return Study("xa-rle-24", study_uid, series_uid, [_save(ds, folder, "xa")], frames)


def ct_segmentation(folder: Path, ct: list[Dataset]) -> Study:
    import highdicom as hd

    mask = np.zeros((len(ct), SIZE, SIZE), dtype=bool)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for n, _ in enumerate(ct):
        mask[n] = (xx - 300) ** 2 + (yy - 230) ** 2 <= _sphere_radius(n, len(ct)) ** 2
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="sphere",
        segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
        segmented_property_type=hd.sr.CodedConcept("27925004", "SCT", "Nodule"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    description.RecommendedDisplayCIELabValue = [21169, 53249, 46354]  # red
    seg = hd.seg.Segmentation(
        source_images=ct,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="serverless-dicomweb e2e",
        manufacturer_model_name="e2e",
        software_versions="1",
        device_serial_number="1",
    )
    return Study("ct-seg", str(seg.StudyInstanceUID), str(seg.SeriesInstanceUID), [_save(seg, folder, "seg")], 1)
