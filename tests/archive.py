"""A synthetic archive for search tests and benchmarks: studies with varied names (non-ASCII
included), patient IDs, accessions, dates, times and modalities, as ``InstanceRecord`` values that
go into an index through its own ``add_instance``.

Records are built as DICOM JSON directly (what ``records.select`` makes of a dataset) so that
10,000 studies load in seconds; ``tests/unit/test_archive.py`` checks that a generated record
matches the one ``ingest.build_record`` makes of the same attributes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from dicomweb_server.records import InstanceRecord

FAMILIES = (
    "SMITH", "SMYTHE", "JOHNSON", "MÜLLER", "MULLER", "GARCÍA", "NGUYEN", "O'BRIEN", "DUBOIS", "KOWALSKI",
    "TANAKA", "OKAFOR", "ÅSTRÖM", "SILVA", "THOMPSON", "SIIM", "LEE", "ΠΑΠΑΔΟΠΟΥΛΟΣ", "IVANOV", "NAKAMURA",
)  # fmt: skip
GIVENS = ("JOHN", "JANE", "ALEX", "MARÍA", "JOE", "LI", "ANA", "PETER", "ZOË", "OMAR")
MODALITIES = ("CT", "CT", "CT", "MR", "MR", "US", "CR", "DX", "PT", "NM")
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class StudySpec:
    study_uid: str
    name: str
    patient_id: str
    accession: str
    date: str
    time: str
    modality: str
    description: str


def _uid(prefix: str, n: int) -> str:
    return f"1.2.826.0.1.3680043.10.999.{prefix}.{n}"


def studies(count: int, *, seed: int = 7, first: int = 0) -> Iterator[StudySpec]:
    """``count`` study descriptions, deterministic for a seed; UIDs are unique per ``first + i``."""
    rng = random.Random(seed * 1_000_003 + first)
    for i in range(first, first + count):
        year = 2000 + rng.randrange(26)
        yield StudySpec(
            study_uid=_uid("1", i),
            name=f"{rng.choice(FAMILIES)}^{rng.choice(GIVENS)}",
            patient_id=f"{rng.choice(('MRN', 'PID', 'H'))}{rng.randrange(10**6):06d}",
            accession=f"A{year % 100:02d}{i:07d}",
            date=f"{year}{1 + rng.randrange(12):02d}{1 + rng.randrange(28):02d}",
            time=f"{rng.randrange(24):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}",
            modality=rng.choice(MODALITIES),
            description=rng.choice(("HEAD", "CHEST", "ABDOMEN", "KNEE", "SPINE")) + " " + str(i % 7),
        )


#: Ideographic groups for some families, so names are also found by their kanji (PS3.5 §6.2.1).
IDEOGRAPHIC = {"TANAKA": "田中", "NAKAMURA": "中村"}


def _person(name: str) -> dict[str, str]:
    family, _, given = name.partition("^")
    groups = {"Alphabetic": name}
    if family in IDEOGRAPHIC:
        groups["Ideographic"] = f"{IDEOGRAPHIC[family]}^{given}"
    return groups


def _text(vr: str, value: str) -> dict[str, object]:
    return {"vr": vr, "Value": [value]}


def record(spec: StudySpec, series: int = 0, instance: int = 0, modality: str | None = None) -> InstanceRecord:
    """Instance ``instance`` of series ``series`` of the study ``spec`` (of the study's modality
    unless ``modality`` says otherwise)."""
    series_uid = f"{spec.study_uid}.{series + 1}"
    sop_uid = f"{series_uid}.{instance + 1}"
    study = {
        "00080020": _text("DA", spec.date),
        "00080030": _text("TM", spec.time),
        "00080050": _text("SH", spec.accession),
        "00081030": _text("LO", spec.description),
        "00100010": {"vr": "PN", "Value": [_person(spec.name)]},
        "00100020": _text("LO", spec.patient_id),
        "0020000D": _text("UI", spec.study_uid),
    }
    series_attrs = {
        "00080060": _text("CS", modality or spec.modality),
        "0020000E": _text("UI", series_uid),
        "00200011": {"vr": "IS", "Value": [series + 1]},
    }
    instance_attrs = {
        "00080016": _text("UI", CT_IMAGE),
        "00080018": _text("UI", sop_uid),
        "00200013": {"vr": "IS", "Value": [instance + 1]},
    }
    return InstanceRecord(
        study_uid=spec.study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        sop_class_uid=CT_IMAGE,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        study=study,
        series=series_attrs,
        instance=instance_attrs,
        size=1000,
        md5=f"{abs(hash(sop_uid)):032x}"[:32],
        number_of_frames=1,
        metadata=None,
    )
