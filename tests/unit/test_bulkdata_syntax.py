"""The Pixel Data bulk data URI in a negotiated representation (PS3.18 §8.7.3.5, Tables 8.7.3-3 to
8.7.3-5): stored bytes, decoded native bytes, compressed frames, or a 406 naming what is available.
Instances are generated here; reads are counted in the blob store."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGLSLossless, RLELossless

from tests import frames_data as fd
from tests.corpus import read_multipart

from .pixel_ports import Stored
from .pixel_ports import store_instance as _store

MULTI = 'multipart/related; type="application/octet-stream"'
ELE_PART = f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"


def pixel_uri(stored: Stored) -> str:
    return f"{stored.url}/bulkdata/7FE00010"


def one_part(response) -> tuple[dict[str, str], bytes]:
    ((headers, body),) = read_multipart(response.content, response.headers["content-type"])
    return headers, body


@pytest.fixture
def ct() -> tuple[Stored, bytes]:
    data, (frame,) = fd.ct_slice()
    return _store(data, [frame]), frame


@pytest.fixture
def rle() -> tuple[Stored, np.ndarray]:
    arr = fd.noise(6, 128, 128)
    return _store(fd.rle(arr), []), arr


def test_native_pixel_data_is_its_stored_bytes_by_default_and_as_asked(ct):
    stored, frame = ct
    client = stored.client()
    for accept in (None, MULTI, f"{MULTI}; transfer-syntax=*", f"{MULTI}; transfer-syntax={ExplicitVRLittleEndian}"):
        r = client.get(pixel_uri(stored), headers={"Accept": accept} if accept else {})
        assert r.status_code == 200 and one_part(r)[1] == frame, accept
    single = client.get(pixel_uri(stored), headers={"Accept": "application/octet-stream"})
    assert single.content == frame and single.headers["accept-ranges"] == "bytes"
    ranged = client.get(pixel_uri(stored), headers={"Accept": "application/octet-stream", "Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == frame[10:20]


def test_compressed_pixel_data_is_decoded_to_native_by_default_frame_by_frame(rle):
    stored, arr = rle
    native = arr.astype("<u2").tobytes()
    client = stored.client(retrieve_concurrency=3)
    r = client.get(pixel_uri(stored))
    assert r.status_code == 200, r.text
    headers, body = one_part(r)
    assert body == native and headers["content-type"] == ELE_PART
    assert f"transfer-syntax={ExplicitVRLittleEndian}" in r.headers["content-type"]
    assert stored.blobs.calls["get"] == 0 and stored.blobs.calls["range"] == 1 + 6  # the header, each frame
    single = client.get(pixel_uri(stored), headers={"Accept": "application/octet-stream"})
    assert single.content == native and single.headers["content-type"] == ELE_PART
    assert "accept-ranges" not in single.headers


def test_range_applies_to_stored_bytes_only(rle):
    stored, arr = rle
    client = stored.client()
    value = dcmread(io.BytesIO(stored.data)).PixelData
    as_stored = client.get(
        pixel_uri(stored), headers={"Accept": "application/octet-stream; transfer-syntax=*", "Range": "bytes=0-99"}
    )
    assert as_stored.status_code == 206 and as_stored.content == value[:100]
    converted = client.get(pixel_uri(stored), headers={"Accept": "application/octet-stream", "Range": "bytes=0-99"})
    assert converted.status_code == 200 and converted.content == arr.astype("<u2").tobytes()
    assert "content-range" not in converted.headers


def test_the_stored_syntax_named_or_star_gives_the_stored_value(rle):
    stored, _ = rle
    value = dcmread(io.BytesIO(stored.data)).PixelData
    for ts in ("*", RLELossless):
        r = stored.client().get(
            pixel_uri(stored), headers={"Accept": f"application/octet-stream; transfer-syntax={ts}"}
        )
        assert r.status_code == 200 and r.content == value, ts


def test_compressed_media_types_give_the_frames_stored_or_transcoded(rle):
    stored, arr = rle
    import jpeg_ls

    r = stored.client().get(pixel_uri(stored), headers={"Accept": 'multipart/related; type="image/jls"'})
    assert r.status_code == 200, r.text
    parts = read_multipart(r.content, r.headers["content-type"])
    assert {h["content-type"] for h, _ in parts} == {f"image/jls; transfer-syntax={JPEGLSLossless}"}
    assert [jpeg_ls.decode(np.frombuffer(b, dtype=np.uint8)).tolist() for _, b in parts] == arr.tolist()

    jpegs = fd.jpeg_frames(4, 64, 64)
    jpeg = _store(fd.encapsulated(jpegs), [])
    r = jpeg.client().get(pixel_uri(jpeg), headers={"Accept": 'multipart/related; type="image/jpeg"'})
    assert r.status_code == 200, r.text
    parts = read_multipart(r.content, r.headers["content-type"])
    assert [b for _, b in parts] == jpegs
    assert {h["content-type"] for h, _ in parts} == {f"image/jpeg; transfer-syntax={JPEGBaseline8Bit}"}
    decoded = jpeg.client().get(pixel_uri(jpeg), headers={"Accept": "application/octet-stream"})
    whole = dcmread(io.BytesIO(jpeg.data))
    assert decoded.content == whole.pixel_array.astype(np.uint8).tobytes()
    stored_value = jpeg.client().get(pixel_uri(jpeg), headers={"Accept": "application/octet-stream; transfer-syntax=*"})
    assert list(generate_frames(stored_value.content, number_of_frames=4)) == [
        j + b"\x00" if len(j) % 2 else j for j in jpegs
    ]


@pytest.mark.parametrize(
    ("accept", "words"),
    [
        ("image/jpeg", "image/jls (transfer-syntax=1.2.840.10008.1.2.4.80)"),
        ('multipart/related; type="image/jpeg"', "application/octet-stream (transfer-syntax=1.2.840.10008.1.2.1"),
        (f"application/octet-stream; transfer-syntax={JPEGBaseline8Bit}", "stored as 1.2.840.10008.1.2.5"),
        ("image/jls", "as multipart/related, one part per frame"),
        ("image/png", "image/jp2"),
        ("text/html", "cannot satisfy Accept: text/html"),
    ],
)
def test_what_cannot_be_produced_is_a_406_naming_what_can(rle, accept, words):
    stored, _ = rle
    r = stored.client().get(pixel_uri(stored), headers={"Accept": accept})
    assert r.status_code == 406 and words in r.json()["message"], r.text
    assert stored.blobs.calls == {}


def test_a_decoded_value_above_the_limit_is_refused_before_anything_is_decoded(rle):
    stored, _ = rle
    r = stored.client(max_response_bytes=100_000).get(pixel_uri(stored))
    assert r.status_code == 413
    message = r.json()["message"]
    assert "at least 196608 bytes" in message and "/frames/1" in message and "transfer-syntax=*" in message
    assert stored.blobs.calls == {}
