"""Search through the deployed stack with the Python dicomweb-client: relational queries at the
root /series and /instances, and paging that reaches every match (offset with get_remaining, and
the Link continuation)."""

from __future__ import annotations

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from tests.corpus import make_instance, stow_body

from .conftest import Endpoint

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def patient(endpoint: Endpoint) -> tuple[str, list]:
    """One patient with 12 studies of two series each (CT and MR), stored in one STOW request."""
    pid = f"PAGE{generate_uid()[-10:]}"
    instances = []
    for i in range(12):
        study = generate_uid()
        for modality, source in (("CT", "ct"), ("MR", "mr")):
            instances.append(
                make_instance(
                    source,
                    study_uid=study,
                    PatientID=pid,
                    PatientName=f"PAGING^P{i}",
                    StudyDate=f"2019{1 + i:02d}15",
                    Modality=modality,
                )  # fmt: skip
            )
    for start in range(0, len(instances), 6):
        body, ctype = stow_body(instances[start : start + 6])
        headers = {**endpoint.headers(), "Content-Type": ctype}
        r = requests.post(f"{endpoint.base_url}/studies", data=body, headers=headers, timeout=120)
        assert r.status_code == 200, r.text[:300]
    return pid, instances


def client_of(endpoint: Endpoint) -> DICOMwebClient:
    return DICOMwebClient(url=endpoint.base_url, headers=endpoint.headers())


def test_search_for_series_and_instances_without_a_study(endpoint: Endpoint, patient) -> None:
    pid, instances = patient
    client = client_of(endpoint)
    series = client.search_for_series(search_filters={"PatientID": pid, "Modality": "MR"})
    assert {s["0020000E"]["Value"][0] for s in series} == {i.series_uid for i in instances[1::2]}
    assert all(s["0020000D"]["Value"][0] for s in series)  # each series names its study
    found = client.search_for_instances(search_filters={"PatientID": pid, "Modality": "CT"})
    assert {i["00080018"]["Value"][0] for i in found} == {i.sop_uid for i in instances[0::2]}
    assert client.search_for_series(search_filters={"PatientID": pid + "X"}) == []  # 204: an empty list


def test_get_remaining_reaches_every_match(endpoint: Endpoint, patient) -> None:
    pid, instances = patient
    client = client_of(endpoint)
    studies = client.search_for_studies(search_filters={"PatientID": pid}, limit=5, get_remaining=True)
    assert sorted(s["0020000D"]["Value"][0] for s in studies) == sorted({i.study_uid for i in instances})
    dates = [s["00080020"]["Value"][0] for s in studies]
    assert dates == sorted(dates, reverse=True)  # newest first
    series = client.search_for_series(search_filters={"PatientID": pid}, limit=5, get_remaining=True)
    assert len(series) == len({s["0020000E"]["Value"][0] for s in series}) == 24


def test_the_link_header_walks_every_series(endpoint: Endpoint, patient) -> None:
    pid, _ = patient
    url: str | None = f"{endpoint.base_url}/series?PatientID={pid}&limit=7"
    seen: list[str] = []
    while url:
        r = requests.get(url, headers=endpoint.headers(), timeout=60)
        assert r.status_code in (200, 204)
        seen += [s["0020000E"]["Value"][0] for s in r.json()] if r.status_code == 200 else []
        link = r.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    assert len(seen) == len(set(seen)) == 24


@pytest.fixture(scope="module")
def tagged(endpoint: Endpoint) -> tuple[str, str, list]:
    """Ten studies with a modality and a family name no other test uses, one series each, with a
    RequestAttributesSequence, over ten days at 08:00."""
    from pydicom.dataset import Dataset

    tag = generate_uid()[-8:].replace(".", "")
    modality, family = f"Z{tag}"[:16], f"FUZZ{tag}"
    instances = []
    for i in range(10):
        item = Dataset()
        item.ScheduledProcedureStepID = f"SPS{tag}{i}"
        instances.append(
            make_instance(
                "ct",
                Modality=modality,
                PatientName=f"{family}^JOHANNA^{i}",
                PatientID=f"TAG{tag}",
                StudyDate=f"202103{10 + i:02d}",
                StudyTime="080000",
                RequestAttributesSequence=[item],
            )  # fmt: skip
        )
    body, ctype = stow_body(instances)
    r = requests.post(
        f"{endpoint.base_url}/studies", data=body, headers={**endpoint.headers(), "Content-Type": ctype}, timeout=120
    )
    assert r.status_code == 200, r.text[:300]
    return modality, family, instances


def test_series_by_modality_across_the_archive_pages_to_the_end(endpoint: Endpoint, tagged) -> None:
    modality, _, instances = tagged
    client = client_of(endpoint)
    series = client.search_for_series(search_filters={"Modality": modality}, limit=3, get_remaining=True)
    assert [s["0020000E"]["Value"][0] for s in series] == [i.series_uid for i in reversed(instances)]  # newest first
    assert {s["0020000D"]["Value"][0] for s in series} == {i.study_uid for i in instances}


def test_fuzzy_names_sequences_and_combined_date_time_over_http(endpoint: Endpoint, tagged) -> None:
    _, family, instances = tagged
    client = client_of(endpoint)
    fuzzy = client.search_for_studies(search_filters={"PatientName": f"joh {family[:6].lower()}"}, fuzzymatching=True)
    assert {s["0020000D"]["Value"][0] for s in fuzzy} == {i.study_uid for i in instances}
    assert client.search_for_studies(search_filters={"PatientName": f"joh {family[:6].lower()}"}) == []
    sps = f"SPS{family[4:]}3"
    found = client.search_for_series(search_filters={"RequestAttributesSequence.ScheduledProcedureStepID": sps})
    assert [s["0020000E"]["Value"][0] for s in found] == [instances[3].series_uid]
    # 12 March 09:00 to 14 March 07:00: the 13th at 08:00 only (each range alone would take more).
    when = {"PatientID": f"TAG{family[4:]}", "StudyDate": "20210312-20210314", "StudyTime": "090000-070000"}
    found = client.search_for_studies(search_filters=when)
    assert [s["0020000D"]["Value"][0] for s in found] == [instances[3].study_uid]
