"""Fuzzing the parsers (Hypothesis, fixed budgets): multipart, DICOM JSON and XML (and the STOW-RS
metadata path that composes instances from them), QIDO query parameters, Accept negotiation and the
continuation token. Each either gives a result or raises the project's own 4xx error, never another
exception; where an inverse exists, the round trip is exact.

A failing example a fuzzer found is kept as an ``@example`` next to the fix it led to.
"""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomweb_server.errors import BadRequest, DicomwebError
from dicomweb_server.formats import dicom_json, dicom_xml, multipart
from dicomweb_server.formats.media import (
    DICOM_JSON,
    DICOM_XML,
    MediaType,
    negotiate_dicom_model,
    parse_accept,
    parse_media_type,
)
from dicomweb_server.formats.multipart import Part
from dicomweb_server.retrieve import negotiation
from dicomweb_server.search import continuation
from dicomweb_server.search.query import Level, Query, parse_query
from dicomweb_server.store.compose import compose
from tests.corpus import make_instance

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _is_client_error(exc: DicomwebError) -> bool:
    return 400 <= exc.status < 500


# -- multipart ---------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_BOUNDARY = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'()+_,-./:=?", min_size=1, max_size=70
)
_HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.binary(max_size=200),
            st.sampled_from(["application/dicom", "application/dicom+json", "image/jpeg", "application/octet-stream"]),
            st.one_of(st.none(), _HEADER_VALUE.map(str.strip).filter(bool)),
        ),
        min_size=1,
        max_size=4,
    ),
    _BOUNDARY,
)
def test_multipart_encode_then_decode_is_exact(parts: list[tuple[bytes, str, str | None]], boundary: str) -> None:
    assume(all(("--" + boundary).encode() not in payload for payload, _, _ in parts))
    encoded = [
        (payload, {"Content-Type": ctype, **({"Content-Location": loc} if loc else {})})
        for payload, ctype, loc in parts
    ]
    body, ctype = multipart.encode(encoded, "application/dicom", boundary=boundary)
    decoded = multipart.decode(body, parse_media_type(ctype))
    assert [p.body for p in decoded] == [payload for payload, _, _ in parts]
    assert [p.content_type.type if p.content_type else None for p in decoded] == [c for _, c, _ in parts]
    assert [p.content_location for p in decoded] == [loc for _, _, loc in parts]


def _multipart_text() -> st.SearchStrategy[bytes]:
    """Bodies made of the pieces a multipart body has, in any order: delimiters, headers, line ends."""
    piece = st.sampled_from(
        [b"--fz", b"--fz--", b"\r\n", b"\n", b"\r", b" ", b"\t", b"Content-Type: application/dicom", b"Content-Type:",
         b"Content-Type: ;;;", b'Content-Type: a/b; q="', b"X: y", b"\r\n\r\n", b"\n\n", b"--", b"-", b"fz", b"\x00"]
    )  # fmt: skip
    return st.lists(st.one_of(piece, st.binary(max_size=8)), max_size=30).map(b"".join)


@FUZZ
@given(
    _multipart_text(),
    st.sampled_from(
        [
            'multipart/related; type="application/dicom"; boundary=fz',
            "multipart/related; boundary=fz",
            'multipart/related; boundary="fz"',
            "multipart/related; boundary=",
            "multipart/related",
            "multipart/related; boundary=" + "x" * 80,
        ]
    ),
)
def test_multipart_decode_gives_parts_or_a_400(body: bytes, content_type: str) -> None:
    try:
        parts = multipart.decode(body, parse_media_type(content_type))
    except BadRequest as exc:
        assert exc.message
        return
    assert parts and all(isinstance(p, Part) for p in parts)
    assert all(p.body in body for p in parts)


# -- media types, Accept and negotiation -------------------------------------------------------------

_MEDIA_PIECES = st.sampled_from(
    ["application/dicom", "application/dicom+json", "application/json", "multipart/related", "image/jpeg",
     "image/png", "image/gif", "application/octet-stream", "*/*", "*", "image/*", "application/*", "text/html",
     "image/jls", "image/jp2", "video/mp4", "", "/", "a/", "/b", "multipart/*"]
)  # fmt: skip
_PARAM = st.one_of(
    st.tuples(
        st.sampled_from(["type", "transfer-syntax", "q", "charset", "boundary", "Q", " type "]),
        st.one_of(
            st.sampled_from(
                ['"application/dicom"', '"application/dicom+xml"', '"application/octet-stream"', '"image/jpeg"',
                 "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50", "*", "0.5", "0", "1", "2", "-1", "nan", "inf",
                 '"', '"\\"', '"a,b"', '"a;b"', "", "1e-400", "0x1"]
            ),
            _HEADER_VALUE,
        ),
    ).map(lambda kv: f"{kv[0]}={kv[1]}"),
    _HEADER_VALUE,
)  # fmt: skip
_MEDIA_RANGE = st.tuples(_MEDIA_PIECES, st.lists(_PARAM, max_size=3)).map(lambda t: "; ".join([t[0], *t[1]]))
_ACCEPT = st.one_of(st.none(), st.lists(_MEDIA_RANGE, max_size=4).map(", ".join), _HEADER_VALUE, st.text(max_size=60))


def _tokens_only(r: MediaType) -> bool:
    return all(_TOKEN_RE.fullmatch(part) for part in [*r.type.split("/"), *r.params])


@FUZZ
@example(accept="application/dicom; q=nan")
@given(_ACCEPT)
def test_accept_parses_to_ranges_or_a_400(accept: str | None) -> None:
    try:
        ranges = parse_accept(accept)
    except BadRequest:
        return
    assert all(isinstance(r, MediaType) and 0 < r.q <= 1 for r in ranges)
    assert [r.q for r in ranges] == sorted((r.q for r in ranges), reverse=True)
    for r in filter(_tokens_only, ranges):  # a range of RFC 9110 tokens prints back to an equal one
        again = parse_media_type(str(r), header="Accept")
        assert (again.type, again.params) == (r.type, r.params)


@FUZZ
@given(_ACCEPT, st.booleans())
def test_negotiation_chooses_or_answers_4xx(accept: str | None, single: bool) -> None:
    calls = [
        lambda: negotiate_dicom_model(accept, "the result"),
        lambda: negotiation.negotiate_metadata(accept),
        lambda: negotiation.negotiate_instances(accept, single_allowed=single),
        lambda: negotiation.negotiate_frames(accept, single),
        lambda: negotiation.negotiate_rendered(accept),
    ]
    for call in calls:
        try:
            chosen = call()
        except DicomwebError as exc:
            assert _is_client_error(exc), exc
            continue
        assert chosen is not None


def test_negotiation_honours_a_clear_preference() -> None:
    """The fuzzed functions are not vacuous: a plain preference is followed."""
    assert negotiate_dicom_model(f'multipart/related; type="{DICOM_XML}", {DICOM_JSON}; q=0.5', "x") == DICOM_XML
    assert negotiation.negotiate_rendered("image/png, image/jpeg; q=0.1") == "image/png"


# -- DICOM JSON ↔ Dataset ----------------------------------------------------------------------------

_SAFE_TEXT = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .-_", max_size=16).map(str.strip)
_DATASET_ELEMENTS = st.fixed_dictionaries(
    {},
    optional={
        "PatientName": st.lists(_SAFE_TEXT.filter(bool), min_size=1, max_size=3).map("^".join),
        "PatientID": _SAFE_TEXT,
        "StudyDescription": _SAFE_TEXT,
        "StudyDate": st.dates().map(lambda d: d.strftime("%Y%m%d")),
        "Rows": st.integers(0, 65535),
        "SeriesNumber": st.integers(-(2**31), 2**31 - 1),
        "SliceThickness": st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: float(f"{f:.6g}")),
        "ImageType": st.lists(st.sampled_from(["ORIGINAL", "DERIVED", "PRIMARY", "AXIAL"]), min_size=1, max_size=3),
        "StudyInstanceUID": st.lists(st.integers(1, 99999), min_size=2, max_size=6).map(
            lambda xs: ".".join(map(str, xs))
        ),
    },
)


def _dataset(elements: dict[str, Any], items: list[dict[str, Any]]) -> Dataset:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if items:
        seq = []
        for item in items:
            inner = Dataset()
            for keyword, value in item.items():
                setattr(inner, keyword, value)
            seq.append(inner)
        ds.ReferencedStudySequence = seq
    return ds


@FUZZ
@given(_DATASET_ELEMENTS, st.lists(_DATASET_ELEMENTS, max_size=3))
def test_dicom_json_round_trips_through_a_dataset(elements: dict[str, Any], items: list[dict[str, Any]]) -> None:
    ds = _dataset(elements, items)
    attrs = dicom_json.metadata(ds)
    back = Dataset.from_json(json.loads(json.dumps(attrs)))
    assert dicom_json.metadata(back) == attrs
    for keyword in elements:
        assert back[keyword].value == ds[keyword].value


_JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
_TAGS = st.one_of(
    st.sampled_from(["00100010", "00100020", "0020000D", "0020000E", "00080018", "00080016", "7FE00010", "00280010",
                     "00280011", "00081115", "00080060", "00200013", "00081030", "00090010", "00091001", "00100010x",
                     "0010", "PatientName", "ffffffff", "00000000", "00020010"]),
    st.text("0123456789ABCDEF", min_size=8, max_size=8),
)  # fmt: skip
_VRS = st.sampled_from(
    ["PN", "LO", "SH", "UI", "DA", "TM", "DT", "US", "UL", "SS", "SL", "IS", "DS", "FL", "FD", "CS", "SQ", "OB",
     "OW", "UN", "AT", "UT", "ST", "LT", "AS", "XX", "", "pn"]
)  # fmt: skip
_JSON_ELEMENT = st.fixed_dictionaries(
    {"vr": _VRS},
    optional={
        "Value": st.lists(
            st.one_of(
                _JSON_VALUE,
                st.fixed_dictionaries({}, optional={"Alphabetic": _JSON_VALUE, "Ideographic": st.text(max_size=8)}),
            ),
            max_size=3,
        ),
        "BulkDataURI": st.one_of(st.text(max_size=12), st.integers(), st.sampled_from(["cid:a", "px", "/px"])),
        "InlineBinary": st.one_of(
            st.text(max_size=12), st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())
        ),
    },
)


def _compose_all(parts: list[Part], part_type: str) -> None:
    for composed in compose(parts, part_type, None):
        if composed.data is None:
            assert composed.failure is not None
        else:  # what compose built is a readable Part-10 file
            dcmread(io.BytesIO(composed.data))


def _part(body: bytes, ctype: str, index: int = 0, location: str | None = None) -> Part:
    headers = {"content-type": ctype, **({"content-location": location} if location else {})}
    return Part(headers=headers, body=body, offset=0, index=index, content_type=parse_media_type(ctype))


@FUZZ
@example(doc={"00100010": {"vr": "PN", "BulkDataURI": 0}}, bulk_types=[])  # was AttributeError (a 500)
@example(doc={"00081115": {"vr": "SQ", "Value": [None]}}, bulk_types=[])  # was AttributeError (a 500)
@example(doc={"7FE00010": "px"}, bulk_types=["image/jpeg"])
@example(doc={"00080018": {"vr": "PN"}}, bulk_types=[])  # was TypeError from pydicom's UID (a 500)
@example(doc={"0020000E": {"vr": "DS"}}, bulk_types=[])  # was ValueError (a 500)
@given(
    st.one_of(
        st.lists(st.dictionaries(_TAGS, _JSON_ELEMENT, max_size=5), min_size=1, max_size=2),
        st.dictionaries(_TAGS, _JSON_ELEMENT, max_size=5),
        _JSON_VALUE,
    ),
    st.lists(st.sampled_from(["image/jpeg", "application/octet-stream", "text/plain"]), max_size=2),
)
def test_stow_json_metadata_composes_instances_or_fails_them_cleanly(doc: Any, bulk_types: list[str]) -> None:
    parts = [_part(json.dumps(doc).encode(), DICOM_JSON)]
    parts += [_part(b"\xff\xd8\xff" + bytes(20), t, i + 1, ["px", "cid:a"][i]) for i, t in enumerate(bulk_types)]
    try:
        _compose_all(parts, DICOM_JSON)
    except BadRequest as exc:
        assert exc.message


# -- DICOM XML ---------------------------------------------------------------------------------------

_XML_TEXT = st.one_of(
    st.sampled_from(["", "1", "-3", "1.5", "abc", "20240101", "1.2.3", "DOE", " 7 ", "1e3", "nan"]), _SAFE_TEXT
)
_NUMBER_ATTR = st.one_of(st.integers(-2, 5).map(str), st.sampled_from(["", "x", "1.5", " 2", "١"]))


def _xml_attribute(depth: int) -> st.SearchStrategy[str]:
    tag = st.one_of(_TAGS, st.sampled_from(["", "zz"]))
    keyword = st.sampled_from(["", "PatientName", "NoSuchKeyword", "Rows", "ReferencedStudySequence"])
    value = st.tuples(_NUMBER_ATTR, _XML_TEXT).map(lambda t: f"<Value number={quoteattr(t[0])}>{escape(t[1])}</Value>")
    person = st.tuples(_NUMBER_ATTR, _SAFE_TEXT, _SAFE_TEXT).map(
        lambda t: (
            f"<PersonName number={quoteattr(t[0])}><Alphabetic><FamilyName>{escape(t[1])}</FamilyName>"
            f"<GivenName>{escape(t[2])}</GivenName></Alphabetic></PersonName>"
        )
    )
    children = [value, person, st.just('<BulkData uri="px"/>'), st.just("<BulkData/>"),
                st.just("<InlineBinary>AAAA</InlineBinary>"), st.just("<Other/>")]  # fmt: skip
    if depth > 0:
        children.append(
            st.tuples(_NUMBER_ATTR, st.lists(_xml_attribute(depth - 1), max_size=2)).map(
                lambda t: f"<Item number={quoteattr(t[0])}>{''.join(t[1])}</Item>"
            )
        )
    return st.tuples(tag, keyword, st.one_of(st.none(), _VRS), st.lists(st.one_of(*children), max_size=3)).map(
        lambda t: (
            "<DicomAttribute"
            + (f" tag={quoteattr(t[0])}" if t[0] else "")
            + (f" keyword={quoteattr(t[1])}" if t[1] else "")
            + (f" vr={quoteattr(t[2])}" if t[2] is not None else "")
            + f">{''.join(t[3])}</DicomAttribute>"
        )
    )


_XML_DOC = st.tuples(st.sampled_from(["NativeDicomModel", "Other"]), st.lists(_xml_attribute(2), max_size=5)).map(
    lambda t: (
        f'<?xml version="1.0"?><{t[0]} xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM">'
        f"{''.join(t[1])}</{t[0]}>".encode()
    )
)


@FUZZ
@example(
    doc=b'<NativeDicomModel><DicomAttribute tag="00100020" vr="LO"><Value number="x">A</Value>'
    b"</DicomAttribute></NativeDicomModel>"
)  # was ValueError from int() (a 500)
@example(
    doc=b'<NativeDicomModel><DicomAttribute tag="00100010" vr="PN"><PersonName number="1"/></DicomAttribute>'
    b"</NativeDicomModel>"
)  # an empty name was printed back as the name "None"
@given(_XML_DOC)
def test_dicom_xml_parses_or_is_a_400(doc: bytes) -> None:
    try:
        attrs = dicom_xml.from_xml(doc)
    except BadRequest as exc:
        assert exc.message
        return
    assert isinstance(attrs, dict)
    # what was parsed prints back to XML that parses to the same model
    assert dicom_xml.from_xml(dicom_xml.to_xml(attrs)) == attrs


@FUZZ
@given(_XML_DOC, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4), st.integers(0, 400))
def test_stow_xml_metadata_composes_instances_or_fails_them_cleanly(doc: bytes, flips, cut: int) -> None:
    buf = bytearray(doc)
    for pos, value in flips:
        buf[pos % len(buf)] = value
    body = bytes(buf[: max(1, len(buf) - cut)])
    try:
        _compose_all([_part(body, DICOM_XML), _part(bytes(16), "application/octet-stream", 1, "px")], DICOM_XML)
    except BadRequest as exc:
        assert exc.message


def test_a_composed_xml_instance_keeps_its_attributes() -> None:
    """The STOW-XML fuzzer is not vacuous: a well-formed document becomes an instance."""
    doc = (
        b'<NativeDicomModel><DicomAttribute tag="00100020" vr="LO"><Value number="1">PID-9</Value>'
        b"</DicomAttribute></NativeDicomModel>"
    )
    [composed] = compose([_part(doc, DICOM_XML)], DICOM_XML, "1.2.3")
    assert composed.data is not None
    ds = dcmread(io.BytesIO(composed.data))
    assert (ds.PatientID, ds.StudyInstanceUID) == ("PID-9", "1.2.3")


# -- QIDO query parameters ---------------------------------------------------------------------------

_KEYS = st.one_of(
    st.sampled_from(
        ["PatientName", "PatientID", "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "Modality",
         "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SeriesNumber", "InstanceNumber", "00100010",
         "0020000D", "00080020", "RequestAttributesSequence", "RequestAttributesSequence.ScheduledProcedureStepID",
         "RequestAttributesSequence.00400009", "00400275.00400009", "PatientName.FamilyName", "Rows", "NoSuchKey",
         "99999999", "0010001", "ReferencedStudySequence.StudyInstanceUID", "limit", "offset", "includefield",
         "fuzzymatching", "continuation", "LIMIT", " limit ", "", ".", "PatientName..x", "SOPClassUID",
         "PatientBirthDate", "StudyID", "ReferringPhysicianName", "NumberOfStudyRelatedInstances", "00201208"]
    ),
    st.text(max_size=12),
)  # fmt: skip
_VALUES = st.one_of(
    st.sampled_from(
        ["", "*", "?", "DOE*", "D?E", "^JOE", "SIIM^*", "20240101", "20240101-20240131", "-20240101", "20240101-",
         "2024-01-01", "20240230", "120000", "120000-130000", "25", "24", "126000", "1.2.3", "1.2.3,1.2.4",
         "1.2.3\\1.2.4", "01.2", "1..2", "CT", "CT\\MR", "true", "false", "TRUE", "0", "1", "-1", "1000", "10001",
         "99999999999999999999", "1e3", " 5", "all", "all,PatientAge", "PatientName,00100020", "00081190",
         "NoSuchKey", "Sequence.Item", "nan", "inf", "1_000", "٣", "20240101.5", "123000.123456-", "-", "--"]
    ),
    st.text(max_size=20),
)  # fmt: skip
_PARAMS = st.lists(st.tuples(_KEYS, _VALUES), max_size=6)


def _matchable() -> dict[str, Any]:
    ds = make_instance("ct", PatientName="DOE^JOHN", StudyDate="20240115", StudyTime="121500").dataset()
    return dicom_json.metadata(ds)


_ATTRS = _matchable()


@FUZZ
@example(params=[("StudyDate", "20240101-20240131"), ("StudyTime", "-")], level=Level.STUDY, relational=False)
@given(_PARAMS, st.sampled_from(list(Level)), st.booleans())
def test_qido_parameters_parse_to_a_query_or_a_400(
    params: list[tuple[str, str]], level: Level, relational: bool
) -> None:
    try:
        query = parse_query(params, level, relational=relational)
    except BadRequest as exc:
        assert exc.message
        return
    assert isinstance(query, Query)
    assert 1 <= query.limit <= 1000 and query.offset >= 0
    # a parsed query can always be matched against a stored dataset, and identifies its matches
    assert query.matches(_ATTRS) in (True, False)
    assert len(continuation.fingerprint(query)) == 16


@pytest.mark.parametrize(
    "params",
    [
        [("PatientName", "DOE*")],
        [("StudyDate", "20240101-20240131"), ("StudyTime", "120000-130000")],
        [("StudyInstanceUID", "1.2.3\\" + _ATTRS["0020000D"]["Value"][0])],
    ],
)
def test_the_qido_fuzzer_sees_matching_queries(params: list[tuple[str, str]]) -> None:
    assert parse_query(params, Level.STUDY).matches(_ATTRS)


# -- continuation tokens -----------------------------------------------------------------------------

_CURSORS = st.one_of(
    st.tuples(st.integers(0, 10**14 - 1), st.lists(st.integers(1, 999), min_size=1, max_size=8)).map(
        lambda t: f"{t[0]:014d}#{'.'.join(map(str, t[1]))}"
    ),
    st.tuples(st.integers(0, 10**14 - 1), st.integers(0, 10**12 - 1)).map(
        lambda t: f"{t[0]:014d}#1.2.3#{t[1]:012d}~1:2~"
    ),
)
_QUERY = parse_query([("PatientID", "PID-1")], Level.STUDY)


@FUZZ
@given(_CURSORS, st.integers(0, 10**9))
def test_a_token_decodes_to_what_was_encoded(cursor: str, skip: int) -> None:
    assert continuation.decode(continuation.encode(_QUERY, cursor, skip), _QUERY) == (cursor, skip)


@FUZZ
@given(_CURSORS, st.integers(0, 1000), st.lists(st.tuples(st.integers(0, 500), st.integers(0, 127)), max_size=4),
       st.integers(0, 60))  # fmt: skip
def test_a_tampered_or_truncated_token_is_a_400_or_a_well_formed_one(cursor, skip, flips, cut) -> None:
    token = bytearray(continuation.encode(_QUERY, cursor, skip).encode())
    for pos, value in flips:
        token[pos % len(token)] = value
    text = token[: max(0, len(token) - cut)].decode("latin-1")
    try:
        query = parse_query([("PatientID", "PID-1"), ("continuation", text)], Level.STUDY)
    except BadRequest as exc:
        assert exc.message
        return
    # the token is not signed: what decodes is a well-formed bound of the client's own query
    assert query.after is None or continuation._CURSOR.fullmatch(query.after)
    assert 0 <= query.offset <= 10**9


@FUZZ
@given(_CURSORS, _PARAMS)
def test_a_token_replayed_with_other_parameters_is_refused(cursor: str, other: list[tuple[str, str]]) -> None:
    token = continuation.encode(_QUERY, cursor)
    try:
        query = parse_query([*other, ("continuation", token)], Level.STUDY)
    except BadRequest:
        return
    # only a query with the same matches (same keys and values) may take the token
    assert continuation.fingerprint(query) == continuation.fingerprint(_QUERY)
    assert query.after == cursor


@FUZZ
@given(st.one_of(st.text(max_size=80), st.binary(max_size=60).map(lambda b: base64.urlsafe_b64encode(b).decode())))
def test_arbitrary_tokens_are_refused_with_a_400(token: str) -> None:
    with pytest.raises(BadRequest):
        continuation.decode(token, _QUERY)
