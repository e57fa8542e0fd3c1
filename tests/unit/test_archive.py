"""The synthetic archive of tests/archive.py indexes what the real ingest path would index."""

from __future__ import annotations

from dicomweb_server.store.ingest import build_record, parse_part10
from tests.archive import record, studies
from tests.corpus import make_instance


def test_a_synthetic_record_carries_what_ingest_makes_of_the_same_attributes() -> None:
    for spec in studies(5):
        synthetic = record(spec)
        inst = make_instance(
            "ct",
            study_uid=spec.study_uid,
            PatientName=spec.name,
            PatientID=spec.patient_id,
            AccessionNumber=spec.accession,
            StudyDate=spec.date,
            StudyTime=spec.time,
            StudyDescription=spec.description,
            Modality=spec.modality,
        )
        real = build_record(parse_part10(inst.data), inst.data)
        for key, value in synthetic.study.items():
            assert real.study[key] == value, key
        assert real.modality == synthetic.modality
