"""Content-Type and Accept parsing (RFC 9110 §8.3, §12.5.1) and the negotiation built on it."""

import pytest

from dicomweb_server.errors import BadRequest, NotAcceptable
from dicomweb_server.formats.media import (
    DICOM_JSON,
    DICOM_XML,
    JSON,
    negotiate_dicom_model,
    parse_accept,
    parse_media_type,
)
from dicomweb_server.store.stow import negotiate_store_response


def test_content_type_with_quoted_and_token_parameters():
    mt = parse_media_type('Multipart/Related; type="application/dicom"; Boundary=abc123')
    assert mt.type == "multipart/related"
    assert mt.params == {"type": "application/dicom", "boundary": "abc123"}
    assert mt.q == 1.0


def test_quoted_parameter_may_contain_semicolons_commas_and_escaped_quotes():
    ranges = parse_accept('multipart/related; type="application/dicom; a=1, b=2"; x="say \\"hi\\"", application/json')
    assert [r.type for r in ranges] == ["multipart/related", "application/json"]
    assert ranges[0].param("type") == "application/dicom; a=1, b=2"
    assert ranges[0].param("x") == 'say "hi"'


def test_accept_is_ordered_by_q_and_stable_for_equal_q():
    ranges = parse_accept(
        "application/dicom+json;q=0.5, "
        'multipart/related; type="application/dicom"; transfer-syntax=*, '
        "application/json; q=0.5, */*; q=0.1"
    )
    assert [(r.type, r.q) for r in ranges] == [
        ("multipart/related", 1.0),
        ("application/dicom+json", 0.5),
        ("application/json", 0.5),
        ("*/*", 0.1),
    ]
    assert ranges[0].param("transfer-syntax") == "*"


def test_q_zero_means_not_this_type():
    assert [r.type for r in parse_accept("application/json;q=0, application/dicom+json")] == [DICOM_JSON]


@pytest.mark.parametrize("header", [None, "", "   "])
def test_absent_or_empty_accept_is_anything(header):
    assert [r.type for r in parse_accept(header)] == ["*/*"]


def test_wildcards_cover_what_they_should():
    (bare,) = parse_accept("*")
    assert bare.type == "*/*" and bare.covers("application/dicom")
    image = parse_media_type("image/*")
    assert image.covers("image/jpeg")
    assert not image.covers("application/dicom")
    assert parse_media_type("application/dicom").covers("application/dicom")
    assert not parse_media_type("application/dicom").covers("application/dicom+json")


def test_media_type_prints_back_to_an_equal_parse():
    original = parse_media_type('multipart/related; type="application/dicom"; boundary=a.b_c; x="q;,\\"r"')
    assert parse_media_type(str(original)) == original


@pytest.mark.parametrize(
    "header, message",
    [
        ("application", "not a media type"),
        ("/json", "not a media type"),
        ("text/", "not a media type"),
        ("application/json; charset", "has no value"),
        ("application/json; q=high", "is not a number"),
        ("application/json; q=1.5", "outside 0..1"),
        ('multipart/related; type="application/dicom', "unbalanced quotes"),
    ],
)
def test_accept_parse_errors_are_400_with_the_reason(header, message):
    with pytest.raises(BadRequest) as err:
        parse_accept(header)
    assert err.value.status == 400
    assert message in err.value.message
    assert "Accept" in err.value.message or "quotes" in err.value.message


def test_content_type_errors_name_the_header():
    with pytest.raises(BadRequest, match="^Content-Type: "):
        parse_media_type("dicom")


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, DICOM_JSON),
        ("application/json", JSON),
        ("application/*", DICOM_JSON),
        ("image/png, application/json;q=0.2", JSON),
        ('multipart/related; type="application/dicom+xml"', DICOM_XML),
    ],
)
def test_dicom_model_negotiation(accept, expected):
    assert negotiate_dicom_model(accept, "the search result") == expected


@pytest.mark.parametrize("accept", ["image/png", 'multipart/related; type="application/dicom"', "text/html"])
def test_unsatisfiable_accept_is_406_listing_what_is_available(accept):
    with pytest.raises(NotAcceptable) as err:
        negotiate_dicom_model(accept, "the search result")
    assert err.value.status == 406
    assert DICOM_JSON in err.value.message and accept in err.value.message


def test_store_response_follows_the_request_type_unless_asked():
    assert negotiate_store_response(None, DICOM_XML) == DICOM_XML
    assert negotiate_store_response(None, "application/dicom") == DICOM_JSON
    assert negotiate_store_response("application/json", DICOM_XML) == JSON
    assert negotiate_store_response("application/xml", "application/dicom") == DICOM_XML
