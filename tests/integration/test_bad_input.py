"""Bad input through the deployed stack: a clear 4xx naming the problem, never a 5xx, and never a
partial write (no object without its index entry, no index entry without its object)."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from tests.corpus import make_instance, stow_body, truncated

from .conftest import Endpoint


def _error(r, status: int, *words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    message = r.json()["message"].lower()
    for word in words:
        assert word.lower() in message, (word, message)


def _not_stored(endpoint: Endpoint, instance, s3=None) -> None:
    assert endpoint.get("/studies", params={"StudyInstanceUID": instance.study_uid}).status_code == 204
    if s3 is not None:
        assert not s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=f"studies/{instance.study_uid}/").get("KeyCount")


@pytest.fixture(scope="module")
def bucket_access(endpoint: Endpoint):
    return endpoint.boto3("s3") if endpoint.bucket else None


def test_malformed_multipart_is_400_and_stores_nothing(endpoint: Endpoint, bucket_access) -> None:
    instance = make_instance("mr")
    body, ctype = stow_body([instance], boundary="right-boundary")
    cases = {
        "no boundary": (body, 'multipart/related; type="application/dicom"', "boundary"),
        "wrong boundary": (body, 'multipart/related; type="application/dicom"; boundary=other', "boundary"),
        "truncated": (body[: len(body) // 2], ctype, "truncated"),
        "no closing delimiter": (body[: body.rindex(b"--right-boundary--")], ctype, "closing delimiter"),
    }
    for name, (data, content_type, word) in cases.items():
        r = endpoint.post("/studies", data, content_type)
        assert r.status_code == 400, (name, r.status_code, r.text)
        assert word in r.json()["message"], (name, r.json())
    _not_stored(endpoint, instance, bucket_access)


def test_bad_parts_fail_alone_and_valid_parts_are_stored(endpoint: Endpoint, bucket_access) -> None:
    good = make_instance("ct")
    cut = make_instance("ct")
    body, ctype = stow_body([good, b"plain text, not DICOM" * 10, truncated(cut.data, 400)])
    r = endpoint.post("/studies", body, ctype)
    assert r.status_code == 202, r.text
    doc = r.json()
    failed = doc["00081198"]["Value"]
    assert [f["00081197"]["Value"][0] for f in failed] == [0xC000, 0xC000]
    assert "Warning" in r.headers and "not a DICOM" in r.headers["Warning"]
    assert [s["00081155"]["Value"][0] for s in doc["00081199"]["Value"]] == [good.sop_uid]
    assert endpoint.get("/studies", params={"StudyInstanceUID": good.study_uid}).json()
    _not_stored(endpoint, cut, bucket_access)


def test_a_request_with_only_bad_parts_is_409(endpoint: Endpoint) -> None:
    body, ctype = stow_body([b"\x00" * 200])
    r = endpoint.post("/studies", body, ctype)
    assert r.status_code == 409 and r.json()["00081198"]["Value"]


def test_study_uid_mismatch_fails_that_instance(endpoint: Endpoint, bucket_access) -> None:
    instance = make_instance("mr")
    body, ctype = stow_body([instance])
    r = endpoint.post(f"/studies/{generate_uid()}", body, ctype)
    assert r.status_code == 409
    assert r.json()["00081198"]["Value"][0]["00081155"]["Value"] == [instance.sop_uid]
    _not_stored(endpoint, instance, bucket_access)


@pytest.mark.parametrize("uid", ["1.2.abc", "1..2", "1." + "2" * 70, "1.2.3;drop"])
def test_invalid_uids_in_the_path_are_400(endpoint: Endpoint, uid: str) -> None:
    for path in (
        f"/studies/{uid}",
        f"/studies/{uid}/series",
        f"/studies/{uid}/metadata",
        f"/studies/1.2.3/series/{uid}/instances",
    ):
        r = endpoint.get(path)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert "UID" in r.json()["message"]


def test_unknown_query_parameters_and_bad_values_are_400(endpoint: Endpoint) -> None:
    _error(endpoint.get("/studies", params={"PatientNmae": "X"}), 400, "PatientNmae")
    _error(endpoint.get("/studies", params={"StudyDate": "yesterday"}), 400, "StudyDate")
    _error(endpoint.get("/studies", params={"limit": "-1"}), 400, "limit")
    r = endpoint.get("/studies", params={"Rows": "512", "limit": "1"})  # known, but not a study attribute
    assert r.status_code in (200, 204) and "Rows (00280010) cannot be matched" in r.headers["Warning"]


def test_unsatisfiable_accept_is_406(endpoint: Endpoint) -> None:
    _error(endpoint.get("/studies", headers={"Accept": "text/html"}), 406, "text/html")
    instance = make_instance("mr")
    body, ctype = stow_body([instance])
    assert endpoint.post("/studies", body, ctype).status_code == 200
    path = f"/studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.sop_uid}"
    _error(endpoint.get(path, headers={"Accept": "video/mp4"}), 406, "video/mp4")
    lossy_jp2 = 'multipart/related; type="image/jp2"; transfer-syntax=1.2.840.10008.1.2.4.91'
    _error(endpoint.get(path + "/frames/1", headers={"Accept": lossy_jp2}), 406, "frames")
    jpeg = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    _error(endpoint.get(path, headers={"Accept": jpeg}), 406, "it is available as")  # a 16-bit MR as JPEG


def test_unknown_resources_are_404_with_a_message(endpoint: Endpoint) -> None:
    _error(endpoint.get(f"/studies/{generate_uid()}"), 404, "not stored")
    _error(endpoint.get(f"/studies/{generate_uid()}/series"), 404, "not stored")


def test_an_oversized_upload_is_413(endpoint: Endpoint) -> None:
    body = b"x" * 4_600_000
    r = endpoint.post("/studies", body, 'multipart/related; type="application/dicom"; boundary=b')
    _error(r, 413, "at most")
