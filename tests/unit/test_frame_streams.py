"""Frame lists written part by part and rendering from byte ranges (issue 8): a 120-frame,
63 MB instance of 512 × 512 16-bit frames is generated once for the module. Reads are counted in
the blob store (calls and bytes); the app is driven through ASGI directly where a test must see
the body arrive piece by piece (Starlette's TestClient collects it first)."""

from __future__ import annotations

import hashlib
import io
import re
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)
from starlette.testclient import TestClient

from dicomweb_server.retrieve import render
from dicomweb_server.retrieve.frame_source import pixel_start
from dicomweb_server.store.ingest import ingest
from dicomweb_server.web.delivery import AnswerCut
from tests import asgi
from tests import frames_data as fd
from tests.corpus import read_multipart

from .pixel_ports import CountingBlobs, Stored
from .pixel_ports import store_instance as _store

FRAMES = 120
FRAME = 512 * 512 * 2
ALL = ",".join(str(n) for n in range(1, FRAMES + 1))
MULTI_OCTET = 'multipart/related; type="application/octet-stream"'
ELE_LABEL = f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"


@pytest.fixture(scope="module")
def big() -> Stored:
    data, frames = fd.native(fd.noise(FRAMES, 512, 512))
    assert len(data) > 40 * 1024**2
    return _store(data, frames)


@pytest.fixture(autouse=True)
def _fresh_counts(request: pytest.FixtureRequest) -> None:
    if "big" in request.fixturenames:
        request.getfixturevalue("big").blobs.reset()


@dataclass
class Seen:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    #: (length of the piece, ranged reads done when it was sent) for each body message.
    pieces: list[tuple[int, int]] = field(default_factory=list)
    digest: Any = field(default_factory=hashlib.sha256)
    kept: list[bytes] | None = None


def asgi_get(app: Any, path: str, accept: str, blobs: CountingBlobs, *, keep: bool = False) -> Seen:
    """GET through the ASGI app, recording each body message as it is sent (not collected)."""
    seen = Seen(kept=[] if keep else None)

    def sent(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen.status = message["status"]
            seen.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body or not seen.pieces:
                seen.pieces.append((len(body), blobs.calls["range"]))
            seen.digest.update(body)
            if seen.kept is not None:
                seen.kept.append(body)

    asgi.get(app, path, accept, sent)
    return seen


# -- 1. frame lists stream part by part ------------------------------------------------------------


@pytest.mark.parametrize("accept", [MULTI_OCTET, f"{MULTI_OCTET}; transfer-syntax=*"])
def test_all_120_frames_stream_in_order_byte_exact_one_range_read_each(big, accept):
    client = big.client(max_response_bytes=1024**2, stream_response_bytes=100 * 1024**2, retrieve_concurrency=4)
    response = client.get(f"{big.url}/frames/{ALL}", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert int(response.headers["content-length"]) == len(response.content)
    parts = read_multipart(response.content, response.headers["content-type"])
    assert [body for _, body in parts] == big.frames
    assert {h["content-type"] for h, _ in parts} == {ELE_LABEL}
    assert [h["content-location"].rsplit("/", 1)[1] for h, _ in parts] == [str(n) for n in range(1, FRAMES + 1)]
    assert f"transfer-syntax={ExplicitVRLittleEndian}" in response.headers["content-type"]
    assert big.blobs.calls == {"range": FRAMES} and big.blobs.bytes == FRAMES * FRAME


@pytest.mark.parametrize("workers", [1, 3])
def test_reading_the_first_part_reads_only_that_part(big, workers):
    app = big.app(max_response_bytes=1024**2, stream_response_bytes=100 * 1024**2, retrieve_concurrency=workers)
    seen = asgi_get(app, f"{big.url}/frames/{ALL}", MULTI_OCTET, big.blobs)
    assert seen.status == 200
    # the first piece is the first part's headers; the second its 524,288 pixel bytes
    (header_len, reads_at_header), (payload_len, reads_at_payload) = seen.pieces[:2]
    assert payload_len == FRAME
    assert reads_at_header <= workers + 1  # the pool reads at most ``workers`` ahead (+1 as it refills)
    assert reads_at_payload <= workers + 1
    assert len(seen.pieces) >= 3 * FRAMES  # header, payload, CRLF for each part: written as they come
    assert seen.pieces[-1][1] == FRAMES  # and every frame read once by the end
    assert big.blobs.calls["get"] == 0


def test_a_120_frame_list_is_streamed_in_about_one_frame_per_worker(big):
    app = big.app(max_response_bytes=1024**2, stream_response_bytes=100 * 1024**2, retrieve_concurrency=4)
    tracemalloc.start()
    try:
        seen = asgi_get(app, f"{big.url}/frames/{ALL}", MULTI_OCTET, big.blobs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen.status == 200 and sum(n for n, _ in seen.pieces) > FRAMES * FRAME
    assert peak < 10 * FRAME, f"streaming {FRAMES} frames of {FRAME} bytes peaked at {peak >> 20} MB"


def test_frame_lists_go_through_the_size_policy(big):
    url = f"{big.url}/frames/{ALL}"
    two = f"{big.url}/frames/1,2"
    # within the buffered limit: one body
    buffered = asgi_get(big.app(max_response_bytes=4 * FRAME), two, MULTI_OCTET, big.blobs, keep=True)
    assert buffered.status == 200 and len([n for n, _ in buffered.pieces if n]) == 1
    assert buffered.kept is not None
    parts = read_multipart(b"".join(buffered.kept), buffered.headers["content-type"])
    assert [b for _, b in parts] == big.frames[:2]
    # above it, within the streaming limit: streamed
    big.blobs.reset()
    streamed = asgi_get(
        big.app(max_response_bytes=4 * FRAME, stream_response_bytes=200 * FRAME), url, MULTI_OCTET, big.blobs
    )
    assert streamed.status == 200 and len(streamed.pieces) > FRAMES
    # above the streaming limit, and without streaming: a 413 before any frame is read
    for limits in ({"stream_response_bytes": 100 * FRAME}, {}):
        big.blobs.reset()
        r = big.client(max_response_bytes=4 * FRAME, **limits).get(url, headers={"Accept": MULTI_OCTET})
        assert r.status_code == 413
        assert "frames answer is" in r.text and "ask for fewer frames per request" in r.text
        largest = max(4 * FRAME, limits.get("stream_response_bytes", 0))
        fits = re.search(r"about (\d+) fit \(for example http://testserver(\S+)/frames/1\)", r.json()["message"])
        assert fits is not None and fits.group(2) == big.url
        k = int(fits.group(1))  # that many frames (and their part headers) fit, one more would not
        assert k * FRAME <= largest < (k + 1) * (FRAME + 1024)
        assert big.blobs.calls == {}


@pytest.mark.parametrize(
    ("frames", "status", "words"),
    [
        ("0", 400, "is not a frame number"),
        ("121", 404, "has 120 frames"),
        ("1,,2", 400, "not a frame number"),
        ("x", 400, ""),
    ],
)
def test_bad_frame_lists_are_4xx_before_any_read(big, frames, status, words):
    r = big.client().get(f"{big.url}/frames/{frames}", headers={"Accept": MULTI_OCTET})
    assert r.status_code == status and words in r.text
    assert big.blobs.calls == {}


def test_frames_of_an_instance_without_a_frame_table_are_sized_before_it_is_read():
    """A deflated instance has no frame table: its frames come from the object read whole, once the
    size policy has let the answer through (and a 413 reads nothing)."""
    arr = fd.noise(6, 128, 128)
    ds = dcmread(io.BytesIO(fd.native(arr)[0]))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    stored = _store(fd.part10(ds), [])
    url = f"{stored.url}/frames/1,2,3,4,5,6"
    refused = stored.client(max_response_bytes=4 * 128 * 128 * 2).get(url, headers={"Accept": MULTI_OCTET})
    assert refused.status_code == 413 and stored.blobs.calls == {}
    r = stored.client().get(url, headers={"Accept": MULTI_OCTET})
    assert r.status_code == 200
    assert [b for _, b in read_multipart(r.content, r.headers["content-type"])] == [
        f.astype("<u2").tobytes() for f in arr
    ]
    assert stored.blobs.calls == {"get": 1}


def test_decoded_frames_come_one_by_one_from_the_header_and_their_ranges():
    arr = fd.noise(24, 128, 128)
    data = fd.rle(arr)
    stored = _store(data, [])
    ds = dcmread(io.BytesIO(data))
    client = stored.client(retrieve_concurrency=2)
    r = client.get(f"{stored.url}/frames/3,7,24", headers={"Accept": MULTI_OCTET})  # default: Explicit VR LE
    assert r.status_code == 200, r.text
    parts = read_multipart(r.content, r.headers["content-type"])
    assert [b for _, b in parts] == [arr[n - 1].astype("<u2").tobytes() for n in (3, 7, 24)]
    assert {h["content-type"] for h, _ in parts} == {ELE_LABEL}
    (inst,) = stored.index.list_instances(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    table = inst.frame_table
    assert table is not None
    ranges = sum(table.byte_range(n)[1] - table.byte_range(n)[0] for n in (3, 7, 24))
    assert stored.blobs.calls == {"range": 4}  # the header once, then each frame
    assert stored.blobs.bytes == pixel_start(table) + ranges
    assert str(ds.file_meta.TransferSyntaxUID) == RLELossless


def test_frames_re_encoded_per_part_match_the_whole_object():
    jpegs = fd.jpeg_frames(12, 64, 64)
    data = fd.encapsulated(jpegs)
    stored = _store(data, [])
    whole = dcmread(io.BytesIO(data))
    client = stored.client()
    png = client.get(f"{stored.url}/frames/5", headers={"Accept": "image/png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.content))), whole.pixel_array[4])
    jls = client.get(f"{stored.url}/frames/2,11", headers={"Accept": 'multipart/related; type="image/jls"'})
    assert jls.status_code == 200, jls.text
    import jpeg_ls

    parts = read_multipart(jls.content, jls.headers["content-type"])
    assert {h["content-type"] for h, _ in parts} == {f"image/jls; transfer-syntax={JPEGLSLossless}"}
    for (_, body), n in zip(parts, (2, 11), strict=True):
        assert np.array_equal(jpeg_ls.decode(np.frombuffer(body, dtype=np.uint8)), whole.pixel_array[n - 1])
    jpeg = client.get(f"{stored.url}/frames/12", headers={"Accept": "image/jpeg"})
    assert (
        jpeg.content == jpegs[11] and jpeg.headers["content-type"] == f"image/jpeg; transfer-syntax={JPEGBaseline8Bit}"
    )
    assert stored.blobs.calls["get"] == 0


# -- 2. rendering reads the header and the frames shown -----------------------------------------


def _enhanced(frames: int) -> tuple[bytes, list[tuple[float, float]]]:
    """An 80-frame 512 × 512 16-bit multi-frame (42 MB) with a shared rescale and each frame's
    own window in its Per-frame Functional Groups."""
    arr = fd.noise(frames, 512, 512, seed=5)
    ds = fd.dataset(512, 512, frames, sop_class="1.2.840.10008.5.1.4.1.1.2.1")  # Enhanced CT
    ds.BitsStored, ds.HighBit = 12, 11
    shared = Dataset()
    rescale = Dataset()
    rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = 1, -1024, "HU"
    shared.PixelValueTransformationSequence = Sequence([rescale])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    windows = [(float(-600 + 20 * n), float(400 + 10 * n)) for n in range(frames)]
    items = []
    for center, width in windows:
        item = Dataset()
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = center, width
        item.FrameVOILUTSequence = Sequence([voi])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.PixelData = arr.astype("<u2").tobytes()
    return fd.part10(ds), windows


@pytest.fixture(scope="module")
def enhanced() -> tuple[Stored, Dataset]:
    data, _ = _enhanced(80)
    assert len(data) > 40 * 1024**2
    return _store(data, []), dcmread(io.BytesIO(data))


def _header_and_frame(stored: Stored) -> int:
    ds = dcmread(io.BytesIO(stored.data), stop_before_pixels=True)
    (inst,) = stored.index.list_instances(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    assert inst.frame_table is not None
    return pixel_start(inst.frame_table) + FRAME


@pytest.mark.parametrize(
    ("suffix", "expect"),
    [
        ("/frames/57/rendered", lambda whole: render.render(whole, 57, "image/png")),
        ("/rendered", lambda whole: render.render(whole, 1, "image/png")),
    ],
)
def test_rendering_a_frame_reads_the_header_and_that_frame_only(enhanced, suffix, expect):
    stored, whole = enhanced
    stored.blobs.reset()
    r = stored.client().get(stored.url + suffix, headers={"Accept": "image/png"})
    assert r.status_code == 200, r.text
    assert stored.blobs.calls == {"range": 2}
    assert stored.blobs.bytes <= _header_and_frame(stored) + 64 * 1024
    got = np.asarray(Image.open(io.BytesIO(r.content)))
    assert np.array_equal(got, np.asarray(Image.open(io.BytesIO(expect(whole)))))


def test_a_frame_renders_with_its_own_functional_groups(enhanced):
    """Frame 57's own window (its Per-frame Functional Groups item), not frame 1's."""
    stored, whole = enhanced
    r = stored.client().get(stored.url + "/frames/57/rendered", headers={"Accept": "image/png"})
    got = np.asarray(Image.open(io.BytesIO(r.content))).astype(np.float64)
    center, width = -600 + 20 * 56, 400 + 10 * 56
    hu = whole.pixel_array[56].astype(np.float64) - 1024
    linear = np.clip(((hu - (center - 0.5)) / (width - 1) + 0.5) * 255, 0, 255)
    assert np.abs(got - linear).max() <= 1


def test_thumbnails_and_animations_of_a_large_multiframe_read_only_their_frames(enhanced):
    stored, whole = enhanced
    client = stored.client()
    stored.blobs.reset()
    thumb = client.get(stored.url + "/thumbnail", headers={"Accept": "image/jpeg"})
    assert thumb.status_code == 200
    assert stored.blobs.calls == {"range": 2} and stored.blobs.bytes <= _header_and_frame(stored) + 64 * 1024
    assert thumb.content == render.render(whole, 41, "image/jpeg", quality=80, size=(128, 128))
    stored.blobs.reset()
    gif = client.get(stored.url + "/frames/3,4,5/rendered", headers={"Accept": "image/gif"})
    assert gif.status_code == 200
    assert stored.blobs.calls == {"range": 4}
    assert gif.content == render.render_frames(whole, [3, 4, 5], "image/gif")
    stored.blobs.reset()
    study = stored.url.split("/series/")[0]
    shown = client.get(study + "/rendered", headers={"Accept": "image/png"})
    assert shown.status_code == 200 and stored.blobs.calls == {"range": 2}


def test_without_a_frame_table_rendering_reads_the_whole_object():
    """A deflated instance has no frame table (its frames cannot be located without inflating)."""
    data, _ = _enhanced(3)
    ds = dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    deflated = fd.part10(ds)
    small = _store(deflated, [])
    meta = dcmread(io.BytesIO(deflated), stop_before_pixels=True)
    (inst,) = small.index.list_instances(
        str(meta.StudyInstanceUID), str(meta.SeriesInstanceUID), str(meta.SOPInstanceUID)
    )
    assert inst.frame_table is None
    r = small.client().get(small.url + "/frames/2/rendered", headers={"Accept": "image/png"})
    assert r.status_code == 200
    assert small.blobs.calls == {"get": 1}
    expected = render.render(dcmread(io.BytesIO(data)), 2, "image/png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))), np.asarray(Image.open(io.BytesIO(expected))))


# -- 3. transcoded answers: decided from their planned size, produced per instance ---------------

MULTI_DICOM = 'multipart/related; type="application/dicom"'
RLE_INSTANCES = 8
#: Decoded pixel bytes of one RLE instance below (2 frames of 256 × 256, 16 bits).
DECODED = 2 * 256 * 256 * 2


@pytest.fixture(scope="module")
def rle_series() -> tuple[Stored, list[Any]]:
    """A series of 8 RLE Lossless instances (the stored, compressed syntax), and their pixels."""
    first: Stored | None = None
    arrays = []
    study = series = ""
    for n in range(RLE_INSTANCES):
        arr = fd.noise(2, 256, 256, seed=10 + n)
        ds = dcmread(io.BytesIO(fd.rle(arr)))
        if n == 0:
            study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.InstanceNumber = n + 1
        data = fd.part10(ds)
        if first is None:
            first = Stored(data, [])
        ingest(data, index=first.index, blobs=first.blobs)
        arrays.append(arr)
    assert first is not None
    first.blobs.reset()
    return first, arrays


def _series_url(stored: Stored) -> str:
    return stored.url.rsplit("/instances/", 1)[0]


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("decoded although the answer was refused")

    monkeypatch.setattr(Dataset, "decompress", refuse)


@pytest.mark.parametrize("limits", [{"stream_response_bytes": 6 * DECODED}, {}])
def test_a_transcoded_series_certain_not_to_fit_is_refused_before_anything_is_read(rle_series, no_decoding, limits):
    stored, _ = rle_series
    stored.blobs.reset()
    r = stored.client(max_response_bytes=DECODED, **limits).get(_series_url(stored), headers={"Accept": MULTI_DICOM})
    assert r.status_code == 413
    assert f"at least {RLE_INSTANCES * DECODED} bytes" in r.text and "retrieve its instances one by one" in r.text
    assert stored.blobs.calls == {}


def test_a_transcoded_series_streams_instance_by_instance(rle_series):
    stored, arrays = rle_series
    stored.blobs.reset()
    app = stored.app(max_response_bytes=DECODED, stream_response_bytes=20 * DECODED, retrieve_concurrency=2)
    seen = asgi_get(app, _series_url(stored), MULTI_DICOM, stored.blobs, keep=True)
    assert seen.status == 200
    assert seen.kept is not None and len([p for p in seen.kept if p]) > RLE_INSTANCES  # written part by part
    parts = read_multipart(b"".join(seen.kept), seen.headers["content-type"])
    assert {h["content-type"] for h, _ in parts} == {f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"}
    got = sorted((dcmread(io.BytesIO(body)) for _, body in parts), key=lambda ds: int(ds.InstanceNumber))
    for ds, arr in zip(got, arrays, strict=True):
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert np.array_equal(ds.pixel_array, arr)
    assert stored.blobs.calls == {"get": RLE_INSTANCES}


def test_a_transcoded_answer_that_turns_out_too_large_stops_being_produced_at_the_limit(rle_series):
    """JPEG-LS output has no known least size: the answer is measured as it is produced, and
    refused once it passes the buffered limit (without streaming), after a few instances only."""
    stored, _ = rle_series
    stored.blobs.reset()
    accept = f"{MULTI_DICOM}; transfer-syntax={JPEGLSLossless}"
    r = stored.client(max_response_bytes=DECODED, retrieve_concurrency=2).get(
        _series_url(stored), headers={"Accept": accept}
    )
    assert r.status_code == 413 and f"is more than {DECODED} bytes" in r.text
    assert stored.blobs.calls["get"] <= 5 < RLE_INSTANCES


def _jls_instance(stored: Stored, **limits: Any):  # noqa: ANN202 - a response
    accept = f"application/dicom; transfer-syntax={JPEGLSLossless}"
    return stored.client(**limits).get(stored.url, headers={"Accept": accept})


def test_a_single_transcoded_instance_above_the_streaming_limit_is_a_413_not_an_empty_200(rle_series):
    """A single-part answer is built when asked for (one instance): its size is then known and
    decides, before the status line (it was a 200 with no bytes at all)."""
    stored, _ = rle_series
    whole = _jls_instance(stored, max_response_bytes=10**8)
    assert whole.status_code == 200
    size = len(whole.content)
    assert size > 2000
    refused = _jls_instance(stored, max_response_bytes=1000, stream_response_bytes=size - 1)
    assert refused.status_code == 413 and str(size) in refused.text
    streamed = _jls_instance(stored, max_response_bytes=1000, stream_response_bytes=size)
    assert streamed.status_code == 200 and streamed.content == whole.content
    assert streamed.headers["content-length"] == str(size)


def test_a_streamed_answer_that_passes_the_streaming_limit_is_aborted_not_ended_cleanly(rle_series):
    """Past the streaming limit, after the status line, the server aborts the connection: a
    client sees the answer incomplete, never a short well-formed one."""
    stored, _ = rle_series
    accept = f"{MULTI_DICOM}; transfer-syntax={JPEGLSLossless}"
    app = stored.app(max_response_bytes=DECODED, stream_response_bytes=2 * DECODED, retrieve_concurrency=2)
    with pytest.raises(AnswerCut):
        TestClient(app).get(_series_url(stored), headers={"Accept": accept})


def test_a_head_of_a_measured_answer_produces_nothing(rle_series):
    stored, _ = rle_series
    stored.blobs.reset()
    accept = f"{MULTI_DICOM}; transfer-syntax={JPEGLSLossless}"
    app = stored.app(max_response_bytes=DECODED, stream_response_bytes=20 * DECODED)
    r = TestClient(app).head(_series_url(stored), headers={"Accept": accept})
    assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/related")
    assert stored.blobs.calls == {}


def test_pixel_data_as_compressed_frames_names_each_frame_in_content_location(rle_series):
    stored, _ = rle_series
    r = stored.client().get(
        stored.url + "/bulkdata/7FE00010", headers={"Accept": 'multipart/related; type="image/jls"'}
    )
    assert r.status_code == 200
    parts = read_multipart(r.content, r.headers["content-type"])
    assert [h["content-location"].rsplit("/instances/", 1)[1].split("/", 1)[1] for h, _ in parts] == [
        "frames/1",
        "frames/2",
    ]
