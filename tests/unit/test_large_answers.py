"""Answers of any size: every delivery of the size policy (inline, streamed, redirected, refused)
through the in-process app with tiny limits, and the streamed body's assembly (byte-exact framing,
objects read concurrently and written in order, bounded read-ahead, big objects in chunks)."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from starlette.testclient import TestClient

from dicomweb_server.blobs.keys import stored_key
from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.errors import PayloadTooLarge, StorageError
from dicomweb_server.formats import multipart
from dicomweb_server.formats.media import DICOM, MediaType
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.ports import BlobNotFound
from dicomweb_server.retrieve import instances as wado
from dicomweb_server.retrieve import size_policy as policy
from dicomweb_server.retrieve import streams
from dicomweb_server.settings import Settings
from dicomweb_server.web import create_app
from tests.corpus import EXPLICIT_VR_LE, list_keys, make_study, read_multipart, stow_body

from .conftest import Backend

MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
#: A syntax every stored Explicit VR Little Endian instance can be transcoded to.
DEFLATED = "1.2.840.10008.1.2.1.99"


def _settings(**limits: Any) -> Settings:
    return Settings(bucket_name="dicomweb-unit-bucket", table_name="t", **limits)


def _load(backend: Any, n: int = 4, sources: tuple[str, ...] = ("ct",)) -> list[Any]:
    """A study of ``n`` instances per series, stored through STOW-RS one by one."""
    study = make_study(sources, instances_per_series=n)
    client = TestClient(create_app(_settings(), index=backend.index, blobs=backend.blobs))
    for inst in study:
        body, ctype = stow_body([inst])
        assert client.post("/studies", content=body, headers={"Content-Type": ctype}).status_code == 200
    return study


def _client(backend: Any, **limits: Any) -> TestClient:
    return TestClient(create_app(_settings(**limits), index=backend.index, blobs=backend.blobs), follow_redirects=False)


def _series_url(inst: Any) -> str:
    return f"/studies/{inst.study_uid}/series/{inst.series_uid}"


def _instance_url(inst: Any) -> str:
    return f"{_series_url(inst)}/instances/{inst.sop_uid}"


# -- the deliveries, through the app --------------------------------------------------------------


def test_a_series_within_the_buffered_limit_is_one_body(backend):
    study = _load(backend)
    r = _client(backend, max_response_bytes=10_000_000).get(_series_url(study[0]), headers={"Accept": MULTIPART_DICOM})
    assert r.status_code == 200
    assert [p for _, p in read_multipart(r.content, r.headers["content-type"])] == [i.data for i in study]


def test_a_series_above_the_buffered_limit_streams_part_by_part_with_its_exact_length(backend):
    study = _load(backend, n=6)
    total = sum(len(i.data) for i in study)
    client = _client(backend, max_response_bytes=total // 3, stream_response_bytes=10 * total, retrieve_concurrency=3)
    with client.stream("GET", _series_url(study[0]), headers={"Accept": MULTIPART_DICOM}) as r:
        assert r.status_code == 200
        pieces = list(r.iter_raw())
        length = int(r.headers["content-length"])
        ctype = r.headers["content-type"]
    body = b"".join(pieces)
    assert len(pieces) > len(study)  # written as it was read, not as one body
    assert length == len(body)
    assert [p for _, p in read_multipart(body, ctype)] == [i.data for i in study]  # byte-exact, in order


def test_a_study_above_the_streaming_limit_is_413_naming_its_series(backend):
    study = _load(backend, n=2, sources=("ct", "mr"))
    largest_series = max(sum(len(i.data) for i in study if i.series_uid == s.series_uid) for s in study)
    limit = largest_series + 2_000
    client = _client(backend, max_response_bytes=1_000, stream_response_bytes=limit)
    r = client.get(f"/studies/{study[0].study_uid}", headers={"Accept": MULTIPART_DICOM})
    assert r.status_code == 413
    message = r.json()["message"]
    assert f"streaming limit of {limit} bytes" in message
    assert f"/studies/{study[0].study_uid}/series/" in message
    # and each series fits
    for inst in (study[0], study[2]):
        assert client.get(_series_url(inst), headers={"Accept": MULTIPART_DICOM}).status_code == 200


def test_without_streaming_the_buffered_limit_is_the_limit(backend):
    study = _load(backend, n=3)
    client = _client(backend, max_response_bytes=len(study[0].data) + 500)
    r = client.get(_series_url(study[0]), headers={"Accept": MULTIPART_DICOM})
    assert r.status_code == 413 and "response limit of" in r.json()["message"]
    assert "instances one by one" in r.json()["message"]
    assert client.get(_instance_url(study[0]), headers={"Accept": MULTIPART_DICOM}).status_code == 200


def test_a_transcoded_series_streams_within_its_upper_bound(backend):
    study = _load(backend, n=3)
    client = _client(backend, max_response_bytes=10_000, stream_response_bytes=50_000_000)
    accept = f"{MULTIPART_DICOM}; transfer-syntax={DEFLATED}"
    r = client.get(_series_url(study[0]), headers={"Accept": accept})
    assert r.status_code == 200 and "content-length" not in r.headers  # transcoded: not known beforehand
    parts = read_multipart(r.content, r.headers["content-type"])
    assert [h["content-type"] for h, _ in parts] == [str(MediaType(DICOM, {"transfer-syntax": DEFLATED}))] * 3
    assert [p for _, p in parts] == [wado.transcode(i.data, EXPLICIT_VR_LE, DEFLATED, i.sop_uid) for i in study]


def test_jpeg_frames_of_a_series_stream(backend):
    study = _load(backend, n=3)
    client = _client(backend, max_response_bytes=2_000, stream_response_bytes=50_000_000)
    r = client.get(_series_url(study[0]), headers={"Accept": 'multipart/related; type="image/jpeg"'})
    assert r.status_code == 200
    parts = read_multipart(r.content, r.headers["content-type"])
    assert [h["content-location"].rsplit("/instances/", 1)[1] for h, _ in parts] == [
        f"{i.sop_uid}/frames/1" for i in study
    ]
    assert all(p.startswith(b"\xff\xd8") and p.rstrip(b"\x00").endswith(b"\xff\xd9") for _, p in parts)


def test_a_multipart_answer_is_never_redirected(backend):
    study = _load(backend, n=2)
    client = _client(backend, max_response_bytes=1_000, stream_response_bytes=10_000_000, redirect_policy="always")
    r = client.get(_series_url(study[0]), headers={"Accept": MULTIPART_DICOM})
    assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/related")
    r = client.get(_instance_url(study[0]), headers={"Accept": MULTIPART_DICOM})
    assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/related")


def _fetch(url: str) -> requests.Response:
    """The presigned URL, fetched without any credentials (moto answers it)."""
    return requests.get(url, timeout=10)


@pytest.fixture
def s3v4(aws: Any) -> Backend:
    """The S3 and DynamoDB adapters on moto, with the S3 client signing SigV4 as ``aws.runtime`` builds it."""
    client = boto3.client("s3", region_name=aws.s3.meta.region_name, config=Config(signature_version="s3v4"))
    return Backend(
        "aws",
        DynamoDbIndex(aws.dynamodb, aws.table),
        S3BlobStore(client, aws.bucket),
        lambda: list_keys(aws.s3, aws.bucket),
        DynamoDbIndex(aws.dynamodb, aws.table),
    )


def test_one_instance_above_the_limit_is_a_303_to_a_presigned_url_of_the_object(s3v4):
    backend = s3v4
    study = _load(backend, n=1)
    inst = study[0]
    client = _client(backend, max_response_bytes=1_000, redirect_policy="above-limit", presign_seconds=120)
    r = client.get(_instance_url(inst), headers={"Accept": DICOM})
    assert r.status_code == 303 and not r.content and "content-type" not in r.headers
    assert r.headers["cache-control"] == "no-store"
    url = r.headers["location"]
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["120"]
    assert urlsplit(url).path.endswith(stored_key(backend.index.list_instances(inst.study_uid)[0]))
    got = _fetch(url)
    assert got.status_code == 200 and got.content == inst.data
    assert got.headers["content-type"] == f"application/dicom; transfer-syntax={inst.transfer_syntax_uid}"
    # within the limit, "above-limit" answers inline
    small = _client(backend, max_response_bytes=10_000_000, redirect_policy="above-limit")
    r = small.get(_instance_url(inst), headers={"Accept": DICOM})
    assert r.status_code == 200 and r.content == inst.data


def test_always_redirects_single_part_answers_even_small_ones(s3v4):
    backend = s3v4
    (inst,) = _load(backend, n=1)
    client = _client(backend, redirect_policy="always")
    r = client.get(_instance_url(inst), headers={"Accept": DICOM})
    assert r.status_code == 303 and _fetch(r.headers["location"]).content == inst.data
    # a transcoded instance is not the stored object: it goes through answers/ too
    r = client.get(_instance_url(inst), headers={"Accept": f"{DICOM}; transfer-syntax={DEFLATED}"})
    assert r.status_code == 303 and "/answers/" in urlsplit(r.headers["location"]).path
    assert _fetch(r.headers["location"]).content == wado.transcode(inst.data, EXPLICIT_VR_LE, DEFLATED, inst.sop_uid)


def test_a_store_without_presigned_urls_answers_instead_of_redirecting(memory):
    (inst,) = _load(memory, n=1)
    client = _client(memory, max_response_bytes=1_000, stream_response_bytes=10_000_000, redirect_policy="always")
    r = client.get(_instance_url(inst), headers={"Accept": DICOM})
    assert r.status_code == 200 and r.content == inst.data
    r = _client(memory, max_response_bytes=1_000, redirect_policy="above-limit").get(
        _instance_url(inst), headers={"Accept": DICOM}
    )
    assert r.status_code == 413 and "frames" in r.json()["message"]


def test_one_instance_streams_when_redirects_are_off(backend):
    (inst,) = _load(backend, n=1)
    client = _client(backend, max_response_bytes=1_000, stream_response_bytes=10_000_000)
    r = client.get(_instance_url(inst), headers={"Accept": DICOM})
    assert r.status_code == 200 and r.content == inst.data
    assert int(r.headers["content-length"]) == len(inst.data)


def test_frames_and_metadata_above_the_buffered_limit_are_sent_within_the_streaming_limit(memory):
    (inst,) = _load(memory, n=1)
    tight = _client(memory, max_response_bytes=500)
    roomy = _client(memory, max_response_bytes=500, stream_response_bytes=10_000_000)
    frames = f"{_instance_url(inst)}/frames/1"
    accept = {"Accept": 'multipart/related; type="application/octet-stream"'}
    assert tight.get(frames, headers=accept).status_code == 413
    r = roomy.get(frames, headers=accept)
    assert r.status_code == 200 and len(read_multipart(r.content, r.headers["content-type"])[0][1]) == 128 * 128 * 2
    assert tight.get(f"{_instance_url(inst)}/metadata").status_code == 413
    assert roomy.get(f"{_instance_url(inst)}/metadata").json()[0]["00080018"]["Value"] == [inst.sop_uid]


# -- the body's assembly ---------------------------------------------------------------------------


class RecordingStore(MemoryBlobStore):
    """Counts whole reads and chunked reads, and can hold reads until told to go on."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []
        self.chunked: list[str] = []
        self.hold: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def get(self, key: str) -> bytes:
        with self.lock:
            self.gets.append(key)
        if key in self.hold:
            assert self.hold[key].wait(10), f"read of {key} was never released"
        return super().get(key)

    def chunks(self, key: str, chunk_size: int):
        self.chunked.append(key)
        data = self.objects[key]
        return (data[i : i + chunk_size] for i in range(0, len(data), chunk_size))


def _stored(n: int, store: MemoryBlobStore, index: MemoryIndex | None = None) -> list[Any]:
    index = index or MemoryIndex()
    client = TestClient(create_app(_settings(), index=index, blobs=store))
    study = make_study(("ct",), instances_per_series=n)
    body, ctype = stow_body(study)
    assert client.post("/studies", content=body, headers={"Content-Type": ctype}).status_code == 200
    return index.list_instances(study[0].study_uid)


def _body(found: list[Any], store: Any, *, workers: int, boundary: str | None = None) -> streams.Body:
    """The multipart body of ``found`` as stored."""
    return streams.instances_body(
        found,
        store,
        [i.transfer_syntax_uid for i in found],
        lambda inst, data: (data, inst.transfer_syntax_uid),
        multipart_body=True,
        workers=workers,
        boundary=boundary,
    )


def test_the_streamed_body_is_byte_for_byte_the_buffered_encoding():
    store = MemoryBlobStore()
    found = _stored(5, store)
    body = _body(found, store, workers=3, boundary="b0undary")
    expected, ctype = multipart.encode(
        [
            (store.get(stored_key(i)), {"Content-Type": f"application/dicom; transfer-syntax={EXPLICIT_VR_LE}"})
            for i in found
        ],
        DICOM,
        boundary="b0undary",
    )
    data = body.read()
    assert data == expected and body.content_type == ctype and body.length == len(expected)


def test_objects_are_read_concurrently_and_written_in_order():
    """All four reads must be under way at once to pass the barrier, and each finishes only after
    the read behind it did (last to first): the body still comes out in order."""
    store = MemoryBlobStore()
    found = _stored(4, store)
    keys = [stored_key(i) for i in found]
    barrier = threading.Barrier(len(keys), timeout=10)
    done = {k: threading.Event() for k in keys}
    original = store.get

    def get(key: str) -> bytes:
        barrier.wait()  # BrokenBarrierError unless all reads run concurrently
        position = keys.index(key)
        if position + 1 < len(keys):
            assert done[keys[position + 1]].wait(10)
        data = original(key)
        done[key].set()
        return data

    store.get = get  # type: ignore[method-assign]
    body = _body(found, store, workers=4, boundary="x")
    parts = read_multipart(body.read(), body.content_type)
    assert [p for _, p in parts] == [store.objects[k] for k in keys]


def test_read_ahead_is_bounded_by_the_worker_count():
    store = RecordingStore()
    found = _stored(10, store)
    store.gets.clear()
    body = _body(found, store, workers=2, boundary="x")
    first = next(body.chunks)
    assert first.startswith(b"--x\r\n")
    assert len(store.gets) <= 3  # the part being written and at most two ahead
    rest = b"".join(body.chunks)
    assert len(store.gets) == 10 and rest.endswith(b"--x--\r\n")


def test_objects_larger_than_the_read_ahead_size_are_copied_in_chunks(monkeypatch):
    store = RecordingStore()
    found = _stored(3, store)
    store.gets.clear()
    monkeypatch.setattr(streams, "WHOLE_READ_MAX", 1000)
    monkeypatch.setattr(streams, "CHUNK", 4096)
    body = _body(found, store, workers=2, boundary="x")
    pieces = list(body.chunks)
    assert store.gets == [] and store.chunked == [stored_key(i) for i in found]
    assert max(len(p) for p in pieces) == 4096
    assert [p for _, p in read_multipart(b"".join(pieces), body.content_type)] == [
        store.objects[stored_key(i)] for i in found
    ]


def test_a_missing_first_object_fails_before_anything_is_sent_and_a_later_one_leaves_the_body_unclosed():
    store = MemoryBlobStore()
    found = _stored(3, store)
    first = stored_key(found[0])
    data = store.objects.pop(first)
    with pytest.raises(BlobNotFound):
        _body(found, store, workers=2).started()
    store.objects[first] = data
    del store.objects[stored_key(found[2])]
    sent: list[bytes] = []
    with pytest.raises(BlobNotFound):
        for piece in _body(found, store, workers=2, boundary="x").started().chunks:
            sent.append(piece)
    assert sent and not b"".join(sent).endswith(b"--x--\r\n")


# -- the policy and its settings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "limits", "redirectable", "expected"),
    [
        (policy.Size(100), policy.Limits(1000), False, policy.Delivery.INLINE),
        (policy.Size(5000), policy.Limits(1000, 10_000), False, policy.Delivery.STREAMED),
        (policy.Size(5000, exact=False), policy.Limits(1000, 10_000), False, policy.Delivery.STREAMED),
        (policy.Size(50_000, exact=False), policy.Limits(1000, 10_000), False, policy.Delivery.MEASURE),
        (policy.Size(100), policy.Limits(1000, 0, "always"), True, policy.Delivery.REDIRECT),
        (policy.Size(100), policy.Limits(1000, 0, "above-limit"), True, policy.Delivery.INLINE),
        (policy.Size(5000), policy.Limits(1000, 10_000, "above-limit"), True, policy.Delivery.REDIRECT),
        (policy.Size(5_000_000), policy.Limits(1000, 10_000, "above-limit"), True, policy.Delivery.REDIRECT),
        (policy.Size(5000), policy.Limits(1000, 10_000, "always"), False, policy.Delivery.STREAMED),
    ],
)
def test_choose(size, limits, redirectable, expected):
    assert policy.choose(size, policy.Answer("series", "ask less"), limits, redirectable=redirectable) is expected


def test_choose_refuses_above_every_limit():
    with pytest.raises(PayloadTooLarge, match="streaming limit of 10000 bytes; ask less"):
        policy.choose(policy.Size(20_000), policy.Answer("series", "ask less"), policy.Limits(1000, 10_000))
    with pytest.raises(PayloadTooLarge, match="response limit of 1000 bytes"):
        policy.after_build(1001, policy.Answer("series", "ask less"), policy.Limits(1000))


def test_delivery_settings_from_the_environment_and_their_checks():
    env = {
        "BUCKET_NAME": "b",
        "TABLE_NAME": "t",
        "STREAM_RESPONSE_BYTES": "199229440",
        "RETRIEVE_CONCURRENCY": "16",
        "REDIRECT_POLICY": "above-limit",
        "PRESIGN_SECONDS": "60",
    }
    s = Settings.from_env(env)
    assert (s.stream_response_bytes, s.retrieve_concurrency, s.redirect_policy, s.presign_seconds) == (
        199229440,
        16,
        "above-limit",
        60,
    )
    with pytest.raises(ValueError, match="redirect_policy must be one of never, above-limit, always"):
        Settings(bucket_name="b", table_name="t", redirect_policy="sometimes")
    with pytest.raises(ValueError, match="retrieve_concurrency"):
        Settings(bucket_name="b", table_name="t", retrieve_concurrency=0)
    with pytest.raises(ValueError, match="presign_seconds"):
        Settings(bucket_name="b", table_name="t", presign_seconds=8 * 24 * 3600)


def test_urls_keep_the_stage_under_the_lambda_web_adapter(memory):
    """The adapter forwards the event's request context as a header; the stage comes from it."""
    (inst,) = _load(memory, n=1)
    context = '{"path": "/Prod' + _series_url(inst) + '", "apiId": "abc123", "stage": "Prod"}'
    r = _client(memory).get(
        _series_url(inst),
        headers={
            "Accept": 'multipart/related; type="image/jpeg"',
            "Host": "abc123.execute-api.eu-west-1.amazonaws.com",
            "X-Forwarded-Proto": "https",
            "x-amzn-request-context": context,
        },
    )
    (headers, _), *_ = read_multipart(r.content, r.headers["content-type"])
    assert headers["content-location"] == (
        f"https://abc123.execute-api.eu-west-1.amazonaws.com/Prod{_instance_url(inst)}/frames/1"
    )


def test_a_frames_list_above_the_buffered_limit_streams_the_same_parts_as_the_buffered_answer(memory):
    (inst,) = _load(memory, n=1, sources=("multiframe",))
    accept = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}
    url = f"{_instance_url(inst)}/frames/2,1"
    buffered = _client(memory, max_response_bytes=10_000_000).get(url, headers=accept)
    with _client(memory, max_response_bytes=100, stream_response_bytes=10_000_000).stream(
        "GET", url, headers=accept
    ) as r:
        assert r.status_code == 200
        pieces = list(r.iter_raw())
        ctype = r.headers["content-type"]
    streamed = read_multipart(b"".join(pieces), ctype)
    assert streamed == read_multipart(buffered.content, buffered.headers["content-type"])
    assert [h["content-location"].rsplit("/", 1)[1] for h, _ in streamed] == ["2", "1"]
    assert "1.2.840.10008.1.2.5" in streamed[0][0]["content-type"]  # RLE, as stored


def test_head_of_a_streamed_series_says_its_length_without_reading_any_object():
    store, index = RecordingStore(), MemoryIndex()
    found = _stored(4, store, index)
    limits = _settings(max_response_bytes=1_000, stream_response_bytes=10_000_000)
    client = TestClient(create_app(limits, index=index, blobs=store))
    url = f"/studies/{found[0].study_uid}/series/{found[0].series_uid}"
    store.gets.clear()
    head = client.head(url, headers={"Accept": MULTIPART_DICOM})
    assert head.status_code == 200 and store.gets == [] and store.chunked == []
    get = client.get(url, headers={"Accept": MULTIPART_DICOM})
    assert int(head.headers["content-length"]) == len(get.content) and len(store.gets) == 4


def test_an_object_whose_size_differs_from_the_index_stops_the_body_rather_than_break_its_length():
    store = MemoryBlobStore()
    found = _stored(2, store)
    key = stored_key(found[1])
    store.objects[key] = store.objects[key] + b"extra"
    body = _body(found, store, workers=2, boundary="x").started()
    with pytest.raises(StorageError, match="where the index says"):
        b"".join(body.chunks)
