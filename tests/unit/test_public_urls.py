"""URLs in answers (QIDO-RS RetrieveURL, STOW-RS RetrieveURL, WADO-RS Content-Location) name the
server as the client reached it: RFC 7239 ``Forwarded``, then ``X-Forwarded-*``, then ``Host``;
``PUBLIC_BASE_URL`` overrides them all."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from dicomweb_server.aws.api import api_handler
from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.settings import Settings
from dicomweb_server.store.ingest import ingest
from dicomweb_server.web import create_app
from tests.conftest import load_event
from tests.corpus import make_instance, read_multipart, stow_body

CASES = [
    ({}, "http://testserver"),
    ({"host": "pacs.example.org:8042"}, "http://pacs.example.org:8042"),
    ({"forwarded": "proto=https;host=viewer.example.org"}, "https://viewer.example.org"),
    ({"forwarded": 'for=192.0.2.60;proto=https;host="viewer.example.org:8443"'}, "https://viewer.example.org:8443"),
    ({"forwarded": 'host="[2001:db8::1]:8080";proto=http'}, "http://[2001:db8::1]:8080"),
    # several hops: the first element is the one nearest the client
    (
        {"forwarded": "proto=https;host=outer.example.org, proto=http;host=inner.internal"},
        "https://outer.example.org",
    ),
    # Forwarded wins over X-Forwarded-*
    (
        {"forwarded": "proto=https;host=a.example.org", "x-forwarded-host": "b.example.org"},
        "https://a.example.org",
    ),
    ({"x-forwarded-proto": "https", "x-forwarded-host": "proxy.example.org"}, "https://proxy.example.org"),
    ({"x-forwarded-proto": "https, http", "x-forwarded-host": "a.example.org, b.internal"}, "https://a.example.org"),
    (
        {"x-forwarded-proto": "https", "x-forwarded-host": "proxy.example.org", "x-forwarded-port": "8443"},
        "https://proxy.example.org:8443",
    ),
    (
        {"x-forwarded-proto": "https", "x-forwarded-host": "proxy.example.org", "x-forwarded-port": "443"},
        "https://proxy.example.org",
    ),
    (
        {"x-forwarded-proto": "https", "x-forwarded-host": "proxy.example.org", "x-forwarded-prefix": "/pacs/"},
        "https://proxy.example.org/pacs",
    ),
    ({"x-forwarded-proto": "https"}, "https://testserver"),
    # nonsense is ignored, not echoed into URLs
    ({"forwarded": "proto=gopher;host=evil.example/x?"}, "http://testserver"),
    ({"x-forwarded-host": "a b", "x-forwarded-proto": "javascript"}, "http://testserver"),
]


@pytest.fixture
def stored(memory_client):
    inst = make_instance("ct")
    body, content_type = stow_body([inst.data])
    assert memory_client.post("/studies", content=body, headers={"content-type": content_type}).status_code == 200
    return inst


@pytest.mark.parametrize(("headers", "base"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_urls_in_answers_follow_the_proxy_headers(memory_client, stored, headers, base):
    found = memory_client.get("/studies", headers={**headers, "accept": "application/dicom+json"})
    assert found.status_code == 200
    assert found.json()[0]["00081190"]["Value"] == [f"{base}/studies/{stored.study_uid}"]
    instance = f"/studies/{stored.study_uid}/series/{stored.series_uid}/instances/{stored.sop_uid}"
    response = memory_client.get(f"/studies/{stored.study_uid}", headers=headers)
    ((part_headers, _),) = read_multipart(response.content, response.headers["content-type"])
    assert part_headers["content-location"] == base + instance
    body, content_type = stow_body([make_instance("ct").data])
    stow = memory_client.post("/studies", content=body, headers={**headers, "content-type": content_type})
    assert stow.json()["00081190"]["Value"][0].startswith(f"{base}/studies/")


def test_public_base_url_overrides_every_header(memory, stored):
    settings = Settings(bucket_name="b", table_name="t", public_base_url="https://dicom.example.org/web/")
    client = TestClient(create_app(settings, index=memory.index, blobs=memory.blobs))
    found = client.get("/studies", headers={"forwarded": "proto=http;host=other.example.org"})
    assert found.json()[0]["00081190"]["Value"] == [f"https://dicom.example.org/web/studies/{stored.study_uid}"]


@pytest.fixture
def search(aws, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "dicomweb")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    inst = make_instance("ct", PatientName="SIIM^JOE", StudyDate="20240105")
    ingest(inst.data, index=DynamoDbIndex(aws.dynamodb, aws.table), blobs=S3BlobStore(aws.s3, aws.bucket))
    return api_handler("search", Settings(bucket_name=aws.bucket, table_name=aws.table)), inst


def _retrieve_urls(handler, event, lambda_context):
    response = handler(event, lambda_context)
    assert response["statusCode"] == 200, response["body"]
    return [s["00081190"]["Value"][0] for s in json.loads(response["body"])]


def _set_header(event, name, value):
    for key in [k for k in event["headers"] if k.lower() == name.lower()]:
        del event["headers"][key]
        del event["multiValueHeaders"][key]
    if value is not None:
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]


def test_api_gateway_urls_carry_the_stage_and_follow_forwarded(search, lambda_context):
    handler, inst = search
    event = load_event("apigw-get-studies")
    host = "https://abc123defg.execute-api.eu-west-1.amazonaws.com"
    assert _retrieve_urls(handler, event, lambda_context) == [f"{host}/Prod/studies/{inst.study_uid}"]
    _set_header(event, "Forwarded", 'proto=https;host="pacs.example.org"')
    assert _retrieve_urls(handler, event, lambda_context) == [f"https://pacs.example.org/Prod/studies/{inst.study_uid}"]
    _set_header(event, "X-Forwarded-Prefix", "/")  # a proxy whose origin path is the stage
    assert _retrieve_urls(handler, event, lambda_context) == [f"https://pacs.example.org/studies/{inst.study_uid}"]


def test_an_event_without_x_forwarded_proto_is_an_emulator_on_http(search, lambda_context):
    handler, inst = search
    event = load_event("apigw-get-studies")
    _set_header(event, "X-Forwarded-Proto", None)
    _set_header(event, "Host", "abc123defg.execute-api.localhost:4566")
    assert _retrieve_urls(handler, event, lambda_context) == [
        f"http://abc123defg.execute-api.localhost:4566/Prod/studies/{inst.study_uid}"
    ]


def test_a_loopback_host_without_its_port_gets_the_emulators_port(search, lambda_context, monkeypatch):
    """The Python dicomweb-client sends ``Host: 127.0.0.1`` without the port; on the local stack the
    URLs in answers (RetrieveURL, BulkDataURI) must still name the port the emulator listens on."""
    handler, inst = search
    event = load_event("apigw-get-studies")
    _set_header(event, "X-Forwarded-Proto", None)
    _set_header(event, "Host", "127.0.0.1")
    event["requestContext"]["apiId"] = "abc123defg"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert _retrieve_urls(handler, event, lambda_context) == [
        f"http://127.0.0.1:4566/_aws/execute-api/abc123defg/Prod/studies/{inst.study_uid}"
    ]
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert _retrieve_urls(handler, event, lambda_context) == [
        f"http://127.0.0.1/_aws/execute-api/abc123defg/Prod/studies/{inst.study_uid}"
    ]
