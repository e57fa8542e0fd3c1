"""STOW-RS with the parse step in worker processes (``store.parallel``, the dev server's default):
the same answer, the same index entries and the same stored bytes as parsing in the request's own
thread, refusals included, and instances stored in the order of the request."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.store.failures import InvalidInstance, Reason
from dicomweb_server.store.parallel import ParsePool
from dicomweb_server.web.app import create_app
from tests.corpus import make_instance, stow_body, truncated


@pytest.fixture(scope="module")
def pool() -> Iterator[ParsePool]:
    started = ParsePool(2)
    started.warm()
    yield started
    started.close()


def _request(study_uid: str) -> tuple[bytes, str, list[bytes]]:
    good = [make_instance(src, study_uid=study_uid).data for src in ("ct", "mr", "jpeg", "mr_implicit", "ct")]
    other_study = make_instance("mr").data  # refused: the request names the study
    payloads = [good[0], truncated(good[1]), b"not DICOM at all" * 20, good[2], other_study, *good[3:], good[0]]
    body, ctype = stow_body(payloads)
    return body, ctype, good


def test_a_request_parsed_by_worker_processes_is_answered_and_stored_as_in_process(pool: ParsePool) -> None:
    study = make_instance("ct").study_uid
    body, ctype, good = _request(study)
    answers, states = [], []
    for parser in (None, pool.parse):
        index, blobs = MemoryIndex(), MemoryBlobStore()
        app = create_app(Settings(bucket_name="b", table_name="t"), index=index, blobs=blobs, parser=parser)
        answer = TestClient(app).post(f"/studies/{study}", content=body, headers={"Content-Type": ctype})
        answers.append((answer.status_code, answer.json()))
        found = TestClient(app).get(f"/studies/{study}/instances", params={"includefield": "all"}).json()
        objects = sorted(blobs.get(k) for k, _ in blobs.list("studies/"))
        states.append((sorted(found, key=lambda d: d["00080018"]["Value"][0]), objects))
    assert answers[0] == answers[1]
    status, doc = answers[1]
    assert status == 202
    kept = [good[0], good[2], good[3], good[4]]  # good[1] was sent cut short
    stored = [item["00081155"]["Value"][0] for item in doc["00081199"]["Value"]]
    assert len(stored) == len(kept) + 1  # the resent first instance: an identical duplicate
    reasons = sorted(item["00081197"]["Value"][0] for item in doc["00081198"]["Value"])
    assert reasons == sorted([0xC000, 0xC000, int(Reason.STUDY_UID_MISMATCH)])
    assert states[0] == states[1]
    assert states[1][1] == sorted(kept)  # byte for byte, each once


def test_a_refusal_crosses_the_process_boundary_with_every_field() -> None:
    refused = InvalidInstance(Reason.CANNOT_UNDERSTAND, "DICOM file is truncated", "1.2.3", "1.2.3.4")
    again = pickle.loads(pickle.dumps(refused))  # noqa: S301 - our own bytes
    assert (again.reason, again.message, again.sop_class_uid, again.sop_uid) == (
        Reason.CANNOT_UNDERSTAND,
        "DICOM file is truncated",
        "1.2.3",
        "1.2.3.4",
    )


def test_the_workers_end_when_the_server_process_is_killed(tmp_path) -> None:
    """A dev server killed (or ended by uvicorn re-raising SIGTERM, which skips every ``finally``)
    leaves no parse worker behind."""
    script = (
        "import os, sys\n"
        "from dicomweb_server.store.parallel import ParsePool\n"
        "pool = ParsePool(2)\n"
        "pool.warm()\n"
        "print(' '.join(str(p) for p in pool._pool._processes), flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    workers = [int(p) for p in done.stdout.split()]
    assert len(workers) == 2 and done.returncode == -9
    for _ in range(100):  # bounded: the workers look for their parent once a second
        alive = [p for p in workers if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, f"parse workers {alive} outlived the server"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "Z"
