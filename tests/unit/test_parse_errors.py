"""The parse step refuses malformed input with the errors pydicom actually raises on it (found by the
mutation fuzz below), and nothing more: a bug surfaces as a bug (a 500), not as a refused instance."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import hooks as pydicom_hooks
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.store.ingest import InvalidInstance, Reason, ingest
from dicomweb_server.web.app import create_app
from tests.corpus import make_instance, stow_body

pytestmark = pytest.mark.filterwarnings("ignore")

CT = make_instance("ct").data
IMPLICIT = make_instance("mr_implicit").data
JPEG = make_instance("jpeg").data
ROWS = b"\x28\x00\x10\x00"  # (0028,0010) in Little Endian


def _mutated(data: bytes, flips: list[tuple[int, int]], cut: int, header_only: bool) -> bytes:
    buf = bytearray(data)
    span = min(len(buf), 3000) if header_only else len(buf)  # the header is where parsing goes wrong
    for pos, value in flips:
        buf[pos % span] = value
    return bytes(buf[: len(buf) - cut] if cut else buf)


def _bare(data: bytes) -> bytes:
    """The file as pydicom's ``dcmwrite`` makes a data set built in memory (what the Python
    dicomweb-client sends): no preamble, no DICM, no group length, so ingest writes it again."""
    assert data[132:138] == b"\x02\x00\x00\x00UL"
    return data[144:]


BARE = [_bare(CT), _bare(IMPLICIT)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.sampled_from(BARE),
    flips=st.lists(st.tuples(st.integers(6, 2500), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 40_000),
)
def test_mutated_files_without_preamble_are_stored_or_refused_never_crash(data, flips, cut) -> None:
    try:
        ingest(_mutated(data, flips, cut % (len(data) - 8), True), index=MemoryIndex(), blobs=MemoryBlobStore())
    except InvalidInstance as exc:
        assert exc.message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.sampled_from([CT, IMPLICIT, JPEG]),
    flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
    cut=st.integers(0, 40_000),
    header_only=st.booleans(),
)
def test_mutated_and_truncated_files_are_stored_or_refused_never_crash(data, flips, cut, header_only) -> None:
    """Anything but InvalidInstance escaping ingest fails this test: the exceptions the parse step
    catches (``store.validate.MALFORMED``) are the ones malformed bytes make pydicom raise."""
    try:
        ingest(_mutated(data, flips, cut % len(data), header_only), index=MemoryIndex(), blobs=MemoryBlobStore())
    except InvalidInstance as exc:
        assert exc.reason in (
            Reason.CANNOT_UNDERSTAND,
            Reason.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            Reason.SOP_CLASS_NOT_SUPPORTED,
        )
        assert exc.message


def _patched(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


@pytest.mark.parametrize(
    ("label", "make", "says"),
    [
        ("unknown VR", lambda: _patched(CT, b"CS\x0a\x00ISO_IR 192", b"Zz\x0a\x00ISO_IR 192"), "unreadable DICOM data"),
        ("a US value of 3 bytes", lambda: _patched(CT, ROWS + b"US\x02\x00", ROWS + b"US\x03\x00"), ""),
        ("no DICM prefix", lambda: bytes(200), "not a DICOM Part-10 file"),
        # found by the fuzz above: an undecodable file meta element, an undecodable SOP Instance UID
        ("file meta VR", lambda: _patched(CT, b"\x02\x00\x03\x00UI", b"\x02\x00\x03\x00U\x00"), "unreadable"),
        ("SOP Instance UID VR", lambda: _patched(CT, b"\x08\x00\x18\x00UI", b"\x08\x00\x18\x00Us"), ""),
        ("a length beyond the end", lambda: CT[:-3000], "truncated"),
        # found by a mutation run: a header element (Study ID) whose length runs past the end of the
        # file was stored, because the truncation check looked at converted elements only
        (
            "a header length beyond the end",
            lambda: _patched(CT, b"\x20\x00\x10\x00SH\x04\x00", b"\x20\x00\x10\x00SH\xff\xff"),
            "truncated",
        ),
    ],
)
def test_what_malformed_input_raises_is_a_clear_refusal(label, make, says) -> None:
    with pytest.raises(InvalidInstance) as refused:
        ingest(make(), index=MemoryIndex(), blobs=MemoryBlobStore())
    assert refused.value.reason in (Reason.CANNOT_UNDERSTAND, Reason.DATASET_DOES_NOT_MATCH_SOP_CLASS), label
    assert says in refused.value.message


@pytest.fixture
def buggy_conversion() -> Iterator[None]:
    """A bug in value conversion (pydicom's own extension point: a ``raw_element_value`` callback
    that raises TypeError), restored afterwards."""

    def broken(raw, data, **kwargs):  # noqa: ANN001, ANN003, ARG001 - pydicom's callback signature
        raise TypeError("a bug, not bad input")

    pydicom_hooks.hooks.register_callback("raw_element_value", broken)
    try:
        yield
    finally:
        pydicom_hooks.hooks.register_callback("raw_element_value", pydicom_hooks.raw_element_value)


@pytest.mark.usefixtures("buggy_conversion")
def test_a_bug_in_the_parse_step_is_not_turned_into_a_refused_instance() -> None:
    with pytest.raises(TypeError, match="a bug"):
        ingest(CT, index=MemoryIndex(), blobs=MemoryBlobStore())


@pytest.mark.usefixtures("buggy_conversion")
def test_a_bug_in_the_parse_step_is_a_500_over_http() -> None:
    app = create_app(Settings(bucket_name="b", table_name="t"), index=MemoryIndex(), blobs=MemoryBlobStore())
    body, ctype = stow_body([CT])
    response = TestClient(app, raise_server_exceptions=False).post(
        "/studies", content=body, headers={"content-type": ctype}
    )
    assert response.status_code == 500
