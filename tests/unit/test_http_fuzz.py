"""HTTP fuzz in process: schemathesis generates requests for every operation of the OpenAPI
description (``web.openapi``), valid and invalid ones, against the ASGI app with in-memory storage
holding a few stored instances; no answer is a 5xx (``FUZZ_EXAMPLES=200`` for a longer, random
run). The same description drives tests/integration/test_http_fuzz.py against the deployed stack."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.web.app import create_app
from tests.corpus import make_instance, stow_body
from tests.http_fuzz import headers_for, schema, use_stored

API_KEY = "fuzz-key"
#: Small limits, so the paging and size-policy branches are reached too.
SETTINGS = Settings(bucket_name="b", table_name="t", api_key=API_KEY, qido_default_limit=20, qido_max_limit=50)
APP = create_app(SETTINGS, index=MemoryIndex(), blobs=MemoryBlobStore())
STORED = [make_instance("ct"), make_instance("multiframe"), make_instance("jpeg")]
_body, _ctype = stow_body(STORED)
_stored = TestClient(APP).post("/studies", content=_body, headers={"Content-Type": _ctype, "apikey": API_KEY})
assert _stored.status_code == 200, _stored.text

SCHEMA = schema()
SCHEMA.app = APP


@SCHEMA.given(which=st.sampled_from([None, 0, 1, 2]))
@SCHEMA.parametrize()
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=not os.environ.get("FUZZ_EXAMPLES"),
)
def test_no_operation_answers_5xx(case: Any, which: int | None) -> None:
    if which is not None:
        use_stored(case, STORED[which])
    response = case.call(headers=headers_for(case, API_KEY))
    assert response.status_code < 500, (response.status_code, response.text[:500], case.as_curl_command())


def test_the_fuzzer_reaches_stored_data() -> None:
    """A plain search through the same schema and transport finds a stored study."""
    case = SCHEMA["/studies"]["GET"].Case(query={"StudyInstanceUID": STORED[0].study_uid})
    response = case.call(headers=headers_for(case, API_KEY))
    assert response.status_code == 200
    assert response.json()[0]["0020000D"]["Value"] == [STORED[0].study_uid]


def test_the_fuzzer_reaches_stow() -> None:
    """A generated STOW-RS body is a well-formed multipart request: a real instance in it is stored."""
    inst = make_instance("mr")
    case = SCHEMA["/studies"]["POST"].Case(body=inst.data, media_type='multipart/related; type="application/dicom"')
    response = case.call(headers=headers_for(case, API_KEY))
    assert response.status_code == 200, response.text
    found = TestClient(APP).get(f"/studies?StudyInstanceUID={inst.study_uid}", headers={"apikey": API_KEY})
    assert found.status_code == 200


@pytest.mark.parametrize(
    ("part_type", "metadata"),
    [
        ("application/dicom+json", b'[{"00100010": {"vr": "PN", "BulkDataURI": 0}}]'),
        ("application/dicom+json", b'[{"00081115": {"vr": "SQ", "Value": [null]}}]'),
        ("application/dicom+json", b'[{"00100020": "PID"}]'),
        ("application/dicom+json", b'[{"00080018": {"vr": "PN", "Value": [{"Alphabetic": "A"}]}}]'),
        (
            "application/dicom+xml",
            b'<NativeDicomModel><DicomAttribute tag="00100020" vr="LO"><Value number="x">A</Value>'
            b"</DicomAttribute></NativeDicomModel>",
        ),
    ],
)
def test_metadata_the_parser_fuzzers_found_is_a_4xx_over_http(part_type: str, metadata: bytes) -> None:
    """Each of these was a 500 (an AttributeError or ValueError) before the fix."""
    body, ctype = stow_body([metadata], part_type=part_type)
    response = TestClient(APP).post("/studies", content=body, headers={"Content-Type": ctype, "apikey": API_KEY})
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.text
