"""Accept headers → the representation chosen (PS3.18 §8.7.3.5, RFC 9110 §12.5.1): a table for
instances and one for frames, including quoted and unquoted parameters, q-values (q=0 excludes),
wildcards and browser-style headers, and 406s that say what is available."""

from __future__ import annotations

import pytest

from dicomweb_server.errors import BadRequest, NotAcceptable
from dicomweb_server.retrieve.negotiation import negotiate_frames, negotiate_instances

EVRLE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
J2K = "1.2.840.10008.1.2.4.90"
JLS = "1.2.840.10008.1.2.4.80"
BASELINE = "1.2.840.10008.1.2.4.50"
RLE = "1.2.840.10008.1.2.5"
MD = 'multipart/related; type="application/dicom"'
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"

# (Accept, single instance?) → (multipart, first syntax (None = as stored), all acceptable syntaxes or None)
INSTANCES = [
    (None, False, (True, EVRLE, None)),
    ("", False, (True, EVRLE, None)),
    ("*/*", False, (True, EVRLE, None)),
    (BROWSER, False, (True, EVRLE, None)),
    ("multipart/related", False, (True, EVRLE, (EVRLE,))),
    (MD, False, (True, EVRLE, (EVRLE,))),
    ("multipart/related; type=application/dicom", False, (True, EVRLE, (EVRLE,))),
    ('multipart/related; type="*/*"', False, (True, EVRLE, (EVRLE,))),
    ("multipart/*", False, (True, EVRLE, None)),
    (f"{MD}; transfer-syntax=*", False, (True, None, (None,))),
    (f'{MD}; transfer-syntax="*"', False, (True, None, (None,))),
    (f"{MD}; transfer-syntax={J2K}", False, (True, J2K, (J2K,))),
    (f'{MD}; transfer-syntax="{J2K}"', False, (True, J2K, (J2K,))),
    (f"MULTIPART/RELATED; TYPE=APPLICATION/DICOM; TRANSFER-SYNTAX={JLS}", False, (True, JLS, (JLS,))),
    # a list: highest q first, then the order of the header
    (f"{MD}; transfer-syntax={J2K}; q=0.5, {MD}; transfer-syntax={JLS}", False, (True, JLS, (JLS, J2K))),
    (f"{MD}; transfer-syntax={J2K}, {MD}; transfer-syntax={JLS}", False, (True, J2K, (J2K, JLS))),
    (f"{MD}; transfer-syntax={BASELINE}, {MD}; q=0.1", False, (True, BASELINE, (BASELINE, EVRLE))),
    # q=0 excludes what it names, even under a wildcard
    (f"*/*, {MD}; q=0", False, (True, None, None)),
    (f"*/*;q=0.5, {MD}; transfer-syntax=*; q=0", False, (True, EVRLE, None)),
    # a syntax the server does not list is still passed on (the stored syntax of an instance may be it)
    (f"{MD}; transfer-syntax=1.2.840.10008.1.2.4.70", False, (True, "1.2.840.10008.1.2.4.70", None)),
    # a single instance
    ("application/dicom", True, (False, EVRLE, (EVRLE,))),
    ("application/dicom; transfer-syntax=*", True, (False, None, (None,))),
    (f"application/dicom; transfer-syntax={DEFLATED}", True, (False, DEFLATED, (DEFLATED,))),
    ("*/*", True, (True, EVRLE, None)),
    (f"application/dicom, {MD}; q=0.9", True, (False, EVRLE, (EVRLE,))),
    (f"application/dicom; q=0.5, {MD}", True, (True, EVRLE, (EVRLE,))),
    (f"application/dicom;q=0.2, {MD}; transfer-syntax={RLE}; q=0.3", True, (True, RLE, (RLE,))),
]


@pytest.mark.parametrize(("accept", "single", "expected"), INSTANCES, ids=[repr(a) for a, *_ in INSTANCES])
def test_instance_representation_for_an_accept_header(accept, single, expected):
    multipart, first, acceptable = expected
    fmt = negotiate_instances(accept, single_allowed=single)
    assert (fmt.multipart, fmt.transfer_syntax, fmt.jpeg_frames) == (multipart, first, False)
    if acceptable is not None:
        assert fmt.transfer_syntaxes == acceptable


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="image/jpeg"',
        'multipart/related; type="image/dicom+jpeg"',
        "multipart/related; type=image/jpeg",
    ],
)
def test_jpeg_parts_of_every_frame(accept):
    fmt = negotiate_instances(accept, single_allowed=False)
    assert fmt.jpeg_frames and fmt.multipart


@pytest.mark.parametrize(
    ("accept", "single", "named"),
    [
        ("text/html", False, 'multipart/related; type="application/dicom"'),
        ("application/dicom", False, 'multipart/related; type="image/jpeg"'),  # a series is never one body
        (f"{MD}; q=0", False, "transfer-syntax"),
        ("image/png", True, "application/dicom"),
        ("*/*;q=0", True, "application/dicom"),
    ],
)
def test_nothing_acceptable_is_406_listing_what_is_available(accept, single, named):
    with pytest.raises(NotAcceptable) as raised:
        negotiate_instances(accept, single_allowed=single)
    assert accept in str(raised.value) and named in str(raised.value)


@pytest.mark.parametrize("accept", ['multipart/related; type="application/dicom', "*/*; q=2", "*/*; q=x", "nonsense"])
def test_a_malformed_accept_header_is_400(accept):
    with pytest.raises(BadRequest):
        negotiate_instances(accept, single_allowed=True)


OCTET = 'multipart/related; type="application/octet-stream"'
# (Accept, one frame?) → (kind, transfer syntax (None = as stored), multipart)
FRAMES = [
    (None, True, ("octet", EVRLE, True)),
    ("*/*", False, ("octet", EVRLE, True)),
    (BROWSER, True, ("octet", EVRLE, True)),
    (OCTET, False, ("octet", EVRLE, True)),
    ("multipart/related", False, ("octet", EVRLE, True)),
    (f"{OCTET}; transfer-syntax=*", False, ("octet", None, True)),
    (f'{OCTET}; transfer-syntax="{BASELINE}"', False, ("octet", BASELINE, True)),
    ("application/octet-stream", True, ("octet", EVRLE, False)),
    ('multipart/related; type="image/jpeg"', False, ("jpeg", BASELINE, True)),
    ('multipart/related; type="image/dicom+jpeg"', False, ("jpeg", BASELINE, True)),
    (
        'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.70',
        False,
        ("jpeg", "1.2.840.10008.1.2.4.70", True),
    ),
    ("image/jpeg", True, ("jpeg", BASELINE, False)),
    ('multipart/related; type="image/jls"', False, ("jls", JLS, True)),
    ("image/jls", True, ("jls", JLS, False)),
    ('multipart/related; type="image/jp2"', False, ("jp2", J2K, True)),
    (f'multipart/related; type="image/jp2"; transfer-syntax={J2K}', False, ("jp2", J2K, True)),
    ("image/jp2", True, ("jp2", J2K, False)),
    ('multipart/related; type="image/png"', False, ("png", None, True)),
    ("image/png", True, ("png", None, False)),
    ('multipart/related; type="image/*"', False, ("jpeg", BASELINE, True)),
    ("image/*", True, ("jpeg", BASELINE, False)),
    (f'{OCTET}; q=0.4, multipart/related; type="image/jp2"; q=0.6', False, ("jp2", J2K, True)),
    (f"image/png, {OCTET}; q=0.5", False, ("octet", EVRLE, True)),  # one frame only as a single body
    (f"*/*, {OCTET}; q=0", False, ("octet", None, True)),
]


@pytest.mark.parametrize(("accept", "single", "expected"), FRAMES, ids=[repr(a) for a, *_ in FRAMES])
def test_frame_representation_for_an_accept_header(accept, single, expected):
    fmt = negotiate_frames(accept, single_frame=single)
    assert (fmt.kind, fmt.transfer_syntax, fmt.multipart) == expected


@pytest.mark.parametrize(
    ("accept", "single"),
    [("text/html", True), ("image/png", False), ("application/octet-stream", False), (f"{OCTET}; q=0", False)],
)
def test_no_frame_representation_fits_is_406_listing_the_media_types(accept, single):
    with pytest.raises(NotAcceptable) as raised:
        negotiate_frames(accept, single_frame=single)
    for media in ("application/octet-stream", "image/jpeg", "image/jls", "image/jp2", "image/png"):
        assert media in str(raised.value)
