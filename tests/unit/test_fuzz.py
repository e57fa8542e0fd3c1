"""Bad input is a 4xx, never a 5xx: random and mutated bodies through the parsers and the HTTP layer."""

from __future__ import annotations

import contextlib
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.errors import BadRequest
from dicomweb_server.formats import multipart
from dicomweb_server.formats.media import parse_media_type
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.store.ingest import InvalidInstance, parse_part10, read_record
from dicomweb_server.web.app import create_app
from tests.corpus import make_instance, stow_body
from tests.frames_data import encapsulated, jpeg_frames

SETTINGS = Settings(bucket_name="b", table_name="t")

CT = make_instance("ct").data
JPEG = make_instance("jpeg").data
CTYPE = parse_media_type('multipart/related; type="application/dicom"; boundary=fz')


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_multipart_decode_refuses_garbage_only_with_bad_request(body: bytes) -> None:
    with contextlib.suppress(BadRequest):
        multipart.decode(b"--fz\r\n" + body, CTYPE)


def _mutate(data: bytes, cuts: list[int], flips: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for pos, value in flips:
        buf[pos % len(buf)] = value
    for cut in cuts:
        buf = buf[: max(0, len(buf) - cut)]
    return bytes(buf)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([CT, JPEG]),
    st.lists(st.integers(0, 3000), max_size=2),
    st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, 255)), max_size=6),
)
def test_mutated_part10_files_are_read_or_refused_cleanly(data: bytes, cuts, flips) -> None:
    with contextlib.suppress(InvalidInstance):
        parse_part10(_mutate(data, cuts, flips))


MULTIFRAME = encapsulated(jpeg_frames(3, 16, 16))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([CT, JPEG, MULTIFRAME]),
    st.lists(st.integers(0, 3000), max_size=2),
    st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, 255)), max_size=6),
)
def test_mutated_files_through_the_streamed_reader_are_read_or_refused_cleanly(data: bytes, cuts, flips) -> None:
    """The one ingest reader (``store.scan``): a record, or ``InvalidInstance``; never another error."""
    with contextlib.suppress(InvalidInstance):
        read_record(io.BytesIO(_mutate(data, cuts, flips)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.integers(0, 40_000), st.integers(0, 255)), max_size=8),
    st.integers(0, 2000),
    st.sampled_from(["application/dicom", "application/dicom+json", "application/dicom+xml"]),
)
def test_stow_never_answers_5xx(flips, cut, part_type) -> None:
    client = TestClient(
        create_app(SETTINGS, index=MemoryIndex(), blobs=MemoryBlobStore()), raise_server_exceptions=False
    )
    payload = (
        _mutate(CT, [cut], flips)
        if part_type == "application/dicom"
        else _mutate(b'[{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "A^B"}]}}]', [cut % 40], flips[:2])
    )
    body, ctype = stow_body([payload], part_type=part_type)
    response = client.post("/studies", content=_mutate(body, [], flips[:1]), headers={"Content-Type": ctype})
    assert response.status_code < 500, response.text
