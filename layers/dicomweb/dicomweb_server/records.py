"""What the index keeps about an instance, and how a Part-10 dataset becomes an ``InstanceRecord``.

Attribute sets follow PS3.18 §10.6.3.3 (QIDO-RS required return attributes), widened with the
attributes viewers and integrations commonly filter or display. Every attribute stored at a level is
searchable at that level (``qido`` matches on the stored DICOM JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

DicomJson = dict[str, Any]

#: Study level (PS3.18 Table 10.6.3-3 plus Patient/Study module attributes worth searching).
STUDY_DEFAULT = (
    "SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName",
    "TimezoneOffsetFromUTC", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyID",
)  # fmt: skip
STUDY_EXTRA = (
    "StudyDescription", "IssuerOfPatientID", "OtherPatientIDs", "PatientAge", "PatientSize",
    "PatientWeight", "EthnicGroup", "PatientComments", "AdmittingDiagnosesDescription",
    "NameOfPhysiciansReadingStudy", "InstitutionName",
)  # fmt: skip
#: Series level (PS3.18 Table 10.6.3-4 and common display attributes).
SERIES_DEFAULT = (
    "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "RequestAttributesSequence",
)  # fmt: skip
SERIES_EXTRA = (
    "SeriesDate", "SeriesTime", "BodyPartExamined", "Laterality", "ProtocolName", "Manufacturer",
    "ManufacturerModelName", "StationName", "OperatorsName", "PerformingPhysicianName", "FrameOfReferenceUID",
)  # fmt: skip
#: Instance level (PS3.18 Table 10.6.3-5 and what viewers sort or filter by).
INSTANCE_DEFAULT = (
    "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames",
)  # fmt: skip
INSTANCE_EXTRA = (
    "ContentDate", "ContentTime", "AcquisitionNumber", "ImageType", "PhotometricInterpretation",
    "SamplesPerPixel", "BitsStored", "ImagePositionPatient", "ImageOrientationPatient", "SliceLocation",
    "AcquisitionDate", "AcquisitionTime",
)  # fmt: skip

STUDY_KEYWORDS = STUDY_DEFAULT + STUDY_EXTRA
SERIES_KEYWORDS = SERIES_DEFAULT + SERIES_EXTRA
INSTANCE_KEYWORDS = INSTANCE_DEFAULT + INSTANCE_EXTRA


@dataclass(frozen=True)
class InstanceRecord:
    """Everything the index holds for one stored instance."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    study: DicomJson
    series: DicomJson
    instance: DicomJson
    #: Size in bytes and MD5 (hex) of the stored Part-10 object.
    size: int
    md5: str
    number_of_frames: int
    #: Full WADO-RS metadata (DICOM JSON without bulk data), or None when too large for the index.
    metadata: DicomJson | None
    #: Where the object is stored (``blobs.keys.object_key``); set by the writer before indexing.
    object_key: str = ""
    #: Every bulk data element's tag path (``formats.dicom_json.tag_path``) and where its value is
    #: in the object: (offset, length), offset -1 when only a parse of the object finds it.
    bulk: dict[str, tuple[int, int]] | None = None

    @property
    def modality(self) -> str:
        values = self.series.get("00080060", {}).get("Value") or [""]
        return str(values[0])


@dataclass(frozen=True)
class StudySummary:
    """A study as the index knows it: stored attributes plus exact aggregates."""

    study_uid: str
    attrs: DicomJson
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int
    #: SOPClassesInStudy (0008,0062).
    sop_classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeriesSummary:
    study_uid: str
    series_uid: str
    attrs: DicomJson
    instance_count: int


@dataclass(frozen=True)
class StoredInstance:
    """An instance as retrieve sees it: where it is and how it is encoded."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    size: int
    md5: str
    number_of_frames: int
    attrs: DicomJson
    series_attrs: DicomJson
    metadata: DicomJson | None
    #: The object's key ("" for one stored before keys carried a writer: ``blobs.keys.stored_key``).
    object_key: str = ""
    #: Bulk data elements by tag path: (offset, length) in the object (``InstanceRecord.bulk``);
    #: None for an instance indexed before bulk data was recorded, or when not loaded.
    bulk: dict[str, tuple[int, int]] | None = None

    @classmethod
    def from_record(cls, record: InstanceRecord, series_attrs: DicomJson) -> StoredInstance:
        return cls(
            study_uid=record.study_uid,
            series_uid=record.series_uid,
            sop_uid=record.sop_uid,
            sop_class_uid=record.sop_class_uid,
            transfer_syntax_uid=record.transfer_syntax_uid,
            size=record.size,
            md5=record.md5,
            number_of_frames=record.number_of_frames,
            attrs=record.instance,
            series_attrs=series_attrs,
            metadata=record.metadata,
            object_key=record.object_key,
            bulk=record.bulk,
        )


def select(ds: Dataset, keywords: tuple[str, ...]) -> DicomJson:
    """DICOM JSON (PS3.18 §F.2) of the listed attributes that ``ds`` has."""
    sub = Dataset()
    for keyword in keywords:
        if keyword in ds:
            sub.add(ds[keyword])
    return sub.to_json_dict(bulk_data_threshold=10_000_000)
