"""The ``DuplicatePolicy`` stack parameter through a deployed stack: a second embedded cloud
deployed with ``--parameter-overrides DuplicatePolicy=overwrite`` (the session's stack keeps the
default, accept-identical, which test_store_race.py covers). Concurrent STOWs of other versions
of one SOP Instance UID are all stored, one object stays and the index names its MD5; an
overwrite that renames the patient moves the study in search and in series metadata, and the
replaced object stays recoverable as a noncurrent S3 version."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from pydicom.uid import generate_uid

from tests.corpus import make_instance, read_multipart, stow_body

from .conftest import ROOT, Endpoint, localcloud

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def overwriting(pytestconfig: pytest.Config) -> Iterator[Endpoint]:
    """A stack of its own, deployed with DuplicatePolicy=overwrite into a second embedded cloud."""
    if pytestconfig.getoption("--dicomweb-url") or os.environ.get("DICOMWEB_BASE_URL"):
        pytest.skip("deploys a stack of its own with DuplicatePolicy=overwrite (embedded cloud only)")
    workdir = ROOT / ".local" / "test-cloud-overwrite"
    for stale in ("state", "s3"):
        shutil.rmtree(workdir / stale, ignore_errors=True)
    api_key = secrets.token_urlsafe(18)
    cloud = localcloud.start_cloud(
        workdir, persist=False, parameter_overrides={"DuplicatePolicy": "overwrite"}, api_key=api_key
    )
    try:
        yield Endpoint.of_cloud(cloud, api_key)
    finally:
        cloud.stop()


def stow(endpoint: Endpoint, *instances: Any) -> requests.Response:
    body, ctype = stow_body(list(instances))
    headers = {**endpoint.headers(), "Content-Type": ctype, "Accept": "application/dicom+json"}
    return requests.post(f"{endpoint.base_url}/studies", data=body, headers=headers, timeout=120)


def retrieved(endpoint: Endpoint, inst: Any) -> bytes:
    r = endpoint.get(
        f"/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert r.status_code == 200
    ((_, data),) = read_multipart(r.content, r.headers["content-type"])
    return data


def test_concurrent_overwrites_leave_one_object_the_index_names(overwriting: Endpoint) -> None:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    versions = [
        make_instance("ct", study_uid=study, series_uid=series, sop_uid=sop, PatientID=f"OVER-{n}") for n in range(4)
    ]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: stow(overwriting, versions[n % 4]), range(8)))
    assert [a.status_code for a in answers] == [200] * 8, [a.text[:300] for a in answers]
    stored = retrieved(overwriting, versions[0])
    assert stored in [v.data for v in versions]
    s3 = overwriting.boto3("s3")
    listed = s3.list_objects_v2(Bucket=overwriting.bucket, Prefix=versions[0].prefix).get("Contents", [])
    assert len(listed) == 1, [o["Key"] for o in listed]
    assert listed[0]["Key"].rsplit("/", 1)[1].startswith(hashlib.md5(stored).hexdigest() + "-")  # noqa: S324
    (found,) = overwriting.get("/studies", params={"StudyInstanceUID": study}).json()
    assert found["00201208"]["Value"] == [1]  # NumberOfStudyRelatedInstances
    assert found["00100020"]["Value"] == [stored_patient_id(stored)]


def stored_patient_id(data: bytes) -> str:
    import io

    from pydicom import dcmread

    return str(dcmread(io.BytesIO(data)).PatientID)


def test_an_overwrite_renames_the_patient_in_search_and_metadata(overwriting: Endpoint) -> None:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    old = make_instance("ct", study_uid=study, series_uid=series, sop_uid=sop, PatientName="BEFORE^OVERWRITE")
    new = make_instance("ct", study_uid=study, series_uid=series, sop_uid=sop, PatientName="AFTER^OVERWRITE")
    assert stow(overwriting, old).status_code == 200
    s3 = overwriting.boto3("s3")
    (old_key,) = [o["Key"] for o in s3.list_objects_v2(Bucket=overwriting.bucket, Prefix=old.prefix)["Contents"]]
    assert stow(overwriting, new).status_code == 200
    assert overwriting.get("/studies", params={"PatientName": "BEFORE*"}).status_code == 204
    found = overwriting.get("/studies", params={"PatientName": "AFTER*"}).json()
    assert [s["0020000D"]["Value"] for s in found] == [[study]]
    metadata = overwriting.get(f"/studies/{study}/series/{series}/metadata").json()
    assert [m["00100010"]["Value"] for m in metadata] == [[{"Alphabetic": "AFTER^OVERWRITE"}]]
    assert retrieved(overwriting, new) == new.data
    versions = s3.list_object_versions(Bucket=overwriting.bucket, Prefix=old_key).get("Versions", [])
    (kept,) = [v for v in versions if v["Key"] == old_key]
    assert not kept["IsLatest"]
    body = s3.get_object(Bucket=overwriting.bucket, Key=old_key, VersionId=kept["VersionId"])["Body"].read()
    assert body == old.data
