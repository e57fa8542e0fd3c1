"""Every matching key PS3.18 Table 6.7.1-1 requires, at every resource of its level, against both
indexes, and the default return attributes of Table 6.7.1-2 (an instance stored through STOW)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from tests.corpus import make_instance
from tests.unit.test_http_read import stow


def _request() -> list[Dataset]:
    item = Dataset()
    item.ScheduledProcedureStepID = "SPS-0042"
    item.RequestedProcedureID = "RP-7"
    return [item]


@pytest.fixture
def stored(client):  # type: ignore[no-untyped-def]
    inst = make_instance(
        "ct",
        PatientName="RÖNTGEN^WILHELM",
        PatientID="PID-6711",
        AccessionNumber="ACC-6711",
        StudyDate="20240305",
        StudyTime="142233",
        ReferringPhysicianName="CURIE^MARIE",
        StudyID="S-99",
        Modality="CT",
        SeriesNumber="7",
        PerformedProcedureStepStartDate="20240305",
        PerformedProcedureStepStartTime="141500",
        RequestAttributesSequence=_request(),
        InstanceNumber="12",
    )
    stow(client, [inst])
    return inst


def _rows(inst):  # type: ignore[no-untyped-def]
    """(level, key, a value that matches, one that does not), per Table 6.7.1-1."""
    return [
        ("study", "StudyDate", "20240301-20240331", "20240306"),
        ("study", "StudyTime", "140000-150000", "150000-"),
        ("study", "AccessionNumber", "ACC-6711", "ACC-6712"),
        ("study", "ModalitiesInStudy", "MR,CT", "MR"),
        ("study", "ReferringPhysicianName", "curie", "PASTEUR"),
        ("study", "PatientName", "röntgen^w*", "RONTGEN^X*"),
        ("study", "PatientID", "PID-67*", "PID-68*"),
        ("study", "StudyInstanceUID", inst.study_uid, "1.2.3.4"),
        ("study", "StudyID", "S-99", "S-98"),
        ("series", "Modality", "CT", "MR"),
        ("series", "SeriesInstanceUID", inst.series_uid, "1.2.3.4"),
        ("series", "SeriesNumber", "7", "8"),
        ("series", "PerformedProcedureStepStartDate", "20240305", "20240304"),
        ("series", "PerformedProcedureStepStartTime", "141000-142000", "142000-"),
        ("series", "RequestAttributesSequence.ScheduledProcedureStepID", "SPS-0042", "SPS-0043"),
        ("series", "RequestAttributesSequence.RequestedProcedureID", "RP-*", "RQ-*"),
        ("instance", "SOPClassUID", inst.sop_class_uid, "1.2.3.4"),
        ("instance", "SOPInstanceUID", inst.sop_uid, "1.2.3.4"),
        ("instance", "InstanceNumber", "12", "13"),
    ]


def _resources(inst, level: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Every resource that searches ``level`` (study keys also work at the lower levels' roots)."""
    study = f"/studies/{inst.study_uid}"
    return {
        "study": ["/studies", "/series", "/instances"],
        "series": ["/series", f"{study}/series", "/instances", f"{study}/instances"],
        "instance": ["/instances", f"{study}/instances", f"{study}/series/{inst.series_uid}/instances"],
    }[level]


def test_every_required_matching_key_matches_at_every_resource_of_its_level(client, stored) -> None:
    for level, key, good, bad in _rows(stored):
        for resource in _resources(stored, level):
            hit = client.get(resource, params={key: good})
            assert hit.status_code == 200, (resource, key, good, hit.status_code, hit.text[:200])
            assert hit.headers.get("warning") is None, (resource, key, hit.headers["warning"])
            urls = [r["00081190"]["Value"][0] for r in hit.json()]
            assert len(urls) == 1 and f"/studies/{stored.study_uid}" in urls[0], (resource, key, urls)
            miss = client.get(resource, params={key: bad})
            assert miss.status_code == 204, (resource, key, bad, miss.text[:200])


DEFAULTS = {  # PS3.18 Table 6.7.1-2 (computed ones included), by keyword
    "/studies": ["StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
                 "PatientName", "PatientID", "StudyInstanceUID", "StudyID", "NumberOfStudyRelatedSeries",
                 "NumberOfStudyRelatedInstances", "RetrieveURL", "InstanceAvailability"],
    "/series": ["Modality", "SeriesInstanceUID", "SeriesNumber", "PerformedProcedureStepStartDate",
                "PerformedProcedureStepStartTime", "RequestAttributesSequence", "NumberOfSeriesRelatedInstances",
                "RetrieveURL", "StudyInstanceUID"],
    "/instances": ["SOPClassUID", "SOPInstanceUID", "InstanceNumber", "InstanceAvailability", "RetrieveURL",
                   "StudyInstanceUID", "SeriesInstanceUID"],
}  # fmt: skip


@pytest.mark.parametrize("resource", list(DEFAULTS))
def test_default_return_attributes_of_each_level(client, stored, resource) -> None:
    from pydicom.datadict import tag_for_keyword

    found = client.get(resource, params={"PatientID": "PID-6711"}).json()
    assert len(found) == 1
    for keyword in DEFAULTS[resource]:
        assert f"{tag_for_keyword(keyword):08X}" in found[0], (resource, keyword)
    if resource == "/series":
        request = found[0]["00400275"]["Value"][0]
        assert request["00400009"]["Value"] == ["SPS-0042"] and request["00401001"]["Value"] == ["RP-7"]
