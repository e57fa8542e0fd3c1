"""The security standard: no patient data in logs, on success, on bad input and on storage failures."""

from __future__ import annotations

import logging

from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.web.app import create_app
from tests.corpus import make_instance, stow_body, truncated

SETTINGS = Settings(bucket_name="b", table_name="t")

NAME, PID = "SECRETNAME^PRIVATE", "PID-TOP-SECRET-42"


class ExplodingIndex(MemoryIndex):
    def add_instance(self, record):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"index write failed for {NAME} {PID}")

    def search_studies(self, query):  # type: ignore[no-untyped-def]
        raise ValueError(f"search failed near {NAME}")


def test_nothing_identifying_reaches_the_log(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for index in (MemoryIndex(), ExplodingIndex()):
        client = TestClient(create_app(SETTINGS, index=index, blobs=MemoryBlobStore()), raise_server_exceptions=False)
        good = make_instance("ct", PatientName=NAME, PatientID=PID)
        bad = make_instance("mr", PatientName=NAME, PatientID=PID)
        body, ctype = stow_body([good, truncated(bad.data, 300)])
        client.post("/studies", content=body, headers={"Content-Type": ctype})
        client.get("/studies", params={"PatientName": NAME, "PatientID": PID})
        client.get(f"/studies/{good.study_uid}/metadata")
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]  # the test's own client
    text = "".join(f"{r.getMessage()} {r.__dict__}" for r in server)
    assert any(r.name.startswith("dicomweb") for r in server), "the failures above should have been logged"
    assert NAME not in text and "SECRETNAME" not in text and PID not in text
