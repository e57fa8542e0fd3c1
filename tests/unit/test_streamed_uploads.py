"""Issue 9, upload sessions and drops of any size: an upload session's file is indexed in one
streamed pass (claim token = the ETag of the version read, a conditional copy of that version);
a drop or upload whose file meta group must be written again (WarningReason 0xB000) is streamed
into a multipart upload, never read whole; and a session file whose indexing fails on the last
attempt of its event is recorded failed, so the session ends.

Memory is measured with tracemalloc around the indexing call only: the in-memory store holds the
uploaded object itself (allocated before), and the corrected object is written by ``Spooled``
to a file on disk, so what is measured is what indexing allocates."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mmap
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydicom import dcmread
from pydicom.filereader import _read_file_meta_info, read_preamble
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.blobs.uploads import MemoryUploadTargets
from dicomweb_server.errors import ServiceUnavailable, StorageError
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.index.uploads import DynamoDbUploadSessions, MemoryUploadSessions
from dicomweb_server.ports import BlobChanged, OpenedBlob, Readable
from dicomweb_server.settings import Settings
from dicomweb_server.store import uploads
from dicomweb_server.store.drop import DropOutcome, index_dropped
from dicomweb_server.store.ingest import StorageFailed
from dicomweb_server.store.uploads import UploadOutcome, UploadPorts, content_token, index_upload
from dicomweb_server.web import create_app
from tests import frames_data as fd
from tests.corpus import make_instance

MiB = 1024 * 1024
STORED = "application/octet-stream; transfer-syntax=*"
ROOT = Path(__file__).resolve().parents[2]


class LikeS3(MemoryBlobStore):
    """The in-memory store, except that reading an object whole allocates it, as reading a
    GetObject body does (the in-memory store hands out the stored bytes themselves)."""

    def get(self, key: str) -> bytes:
        return bytes(memoryview(super().get(key)))

    def get_version(self, key: str) -> tuple[bytes, str | None]:
        return self.get(key), None

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return bytes(MemoryBlobStore.get(self, key)[start : end + 1])

    def open(self, key: str, *, version: str | None = None, if_match: str | None = None) -> OpenedBlob:
        data = MemoryBlobStore.get(self, key)  # a stream over the stored bytes: reads allocate what they read
        etag = '"' + hashlib.md5(data).hexdigest() + '"'  # noqa: S324 - S3's ETag of a single-part object
        if if_match is not None and if_match != etag:
            raise BlobChanged(key)
        return OpenedBlob(io.BytesIO(data), len(data), None, etag)

    def copy(self, source_key: str, target_key: str, **conditions: Any) -> None:
        data = MemoryBlobStore.get(self, source_key)  # server side: nothing passes through the indexer
        if conditions.get("if_match") not in (None, '"' + hashlib.md5(data).hexdigest() + '"'):  # noqa: S324
            raise BlobChanged(source_key)
        self.put(target_key, data)


class Spooled(LikeS3):
    """The in-memory store, except that objects written by ``put_stream`` go to files on disk
    (memory-mapped for reads), so that storing a large object allocates no Python memory."""

    def __init__(self, folder: Path, part_size: int = 5 * MiB) -> None:
        super().__init__(part_size)
        self.folder = folder
        self.part_sizes: dict[str, list[int]] = {}

    def put_stream(
        self, key: str, source: Readable, *, size_hint: int = 0, content_type: str = "application/dicom"
    ) -> int:
        path = self.folder / hashlib.sha1(key.encode()).hexdigest()  # noqa: S324 - a file name
        sizes: list[int] = []
        with path.open("wb") as fh:
            while chunk := _read_full(source, self.part_size):
                fh.write(chunk)
                sizes.append(len(chunk))
                if len(chunk) < self.part_size:
                    break
        self.part_sizes[key] = sizes
        with path.open("rb") as fh:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        with self._lock:
            self.objects[key] = mapped  # type: ignore[assignment] - a buffer read by range
            self.modified[key] = 0.0
        return sum(sizes)


def _read_full(source: Readable, size: int) -> bytes:
    out = bytearray()
    while len(out) < size and (got := source.read(size - len(out))):
        out += got
    return bytes(out)


def _md5_of_file(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - the index's content check
    with path.open("rb") as fh:
        while chunk := fh.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _uids(head: bytes) -> tuple[str, str, str]:
    ds = dcmread(io.BytesIO(head), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def _data_set_start(head: bytes) -> int:
    fp = io.BytesIO(head)
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    return fp.tell()


def _traced(call: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def _frame(client: TestClient, uids: tuple[str, str, str], n: int) -> bytes:
    study, series, sop = uids
    r = client.get(f"/studies/{study}/series/{series}/instances/{sop}/frames/{n}", headers={"Accept": STORED})
    assert r.status_code == 200, r.text
    return r.content


def _memory_session(blobs: MemoryBlobStore, files: int = 1) -> tuple[UploadPorts, str]:
    ports = UploadPorts(MemoryUploadSessions(), MemoryUploadTargets(blobs))
    body = json.dumps({"count": files}).encode()
    answer = uploads.create_session(
        body, ports=ports, settings=Settings(bucket_name="b", table_name="t"), base_url="http://x"
    )
    return ports, answer["session"]


def test_a_100_mb_multiframe_upload_is_indexed_in_one_streamed_pass_in_bounded_memory(tmp_path):
    path = tmp_path / "mf.dcm"
    frames = fd.large_native_file(str(path), 100 * MiB, rows=512, cols=512)
    data = path.read_bytes()
    blobs, index = LikeS3(), MemoryIndex()
    ports, session = _memory_session(blobs)
    key = f"uploads/{session}/1.dcm"
    blobs.put(key, data)  # what the client's PUT to the presigned URL does

    outcome, peak = _traced(lambda: index_upload(key, sessions=ports.sessions, index=index, blobs=blobs))

    assert outcome is UploadOutcome.STORED
    print(f"index_upload of {len(data) >> 20} MB: peak {peak / MiB:.1f} MiB")
    assert peak < 64 * MiB, f"indexing a {len(data) >> 20} MB upload allocated {peak >> 20} MB"
    uids = _uids(data[:65536])
    (inst,) = index.list_instances(*uids)
    assert inst.md5 == hashlib.md5(data).hexdigest()  # noqa: S324
    assert inst.frame_table is not None and inst.frame_table.count == frames
    assert not blobs.exists(key)  # the version read was removed once indexed
    client = TestClient(create_app(Settings(bucket_name="b", table_name="t"), index=index, blobs=blobs))
    size, start = 512 * 512 * 2, len(data) - frames * 512 * 512 * 2
    for n in (1, frames // 2, frames):
        assert _frame(client, uids, n) == data[start + (n - 1) * size : start + n * size]
    status = uploads.session_status(session, ports=ports, base_url="http://x")
    assert status.status == 200 and [s.sop_uid for s in status.outcome.stored] == [uids[2]]


def test_the_claim_token_is_the_etag_of_the_version_read(aws):
    """Same upload again (same ETag): settled, nothing changes; other bytes: refused. A multipart
    upload's ETag (MD5 of the parts' MD5s) is the same for the same bytes in the same parts."""
    sessions = DynamoDbUploadSessions(aws.dynamodb, aws.table)
    index, blobs = DynamoDbIndex(aws.dynamodb, aws.table), S3BlobStore(aws.s3, aws.bucket)
    ports = UploadPorts(sessions, MemoryUploadTargets(blobs))
    answer = uploads.create_session(
        b'{"count": 1}', ports=ports, settings=Settings(bucket_name="b", table_name="t"), base_url="http://x"
    )
    key = f"uploads/{answer['session']}/1.dcm"
    inst = make_instance("ct")
    put = aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=inst.data)
    assert index_upload(key, sessions=sessions, index=index, blobs=blobs) is UploadOutcome.STORED
    (outcome,) = sessions.outcomes(answer["session"])
    assert outcome.token == content_token(put["ETag"]) == hashlib.md5(inst.data).hexdigest()  # noqa: S324
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=inst.data)
    assert index_upload(key, sessions=sessions, index=index, blobs=blobs) is UploadOutcome.SETTLED
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=make_instance("mr").data)
    assert index_upload(key, sessions=sessions, index=index, blobs=blobs) is UploadOutcome.REFUSED
    assert content_token('"0a1b-3"') == "0a1b-3"


def _coerced_file(tmp_path: Path, size: int) -> tuple[Path, int]:
    """A native multi-frame whose file meta names another (shorter) SOP Instance UID than its data set."""
    path = tmp_path / "coerced.dcm"
    frames = fd.large_native_file(str(path), size, rows=512, cols=512, meta={"MediaStorageSOPInstanceUID": "1.2.3"})
    return path, frames


def test_a_large_drop_with_inconsistent_file_meta_is_stored_corrected_as_a_stream(tmp_path, caplog):
    path, frames = _coerced_file(tmp_path, 80 * MiB)
    data = path.read_bytes()
    blobs, index = Spooled(tmp_path), MemoryIndex()
    blobs.put("incoming/coerced.dcm", data)
    caplog.set_level(logging.WARNING, logger="dicomweb.drop")

    outcome, peak = _traced(lambda: index_dropped("incoming/coerced.dcm", index=index, blobs=blobs))

    assert outcome == (DropOutcome.INDEXED, None)
    print(f"index_dropped with file meta rewrite of {len(data) >> 20} MB: peak {peak / MiB:.1f} MiB")
    assert peak < 64 * MiB, f"correcting a {len(data) >> 20} MB drop allocated {peak >> 20} MB"
    assert [r.warning_reasons for r in caplog.records if hasattr(r, "warning_reasons")] == [["B000"]]
    uids = _uids(data[:65536])
    (inst,) = index.list_instances(*uids)
    stored_key = inst.object_key
    assert blobs.part_sizes[stored_key][:-1] == [5 * MiB] * (len(blobs.part_sizes[stored_key]) - 1)
    stored = bytes(blobs.objects[stored_key])
    corrected = dcmread(io.BytesIO(stored[:65536]), stop_before_pixels=True)
    assert corrected.file_meta.MediaStorageSOPInstanceUID == uids[2]
    start, new_start = _data_set_start(data[:65536]), _data_set_start(stored[:65536])
    assert new_start != start  # the corrected group is longer: every offset moved
    assert stored[new_start:] == data[start:]  # byte for byte after the file meta group
    assert stored[:128] == data[:128]  # the preamble kept
    assert inst.md5 == hashlib.md5(stored).hexdigest() and inst.size == len(stored)  # noqa: S324
    del stored
    client = TestClient(create_app(Settings(bucket_name="b", table_name="t"), index=index, blobs=blobs))
    size, pixels = 512 * 512 * 2, len(data) - frames * 512 * 512 * 2
    for n in (1, frames):
        assert _frame(client, uids, n) == data[pixels + (n - 1) * size : pixels + n * size]
    assert not blobs.exists("incoming/coerced.dcm")


def test_an_upload_with_inconsistent_file_meta_goes_to_s3_in_parts_and_the_session_says_0xb000(aws, tmp_path):
    """The same on S3 (moto): the corrected object is a multipart upload of 5 MiB parts, its index
    MD5 is the stored object's, and the session's final answer carries the warning."""
    path, frames = _coerced_file(tmp_path, 12 * MiB)
    data = path.read_bytes()
    sessions = DynamoDbUploadSessions(aws.dynamodb, aws.table)
    index, blobs = DynamoDbIndex(aws.dynamodb, aws.table), S3BlobStore(aws.s3, aws.bucket, stream_part=5 * MiB)
    ports = UploadPorts(sessions, MemoryUploadTargets(blobs))
    answer = uploads.create_session(
        b'{"count": 1}', ports=ports, settings=Settings(bucket_name="b", table_name="t"), base_url="http://x"
    )
    key = f"uploads/{answer['session']}/1.dcm"
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=data)
    calls: list[str] = []
    aws.s3.meta.events.register("before-call.s3.*", lambda event_name, **_: calls.append(event_name.split(".")[-1]))
    try:
        assert index_upload(key, sessions=sessions, index=index, blobs=blobs) is UploadOutcome.STORED
    finally:
        aws.s3.meta.events.unregister("before-call.s3.*")
    assert calls.count("UploadPart") == 3 and calls.count("CompleteMultipartUpload") == 1
    assert "PutObject" not in calls and "CopyObject" not in calls
    uids = _uids(data[:65536])
    (inst,) = index.list_instances(*uids)
    stored = blobs.get(inst.object_key)
    assert inst.md5 == hashlib.md5(stored).hexdigest()  # noqa: S324
    assert stored[_data_set_start(stored[:65536]) :] == data[_data_set_start(data[:65536]) :]
    status = uploads.session_status(answer["session"], ports=ports, base_url="http://x")
    assert status.status == 202 and not status.pending and not status.outcome.failed  # stored with a warning
    ((reason, message),) = status.outcome.stored[0].warnings
    assert reason == 0xB000 and message.startswith("file 1: coercion of data elements: MediaStorageSOPInstanceUID")
    assert list(blobs.list("uploads/")) == []


class BusyIndex:
    """The real index, except that writing an instance is throttled past the retries."""

    def __init__(self, index: Any, error: StorageError) -> None:
        self._index, self.error, self.calls = index, error, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def add_instance(self, record: Any) -> Any:
        self.calls += 1
        raise self.error


@pytest.mark.parametrize(
    ("error", "reason", "why"),
    [
        (ServiceUnavailable("DynamoDB is throttling", retry_after=1), 0xA700, "storage was busy or unavailable"),
        (StorageError("the index is unavailable"), 0x0110, "a storage error"),
    ],
)
def test_a_file_whose_indexing_fails_on_every_attempt_ends_the_session_failed(error, reason, why):
    blobs, index = MemoryBlobStore(), MemoryIndex()
    ports, session = _memory_session(blobs, files=2)
    good, bad = make_instance("ct"), make_instance("mr")
    blobs.put(f"uploads/{session}/1.dcm", good.data)
    blobs.put(f"uploads/{session}/2.dcm", bad.data)
    assert index_upload(f"uploads/{session}/1.dcm", sessions=ports.sessions, index=index, blobs=blobs).value == "stored"
    busy = BusyIndex(index, error)
    for attempt in (1, 2):  # the event and its first retry: the file stays pending
        with pytest.raises(StorageFailed):
            index_upload(f"uploads/{session}/2.dcm", sessions=ports.sessions, index=busy, blobs=blobs, attempts=3)
        pending = uploads.session_status(session, ports=ports, base_url="http://x")
        assert pending.status == 202 and pending.pending == [2], attempt
    with pytest.raises(StorageFailed):  # the last retry fails too (and still fails the invocation)
        index_upload(f"uploads/{session}/2.dcm", sessions=ports.sessions, index=busy, blobs=blobs, attempts=3)
    assert busy.calls == 3
    final = uploads.session_status(session, ports=ports, base_url="http://x")
    assert final.status == 202 and final.pending == []  # final: one stored, one failed
    (failed,) = final.outcome.failed
    assert failed.reason == reason and failed.sop_uid == bad.sop_uid
    assert (
        failed.message
        == f"file 2: indexing failed on each of 3 attempts ({why}); upload the file again in a new session"
    )
    # A delivery after that (S3 may deliver an event twice) changes nothing.
    assert (
        index_upload(f"uploads/{session}/2.dcm", sessions=ports.sessions, index=index, blobs=blobs).value == "settled"
    )
    assert uploads.session_status(session, ports=ports, base_url="http://x").outcome.failed[0].reason == reason


def test_the_attempts_the_indexer_counts_are_the_functions_retries_plus_one():
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # noqa: S506 - SafeLoader
    indexer = template["Resources"]["IndexerFunction"]["Properties"]
    retries = indexer["EventInvokeConfig"]["MaximumRetryAttempts"]
    attempts = int(indexer["Environment"]["Variables"]["INDEXER_ATTEMPTS"])
    assert attempts == retries + 1
    assert Settings.from_env({"BUCKET_NAME": "b", "TABLE_NAME": "t", "INDEXER_ATTEMPTS": "3"}).indexer_attempts == 3


def test_the_indexer_handler_gives_up_on_the_attempt_its_setting_names(aws, lambda_context, monkeypatch):
    """Through the Lambda handler (moto): INDEXER_ATTEMPTS=2, DynamoDB throttled on every instance
    write. Each invocation fails (so Lambda retries it and finally sends it to the OnFailure
    destination), and the second one records the file failed with 0xA700."""
    from dicomweb_server.aws.s3_events import s3_handler
    from tests.unit.test_poison_drops import _event

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    sessions = DynamoDbUploadSessions(aws.dynamodb, aws.table)
    ports = UploadPorts(sessions, MemoryUploadTargets(S3BlobStore(aws.s3, aws.bucket)))
    answer = uploads.create_session(
        b'{"count": 1}', ports=ports, settings=Settings(bucket_name="b", table_name="t"), base_url="http://x"
    )
    key = f"uploads/{answer['session']}/1.dcm"
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=make_instance("ct").data)

    def throttled(self: Any, record: Any) -> Any:
        raise ServiceUnavailable("DynamoDB is throttling", retry_after=1)

    monkeypatch.setattr(DynamoDbIndex, "add_instance", throttled)
    settings = Settings.from_env({"BUCKET_NAME": aws.bucket, "TABLE_NAME": aws.table, "INDEXER_ATTEMPTS": "2"})
    handler = s3_handler(settings)
    with pytest.raises(StorageFailed):
        handler(_event(aws, [key]), lambda_context)
    assert uploads.session_status(answer["session"], ports=ports, base_url="http://x").pending == [1]
    with pytest.raises(StorageFailed):
        handler(_event(aws, [key]), lambda_context)
    final = uploads.session_status(answer["session"], ports=ports, base_url="http://x")
    assert final.status == 409 and not final.pending
    assert [f.reason for f in final.outcome.failed] == [0xA700]
    # The upload object stays (the dead-lettered event names it; the lifecycle removes it after 8 days).
    assert [k for k, _ in S3BlobStore(aws.s3, aws.bucket).list("uploads/")] == [key]


class BrokenReads(MemoryBlobStore):
    """An upload whose streamed GET breaks after its first KiB (S3 reset the connection)."""

    def open(self, key: str, **kwargs: Any) -> OpenedBlob:
        opened = super().open(key, **kwargs)
        if not key.startswith("uploads/"):
            return opened
        inner = opened.body

        class Broken:
            def __init__(self) -> None:
                self.sent = 0

            def read(self, size: int = -1, /) -> bytes:
                if self.sent >= 1024:
                    raise ServiceUnavailable("S3 read timed out", retry_after=1)
                got = inner.read(min(size, 1024) if size >= 0 else 1024)
                self.sent += len(got)
                return got

        return OpenedBlob(Broken(), opened.size, opened.version, opened.etag)


def test_a_file_whose_upload_cannot_be_read_on_the_last_attempt_ends_the_session_failed():
    blobs, index = BrokenReads(), MemoryIndex()
    ports, session = _memory_session(blobs, files=1)
    blobs.put(f"uploads/{session}/1.dcm", make_instance("ct").data)
    for attempt in (1, 2, 3):
        with pytest.raises(ServiceUnavailable):
            index_upload(f"uploads/{session}/1.dcm", sessions=ports.sessions, index=index, blobs=blobs, attempts=3)
        status = uploads.session_status(session, ports=ports, base_url="http://x")
        assert status.pending == ([1] if attempt < 3 else []), attempt
    (failed,) = status.outcome.failed
    assert failed.reason == 0xA700 and "storage was busy or unavailable" in failed.message


def test_giving_up_never_replaces_what_another_delivery_of_the_upload_recorded():
    """S3 may deliver an event twice: one delivery stores the file while the other, on its last
    attempt, fails; the session keeps the stored outcome."""
    blobs, index = MemoryBlobStore(), MemoryIndex()
    ports, session = _memory_session(blobs, files=1)
    inst = make_instance("ct")
    key = f"uploads/{session}/1.dcm"
    blobs.put(key, inst.data)
    token = content_token(blobs.open(key).etag)
    ports.sessions.claim(session, 1, token, 2**31)  # the failing delivery's earlier attempts
    ports.sessions.claim(session, 1, token, 2**31)

    class StoresMeanwhile(BusyIndex):
        def add_instance(self, record: Any) -> Any:  # the other delivery stores and settles first
            assert index_upload(key, sessions=ports.sessions, index=index, blobs=MemoryBlobStore()) is not None
            ports.sessions.settle(
                uploads.UploadedFile(
                    1, "stored", token, inst.sop_class_uid, inst.sop_uid, inst.study_uid, inst.series_uid
                ),
                session,
                2**31,
            )
            raise self.error

    with pytest.raises(StorageFailed):
        index_upload(key, sessions=ports.sessions, index=StoresMeanwhile(index, StorageError("x")), blobs=blobs)
    status = uploads.session_status(session, ports=ports, base_url="http://x")
    assert not status.outcome.failed and [s.sop_uid for s in status.outcome.stored] == [inst.sop_uid]


@pytest.mark.parametrize("kind", ["memory", "dynamodb"])
def test_a_pending_only_outcome_is_recorded_only_while_the_file_is_indexing(kind, request):
    if kind == "memory":
        sessions: Any = MemoryUploadSessions()
    else:
        aws = request.getfixturevalue("aws")
        sessions = DynamoDbUploadSessions(aws.dynamodb, aws.table)
    failed = uploads.UploadedFile(1, "failed", "etag-1", reason=0xA700, message="gave up")
    stored = uploads.UploadedFile(1, "stored", "etag-1", "1.2", "1.2.3", "1.2.3.4", "1.2.3.4.5")
    sessions.claim("s1", 1, "etag-1", 2**31)
    assert sessions.settle(failed, "s1", 2**31, pending_only=True)  # still indexing: recorded
    sessions.claim("s2", 1, "etag-1", 2**31)
    assert sessions.settle(stored, "s2", 2**31)
    assert not sessions.settle(failed, "s2", 2**31, pending_only=True)  # stored already: kept
    assert [o.state for o in sessions.outcomes("s2")] == ["stored"]
