"""Concurrent writers of one SOP Instance UID (the STOW issue's race): whatever the interleaving,
exactly one object stays, its bytes have the MD5 its index entry names, and every writer is told
the truth (stored, identical duplicate, or 0x0111 for other content)."""

from __future__ import annotations

import hashlib
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from dicomweb_server.store.ingest import InvalidInstance, Reason, Stored, ingest
from tests.corpus import make_instance
from tests.unit.conftest import memory_backend


class Gate:
    """A blob store whose ``put`` waits until every writer has checked the index and is about to
    write: the interleaving that made a second writer overwrite the first one's object."""

    def __init__(self, blobs, writers: int) -> None:  # type: ignore[no-untyped-def]
        self._blobs = blobs
        self._barrier = threading.Barrier(writers, timeout=30)

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._blobs, name)

    def put(self, key, data, content_type="application/dicom"):  # type: ignore[no-untyped-def]
        self._barrier.wait()
        self._blobs.put(key, data, content_type)


def race(contents: list[bytes]) -> tuple[object, list[object]]:
    backend = memory_backend()
    gate = Gate(backend.blobs, len(contents))

    def write(data: bytes) -> object:
        try:
            return ingest(data, index=backend.index, blobs=gate).outcome
        except InvalidInstance as exc:
            return exc.reason

    with ThreadPoolExecutor(len(contents)) as pool:
        outcomes = list(pool.map(write, contents))
    return backend, outcomes


def versions(count: int) -> list[bytes]:
    """``count`` different files with the same study, series and SOP Instance UIDs."""
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    return [
        make_instance("ct", study_uid=study, series_uid=series, sop_uid=sop, PatientID=f"RACE-{n}").data
        for n in range(count)
    ]


def assert_one_consistent_object(backend, data: bytes) -> bytes:  # type: ignore[no-untyped-def]
    """Exactly one object under the instance's folder, and it is what the index says."""
    ds = dcmread(io.BytesIO(data))
    uids = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    md5, key = backend.index.indexed_object(*uids)
    folder = "studies/{}/series/{}/instances/{}/".format(*uids)
    assert [k for k in backend.objects() if k.startswith(folder)] == [key]
    stored = backend.blobs.get(key)
    assert hashlib.md5(stored).hexdigest() == md5  # noqa: S324
    assert backend.index.get_study(uids[0]).instance_count == 1
    return stored


@pytest.mark.parametrize("round_", range(5))
def test_two_writers_of_different_content_leave_one_object_that_matches_the_index(round_) -> None:
    contents = versions(2)
    backend, outcomes = race(contents)
    assert sorted(map(str, outcomes)) == sorted([str(Stored.NEW), str(Reason.DUPLICATE_SOP_INSTANCE)])
    stored = assert_one_consistent_object(backend, contents[0])
    assert stored == contents[outcomes.index(Stored.NEW)]  # the writer told "stored" is the one kept


@pytest.mark.parametrize("round_", range(3))
def test_eight_writers_of_two_versions_each_told_the_truth(round_) -> None:
    a, b = versions(2)
    contents = [a, b] * 4
    backend, outcomes = race(contents)
    stored = assert_one_consistent_object(backend, a)
    assert outcomes.count(Stored.NEW) == 1
    for data, outcome in zip(contents, outcomes, strict=True):
        if data == stored:
            assert outcome in (Stored.NEW, Stored.IDENTICAL_DUPLICATE)
        else:
            assert outcome is Reason.DUPLICATE_SOP_INSTANCE


def test_identical_writers_store_one_object_and_all_succeed() -> None:
    (data,) = versions(1)
    backend, outcomes = race([data] * 6)
    assert outcomes.count(Stored.NEW) == 1 and outcomes.count(Stored.IDENTICAL_DUPLICATE) == 5
    assert assert_one_consistent_object(backend, data) == data


def test_a_write_whose_answer_was_lost_keeps_its_object() -> None:
    """The index write landed but its caller saw an error (a timeout after the commit): the object
    the index names is not removed, and sending the instance again is an identical duplicate."""
    (data,) = versions(1)
    backend = memory_backend()

    class LostAnswer:
        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(backend.index, name)

        def add_instance(self, record):  # type: ignore[no-untyped-def]
            backend.index.add_instance(record)
            raise TimeoutError("the answer was lost")

    with pytest.raises(TimeoutError):
        ingest(data, index=LostAnswer(), blobs=backend.blobs)
    assert_one_consistent_object(backend, data)
    assert ingest(data, index=backend.index, blobs=backend.blobs).outcome is Stored.IDENTICAL_DUPLICATE
