"""multipart/related (RFC 2387, RFC 2046 §5.1): golden bodies, every malformed case, and a round trip."""

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dicomweb_server.errors import BadRequest
from dicomweb_server.formats.media import parse_media_type
from dicomweb_server.formats.multipart import MultipartError, decode, encode

CT = parse_media_type('multipart/related; type="application/dicom"; boundary=XyZ')


def bodies(parts):
    return [p.body for p in decode(parts, CT)]


# -- golden encode -------------------------------------------------------------------------------------


def test_encode_is_byte_exact_with_an_injected_boundary():
    body, content_type = encode(
        [(b"\x00DICM\xff", {"Content-Type": "application/dicom"}), (b"", {"Content-Location": "/x/1"})],
        "application/dicom",
        boundary="XyZ",
        params={"transfer-syntax": "1.2.840.10008.1.2.1"},
    )
    assert body == (
        b"--XyZ\r\n"
        b"Content-Type: application/dicom\r\n"
        b"\r\n"
        b"\x00DICM\xff\r\n"
        b"--XyZ\r\n"
        b"Content-Location: /x/1\r\n"
        b"\r\n"
        b"\r\n"
        b"--XyZ--\r\n"
    )
    assert content_type == (
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1; boundary=XyZ'
    )


def test_encode_makes_a_fresh_boundary_that_is_in_the_content_type():
    body1, ct1 = encode([(b"a", {})], "application/dicom")
    body2, ct2 = encode([(b"a", {})], "application/dicom")
    assert ct1 != ct2
    assert [p.body for p in decode(body1, parse_media_type(ct1))] == [b"a"]


# -- golden decode -------------------------------------------------------------------------------------

TWO_PARTS_CRLF = (
    b"--XyZ\r\n"
    b"Content-Type: application/dicom\r\n"
    b"Content-Location: http://h/a\r\n"
    b"\r\n"
    b"first\r\nline\r\n"
    b"--XyZ\r\n"
    b"content-type: application/dicom\r\n"
    b"\r\n"
    b"second\r\n"
    b"--XyZ--\r\n"
)


def test_decode_crlf_body():
    parts = decode(TWO_PARTS_CRLF, CT)
    assert [p.body for p in parts] == [b"first\r\nline", b"second"]
    assert parts[0].headers == {"content-type": "application/dicom", "content-location": "http://h/a"}
    assert parts[0].content_location == "http://h/a"
    assert [p.content_type.type for p in parts] == ["application/dicom", "application/dicom"]
    assert [p.index for p in parts] == [0, 1]
    assert parts[1].offset == TWO_PARTS_CRLF.index(b"content-type")


def test_decode_bare_lf_body_as_hand_made_curl_bodies_have():
    body = TWO_PARTS_CRLF.replace(b"\r\n", b"\n")
    assert bodies(body) == [b"first\nline", b"second"]


def test_preamble_and_epilogue_are_ignored():
    preamble = b"This is the preamble. --XyZ is mentioned but not on its own line.\r\n"
    body = preamble + TWO_PARTS_CRLF + b"epilogue --XyZ\r\n"
    assert bodies(body) == [b"first\r\nline", b"second"]


def test_empty_header_block_gives_a_part_without_headers():
    parts = decode(b"--XyZ\r\n\r\npayload\r\n--XyZ--", CT)
    assert parts[0].headers == {} and parts[0].content_type is None
    assert parts[0].body == b"payload"


def test_boundary_text_inside_a_payload_does_not_split_it():
    assert bodies(b"--XyZ\r\n\r\nabc--XyZ--def\r\n--XyZ--\r\n") == [b"abc--XyZ--def"]


def test_transport_padding_and_folded_headers():
    body = b"--XyZ  \t\r\nContent-Description: a\r\n  folded value\r\n\r\nx\r\n--XyZ--"
    (part,) = decode(body, CT)
    assert part.headers == {"content-description": "a folded value"}
    assert part.body == b"x"


def test_payloads_that_end_in_line_breaks_keep_them():
    assert bodies(b"--XyZ\r\n\r\nab\r\n\r\n\r\n--XyZ--") == [b"ab\r\n\r\n"]


def test_quoted_boundary_parameter():
    ct = parse_media_type('multipart/related; boundary="a b:c"; type="application/dicom"')
    assert [p.body for p in decode(b"--a b:c\r\n\r\nx\r\n--a b:c--", ct)] == [b"x"]


# -- malformed bodies: each a 400 that says what is wrong -------------------------------------------------


@pytest.mark.parametrize(
    "content_type, body, message",
    [
        ('multipart/related; type="application/dicom"', TWO_PARTS_CRLF, "has no boundary parameter"),
        ("application/dicom", TWO_PARTS_CRLF, "expected a multipart/related body"),
        (CT, b"", "the request body is empty"),
        ("multipart/related; boundary=Other", TWO_PARTS_CRLF, "does not contain the boundary 'Other'"),
        (CT, b"just some bytes without any delimiter", "does not contain the boundary"),
        (CT, TWO_PARTS_CRLF[:-9], "missing closing delimiter --XyZ--"),  # close delimiter cut off
        (CT, TWO_PARTS_CRLF[:80], "body truncated in part 1"),  # cut inside the first payload
        (CT, TWO_PARTS_CRLF[:60], "part 1 has no end of headers"),  # cut inside the first header block
        (CT, b"--XyZ\r\n\r\nx\r\n--XyZ", "body truncated at byte 17"),
        (CT, b"--XyZ\r\nContent-Type: application/dicom", "part 1 has no end of headers"),
        (
            CT,
            b"--XyZ\r\nthis is not a header\r\n\r\nx\r\n--XyZ--",
            "malformed part header 'this is not a header' at byte 7",
        ),
        (CT, b"--XyZ\r\n: no name\r\n\r\nx\r\n--XyZ--", "malformed part header"),
        (CT, b"--XyZjunk\r\n\r\nx\r\n--XyZ--", "unexpected bytes after the boundary at byte 5"),
        (CT, b"--XyZ--\r\n", "the body has no parts"),
        ("multipart/related; boundary=" + "b" * 201, b"x", "longer than 200"),
        (CT, b"--XyZ\r\nContent-Type: application\r\n\r\nx\r\n--XyZ--", "part 1 Content-Type"),
    ],
)
def test_malformed_bodies_are_400_with_a_useful_message(content_type, body, message):
    ct = parse_media_type(content_type) if isinstance(content_type, str) else content_type
    with pytest.raises(BadRequest) as err:
        decode(body, ct)
    assert err.value.status == 400
    assert message in err.value.message


def test_errors_in_the_body_carry_a_byte_offset():
    with pytest.raises(MultipartError, match=r"at byte \d+"):
        decode(b"--XyZ\r\n\r\npart one\r\n--XyZ\r\nbroken header line\r\n\r\nx\r\n--XyZ--", CT)


# -- property: encode then decode is the identity ---------------------------------------------------------

_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=20)
_VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40) | st.builds(
    lambda a, b: f"{a} {b}", _TOKEN, _TOKEN
)
# Names are unique case-insensitively; Content-Type, when present, is a real media type.
_HEADERS = st.builds(
    lambda d, ct: {**{k: v for k, v in {n.lower(): (n, v) for n, v in d.items()}.values()}, **ct},
    st.dictionaries(_TOKEN.filter(lambda n: n.lower() != "content-type"), _VALUE, max_size=4),
    st.sampled_from([{}, {"Content-Type": "application/dicom"}, {"Content-Type": 'application/octet-stream; x="a;b"'}]),
)
_BOUNDARY = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789'()+_,-./:=?", min_size=1, max_size=70).filter(
    lambda b: not b.endswith(" ")
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.binary(max_size=300), _HEADERS), min_size=1, max_size=5), _BOUNDARY)
def test_encode_then_decode_returns_the_same_payloads_and_headers(parts, boundary):
    assume(all(b"--" + boundary.encode() not in payload for payload, _ in parts))
    body, content_type = encode(parts, "application/dicom", boundary=boundary)
    decoded = decode(body, parse_media_type(content_type))
    assert [p.body for p in decoded] == [payload for payload, _ in parts]
    assert [p.headers for p in decoded] == [{k.lower(): v for k, v in h.items()} for _, h in parts]
