"""A crash of the local stack loses nothing that was acknowledged (runs near the end: it kills
the session's cloud). ministack saves everything but S3 only on a graceful stop, so the next
start notices the unclean stop, redeploys, and reconciles the index with the bucket before it
hands out the URL (``localcloud.recover``)."""

from __future__ import annotations

import time

import pytest

from tests.corpus import make_instance, make_study, stow_body

from .conftest import Endpoint
from .multipart_util import parts_of


def _store_three_studies(endpoint: Endpoint, name: str) -> list[list]:
    studies = [make_study(("ct", "mr"), PatientName=f"{name}^{n}") for n in range(3)]
    for study in studies:
        body, ctype = stow_body(study)
        assert endpoint.post("/studies", body, ctype).status_code == 200
    return studies


def _everything_is_there(endpoint: Endpoint, studies: list[list]) -> None:
    for study in studies:
        found = endpoint.get("/studies", params={"StudyInstanceUID": study[0].study_uid})
        assert found.status_code == 200, f"study {study[0].study_uid} is gone from search"
        assert found.json()[0]["00201208"]["Value"] == [len(study)]
        payloads = {p for _, p in parts_of(endpoint.get(f"/studies/{study[0].study_uid}"))}
        assert payloads == {i.data for i in study}


def _a_drop_is_indexed(endpoint: Endpoint) -> None:
    dropped = make_instance("ct", PatientName="CRASH^DROPPED")
    endpoint.boto3("s3").put_object(Bucket=endpoint.bucket, Key=f"incoming/{dropped.sop_uid}.dcm", Body=dropped.data)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if endpoint.get("/studies", params={"StudyInstanceUID": dropped.study_uid}).status_code == 200:
            return
        time.sleep(0.5)
    raise AssertionError("a file dropped after the restart was not indexed within 60 s")


@pytest.fixture
def embedded(endpoint: Endpoint) -> Endpoint:
    if endpoint.kind != "ministack":
        pytest.skip("a crash is simulated on the embedded local cloud only")
    return endpoint


def test_a_crash_before_any_graceful_stop_loses_nothing(embedded: Endpoint) -> None:
    # The session's cloud has never stopped: ministack has saved nothing but the objects.
    studies = _store_three_studies(embedded, "CRASH^FIRST")
    report = embedded.crash_and_restart()
    assert any("the stack was lost" in line for line in report), report
    _everything_is_there(embedded, studies)
    _a_drop_is_indexed(embedded)


def test_a_crash_after_a_graceful_stop_loses_nothing_written_since(embedded: Endpoint) -> None:
    kept = _store_three_studies(embedded, "CRASH^SAVED")
    embedded.restart()  # graceful: the tables are saved with these three studies
    fresh = _store_three_studies(embedded, "CRASH^FRESH")  # only in memory until a graceful stop
    report = embedded.crash_and_restart()
    indexed = next(line for line in report if "indexed (had no entry)" in line)
    assert int(indexed.split(":")[1]) >= sum(len(s) for s in fresh), report
    _everything_is_there(embedded, kept + fresh)
    _a_drop_is_indexed(embedded)


def test_a_removed_state_folder_is_recovered_from_the_bucket(embedded: Endpoint) -> None:
    studies = _store_three_studies(embedded, "CRASH^NOSTATE")
    embedded.crash_and_restart(lose_saved_state=True)
    _everything_is_there(embedded, studies)
    _a_drop_is_indexed(embedded)
