"""Issue 2 end to end: STOW-RS, QIDO-RS, WADO-RS and S3 drop through the deployed API Gateway."""

from __future__ import annotations

import io
import time

import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.corpus import make_instance, make_study, stow_body

from .conftest import Endpoint
from .multipart_util import parts_of


def _values(result: dict, tag: str) -> list:
    return result.get(tag, {}).get("Value", [])


@pytest.fixture(scope="module")
def thompson(endpoint: Endpoint) -> list:
    """A stored study: CT + MR + JPEG + multi-frame, one series each."""
    study = make_study(
        ("ct", "mr", "jpeg", "multiframe"),
        PatientName="THOMPSON^ALEX",
        PatientID=f"P{generate_uid()[-8:]}",
        StudyDate="20130409",
        StudyTime="131600",
        AccessionNumber=f"A{generate_uid()[-10:]}",
        StudyDescription="Abdomen CT",
        ReferringPhysicianName="SMITH^KAREN",
    )
    body, ctype = stow_body(study)
    r = endpoint.post("/studies", body, ctype, headers={"Accept": "application/dicom+json"})
    assert r.status_code == 200, r.text
    return study


def test_stow_response_references_every_instance_with_absolute_urls(endpoint: Endpoint, thompson: list) -> None:
    instance = make_instance("ct", study_uid=thompson[0].study_uid)
    body, ctype = stow_body([instance])
    r = endpoint.post(f"/studies/{instance.study_uid}", body, ctype)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/dicom+json")
    doc = r.json()
    [ref] = _values(doc, "00081199")
    assert _values(ref, "00081155") == [instance.sop_uid]
    assert _values(ref, "00081150") == [instance.sop_class_uid]
    assert _values(ref, "00081190") == [
        f"{endpoint.base_url}/studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.sop_uid}"
    ]
    assert _values(doc, "00081190") == [f"{endpoint.base_url}/studies/{instance.study_uid}"]


def test_qido_study_level_matching_and_counts(endpoint: Endpoint, thompson: list) -> None:
    first = thompson[0].dataset()
    study = first.StudyInstanceUID
    queries = [
        {"PatientName": "THOMP*"},
        {"PatientID": first.PatientID},
        {"StudyDate": "20130409"},
        {"StudyDate": "20130101-20131231"},
        {"AccessionNumber": first.AccessionNumber},
        {"StudyInstanceUID": study},
        {"PatientID": first.PatientID, "ModalitiesInStudy": "MR"},
    ]
    for query in queries:
        r = endpoint.get("/studies", params=query)
        assert r.status_code == 200, (query, r.text)
        found = [s for s in r.json() if _values(s, "0020000D") == [study]]
        assert len(found) == 1, query
    r = endpoint.get("/studies", params={"PatientID": first.PatientID, "includefield": "StudyDescription"})
    [result] = r.json()
    assert _values(result, "00081030") == ["Abdomen CT"]
    assert _values(result, "00201206") == [4] or _values(result, "00201206") == [5]
    assert _values(result, "00201208")[0] >= 4
    assert set(_values(result, "00080061")) >= {"CT", "MR"}
    assert _values(result, "00081190") == [f"{endpoint.base_url}/studies/{study}"]
    miss = endpoint.get("/studies", params={"PatientID": first.PatientID, "StudyDate": "20140101-"})
    assert miss.status_code == 204 and miss.content == b""


def test_qido_paging_with_limit_and_offset(endpoint: Endpoint) -> None:
    pid = f"PAGE-{generate_uid()[-10:]}"
    studies = {make_instance("mr", PatientID=pid, StudyDate=f"2020010{i}").study_uid: i for i in range(1, 6)}
    body, ctype = stow_body(
        [make_instance("mr", study_uid=uid, PatientID=pid, StudyDate=f"2020010{i}") for uid, i in studies.items()]
    )
    assert endpoint.post("/studies", body, ctype).status_code == 200
    seen: list[str] = []
    for offset in (0, 2, 4):
        r = endpoint.get("/studies", params={"PatientID": pid, "limit": 2, "offset": offset})
        assert r.status_code == 200
        seen += [_values(s, "0020000D")[0] for s in r.json()]
        assert ("Warning" in r.headers) == (offset < 4)
    assert sorted(seen) == sorted(studies) and len(seen) == 5
    dates = [studies[uid] for uid in seen]
    assert dates == sorted(dates, reverse=True)  # newest StudyDate first


def test_qido_series_and_instances(endpoint: Endpoint, thompson: list) -> None:
    study = thompson[0].study_uid
    r = endpoint.get(f"/studies/{study}/series")
    assert r.status_code == 200
    modalities = {_values(s, "00080060")[0] for s in r.json()}
    assert {"CT", "MR"} <= modalities
    mr = next(i for i in thompson if i.source == "mr")
    r = endpoint.get(f"/studies/{study}/series/{mr.series_uid}/instances")
    [inst] = r.json()
    assert _values(inst, "00080018") == [mr.sop_uid]
    assert _values(inst, "00081190") == [
        f"{endpoint.base_url}/studies/{study}/series/{mr.series_uid}/instances/{mr.sop_uid}"
    ]


AS_STORED = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}


def test_wado_study_series_instance_are_the_stored_bytes(endpoint: Endpoint, thompson: list) -> None:
    stored = {i.sop_uid: i.data for i in thompson}
    r = endpoint.get(f"/studies/{thompson[0].study_uid}", headers=AS_STORED)
    assert r.status_code == 200
    parts = parts_of(r)
    by_uid = {dcmread(io.BytesIO(p)).SOPInstanceUID: p for _, p in parts}
    assert set(stored) <= set(by_uid)
    for uid, data in stored.items():
        assert by_uid[uid] == data
    for headers, payload in parts:
        ds = dcmread(io.BytesIO(payload))  # a valid Part-10 file with file meta
        assert ds.file_meta.TransferSyntaxUID and headers["content-type"].startswith("application/dicom")
    one = thompson[1]
    [(_, series_part)] = parts_of(endpoint.get(f"/studies/{one.study_uid}/series/{one.series_uid}", headers=AS_STORED))
    assert series_part == one.data
    path = f"/studies/{one.study_uid}/series/{one.series_uid}/instances/{one.sop_uid}"
    [(headers, inst_part)] = parts_of(endpoint.get(path, headers=AS_STORED))
    assert inst_part == one.data
    assert headers["content-location"] == endpoint.base_url + path
    # without a transfer-syntax parameter: Explicit VR Little Endian (PS3.18 Table 8.7.3-5)
    for headers, payload in parts_of(endpoint.get(f"/studies/{thompson[0].study_uid}")):
        # (the stdlib parser of parts_of re-quotes parameter values)
        assert headers["content-type"].replace('"', "") == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
        assert dcmread(io.BytesIO(payload)).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"


def test_wado_metadata_at_three_levels(endpoint: Endpoint, thompson: list) -> None:
    one = thompson[0]
    for path, count in (
        (f"/studies/{one.study_uid}/metadata", len(thompson)),
        (f"/studies/{one.study_uid}/series/{one.series_uid}/metadata", 1),
        (f"/studies/{one.study_uid}/series/{one.series_uid}/instances/{one.sop_uid}/metadata", 1),
    ):
        r = endpoint.get(path)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/dicom+json")
        items = r.json()
        assert len(items) >= count
        assert all(item["7FE00010"]["BulkDataURI"].startswith(endpoint.base_url) for item in items)
    meta = endpoint.get(f"/studies/{one.study_uid}/series/{one.series_uid}/instances/{one.sop_uid}/metadata").json()[0]
    assert _values(meta, "00100010") == [{"Alphabetic": "THOMPSON^ALEX"}]


def test_metadata_gzip_and_bulk_data_through_api_gateway(endpoint: Endpoint, thompson: list) -> None:
    one = thompson[0]
    series = f"/studies/{one.study_uid}/series/{one.series_uid}/metadata"
    r = endpoint.get(series, headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["Content-Encoding"] == "gzip"  # requests decodes it
    (item,) = r.json()
    again = endpoint.get(series, headers={"Accept-Encoding": "gzip", "If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    uri = item["7FE00010"]["BulkDataURI"]
    pixels = one.dataset().PixelData
    whole = endpoint.get(uri[len(endpoint.base_url) :], headers={"Accept": "application/octet-stream"})
    assert whole.status_code == 200 and whole.content == pixels
    part = endpoint.get(
        uri[len(endpoint.base_url) :], headers={"Accept": "application/octet-stream", "Range": "bytes=10-19"}
    )
    assert part.status_code == 206 and part.content == pixels[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(pixels)}"
    client = DICOMwebClient(url=endpoint.base_url, headers=endpoint.headers())
    assert client.retrieve_bulkdata(uri) == [pixels]


def test_dicomweb_client_round_trip(endpoint: Endpoint) -> None:
    client = DICOMwebClient(url=endpoint.base_url, headers=endpoint.headers())
    study = make_study(("ct", "jpeg", "multiframe"), PatientName="ROUND^TRIP", PatientID=f"RT{generate_uid()[-8:]}")
    datasets = [i.dataset() for i in study]
    response = client.store_instances(datasets)
    assert len(response.ReferencedSOPSequence) == 3
    found = client.search_for_studies(search_filters={"PatientID": datasets[0].PatientID})
    assert [f["0020000D"]["Value"][0] for f in found] == [study[0].study_uid]
    series = client.search_for_series(study_instance_uid=study[0].study_uid)
    assert len(series) == 3
    instances = client.search_for_instances(study_instance_uid=study[0].study_uid)
    assert {i["00080018"]["Value"][0] for i in instances} == {i.sop_uid for i in study}
    got = client.retrieve_instance(study[0].study_uid, study[0].series_uid, study[0].sop_uid)
    assert got.SOPInstanceUID == study[0].sop_uid
    assert got.pixel_array.shape == datasets[0].pixel_array.shape
    assert len(client.retrieve_study(study[0].study_uid)) == 3
    metadata = client.retrieve_series_metadata(study[0].study_uid, study[2].series_uid)
    assert metadata[0]["00080018"]["Value"] == [study[2].sop_uid]
    frames = client.retrieve_instance_frames(
        study[2].study_uid, study[2].series_uid, study[2].sop_uid, frame_numbers=[1, 2]
    )
    assert len(frames) == 2 and all(frames)


def test_s3_drop_becomes_searchable_and_indexes_once(endpoint: Endpoint, s3) -> None:
    instance = make_instance("ct", PatientID=f"DROP{generate_uid()[-8:]}")
    key = f"incoming/batch {generate_uid()[-6:]}/scan (1).dcm"
    s3.put_object(Bucket=endpoint.bucket, Key=key, Body=instance.data)
    deadline = time.monotonic() + 30
    found = []
    while time.monotonic() < deadline and not found:
        r = endpoint.get("/studies", params={"StudyInstanceUID": instance.study_uid})
        found = r.json() if r.status_code == 200 else []  # 204 until it is indexed
        time.sleep(0.3)
    assert found, "the dropped file was not indexed within 30 s"
    [(_, payload)] = parts_of(
        endpoint.get(f"/studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.sop_uid}")
    )
    assert payload == instance.data
    listed = s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=key).get("KeyCount", 0)
    assert listed == 0, "the dropped object stays in incoming/"
    # The same file dropped again (a redelivery or a repeated upload) changes nothing.
    s3.put_object(Bucket=endpoint.bucket, Key=key, Body=instance.data)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=key).get("KeyCount"):
        time.sleep(0.3)
    [study] = endpoint.get("/studies", params={"StudyInstanceUID": instance.study_uid}).json()
    assert _values(study, "00201208") == [1]


def test_s3_drop_of_a_non_dicom_file_is_set_aside(endpoint: Endpoint, s3) -> None:
    key = f"incoming/not-dicom-{generate_uid()[-6:]}.dcm"
    s3.put_object(Bucket=endpoint.bucket, Key=key, Body=b"this is not DICOM" * 20)
    rejected = "rejected/" + key.split("/", 1)[1]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=rejected).get("KeyCount"):
            break
        time.sleep(0.3)
    assert s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=rejected).get("KeyCount") == 1
    assert not s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=key).get("KeyCount")
