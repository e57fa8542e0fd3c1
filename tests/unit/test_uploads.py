"""Upload sessions (store/uploads.py, web/upload_routes.py) on S3 and DynamoDB (moto): presigned
PUT and multipart URLs that plain ``requests`` uploads to, the indexer's conditional per-file
outcomes, the status answer, and every kind of bad input. moto runs no S3 notifications, so
``deliver`` plays the indexer's part for each object under ``uploads/``."""

from __future__ import annotations

import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import numpy as np
import pytest
import requests
from botocore.config import Config
from pydicom import dcmread
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.blobs.uploads import MemoryUploadTargets, S3UploadTargets
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.index.uploads import DynamoDbUploadSessions, MemoryUploadSessions
from dicomweb_server.settings import Settings
from dicomweb_server.store import uploads
from dicomweb_server.store.ingest import StorageFailed
from dicomweb_server.store.uploads import UploadOutcome, UploadPorts, index_upload
from dicomweb_server.web import create_app
from tests.corpus import list_keys, make_instance, stow_body

from .conftest import Aws
from .doubles import FailingIndex

MiB = 1024 * 1024
REFERENCED, FAILED, REASON, SOP = "00081199", "00081198", "00081197", "00081155"


@dataclass
class Stack:
    aws: Aws
    settings: Settings
    ports: UploadPorts
    index: DynamoDbIndex
    blobs: S3BlobStore
    client: TestClient

    def session(self, *sizes: int, **extra: Any) -> dict[str, Any]:
        r = self.client.post(
            "/uploads", json={"files": [{"name": f"f{i}", "size": s} for i, s in enumerate(sizes)], **extra}
        )
        assert r.status_code == 201, r.text
        return r.json()

    def deliver(self) -> list[UploadOutcome]:
        """What the S3 events would do: index every object under uploads/."""
        return [
            index_upload(key, sessions=self.ports.sessions, index=self.index, blobs=self.blobs)
            for key in list_keys(self.aws.s3, self.aws.bucket, "uploads/")
        ]

    def status(self, session: dict[str, Any], **headers: str) -> requests.Response:
        return self.client.get(f"/uploads/{session['session']}", headers=headers)


@pytest.fixture
def stack(aws: Aws) -> Stack:
    settings = Settings(bucket_name=aws.bucket, table_name=aws.table, upload_part_bytes=5 * MiB, upload_max_files=20)
    presign = boto3.client("s3", region_name=aws.s3.meta.region_name, config=Config(signature_version="s3v4"))
    ports = UploadPorts(DynamoDbUploadSessions(aws.dynamodb, aws.table), S3UploadTargets(aws.s3, presign, aws.bucket))
    index, blobs = DynamoDbIndex(aws.dynamodb, aws.table), S3BlobStore(aws.s3, aws.bucket)
    client = TestClient(create_app(settings, index=index, blobs=blobs, uploads=ports))
    return Stack(aws, settings, ports, index, blobs, client)


def upload(entry: dict[str, Any], data: bytes, stack: Stack | None = None) -> None:
    """What a client does with one file of the session answer: PUT it, or its parts then complete."""
    if entry["method"] == "PUT":
        assert requests.put(entry["url"], data=data, timeout=30).status_code == 200
        return
    size = entry["part_size"]
    for n, url in enumerate(entry["parts"]):
        assert requests.put(url, data=data[n * size : (n + 1) * size], timeout=30).status_code == 200
    assert stack is not None
    done = stack.client.post(urlsplit(entry["complete"]).path)
    assert done.status_code == 202, done.text


def indexed(stack: Stack, sop_uid: str) -> bool:
    found = stack.client.get("/instances", params={"SOPInstanceUID": sop_uid})
    assert found.status_code in (200, 204)
    return found.status_code == 200 and bool(found.json())


def big_instance(frames: int, **attrs: Any) -> Any:
    pixels = np.random.default_rng(frames).integers(0, 4096, (frames, 256, 256), dtype=np.uint16)
    return make_instance(
        "ct", Rows=256, Columns=256, BitsAllocated=16, BitsStored=16, HighBit=15, SamplesPerPixel=1,
        NumberOfFrames=str(frames), PixelData=pixels.tobytes(), **attrs,
    )  # fmt: skip


def test_small_files_get_one_presigned_put_and_large_ones_a_multipart_upload(stack):
    answer = stack.session(1000, 12 * MiB)
    assert answer["status"].endswith(f"/uploads/{answer['session']}")
    small, large = answer["files"]
    assert small["method"] == "PUT" and small["name"] == "f0" and small["file"] == 1
    url = urlsplit(small["url"])
    assert url.path.endswith(f"/uploads/{answer['session']}/1.dcm")
    assert parse_qs(url.query)["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]  # SigV4, which emulators check
    assert large["method"] == "multipart" and large["part_size"] == 5 * MiB and len(large["parts"]) == 3
    assert [parse_qs(urlsplit(u).query)["partNumber"] for u in large["parts"]] == [["1"], ["2"], ["3"]]
    assert large["complete"].endswith(f"/uploads/{answer['session']}/files/2/complete")


def test_files_uploaded_straight_to_s3_are_indexed_searchable_and_retrievable(stack):
    pid = "UPLOAD-1"
    small, large = make_instance("ct", PatientID=pid), big_instance(100, PatientID=pid)
    assert len(large.data) > 12 * MiB
    answer = stack.session(len(small.data), len(large.data))
    upload(answer["files"][0], small.data)
    upload(answer["files"][1], large.data, stack)

    pending = stack.status(answer)
    assert pending.status_code == 202 and pending.headers["Retry-After"] == "2"
    assert "upload session pending: 2 of 2 files" in pending.headers["Warning"]

    assert stack.deliver() == [UploadOutcome.STORED, UploadOutcome.STORED]
    final = stack.status(answer, accept="application/dicom+json")
    assert final.status_code == 200 and "Retry-After" not in final.headers
    assert final.headers["content-type"] == "application/dicom+json"
    refs = final.json()[REFERENCED]["Value"]
    assert sorted(r[SOP]["Value"][0] for r in refs) == sorted([small.sop_uid, large.sop_uid])
    assert list_keys(stack.aws.s3, stack.aws.bucket, "uploads/") == []  # upload objects removed

    found = stack.client.get("/instances", params={"PatientID": pid})
    assert sorted(i["00080018"]["Value"][0] for i in found.json()) == sorted([small.sop_uid, large.sop_uid])
    path = f"/studies/{large.study_uid}/series/{large.series_uid}/instances/{large.sop_uid}"
    frame = stack.client.get(
        path + "/frames/57", headers={"accept": "multipart/related; type=application/octet-stream"}
    )
    assert frame.status_code == 200
    frame_bytes = 256 * 256 * 2
    expected = dcmread(io.BytesIO(large.data)).PixelData[56 * frame_bytes : 57 * frame_bytes]
    assert expected in frame.content


def test_the_final_answer_is_xml_when_asked_for(stack):
    inst = make_instance("mr")
    answer = stack.session(len(inst.data))
    upload(answer["files"][0], inst.data)
    stack.deliver()
    final = stack.status(answer, accept="application/dicom+xml")
    assert final.status_code == 200 and final.headers["content-type"].startswith("application/dicom+xml")
    assert inst.sop_uid.encode() in final.content and b"NativeDicomModel" in final.content


def test_bad_files_are_reported_with_reasons_and_the_valid_one_is_stored(stack):
    good, cut = make_instance("ct"), make_instance("mr")
    files = [good.data, b"not a DICOM file at all, just text " * 20, cut.data[:-500], b""]
    answer = stack.session(*[max(len(f), 1) for f in files])
    for entry, data in zip(answer["files"], files, strict=True):
        upload(entry, data)
    stack.deliver()
    final = stack.status(answer)
    assert final.status_code == 202 and "Retry-After" not in final.headers  # final, partly failed
    assert [r[SOP]["Value"][0] for r in final.json()[REFERENCED]["Value"]] == [good.sop_uid]
    failed = final.json()[FAILED]["Value"]
    assert [f[REASON]["Value"][0] for f in failed] == [0xC000, 0xC000, 0xC000]
    warning = final.headers["Warning"]
    assert "file 2: not a DICOM Part-10 file" in warning and "file 3: DICOM file is truncated" in warning
    assert "file 4: not a DICOM Part-10 file (0 bytes)" in warning
    stored = list_keys(stack.aws.s3, stack.aws.bucket, "studies/")
    assert len(stored) == 1 and good.sop_uid in stored[0]  # nothing of the bad files
    assert indexed(stack, good.sop_uid) and not indexed(stack, cut.sop_uid)


def test_a_url_used_twice_stores_the_first_upload_only(stack):
    first, other = make_instance("ct"), make_instance("ct")
    answer = stack.session(len(first.data))
    upload(answer["files"][0], first.data)
    assert stack.deliver() == [UploadOutcome.STORED]
    upload(answer["files"][0], first.data)  # the same bytes again: a harmless repeat
    assert stack.deliver() == [UploadOutcome.SETTLED]
    assert stack.status(answer).status_code == 200
    upload(answer["files"][0], other.data)  # other bytes to the same URL: refused and reported
    assert stack.deliver() == [UploadOutcome.REFUSED]
    final = stack.status(answer)
    assert final.status_code == 202
    assert [r[SOP]["Value"][0] for r in final.json()[REFERENCED]["Value"]] == [first.sop_uid]
    assert "file 1 (a refused upload): uploaded again with other content" in final.headers["Warning"]
    assert indexed(stack, first.sop_uid) and not indexed(stack, other.sop_uid)
    assert list_keys(stack.aws.s3, stack.aws.bucket, "uploads/") == []


def test_a_file_beyond_the_sessions_count_is_refused_not_stored(stack):
    inst, extra = make_instance("ct"), make_instance("mr")
    answer = stack.session(len(inst.data))
    upload(answer["files"][0], inst.data)
    # A presigned URL names its key: a third file can only arrive with bucket credentials.
    stack.blobs.put(f"uploads/{answer['session']}/2.dcm", extra.data)
    assert sorted(o.value for o in stack.deliver()) == ["refused", "stored"]
    final = stack.status(answer)
    assert final.status_code == 202
    assert "file 2 (a refused upload): the session was created for 1 files" in final.headers["Warning"]
    assert indexed(stack, inst.sop_uid) and not indexed(stack, extra.sop_uid)


def test_files_of_one_session_finish_in_parallel():
    """Each file's outcome is its own conditional write: parallel indexers lose none. (On the
    in-memory twins: moto is not thread-safe; tests/integration runs parallel Lambdas.)"""
    blobs, index = MemoryBlobStore(), MemoryIndex()
    ports = UploadPorts(MemoryUploadSessions(), MemoryUploadTargets(blobs))
    settings = Settings(bucket_name="b", table_name="t")
    insts = [make_instance("ct", PatientID="PAR", StudyInstanceUID="1.2.3.4") for _ in range(16)]
    body = json.dumps({"files": [{"size": len(i.data)} for i in insts]}).encode()
    answer = uploads.create_session(body, ports=ports, settings=settings, base_url="http://x")
    for n, inst in enumerate(insts, start=1):
        blobs.put(f"uploads/{answer['session']}/{n}.dcm", inst.data)
    keys = [k for k in blobs.objects if k.startswith("uploads/")]

    def one(key: str) -> UploadOutcome:
        return index_upload(key, sessions=ports.sessions, index=index, blobs=blobs)

    with ThreadPoolExecutor(8) as pool:  # each event twice, as S3 may deliver it
        assert set(pool.map(one, keys * 2)) <= {UploadOutcome.STORED, UploadOutcome.SETTLED, UploadOutcome.GONE}
    study = index.get_study("1.2.3.4")
    assert study is not None and study.instance_count == 16
    status = uploads.session_status(answer["session"], ports=ports, base_url="http://x")
    assert status.status == 200 and len(status.outcome.stored) == 16
    assert sorted(s.sop_uid for s in status.outcome.stored) == sorted(i.sop_uid for i in insts)


def test_a_storage_failure_leaves_the_upload_for_the_retried_event(stack):
    inst = make_instance("ct")
    answer = stack.session(len(inst.data))
    upload(answer["files"][0], inst.data)
    (key,) = list_keys(stack.aws.s3, stack.aws.bucket, "uploads/")
    with pytest.raises(StorageFailed):
        index_upload(key, sessions=stack.ports.sessions, index=FailingIndex(stack.index), blobs=stack.blobs)
    assert list_keys(stack.aws.s3, stack.aws.bucket, "uploads/") == [key]
    assert stack.status(answer).status_code == 202  # still pending, not failed
    assert stack.deliver() == [UploadOutcome.STORED]  # the retry finishes it
    assert stack.status(answer).status_code == 200


def test_multipart_complete_refuses_missing_parts_a_second_complete_and_single_puts(stack):
    big = big_instance(100)
    answer = stack.session(len(big.data), 10)
    entry = answer["files"][0]
    complete = urlsplit(entry["complete"]).path
    requests.put(entry["parts"][0], data=big.data[: 5 * MiB], timeout=30)
    missing = stack.client.post(complete)
    assert (
        missing.status_code == 400 and "2 of its 3 parts are not uploaded yet (parts 2, 3)" in missing.json()["message"]
    )
    upload(entry, big.data, stack)
    again = stack.client.post(complete)
    assert again.status_code == 409 and "completed already" in again.json()["message"]
    single = stack.client.post(f"/uploads/{answer['session']}/files/2/complete")
    assert single.status_code == 400 and "one PUT" in single.json()["message"]
    assert stack.client.post(f"/uploads/{answer['session']}/files/3/complete").status_code == 404
    assert stack.client.post(f"/uploads/{answer['session']}/files/x/complete").status_code == 404


def test_an_unknown_session_is_a_404(stack):
    for sid in ("0" * 32, "not-a-session", "A" * 32):
        r = stack.client.get(f"/uploads/{sid}")
        assert r.status_code == 404 and "no upload session" in r.json()["message"], sid
    assert stack.client.post(f"/uploads/{'0' * 32}/files/1/complete").status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"{}", 'give either "files"'),
        (b'{"files": [], "count": 2}', 'give either "files"'),
        (b'{"files": []}', "non-empty list"),
        (b'{"files": [{"size": 0}]}', "file 1: a file of 0 bytes"),
        (b'{"files": [{"size": 10}, {"size": -3}]}', "file 2: a file of -3 bytes"),
        (b'{"files": [{"size": "10"}]}', '"size" (bytes) must be an integer'),
        (b'{"files": [{"size": true}]}', '"size" (bytes) must be an integer'),
        (b'{"files": [7]}', "file 1: expected an object"),
        (b'{"files": [{"size": 5, "colour": "red"}]}', "unknown fields colour"),
        (b'{"count": 0}', '"count" must be a positive integer'),
        (b'{"count": 21}', "21 files is more than one upload session takes (20)"),
        (b'{"count": 1, "expires_in": 999999}', '"expires_in" must be a number of seconds from 1 to 3600'),
        (b'{"files": [{"size": 6000000000000}]}', "more than S3 stores in one object"),
    ],
)
def test_a_malformed_session_request_is_a_400_that_says_why(stack, body, message):
    r = stack.client.post("/uploads", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and message in r.json()["message"], r.text
    assert list_keys(stack.aws.s3, stack.aws.bucket) == []


def test_a_session_request_that_is_not_json_is_a_415(stack):
    r = stack.client.post("/uploads", content=b"files=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415


def test_more_urls_than_one_answer_carries_is_a_400(stack):
    r = stack.client.post("/uploads", json={"files": [{"size": 5 * MiB * 2001}]})
    assert r.status_code == 400 and "2001 upload URLs" in r.json()["message"]


def test_after_expiry_unuploaded_files_fail_and_a_late_upload_is_refused(stack):
    inst, late = make_instance("ct"), make_instance("mr")
    now = [time.time()]
    answer = uploads.create_session(
        b'{"files": [{"size": 1000}, {"size": 1000}], "expires_in": 60}',
        ports=stack.ports,
        settings=stack.settings,
        base_url="http://x",
        clock=lambda: now[0],
    )
    upload(answer["files"][0], inst.data)
    stack.deliver()
    now[0] += 61
    status = uploads.session_status(answer["session"], ports=stack.ports, base_url="http://x", clock=lambda: now[0])
    assert status.status == 202 and not status.pending  # final: one stored, one never uploaded
    assert [f.message for f in status.outcome.failed] == ["file 2: not uploaded before the session expired"]
    stack.blobs.put(f"uploads/{answer['session']}/2.dcm", late.data)  # an upload after that answer
    assert stack.deliver() == [UploadOutcome.REFUSED]
    assert indexed(stack, inst.sop_uid) and not indexed(stack, late.sop_uid)
    with pytest.raises(uploads.Gone, match="expired at"):
        uploads.complete_file(answer["session"], 1, ports=stack.ports, clock=lambda: now[0])
    now[0] += uploads.KEEP_SECONDS
    with pytest.raises(uploads.Gone, match="no longer kept"):
        uploads.session_status(answer["session"], ports=stack.ports, base_url="http://x", clock=lambda: now[0])


def test_the_stow_413_points_at_the_upload_session(stack):
    settings = Settings(bucket_name=stack.aws.bucket, table_name=stack.aws.table, max_request_bytes=1000)
    client = TestClient(create_app(settings, index=stack.index, blobs=stack.blobs, uploads=stack.ports))
    body, ctype = stow_body([make_instance("ct")])
    r = client.post("/studies", content=body, headers={"content-type": ctype})
    assert r.status_code == 413
    assert "upload session: POST http://testserver/uploads with" in r.json()["message"]


class _Http:
    """A requests-like session: the API through the app, presigned URLs to (moto's) S3."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def _for(self, url: str) -> Any:
        return self.client if url.startswith("http://testserver") else requests

    def post(self, url: str, **kwargs: Any) -> Any:
        return self._for(url).post(url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self._for(url).get(url, **kwargs)

    def put(self, url: str, data: bytes, **kwargs: Any) -> Any:
        return requests.put(url, data=data, **kwargs)


def test_dicomweb_import_sends_files_too_large_for_one_request_through_a_session(stack, tmp_path):
    from dicomweb_server.transfer import import_files

    small, big = make_instance("mr", PatientID="IMPORT-UP"), big_instance(100, PatientID="IMPORT-UP")
    (tmp_path / "small.dcm").write_bytes(small.data)
    (tmp_path / "big.dcm").write_bytes(big.data)  # 13 MB: a multipart upload with 5 MiB parts
    uploads.RETRY_AFTER_SECONDS, retry = 0, uploads.RETRY_AFTER_SECONDS
    try:
        summary = _import_in_background(stack, import_files, tmp_path)
    finally:
        uploads.RETRY_AFTER_SECONDS = retry
    assert (summary.stored, summary.uploaded, summary.failed) == (1, 1, [])
    assert indexed(stack, small.sop_uid) and indexed(stack, big.sop_uid)


def _import_in_background(stack: Stack, import_files: Any, folder: Any) -> Any:
    """Run the import while this thread plays the indexer (moto sends no S3 events)."""
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            import_files, [folder], url="http://testserver", headers={}, max_request_bytes=200_000,
            http=_Http(stack.client),
        )  # fmt: skip
        while not running.done():
            stack.deliver()
            time.sleep(0.2)
        return running.result()
