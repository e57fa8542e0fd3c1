"""The Lambda entry points with real event shapes (events/*.json) on S3/DynamoDB in moto."""

from __future__ import annotations

import json
from urllib.parse import quote_plus

import pytest

from dicomweb_server.aws.api import api_handler
from dicomweb_server.aws.s3_events import s3_handler
from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.settings import Settings
from dicomweb_server.store.ingest import ingest
from tests.conftest import load_event
from tests.corpus import list_keys, make_instance


@pytest.fixture(autouse=True)
def powertools_env(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "dicomweb")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")  # the EMF namespace is set by template.yaml


def s3_event(aws, key="incoming/My Study/file+1.dcm"):
    """The sample event, about ``key`` in this test's bucket and its current version (as S3 sends
    it for a versioned bucket: the event names the version it is about)."""
    event = load_event("s3-object-created")
    obj = event["Records"][0]["s3"]["object"]
    event["Records"][0]["s3"]["bucket"]["name"] = aws.bucket
    obj["key"] = quote_plus(key, safe="/")
    obj["versionId"] = aws.s3.head_object(Bucket=aws.bucket, Key=key)["VersionId"]
    return event


def test_s3_event_with_an_encoded_key_indexes_the_dropped_file(aws, lambda_context):
    inst = make_instance("ct", PatientID="S3-EVENT")
    aws.s3.put_object(Bucket=aws.bucket, Key="incoming/My Study/file+1.dcm", Body=inst.data)
    handler = s3_handler(Settings(bucket_name=aws.bucket, table_name=aws.table))
    event = s3_event(aws)
    assert event["Records"][0]["s3"]["object"]["key"] == "incoming/My+Study/file%2B1.dcm"
    assert handler(event, lambda_context) == {"indexed": 1}
    index = DynamoDbIndex(aws.dynamodb, aws.table)
    assert list_keys(aws.s3, aws.bucket) == [inst.stored_key(index)]
    assert index.get_study(inst.study_uid).instance_count == 1
    assert handler(event, lambda_context) == {"gone": 1}  # redelivered
    assert index.get_study(inst.study_uid).instance_count == 1


def test_s3_handler_reads_its_settings_from_the_environment(aws, lambda_context, monkeypatch):
    monkeypatch.setenv("BUCKET_NAME", aws.bucket)
    monkeypatch.setenv("TABLE_NAME", aws.table)
    aws.s3.put_object(Bucket=aws.bucket, Key="incoming/My Study/file+1.dcm", Body=b"not dicom" * 30)
    handler = s3_handler()
    assert handler(s3_event(aws), lambda_context) == {"rejected": 1}
    assert list_keys(aws.s3, aws.bucket) == ["rejected/My Study/file+1.dcm"]


def test_s3_events_of_another_bucket_are_skipped(aws, lambda_context):
    aws.s3.put_object(Bucket=aws.bucket, Key="incoming/My Study/file+1.dcm", Body=make_instance("mr").data)
    handler = s3_handler(Settings(bucket_name=aws.bucket, table_name=aws.table))
    assert handler(load_event("s3-object-created"), lambda_context) == {}
    assert list_keys(aws.s3, aws.bucket) == ["incoming/My Study/file+1.dcm"]


@pytest.fixture
def search_handler(aws):
    """The search Lambda over a table holding two SIIM studies and one other."""
    index, blobs = DynamoDbIndex(aws.dynamodb, aws.table), S3BlobStore(aws.s3, aws.bucket)
    studies = [
        make_instance("ct", PatientName="SIIM^JOE", StudyDate="20240105", StudyDescription="Chest"),
        make_instance("mr", PatientName="SIIMPSON^ANN", StudyDate="20230101", StudyDescription="Head"),
        make_instance("mr", PatientName="OTHER^ONE", StudyDate="20240106"),
    ]
    for inst in studies:
        ingest(inst.data, index=index, blobs=blobs)
    return api_handler("search", Settings(bucket_name=aws.bucket, table_name=aws.table)), studies


def test_api_gateway_search_returns_json_with_stage_prefixed_urls(search_handler, lambda_context):
    handler, studies = search_handler
    response = handler(load_event("apigw-get-studies"), lambda_context)
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is False
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    assert headers["content-type"] == "application/dicom+json"
    body = json.loads(response["body"])
    assert [s["0020000D"]["Value"][0] for s in body] == [studies[0].study_uid, studies[1].study_uid]
    assert [s["00081030"]["Value"][0] for s in body] == ["Chest", "Head"]  # includefield
    assert [s["00081190"]["Value"][0] for s in body] == [
        f"https://abc123defg.execute-api.eu-west-1.amazonaws.com/Prod/studies/{s.study_uid}" for s in studies[:2]
    ]


def test_api_gateway_search_errors_are_json(search_handler, lambda_context):
    handler, _ = search_handler
    event = load_event("apigw-get-studies")
    event["multiValueQueryStringParameters"]["Colour"] = ["blue"]
    event["queryStringParameters"]["Colour"] = "blue"
    response = handler(event, lambda_context)
    assert response["statusCode"] == 400
    assert "unknown query parameter 'Colour'" in json.loads(response["body"])["message"]


def test_an_upload_session_through_the_store_and_indexer_handlers(aws, lambda_context):
    """The store Lambda answers SigV4 URLs, a plain PUT uploads, the indexer's S3 event (key
    URL-encoded as S3 sends it) stores the file, and the status answer is final."""
    import base64

    import requests

    settings = Settings(bucket_name=aws.bucket, table_name=aws.table)
    store = api_handler("store", settings)
    inst = make_instance("ct", PatientID="UPLOAD-LAMBDA")

    def call(method, path, body=b""):
        event = load_event("apigw-get-studies")
        event.update(
            resource=path,
            path=path,
            httpMethod=method,
            body=base64.b64encode(body).decode(),
            isBase64Encoded=True,
            queryStringParameters=None,
            multiValueQueryStringParameters=None,
        )
        event["headers"]["Content-Type"] = "application/json"
        event["multiValueHeaders"]["Content-Type"] = ["application/json"]
        event["headers"]["Content-Length"] = str(len(body))
        event["multiValueHeaders"]["Content-Length"] = [str(len(body))]
        response = store(event, lambda_context)
        single = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        multi = {k.lower(): v[0] for k, v in (response.get("multiValueHeaders") or {}).items()}
        return response["statusCode"], {**single, **multi}, response["body"]

    code, _, body = call("POST", "/uploads", json.dumps({"files": [{"size": len(inst.data)}]}).encode())
    assert code == 201, body
    answer = json.loads(body)
    (entry,) = answer["files"]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in entry["url"]
    assert requests.put(entry["url"], data=inst.data, timeout=30).status_code == 200
    status = f"/uploads/{answer['session']}"
    code, headers, _ = call("GET", status)
    assert code == 202 and headers["retry-after"] == "2"

    event = s3_event(aws, f"uploads/{answer['session']}/1.dcm")
    assert s3_handler(settings)(event, lambda_context) == {"upload_stored": 1}
    code, headers, _ = call("GET", status)
    assert code == 200 and "retry-after" not in headers
    index = DynamoDbIndex(aws.dynamodb, aws.table)
    assert list_keys(aws.s3, aws.bucket) == [inst.stored_key(index)]
