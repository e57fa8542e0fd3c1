"""WADO-RS frames as image/jls, image/jp2, image/png and application/octet-stream (PS3.18 §8.7.3.5.3,
Table 8.7.3-4), on real-size generated instances: every part says ``<media>; transfer-syntax=<uid>``
and its Content-Location, and each lossless frame decodes (with the codec libraries directly, not
the server's code) to exactly the source's pixels."""

from __future__ import annotations

import io
from functools import cache

import jpeg_ls
import numpy as np
import openjpeg
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless

from tests import synthetic
from tests.corpus import read_multipart, stow_body

BASE = "http://testserver"


@cache
def made(name: str) -> bytes:
    return {
        "ct": synthetic.ct_implicit,
        "mr-be": synthetic.mr_big_endian,
        "rgb": synthetic.rgb8,
        "jpeg-422": synthetic.jpeg_ybr422,
        "rle": synthetic.rle_multiframe,
    }[name]()[0]


def store(client, data: bytes):
    body, content_type = stow_body([data])
    assert client.post("/studies", content=body, headers={"Content-Type": content_type}).status_code == 200
    ds = dcmread(io.BytesIO(data))
    return ds, f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def frames(client, path: str, numbers: str, accept: str):
    response = client.get(f"{path}/frames/{numbers}", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    return read_multipart(response.content, response.headers["content-type"])


def decode(media: str, payload: bytes) -> np.ndarray:
    if media == "image/jls":
        return np.asarray(jpeg_ls.decode(np.frombuffer(payload, np.uint8)))
    if media == "image/jp2":
        return np.asarray(openjpeg.decode(payload))
    return np.asarray(Image.open(io.BytesIO(payload)))


def as_stored_values(ds, media: str, arr: np.ndarray) -> np.ndarray:
    """JPEG-LS has no sign: signed samples are their BitsStored-bit two's complement (PS3.5 §8.2.3)."""
    if media == "image/jls" and ds.PixelRepresentation == 1:
        bits = int(ds.BitsStored)
        values = arr.astype(np.int64)
        return np.where(values >= 2 ** (bits - 1), values - 2**bits, values)
    return arr


CASES = [
    ("ct", "image/jls", JPEGLSLossless),
    ("ct", "image/jp2", JPEG2000Lossless),
    ("mr-be", "image/jls", JPEGLSLossless),
    ("mr-be", "image/png", None),
    ("rgb", "image/jls", JPEGLSLossless),
    ("rgb", "image/jp2", JPEG2000Lossless),
    ("rgb", "image/png", None),
    ("jpeg-422", "image/jp2", JPEG2000Lossless),
    ("jpeg-422", "image/png", None),
    ("rle", "image/jls", JPEGLSLossless),
    ("rle", "image/png", None),
]


@pytest.mark.parametrize(("name", "media", "ts"), CASES, ids=[f"{n}-{m}" for n, m, _ in CASES])
def test_lossless_frame_media_types_decode_to_the_source_pixels(memory_client, name, media, ts):
    ds, path = store(memory_client, made(name))
    count = int(ds.get("NumberOfFrames", 1) or 1)
    numbers = [count, 1] if count > 1 else [1]
    got = frames(memory_client, path, ",".join(map(str, numbers)), f'multipart/related; type="{media}"')
    assert len(got) == len(numbers)
    reference = ds.pixel_array if count > 1 else ds.pixel_array[None]  # colour decoded to RGB
    for (headers, payload), number in zip(got, numbers, strict=True):
        assert headers["content-type"] == (f"{media}; transfer-syntax={ts}" if ts else media)
        assert headers["content-location"] == f"{BASE}{path}/frames/{number}"
        assert np.array_equal(as_stored_values(ds, media, decode(media, payload)), reference[number - 1])


def test_one_frame_may_come_as_a_single_body(memory_client):
    ds, path = store(memory_client, made("ct"))
    response = memory_client.get(f"{path}/frames/1", headers={"Accept": "image/jp2"})
    assert response.status_code == 200
    assert response.headers["content-type"] == f"image/jp2; transfer-syntax={JPEG2000Lossless}"
    assert np.array_equal(as_stored_values(ds, "image/jp2", decode("image/jp2", response.content)), ds.pixel_array)


def test_a_frame_stored_in_the_media_types_syntax_is_passed_through(memory_client):
    ds = dcmread(io.BytesIO(made("rle")))
    ds.decompress(generate_instance_uid=False)
    ds.compress(JPEGLSLossless, generate_instance_uid=False)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    stored, path = store(memory_client, out.getvalue())
    fragments = list(generate_frames(stored.PixelData, number_of_frames=int(stored.NumberOfFrames)))
    for headers, payload in frames(memory_client, path, "2", 'multipart/related; type="image/jls"'):
        assert headers["content-type"] == f"image/jls; transfer-syntax={JPEGLSLossless}"
        assert payload == fragments[1] or payload + b"\x00" == fragments[1]


def test_octet_frames_of_a_big_endian_instance_are_little_endian(memory_client):
    data, pixels, _ = synthetic.mr_big_endian()
    _, path = store(memory_client, data)
    ((headers, payload),) = frames(memory_client, path, "1", 'multipart/related; type="application/octet-stream"')
    assert headers["content-type"] == f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
    assert payload == pixels.astype("<u2").tobytes()
    ((headers, payload),) = frames(memory_client, path, "1", "*/*")  # the default is the same
    assert payload == pixels.astype("<u2").tobytes()


@pytest.mark.parametrize(
    ("name", "accept", "message"),
    [
        ("ct", 'multipart/related; type="image/png"', "cannot be given as image/png"),
        ("rgb", 'multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.81', "image/jls"),
        ("ct", 'multipart/related; type="image/jp2"; transfer-syntax=1.2.840.10008.1.2.4.91', "image/jp2"),
        ("ct", "text/html", "frames are available as multipart/related"),
    ],
    ids=["signed-16-bit-as-png", "jls-near-lossless", "jp2-lossy", "html"],
)
def test_a_frame_representation_the_server_cannot_make_is_406(memory_client, name, accept, message):
    _, path = store(memory_client, made(name))
    response = memory_client.get(f"{path}/frames/1", headers={"Accept": accept})
    assert response.status_code == 406, response.text
    assert message in response.json()["message"]
