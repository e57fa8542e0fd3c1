"""Frame tables recorded at ingest and frames served by range reads (issue 8), and the streamed S3
drop in bounded memory (issue 9). Instances are generated here; calls and bytes are counted with
botocore event hooks."""

from __future__ import annotations

import io
import tracemalloc
from collections import Counter
from contextlib import contextmanager
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless
from starlette.testclient import TestClient

from dicomweb_server.blobs.keys import frames_key
from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.index.keys import frames_sk, study_pk
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.ports import BlobChanged
from dicomweb_server.settings import DuplicatePolicy, Settings
from dicomweb_server.store.drop import DropOutcome, index_dropped
from dicomweb_server.store.ingest import Stored, ingest
from dicomweb_server.store.repair import repair
from dicomweb_server.web import create_app
from tests import frames_data as fd
from tests.corpus import read_multipart

STORED = "application/octet-stream; transfer-syntax=*"
MULTI_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@contextmanager
def counting(*clients: Any):
    """Every AWS call the clients make (``S3.GetObject``…), and the body bytes of every GetObject."""
    calls: Counter[str] = Counter()
    read = {"bytes": 0}

    def before(event_name: str, **_: Any) -> None:
        _, service, op = event_name.split(".")
        calls[f"{service}.{op}"] += 1

    def after(parsed: dict[str, Any], **_: Any) -> None:
        read["bytes"] += int(parsed.get("ContentLength", 0))

    for c in clients:
        c.meta.events.register("before-call.*.*", before)
        c.meta.events.register("after-call.s3.GetObject", after)
    try:
        yield calls, read
    finally:
        for c in clients:
            c.meta.events.unregister("before-call.*.*", before)
            c.meta.events.unregister("after-call.s3.GetObject", after)


def uids(data: bytes) -> tuple[str, str, str]:
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def frame_url(data: bytes, frames: str) -> str:
    study, series, sop = uids(data)
    return f"/studies/{study}/series/{series}/instances/{sop}/frames/{frames}"


def app(index: Any, blobs: Any, **settings: Any) -> TestClient:
    return TestClient(create_app(Settings(bucket_name="b", table_name="t", **settings), index=index, blobs=blobs))


@pytest.fixture
def s3_ports(aws):
    return DynamoDbIndex(aws.dynamodb, aws.table), S3BlobStore(aws.s3, aws.bucket)


# -- frames as stored, by range --------------------------------------------------------------


def test_one_frame_of_a_120_frame_instance_is_one_index_read_and_one_ranged_get(aws, s3_ports):
    index, blobs = s3_ports
    data, frames = fd.native(fd.noise(120, 256, 256))  # 15.7 MB, 131,072 bytes a frame
    blobs.put("incoming/mf.dcm", data)
    assert index_dropped("incoming/mf.dcm", index=index, blobs=blobs) == (DropOutcome.INDEXED, None)
    client = app(index, blobs)
    with counting(aws.s3, aws.dynamodb) as (calls, read):
        response = client.get(frame_url(data, "60"), headers={"Accept": STORED})
    assert response.status_code == 200
    assert response.content == frames[59]
    assert response.headers["content-type"] == f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
    assert dict(calls) == {"dynamodb.BatchGetItem": 1, "s3.GetObject": 1}
    assert read["bytes"] <= len(frames[59]) + 64 * 1024


def test_a_512_by_512_ct_frame_is_its_pixel_bytes(backend):
    data, (frame,) = fd.ct_slice()
    ingest(data, index=backend.index, blobs=backend.blobs)
    response = app(backend.index, backend.blobs).get(frame_url(data, "1"), headers={"Accept": STORED})
    assert response.status_code == 200
    assert response.content == frame and len(frame) == 512 * 512 * 2


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("rle", lambda: fd.rle(fd.noise(6, 48, 48))),
        ("jpeg", lambda: fd.encapsulated(fd.jpeg_frames(30, 64, 64))),
        (
            "jpeg, 3 fragments a frame, basic offset table",
            lambda: fd.encapsulated(fd.jpeg_frames(5, 64, 64), fragments_per_frame=3),
        ),
        (
            "jpeg, 3 fragments a frame, no offset table",
            lambda: fd.encapsulated(fd.jpeg_frames(5, 64, 64), fragments_per_frame=3, bot=False),
        ),
    ],
)
def test_encapsulated_frames_are_the_stored_fragments_byte_for_byte(backend, name, make):
    data = make()
    ds = dcmread(io.BytesIO(data))
    expected = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    ingest(data, index=backend.index, blobs=backend.blobs)
    client = app(backend.index, backend.blobs)
    response = client.get(
        frame_url(data, ",".join(str(i) for i in range(1, len(expected) + 1))), headers={"Accept": MULTI_STORED}
    )
    assert response.status_code == 200, response.text
    parts = read_multipart(response.content, response.headers["content-type"])
    assert [body for _, body in parts] == expected
    assert {h["content-type"] for h, _ in parts} == {
        f"application/octet-stream; transfer-syntax={ds.file_meta.TransferSyntaxUID}"
    }


def test_the_last_jpeg_frame_keeps_its_padding_byte():
    data = fd.encapsulated(fd.jpeg_frames(30, 64, 64, odd_last=True))
    ds = dcmread(io.BytesIO(data))
    last = list(generate_frames(ds.PixelData, number_of_frames=30))[-1]
    assert len(last) % 2 == 0 and last.endswith(b"\xff\xd9\x00")  # an odd JPEG, padded when stored
    index, blobs = MemoryIndex(), MemoryBlobStore()
    ingest(data, index=index, blobs=blobs)
    client = app(index, blobs)
    assert client.get(frame_url(data, "30"), headers={"Accept": STORED}).content == last
    as_jpeg = client.get(frame_url(data, "30"), headers={"Accept": "image/jpeg"})
    assert as_jpeg.content == last[:-1]  # a JPEG file ends at its EOI marker
    assert as_jpeg.headers["content-type"] == f"image/jpeg; transfer-syntax={JPEGBaseline8Bit}"


def test_big_endian_frames_come_back_little_endian_and_say_so(backend):
    data, frames = fd.big_endian(fd.noise(3, 16, 16))
    ingest(data, index=backend.index, blobs=backend.blobs)
    client = app(backend.index, backend.blobs)
    for accept in (
        STORED,
        "application/octet-stream",
        f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}",
    ):
        response = client.get(frame_url(data, "2"), headers={"Accept": accept})
        assert response.content == frames[1], accept
        assert response.headers["content-type"] == f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda: fd.bit_packed(3, 5, 5), "1-bit, 25 bits a frame"),
        (lambda: fd.ybr_422(3, 5, 5), "YBR_FULL_422, 50 bytes a frame, odd value"),
    ],
)
def test_native_frames_of_awkward_sizes(make, what):
    data, frames = make()
    index, blobs = MemoryIndex(), MemoryBlobStore()
    ingest(data, index=index, blobs=blobs)
    client = app(index, blobs)
    got = [client.get(frame_url(data, str(n)), headers={"Accept": STORED}).content for n in (1, 2, 3)]
    assert got == frames, what


def test_a_compressed_frame_as_explicit_little_endian_still_decodes_from_the_whole_object():
    data = fd.rle(fd.noise(2, 16, 16))
    index, blobs = MemoryIndex(), MemoryBlobStore()
    ingest(data, index=index, blobs=blobs)
    ds = dcmread(io.BytesIO(data))
    response = app(index, blobs).get(frame_url(data, "2"), headers={"Accept": "application/octet-stream"})
    assert response.status_code == 200
    assert response.content == ds.pixel_array[1].astype("<u2").tobytes()
    assert str(ds.file_meta.TransferSyntaxUID) == RLELossless


# -- the index: one table per instance, compact, a sidecar when too large --------------------


def test_the_frame_table_is_an_item_of_its_own_that_instance_searches_do_not_read(backend):
    data, _ = fd.native(fd.noise(120, 32, 32))
    result = ingest(data, index=backend.index, blobs=backend.blobs)
    study, series, sop = uids(data)
    (inst,) = backend.index.list_instances(study, series, sop)
    assert inst.frames_state == "inline" and inst.frame_table is not None
    assert inst.frame_table.count == 120
    (listed,) = backend.index.list_instances(study)
    assert listed.frame_table is None  # the study's instance Query reads only IN# items
    assert result.record.frame_table == inst.frame_table


def test_a_frame_table_too_large_for_the_index_goes_to_a_sidecar(aws, s3_ports):
    index, blobs = s3_ports
    data = fd.encapsulated(fd.jpeg_frames(40, 16, 16, odd_last=False))
    result = ingest(data, index=index, blobs=blobs, max_frame_table_bytes=20)
    study, series, sop = uids(data)
    assert blobs.get(frames_key(study, series, sop, result.record.md5))
    (inst,) = index.list_instances(study, series, sop)
    assert inst.frames_state == "aside"
    ds = dcmread(io.BytesIO(data))
    expected = list(generate_frames(ds.PixelData, number_of_frames=40))
    with counting(aws.s3, aws.dynamodb) as (calls, _):
        response = app(index, blobs).get(frame_url(data, "33"), headers={"Accept": STORED})
    assert response.content == expected[32]
    assert dict(calls) == {"dynamodb.BatchGetItem": 1, "s3.GetObject": 2}  # the sidecar, then the frame


def test_a_corrupt_sidecar_is_read_around_not_a_500(aws, s3_ports):
    """A sidecar that does not decode (cut short, or bytes that are not a frame table) costs a read
    of the object, not the frame."""
    index, blobs = s3_ports
    data = fd.encapsulated(fd.jpeg_frames(40, 16, 16, odd_last=False))
    result = ingest(data, index=index, blobs=blobs, max_frame_table_bytes=20)
    study, series, sop = uids(data)
    expected = list(generate_frames(dcmread(io.BytesIO(data)).PixelData, number_of_frames=40))
    for corrupt in (b"\x78\x9c not zlib", blobs.get(frames_key(study, series, sop, result.record.md5))[:7]):
        blobs.put(frames_key(study, series, sop, result.record.md5), corrupt, "application/octet-stream")
        response = app(index, blobs).get(frame_url(data, "33"), headers={"Accept": STORED})
        assert response.status_code == 200
        assert response.content == expected[32]


def test_an_instance_indexed_before_frame_tables_gets_one_on_first_read_and_from_repair(aws, s3_ports):
    index, blobs = s3_ports
    older, frames = fd.native(fd.noise(20, 64, 64))
    other, other_frames = fd.native(fd.noise(5, 64, 64))
    for data in (older, other):
        ingest(data, index=index, blobs=blobs)
        study, series, sop = uids(data)
        aws.dynamodb.delete_item(
            TableName=aws.table, Key={"pk": {"S": study_pk(study)}, "sk": {"S": frames_sk(series, sop)}}
        )
        assert index.list_instances(study, series, sop)[0].frames_state == ""
    client = app(index, blobs)
    with counting(aws.s3) as (_, read):
        assert client.get(frame_url(older, "7"), headers={"Accept": STORED}).content == frames[6]
    assert read["bytes"] == len(older)  # read whole once
    with counting(aws.s3) as (_, read):
        assert client.get(frame_url(older, "8"), headers={"Accept": STORED}).content == frames[7]
    assert read["bytes"] == len(frames[7])  # then by range
    report = repair(index, blobs, grace=0)
    study, series, sop = uids(other)
    assert report.frames_added == [f"{study}/{series}/{sop}"]
    assert index.list_instances(study, series, sop)[0].frames_state == "inline"
    with counting(aws.s3) as (_, read):
        assert client.get(frame_url(other, "5"), headers={"Accept": STORED}).content == other_frames[4]
    assert read["bytes"] == len(other_frames[4])
    assert repair(index, blobs, grace=0).frames_added == []


def test_stow_and_s3_drop_make_identical_index_entries(aws, s3_ports):
    index, blobs = s3_ports
    data = fd.encapsulated(fd.jpeg_frames(6, 32, 32), fragments_per_frame=2)
    items = []
    for path in ("stow", "drop"):
        if path == "stow":
            ingest(data, index=index, blobs=blobs)
        else:
            blobs.put("incoming/x.dcm", data)
            assert index_dropped("incoming/x.dcm", index=index, blobs=blobs)[0] is DropOutcome.INDEXED
        study, series, sop = uids(data)
        scan_items = aws.dynamodb.query(
            TableName=aws.table,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": study_pk(study)}},
        )["Items"]
        # obj names the writer; pgen is the study's random writer generation (duplicate policy)
        items.append([{k: v for k, v in i.items() if k not in ("obj", "pgen")} for i in scan_items])
        for key in [k for k, _ in blobs.list("studies/")]:
            blobs.delete(key)
        aws.dynamodb.delete_table(TableName=aws.table)
        from tests.corpus import create_table

        create_table(aws.dynamodb, aws.table)
        index = DynamoDbIndex(aws.dynamodb, aws.table)
    assert items[0] == items[1]
    assert any(i["sk"]["S"].startswith("FR#") for i in items[0])


# -- the S3 drop reads one stream and copies exactly that version ------------------------------


def test_the_s3_drop_streams_once_and_copies_server_side(aws, s3_ports):
    index, blobs = s3_ports
    data, frames = fd.native(fd.noise(40, 256, 256))  # 5.2 MB
    blobs.put("incoming/big.dcm", data)
    with counting(aws.s3) as (calls, read):
        assert index_dropped("incoming/big.dcm", index=index, blobs=blobs) == (DropOutcome.INDEXED, None)
    assert calls["s3.GetObject"] == 1 and read["bytes"] == len(data)
    assert calls["s3.CopyObject"] == 1 and calls["s3.PutObject"] == 0
    study, series, sop = uids(data)
    (inst,) = index.list_instances(study, series, sop)
    assert blobs.get(inst.object_key) == data
    assert app(index, blobs).get(frame_url(data, "40"), headers={"Accept": STORED}).content == frames[39]


def test_a_copy_of_a_changed_source_is_refused():
    """``CopySourceIfMatch`` (moto does not check it; the in-memory store and S3 do)."""
    blobs = MemoryBlobStore()
    blobs.put("incoming/a.dcm", b"first")
    opened = blobs.open("incoming/a.dcm")
    blobs.put("incoming/a.dcm", b"second")
    with pytest.raises(BlobChanged):
        blobs.copy("incoming/a.dcm", "studies/x.dcm", if_match=opened.etag)
    assert blobs.list("studies/") is not None and list(blobs.list("studies/")) == []


def test_a_copy_is_of_the_version_read(s3_ports):
    _, blobs = s3_ports
    blobs.put("incoming/a.dcm", b"first")
    opened = blobs.open("incoming/a.dcm")
    blobs.put("incoming/a.dcm", b"second")
    blobs.copy("incoming/a.dcm", "studies/x.dcm", version=opened.version)
    assert opened.version and blobs.get("studies/x.dcm") == b"first"


def test_an_object_above_the_copy_limit_is_copied_in_parts(aws):
    blobs = S3BlobStore(aws.s3, aws.bucket, copy_limit=5 * 1024**2, copy_part=5 * 1024**2)
    data = bytes(range(256)) * (12 * 1024**2 // 256)
    blobs.put("incoming/big.bin", data)
    opened = blobs.open("incoming/big.bin")
    with counting(aws.s3) as (calls, _):
        blobs.copy(
            "incoming/big.bin", "studies/big.bin", if_match=opened.etag, version=opened.version, size=opened.size
        )
    assert calls["s3.UploadPartCopy"] == 3 and calls["s3.CopyObject"] == 0
    assert blobs.get("studies/big.bin") == data


def test_a_100_mb_drop_is_indexed_in_bounded_memory(tmp_path):
    """The indexer's own allocations stay far below the object's size (the in-memory store holds the
    object itself; what is measured is what indexing allocates on top)."""
    path = tmp_path / "big.dcm"
    n = fd.large_native_file(str(path), 100 * 1024**2, rows=512, cols=512)
    data = path.read_bytes()
    blobs, index = MemoryBlobStore(), MemoryIndex()
    blobs.put("incoming/big.dcm", data)
    tracemalloc.start()
    try:
        outcome = index_dropped("incoming/big.dcm", index=index, blobs=blobs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome == (DropOutcome.INDEXED, None)
    assert peak < 16 * 1024**2, f"indexing a {len(data) >> 20} MB file allocated {peak >> 20} MB"
    study, series, sop = uids(data)
    (inst,) = index.list_instances(study, series, sop)
    assert inst.frame_table is not None and inst.frame_table.count == n
    frame = 512 * 512 * 2
    response = app(index, blobs).get(frame_url(data, str(n)), headers={"Accept": STORED})
    assert response.content == data[len(data) - frame :]


# -- bad input through the streamed parser --------------------------------------------------


@pytest.mark.parametrize("cut", [1, 100, 5000])
def test_a_truncated_multiframe_is_refused_on_both_paths(backend, cut):
    data = fd.encapsulated(fd.jpeg_frames(4, 32, 32))[:-cut]
    backend.blobs.put("incoming/cut.dcm", data)
    assert index_dropped("incoming/cut.dcm", index=backend.index, blobs=backend.blobs) == (DropOutcome.REJECTED, 0xC000)
    assert [k for k in backend.objects() if not k.startswith("rejected/")] == []


def test_an_overwrite_replaces_the_frame_table_and_removes_the_old_sidecar(aws, s3_ports):
    """Duplicate policy ``overwrite``: the new version's frame table is the FR# item (written in
    the replacement's transaction), the replaced version's sidecar is removed, and frames come
    from the new object."""
    index, blobs = s3_ports
    first = fd.encapsulated(fd.jpeg_frames(40, 16, 16, odd_last=False))
    old = ingest(first, index=index, blobs=blobs, max_frame_table_bytes=20)
    study, series, sop = uids(first)
    assert blobs.exists(frames_key(study, series, sop, old.record.md5))
    ds = dcmread(io.BytesIO(fd.encapsulated(fd.jpeg_frames(6, 16, 16, odd_last=False))))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
    second = fd.part10(ds)
    new = ingest(second, index=index, blobs=blobs, duplicate_policy=DuplicatePolicy.OVERWRITE)
    assert new.outcome is Stored.REPLACED
    (inst,) = index.list_instances(study, series, sop)
    assert inst.md5 == new.record.md5
    assert inst.frames_state == "inline" and inst.frame_table is not None and inst.frame_table.count == 6
    assert not blobs.exists(frames_key(study, series, sop, old.record.md5))
    expected = list(generate_frames(ds.PixelData, number_of_frames=6))
    response = app(index, blobs).get(frame_url(second, "6"), headers={"Accept": STORED})
    assert response.status_code == 200 and response.content == expected[5]
    assert app(index, blobs).get(frame_url(second, "33"), headers={"Accept": STORED}).status_code == 404


def test_an_overwrite_on_memory_stores_replaces_an_inline_frame_table(backend):
    first, _ = fd.native(fd.noise(12, 32, 32))
    ingest(first, index=backend.index, blobs=backend.blobs)
    study, series, sop = uids(first)
    ds = dcmread(io.BytesIO(fd.native(fd.noise(3, 32, 32, seed=2))[0]))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
    second = fd.part10(ds)
    ingest(second, index=backend.index, blobs=backend.blobs, duplicate_policy=DuplicatePolicy.OVERWRITE)
    (inst,) = backend.index.list_instances(study, series, sop)
    assert inst.frame_table is not None and inst.frame_table.count == 3
    response = app(backend.index, backend.blobs).get(frame_url(second, "3"), headers={"Accept": STORED})
    assert response.status_code == 200 and response.content == ds.PixelData[2 * 32 * 32 * 2 :]
