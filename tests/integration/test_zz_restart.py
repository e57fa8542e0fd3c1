"""`make run` keeps every stored study across a restart (runs last: it restarts the session's cloud)."""

from __future__ import annotations

import pytest

from tests.corpus import make_study, stow_body

from .conftest import Endpoint
from .multipart_util import parts_of


def test_a_graceful_restart_keeps_objects_index_and_counts(endpoint: Endpoint) -> None:
    if endpoint.kind != "ministack":
        pytest.skip("restarts are a property of the embedded local cloud")
    study = make_study(("ct", "mr"), PatientName="RESTART^KEPT")
    body, ctype = stow_body(study)
    assert endpoint.post("/studies", body, ctype).status_code == 200
    before = endpoint.get("/studies", params={"StudyInstanceUID": study[0].study_uid}).json()
    endpoint.restart()
    after = endpoint.get("/studies", params={"StudyInstanceUID": study[0].study_uid}).json()
    assert after == before and after[0]["00201208"]["Value"] == [2]
    as_stored = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    payloads = {p for _, p in parts_of(endpoint.get(f"/studies/{study[0].study_uid}", headers=as_stored))}
    assert payloads == {i.data for i in study}
