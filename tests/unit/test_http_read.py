"""QIDO-RS and WADO-RS over HTTP (PS3.18 §10.6, §10.4) on create_app, with the in-memory ports and
with S3/DynamoDB on moto."""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread

from dicomweb_server.settings import Settings
from tests.corpus import EXPLICIT_VR_LE, IMPLICIT_VR_LE, make_instance, make_study, read_multipart, stow_body

BASE = "http://testserver"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'


def stow(client, instances):
    body, content_type = stow_body(instances)
    response = client.post("/studies", content=body, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    return instances


def first(item, tag):
    return item[tag]["Value"][0]


def url(inst, level="instance"):
    out = f"/studies/{inst.study_uid}"
    if level in ("series", "instance"):
        out += f"/series/{inst.series_uid}"
    if level == "instance":
        out += f"/instances/{inst.sop_uid}"
    return out


@pytest.fixture
def study(client):
    """A stored study: series 1 has two CT instances, series 2 one MR (implicit VR)."""
    ct = make_study(
        ("ct",),
        instances_per_series=2,
        PatientName="DOE^JANE",
        PatientID="PID-7",
        StudyDate="20240105",
        StudyDescription="Chest",
    )
    mr = make_instance(
        "mr_implicit",
        study_uid=ct[0].study_uid,
        SeriesNumber=2,
        InstanceNumber=1,
        PatientName="DOE^JANE",
        PatientID="PID-7",
        StudyDate="20240105",
    )
    return stow(client, [*ct, mr])


# -- QIDO-RS -----------------------------------------------------------------------------------------------


def test_search_studies_returns_aggregates_and_absolute_urls(client, study):
    response = client.get("/studies", params={"PatientID": "PID-7"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    (found,) = response.json()
    assert first(found, "0020000D") == study[0].study_uid
    assert first(found, "00201206") == 2  # NumberOfStudyRelatedSeries
    assert first(found, "00201208") == 3  # NumberOfStudyRelatedInstances
    assert found["00080061"]["Value"] == ["CT", "MR"]  # ModalitiesInStudy
    assert first(found, "00081190") == f"{BASE}/studies/{study[0].study_uid}"
    assert "00081030" not in found
    with_description = client.get("/studies", params={"PatientID": "PID-7", "includefield": "StudyDescription"})
    assert first(with_description.json()[0], "00081030") == "Chest"


def test_trailing_slash_is_the_same_resource(client, study):
    plain = client.get("/studies", params={"PatientName": "doe"})
    slashed = client.get("/studies/", params={"PatientName": "doe"})
    assert slashed.status_code == 200
    assert slashed.json() == plain.json() and len(plain.json()) == 1
    assert (
        client.get(f"{url(study[0], 'study')}/series/").json() == client.get(f"{url(study[0], 'study')}/series").json()
    )


def test_search_with_json_accept_and_no_match(client, study):
    response = client.get("/studies", params={"PatientName": "NOBODY"}, headers={"accept": "application/json"})
    assert response.status_code == 204  # PS3.18 §8.3.4.4.1: no match is 204 No Content, no body
    assert response.content == b""


def test_paging_says_more_results_exist_in_a_warning(client):
    for i in range(3):
        stow(client, [make_instance("mr", PatientID="PAGER", StudyDate=f"2020010{i + 1}")])
    first_page = client.get("/studies", params={"PatientID": "PAGER", "limit": "2"})
    assert [first(s, "00080020") for s in first_page.json()] == ["20200103", "20200102"]
    assert "There are additional results" in first_page.headers["warning"]
    last_page = client.get("/studies", params={"PatientID": "PAGER", "limit": "2", "offset": "2"})
    assert [first(s, "00080020") for s in last_page.json()] == ["20200101"]
    assert "warning" not in last_page.headers


def test_search_series_and_instances(client, study):
    ct1, ct2, mr = study
    series = client.get(f"{url(ct1, 'study')}/series").json()
    assert [(first(s, "0020000E"), first(s, "00080060"), first(s, "00201209")) for s in series] == [
        (ct1.series_uid, "CT", 2),
        (mr.series_uid, "MR", 1),
    ]
    assert first(series[0], "00081190") == f"{BASE}{url(ct1, 'series')}"
    instances = client.get(f"{url(ct1, 'study')}/instances").json()
    assert [first(i, "00080018") for i in instances] == [ct1.sop_uid, ct2.sop_uid, mr.sop_uid]
    assert first(instances[2], "00081190") == f"{BASE}{url(mr)}"
    assert first(instances[2], "00080060") == "MR"
    in_series = client.get(f"{url(mr, 'series')}/instances").json()
    assert [first(i, "00080018") for i in in_series] == [mr.sop_uid]
    only_ct = client.get(f"{url(ct1, 'study')}/instances", params={"Modality": "CT", "InstanceNumber": "2"})
    assert [first(i, "00080018") for i in only_ct.json()] == [ct2.sop_uid]


def test_search_in_an_unknown_study_is_404(client):
    response = client.get("/studies/1.2.3.4/series")
    assert response.status_code == 404
    assert response.json()["message"] == "study 1.2.3.4 is not stored here"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"Foo": "bar"}, "unknown query parameter 'Foo'"),
        ({"StudyDate": "2024-01"}, "dates are YYYYMMDD"),
        ({"limit": "many"}, "is not a whole number"),
        ({"Foo.Bar": "x"}, "unknown query parameter 'Foo.Bar'"),
    ],
)
def test_bad_query_is_400_with_a_json_error(memory_client, params, message):
    response = memory_client.get("/studies", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == 400 and body["error"] == "Bad Request"
    assert message in body["message"]


def test_a_key_the_level_cannot_match_is_ignored_with_a_warning(memory_client):
    response = memory_client.get("/studies", params={"Modality": "CT"})
    assert response.status_code == 204  # nothing stored; the key did not make it a 400
    assert "Modality (00080060) cannot be matched at the study level and was ignored" in response.headers["Warning"]


@pytest.mark.parametrize("path", ["/studies", "/studies/1.2.3/series", "/studies/1.2.3/metadata"])
def test_unsatisfiable_accept_is_406(memory_client, path):
    response = memory_client.get(path, headers={"accept": "image/png"})
    assert response.status_code == 406
    assert "cannot satisfy Accept: image/png" in response.json()["message"]


@pytest.mark.parametrize("uid", ["abc", "1..2", "%2E%2E", "1." + "2" * 63, "1.2.3%0A", "1.2.3%20"])
@pytest.mark.parametrize("suffix", ["", "/series", "/metadata", "/series/1.2/instances", "/series/1.2/instances/1.3"])
def test_invalid_uid_in_the_path_is_400(memory_client, uid, suffix):
    response = memory_client.get(f"/studies/{uid}{suffix}")
    assert response.status_code == 400, response.text
    assert "is not a valid UID" in response.json()["message"] or "at most 64" in response.json()["message"]


def test_invalid_series_and_instance_uids_are_400_too(memory_client):
    assert "Series Instance UID" in memory_client.get("/studies/1.2/series/x.y/instances").json()["message"]
    assert "SOP Instance UID" in memory_client.get("/studies/1.2/series/1.3/instances/1.4a").json()["message"]


# -- WADO-RS -----------------------------------------------------------------------------------------------


def parts_of(response):
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(MULTIPART_DICOM)
    return read_multipart(response.content, response.headers["content-type"])


AS_STORED = f"{MULTIPART_DICOM}; transfer-syntax=*"


@pytest.mark.parametrize("level, expected", [("study", [0, 1, 2]), ("series", [0, 1]), ("instance", [0])])
def test_retrieve_as_stored_returns_the_stored_bytes_as_part10(client, study, level, expected):
    parts = parts_of(client.get(url(study[0], level), headers={"accept": AS_STORED}))
    assert [payload for _, payload in parts] == [study[i].data for i in expected]
    for (headers, payload), i in zip(parts, expected, strict=True):
        assert headers["content-type"] == f"application/dicom; transfer-syntax={study[i].transfer_syntax_uid}"
        assert headers["content-location"] == BASE + url(study[i])
        ds = dcmread(io.BytesIO(payload))
        assert ds.file_meta.TransferSyntaxUID == study[i].transfer_syntax_uid
        assert ds.SOPInstanceUID == study[i].sop_uid


@pytest.mark.parametrize("accept", [None, "*/*", MULTIPART_DICOM, 'multipart/related; type="*/*"'])
def test_retrieve_defaults_to_explicit_vr_little_endian(client, study, accept):
    """PS3.18 Table 8.7.3-5: no transfer-syntax parameter means Explicit VR Little Endian, also for
    the implicit VR instance of the study."""
    headers = {"accept": accept} if accept else {}
    parts = parts_of(client.get(url(study[0], "study"), headers=headers))
    assert len(parts) == 3
    for (headers, payload), stored in zip(parts, study, strict=True):
        assert headers["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT_VR_LE}"
        assert headers["content-location"] == BASE + url(stored)
        got = dcmread(io.BytesIO(payload))
        assert got.file_meta.TransferSyntaxUID == EXPLICIT_VR_LE and not got.original_encoding[0]
        assert got.PixelData == stored.dataset().PixelData


@pytest.mark.parametrize("source", ["jpeg", "multiframe"])
def test_compressed_and_multiframe_instances_come_back_unchanged(client, source):
    (inst,) = stow(client, [make_instance(source)])
    ((headers, payload),) = parts_of(client.get(url(inst), headers={"accept": AS_STORED}))
    assert payload == inst.data
    assert headers["content-type"] == f"application/dicom; transfer-syntax={inst.transfer_syntax_uid}"


def test_accept_application_dicom_gives_a_single_part10_body(client, study):
    response = client.get(url(study[2]), headers={"accept": "application/dicom; transfer-syntax=*"})
    assert response.status_code == 200
    assert response.headers["content-type"] == f"application/dicom; transfer-syntax={IMPLICIT_VR_LE}"
    assert response.content == study[2].data
    default = client.get(url(study[2]), headers={"accept": "application/dicom"})
    assert default.headers["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT_VR_LE}"
    assert dcmread(io.BytesIO(default.content)).file_meta.TransferSyntaxUID == EXPLICIT_VR_LE
    refused = client.get(url(study[0], "series"), headers={"accept": "application/dicom"})
    assert refused.status_code == 406


def test_explicit_vr_little_endian_is_returned_as_stored(client, study):
    accept = f"{MULTIPART_DICOM}; transfer-syntax={EXPLICIT_VR_LE}"
    ((headers, payload),) = parts_of(client.get(url(study[0]), headers={"accept": accept}))
    assert payload == study[0].data


def test_implicit_vr_instance_is_transcoded_to_explicit_vr_when_asked(client, study):
    accept = f"{MULTIPART_DICOM}; transfer-syntax={EXPLICIT_VR_LE}"
    ((headers, payload),) = parts_of(client.get(url(study[2]), headers={"accept": accept}))
    assert headers["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT_VR_LE}"
    got, original = dcmread(io.BytesIO(payload)), study[2].dataset()
    assert got.file_meta.TransferSyntaxUID == EXPLICIT_VR_LE
    assert not got.original_encoding[0]  # really read as explicit VR
    assert got.SOPInstanceUID == original.SOPInstanceUID
    assert got.PixelData == original.PixelData
    assert [e.tag for e in got] == [e.tag for e in original]
    assert all(got[e.tag].value == e.value for e in original if e.VR != "SQ")


def test_a_syntax_the_instance_cannot_have_is_406_naming_those_it_can(client, study):
    accept = f"{MULTIPART_DICOM}; transfer-syntax=1.2.840.10008.1.2.4.50"  # JPEG Baseline of a 16-bit CT
    response = client.get(url(study[0]), headers={"accept": accept})
    assert response.status_code == 406
    message = response.json()["message"]
    assert "cannot be given as transfer-syntax=1.2.840.10008.1.2.4.50" in message
    for possible in ("1.2.840.10008.1.2.1 ", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "transfer-syntax=*"):
        assert possible in message


@pytest.mark.parametrize("level, count", [("study", 3), ("series", 2), ("instance", 1)])
def test_metadata_is_a_json_array_with_pixel_data_as_a_bulk_data_uri(client, study, level, count):
    response = client.get(url(study[0], level) + "/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    items = response.json()
    assert isinstance(items, list)
    assert [first(i, "00080018") for i in items] == [s.sop_uid for s in study[:count]]
    for item, stored in zip(items, study, strict=False):
        ds = stored.dataset()
        instance_url = BASE + url(stored)
        assert item["7FE00010"] == {"vr": ds["PixelData"].VR, "BulkDataURI": f"{instance_url}/bulkdata/7FE00010"}
        assert (first(item, "00100020"), first(item, "00080060")) == ("PID-7", ds.Modality)
        assert (first(item, "00280010"), first(item, "00280011")) == (ds.Rows, ds.Columns)


def test_metadata_too_large_for_the_index_is_read_from_the_object(make_client, backend, settings):
    client = make_client(
        Settings(bucket_name=settings.bucket_name, table_name=settings.table_name, max_indexed_metadata_bytes=100)
    )
    (inst,) = stow(client, [make_instance("ct", PatientID="BIG-META")])
    (item,) = client.get(url(inst) + "/metadata").json()
    assert first(item, "00080018") == inst.sop_uid and first(item, "00100020") == "BIG-META"
    assert item["7FE00010"]["BulkDataURI"] == f"{BASE}{url(inst)}/bulkdata/7FE00010"


@pytest.mark.parametrize("path", ["/studies/1.2.3", "/studies/1.2.3/metadata", "/studies/1.2.3/series/1.4"])
def test_unknown_resources_are_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "is not stored here" in response.json()["message"]


def test_response_above_the_limit_is_413_naming_smaller_resources(make_client, settings):
    limited = Settings(bucket_name=settings.bucket_name, table_name=settings.table_name, max_response_bytes=60_000)
    client = make_client(limited)
    ct = make_study(("ct",), instances_per_series=2)  # two CT instances of about 39 kB in one series
    mr = make_instance("mr", study_uid=ct[0].study_uid, SeriesNumber=2)
    stow(client, [*ct, mr])
    response = client.get(url(ct[0], "study"))
    assert response.status_code == 413
    message = response.json()["message"]
    assert "retrieve its series one by one" in message
    assert f"{BASE}/studies/{ct[0].study_uid}/series/" in message
    series = client.get(url(ct[0], "series"))
    assert series.status_code == 413
    assert "retrieve its instances one by one" in series.json()["message"]
    assert f"{BASE}{url(ct[0])}" in series.json()["message"]
    assert parts_of(client.get(url(mr, "series"), headers={"accept": AS_STORED}))[0][1] == mr.data
    assert parts_of(client.get(url(ct[1]), headers={"accept": AS_STORED}))[0][1] == ct[1].data
