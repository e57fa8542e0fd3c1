"""Answers Lambda could not return are a 413 that says what to ask for instead."""

from __future__ import annotations

from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.web.app import create_app
from tests.corpus import make_study, stow_body

SETTINGS = Settings(bucket_name="b", table_name="t", max_response_bytes=3000)


def test_oversized_search_and_metadata_answers_are_413() -> None:
    client = TestClient(create_app(SETTINGS, index=MemoryIndex(), blobs=MemoryBlobStore()))
    big = make_study(("ct", "mr", "ct"), PatientID="BIG")
    for instance in big:  # one by one: each STOW answer stays under the small limit
        body, ctype = stow_body([instance])
        assert client.post("/studies", content=body, headers={"Content-Type": ctype}).status_code == 200
    identity = {"Accept-Encoding": "identity"}
    r = client.get(f"/studies/{big[0].study_uid}/metadata", headers=identity)
    assert r.status_code == 413 and "each series" in r.json()["message"]
    assert "Accept-Encoding: gzip" in r.json()["message"]
    r = client.get(
        f"/studies/{big[0].study_uid}/series/{big[1].series_uid}/instances/{big[1].sop_uid}/metadata", headers=identity
    )
    assert r.status_code == 413  # a single MR header is larger than 3000 bytes too
    r = client.get("/studies", params={"PatientID": "BIG", "includefield": "all"})
    assert r.status_code == 200  # one study fits
    for _ in range(30):
        body, ctype = stow_body(make_study(("mr",), PatientID="BIG"))
        client.post("/studies", content=body, headers={"Content-Type": ctype})
    r = client.get("/studies", params={"PatientID": "BIG"})
    assert r.status_code == 413 and "limit and offset" in r.json()["message"]
    assert client.get("/studies", params={"PatientID": "BIG", "limit": 2}).status_code == 200
