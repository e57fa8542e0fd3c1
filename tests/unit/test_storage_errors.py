"""When S3 or DynamoDB fails, the adapters speak the domain's errors, never botocore's: throttling,
5xx and timeouts are ``ServiceUnavailable`` (a 503 with Retry-After), anything else a
``StorageError`` (a 500), and a client sees the JSON error shape without botocore's text.

Faults are injected with botocore event hooks on the real moto clients (``before-call`` raises
before the request is sent, ``after-call`` breaks a response body); every hook is unregistered
afterwards, since the moto clients are shared by the whole module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from starlette.testclient import TestClient

from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.errors import ServiceUnavailable, StorageError
from dicomweb_server.index import dynamodb as dynamodb_module
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.ports import AddOutcome, BlobNotFound
from dicomweb_server.search.query import Level, parse_query
from dicomweb_server.settings import Settings
from dicomweb_server.store.ingest import build_record, parse_part10
from dicomweb_server.web import create_app
from tests.corpus import Instance, make_instance, make_study, stow_body

from .conftest import Aws

#: Words of botocore's own error text that must never reach a client.
SECRET = "User: arn:aws:iam::123456789012:role/reader is not authorized to perform s3:GetObject"


def client_error(code: str, operation: str, *, status: int = 400, **response: Any) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": SECRET}, "ResponseMetadata": {"HTTPStatusCode": status}, **response},
        operation,
    )


@contextmanager
def raising(client: Any, event: str, error: Callable[[], Exception]) -> Iterator[list[str]]:
    """Every call matching ``event`` (``before-call.<service>.<Operation>``) raises ``error()``;
    yields the operations that were attempted."""
    attempts: list[str] = []

    def hook(model: Any = None, **_: Any) -> None:
        attempts.append(model.name)
        raise error()

    client.meta.events.register(event, hook)
    try:
        yield attempts
    finally:
        client.meta.events.unregister(event, hook)


@contextmanager
def broken_body(client: Any, event: str, error: Callable[[], Exception]) -> Iterator[None]:
    """The response of ``event`` (``after-call...``) arrives, but reading its body raises ``error()``."""

    class Broken:
        def read(self, *_: Any) -> bytes:
            raise error()

    def hook(parsed: dict[str, Any], **_: Any) -> None:
        parsed["Body"] = Broken()

    client.meta.events.register(event, hook)
    try:
        yield
    finally:
        client.meta.events.unregister(event, hook)


def record_of(instance: Instance) -> Any:
    return build_record(parse_part10(instance.data), instance.data)


def studies_query(**params: str) -> Any:
    return parse_query(list(params.items()), Level.STUDY)


@pytest.fixture
def index(aws: Aws) -> DynamoDbIndex:
    return DynamoDbIndex(aws.dynamodb, aws.table)


@pytest.fixture
def blobs(aws: Aws) -> S3BlobStore:
    return S3BlobStore(aws.s3, aws.bucket)


# -- DynamoDB ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_a_throttled_search_is_service_unavailable_with_retry_after(aws: Aws, index: DynamoDbIndex, code: str) -> None:
    with (
        raising(aws.dynamodb, "before-call.dynamodb.Query", lambda: client_error(code, "Query")) as attempts,
        pytest.raises(ServiceUnavailable) as caught,
    ):
        index.search_studies(studies_query(PatientID="P1"))  # drives on the patient's postings: one Query
    assert attempts == ["Query"]
    assert caught.value.status == 503
    assert caught.value.retry_after >= 1
    assert caught.value.headers() == {"Retry-After": str(caught.value.retry_after)}
    assert "DynamoDB" in caught.value.message and code in caught.value.message
    assert SECRET not in caught.value.message


def test_a_throttled_hydration_of_search_candidates_is_service_unavailable(aws: Aws, index: DynamoDbIndex) -> None:
    error = lambda: client_error("ProvisionedThroughputExceededException", "BatchGetItem")  # noqa: E731
    with (
        raising(aws.dynamodb, "before-call.dynamodb.BatchGetItem", error),
        pytest.raises(ServiceUnavailable),
    ):
        index.search_studies(studies_query(StudyInstanceUID="1.2.3"))


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_a_throttled_get_study_is_service_unavailable_not_a_missing_study(
    aws: Aws, index: DynamoDbIndex, code: str
) -> None:
    with (
        raising(aws.dynamodb, "before-call.dynamodb.GetItem", lambda: client_error(code, "GetItem")),
        pytest.raises(ServiceUnavailable) as caught,
    ):
        index.get_study("1.2.3")
    assert caught.value.retry_after >= 1


def test_an_unreachable_dynamodb_endpoint_is_service_unavailable(aws: Aws, index: DynamoDbIndex) -> None:
    error = lambda: EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com")  # noqa: E731
    expected = r"DynamoDB could not be reached \(get_item: EndpointConnectionError\)"
    with (
        raising(aws.dynamodb, "before-call.dynamodb.GetItem", error),
        pytest.raises(ServiceUnavailable, match=expected),
    ):
        index.get_study("1.2.3")


def test_an_add_whose_transactions_are_all_cancelled_by_conflicts_is_service_unavailable(
    aws: Aws, index: DynamoDbIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(dynamodb_module, "time", SimpleNamespace(sleep=sleeps.append))
    instance = make_instance("ct")
    cancelled = lambda: client_error(  # noqa: E731
        "TransactionCanceledException",
        "TransactWriteItems",
        CancellationReasons=[{"Code": "TransactionConflict", "Message": "conflict"}, {"Code": "None"}],
    )
    with (
        raising(aws.dynamodb, "before-call.dynamodb.TransactWriteItems", cancelled) as attempts,
        pytest.raises(ServiceUnavailable) as caught,
    ):
        index.add_instance(record_of(instance))
    assert not isinstance(caught.value, RuntimeError)
    assert caught.value.retry_after >= 1 and "send the instance again" in caught.value.message
    assert len(attempts) > 1 and len(sleeps) == len(attempts)  # it retried, backing off, before giving up
    assert index.get_study(instance.study_uid) is None
    # once the conflicts stop, the same instance is added
    assert index.add_instance(record_of(instance)) is AddOutcome.ADDED


def test_a_conditional_check_still_means_already_indexed(aws: Aws, index: DynamoDbIndex) -> None:
    """The codes the adapter handles itself are not translated."""
    record = record_of(make_instance("mr"))
    assert index.add_instance(record) is AddOutcome.ADDED
    assert index.add_instance(record) is AddOutcome.ALREADY_INDEXED


def test_other_dynamodb_errors_are_storage_errors_not_service_unavailable(aws: Aws, index: DynamoDbIndex) -> None:
    error = lambda: client_error("AccessDeniedException", "Query")  # noqa: E731
    with (
        raising(aws.dynamodb, "before-call.dynamodb.Query", error),
        pytest.raises(StorageError) as caught,
    ):
        index.search_studies(studies_query(PatientID="P1"))
    assert not isinstance(caught.value, ServiceUnavailable)
    assert caught.value.status == 500
    assert caught.value.message == "DynamoDB refused query (AccessDeniedException)"


# -- S3 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [("SlowDown", 503), ("ServiceUnavailable", 503), ("InternalError", 500), ("AnUnknownServerFault", 502)],
)
def test_s3_throttling_and_5xx_on_get_are_service_unavailable(
    aws: Aws, blobs: S3BlobStore, code: str, status: int
) -> None:
    blobs.put("studies/x.dcm", b"DICM")
    error = lambda: client_error(code, "GetObject", status=status)  # noqa: E731
    with (
        raising(aws.s3, "before-call.s3.GetObject", error),
        pytest.raises(ServiceUnavailable) as caught,
    ):
        blobs.get("studies/x.dcm")
    assert caught.value.headers()["Retry-After"] == str(caught.value.retry_after)
    assert "S3" in caught.value.message and code in caught.value.message


def test_s3_access_denied_is_a_storage_error_not_service_unavailable(aws: Aws, blobs: S3BlobStore) -> None:
    blobs.put("studies/x.dcm", b"DICM")
    with (
        raising(aws.s3, "before-call.s3.GetObject", lambda: client_error("AccessDenied", "GetObject", status=403)),
        pytest.raises(StorageError) as caught,
    ):
        blobs.get("studies/x.dcm")
    assert type(caught.value) is StorageError and caught.value.status == 500
    assert caught.value.message == "S3 refused get_object (AccessDenied)"


def test_s3_access_denied_on_copy_is_not_mistaken_for_a_missing_object(aws: Aws, blobs: S3BlobStore) -> None:
    blobs.put("studies/x.dcm", b"DICM")
    with (
        raising(aws.s3, "before-call.s3.CopyObject", lambda: client_error("AccessDenied", "CopyObject", status=403)),
        pytest.raises(StorageError) as caught,
    ):
        blobs.copy("studies/x.dcm", "studies/y.dcm")
    assert not isinstance(caught.value, KeyError)


def test_a_missing_key_is_blob_not_found(blobs: S3BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        blobs.get("studies/never-stored.dcm")
    with pytest.raises(BlobNotFound):
        blobs.copy("studies/never-stored.dcm", "studies/elsewhere.dcm")


@pytest.mark.parametrize(
    "error",
    [
        lambda: EndpointConnectionError(endpoint_url="https://s3.eu-west-1.amazonaws.com"),
        lambda: ConnectTimeoutError(endpoint_url="https://s3.eu-west-1.amazonaws.com"),
    ],
    ids=["endpoint-connection", "connect-timeout"],
)
def test_an_unreachable_s3_is_service_unavailable(aws: Aws, blobs: S3BlobStore, error: Callable[[], Exception]) -> None:
    with (
        raising(aws.s3, "before-call.s3.GetObject", error),
        pytest.raises(ServiceUnavailable, match="S3 could not be reached"),
    ):
        blobs.get("studies/x.dcm")
    with (
        raising(aws.s3, "before-call.s3.PutObject", error),
        pytest.raises(ServiceUnavailable),
    ):
        blobs.put("studies/x.dcm", b"DICM")


def test_a_read_timeout_while_the_body_streams_is_service_unavailable(aws: Aws, blobs: S3BlobStore) -> None:
    blobs.put("studies/x.dcm", b"DICM")
    with (
        broken_body(aws.s3, "after-call.s3.GetObject", lambda: ReadTimeoutError(endpoint_url="https://s3")),
        pytest.raises(ServiceUnavailable, match=r"S3 could not be reached \(GetObject: ReadTimeoutError\)"),
    ):
        blobs.get("studies/x.dcm")
    assert blobs.get("studies/x.dcm") == b"DICM"


# -- over HTTP -----------------------------------------------------------------------------------------


@pytest.fixture
def http(aws: Aws, index: DynamoDbIndex, blobs: S3BlobStore) -> TestClient:
    settings = Settings(bucket_name=aws.bucket, table_name=aws.table)
    return TestClient(create_app(settings, index=index, blobs=blobs), raise_server_exceptions=False)


@pytest.fixture
def stored_study(http: TestClient) -> list[Instance]:
    study = make_study(("mr",), instances_per_series=2)
    body, ctype = stow_body(study)
    assert http.post("/studies", content=body, headers={"Content-Type": ctype}).status_code == 200
    return study


def service_unavailable(r: Any) -> str:
    assert r.status_code == 503, (r.status_code, r.text[:300])
    assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"status", "error", "message"}
    assert body["status"] == 503 and body["error"] == "Service Unavailable"
    assert SECRET not in r.text
    return str(body["message"])


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/studies", "GetItem"),  # an empty archive's listing reads only the catalog of months
        ("/studies?PatientID=P1", "Query"),
        ("/studies?StudyInstanceUID=1.2.3", "BatchGetItem"),
        ("/studies/1.2.3/series", "Query"),
        ("/studies/1.2.3/instances", "Query"),
    ],
)
def test_a_throttled_qido_search_answers_503_with_retry_after(
    aws: Aws, http: TestClient, path: str, operation: str
) -> None:
    error = lambda: client_error("ThrottlingException", operation)  # noqa: E731
    with raising(aws.dynamodb, f"before-call.dynamodb.{operation}", error):
        message = service_unavailable(http.get(path))
    assert "try again shortly" in message
    assert http.get(path).status_code in (200, 204, 404)  # once DynamoDB recovers, the search is answered


def test_a_throttled_index_during_a_retrieve_answers_503(
    aws: Aws, http: TestClient, stored_study: list[Instance]
) -> None:
    error = lambda: client_error("ProvisionedThroughputExceededException", "Query")  # noqa: E731
    with raising(aws.dynamodb, "before-call.dynamodb.Query", error):
        service_unavailable(http.get(f"/studies/{stored_study[0].study_uid}"))
        service_unavailable(http.get(f"/studies/{stored_study[0].study_uid}/metadata"))


def test_a_throttled_s3_during_a_wado_retrieve_answers_503(
    aws: Aws, http: TestClient, stored_study: list[Instance]
) -> None:
    first = stored_study[0]
    instance = f"/studies/{first.study_uid}/series/{first.series_uid}/instances/{first.sop_uid}"
    with raising(aws.s3, "before-call.s3.GetObject", lambda: client_error("SlowDown", "GetObject", status=503)):
        message = service_unavailable(http.get(f"/studies/{first.study_uid}"))
        service_unavailable(http.get(instance + "/frames/1"))
        service_unavailable(http.get(instance + "/rendered"))
    assert "S3" in message
    r = http.get(f"/studies/{first.study_uid}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/related")


def test_s3_access_denied_during_a_retrieve_is_a_500_without_botocore_text(
    aws: Aws, http: TestClient, stored_study: list[Instance], caplog: pytest.LogCaptureFixture
) -> None:
    first = stored_study[0]
    denied = lambda: client_error("AccessDenied", "GetObject", status=403)  # noqa: E731
    with caplog.at_level(logging.ERROR), raising(aws.s3, "before-call.s3.GetObject", denied):
        r = http.get(f"/studies/{first.study_uid}")
    assert r.status_code == 500
    assert "retry-after" not in r.headers
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"status", "error", "message"}
    assert body["status"] == 500 and body["error"] == "Internal Server Error"
    assert body["message"] == "S3 refused get_object (AccessDenied)"
    for leaked in (SECRET, "An error occurred", "arn:aws", first.study_uid, first.sop_uid, aws.bucket):
        assert leaked not in r.text
    logged = " ".join(str(rec.__dict__) for rec in caplog.records)
    assert "StorageError" in logged and SECRET not in logged and first.study_uid not in logged


def test_a_stow_while_index_writes_conflict_is_a_503_and_leaves_no_object(
    aws: Aws, http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing could be stored because the index stayed busy: the request is a 503 with
    Retry-After (PS3.18 §10.5.3: before anything is stored), and no object is left behind."""
    monkeypatch.setattr(dynamodb_module, "time", SimpleNamespace(sleep=lambda _: None))
    instance = make_instance("ct")
    body, ctype = stow_body([instance])
    cancelled = lambda: client_error(  # noqa: E731
        "TransactionCanceledException", "TransactWriteItems", CancellationReasons=[{"Code": "TransactionConflict"}]
    )
    with raising(aws.dynamodb, "before-call.dynamodb.TransactWriteItems", cancelled):
        r = http.post("/studies", content=body, headers={"Content-Type": ctype})
    assert "send the instance again" in service_unavailable(r)
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket).get("Contents", [])
    assert [o["Key"] for o in listed] == []
    assert http.post("/studies", content=body, headers={"Content-Type": ctype}).status_code == 200


def test_a_throttle_after_some_instances_are_stored_fails_the_rest_with_0xa700_and_their_uids(
    aws: Aws, http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instances stored before DynamoDB throttled are answered as stored; the one it throttled
    is named in FailedSOPSequence with 0xA700 (out of resources), and the answer carries
    Retry-After; an unexpected error would be a 500, not a polite failure."""
    monkeypatch.setattr(dynamodb_module, "time", SimpleNamespace(sleep=lambda _: None))
    first, second = make_instance("ct"), make_instance("mr")
    body, ctype = stow_body([first, second])
    calls: list[str] = []

    def second_throttled(model: Any = None, **_: Any) -> None:
        calls.append(model.name)
        if len(calls) > 1:
            raise client_error("ProvisionedThroughputExceededException", "TransactWriteItems")

    aws.dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", second_throttled)
    try:
        r = http.post("/studies", content=body, headers={"Content-Type": ctype})
    finally:
        aws.dynamodb.meta.events.unregister("before-call.dynamodb.TransactWriteItems", second_throttled)
    assert r.status_code == 202, r.text[:300]
    assert r.headers["retry-after"].isdigit()
    (failed,) = r.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xA700]
    assert failed["00081155"].get("Value") == [second.sop_uid]
    assert failed["00081150"].get("Value") == [second.sop_class_uid]
    (stored,) = r.json()["00081199"]["Value"]
    assert stored["00081155"]["Value"] == [first.sop_uid]
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket=aws.bucket).get("Contents", [])]
    assert [k for k in keys if k.startswith(second.prefix)] == []  # nothing of the failed one is left


# -- every read path, throttled on every call -----------------------------------------------------------


def _read_paths(study: list[Instance]) -> list[tuple[str, bool]]:
    """(path, whether it reads S3): searches and study/instance metadata are answered from the index."""
    first = study[0]
    instance = f"/studies/{first.study_uid}/series/{first.series_uid}/instances/{first.sop_uid}"
    paths = [
        ("/studies?PatientName=*", False),
        (f"/studies/{first.study_uid}/series", False),
        (f"/studies/{first.study_uid}/metadata", False),
        (f"{instance}/metadata", False),
    ]
    return paths + [
        (path, True)
        for path in (
            f"/studies/{first.study_uid}",
            f"/studies/{first.study_uid}/series/{first.series_uid}/metadata",  # the cached document
            instance,
            f"{instance}/frames/1",
            f"{instance}/bulkdata/7FE00010",
            f"{instance}/rendered",
            f"{instance}/thumbnail",
            f"/wadouri?requestType=WADO&studyUID={first.study_uid}&seriesUID={first.series_uid}&objectUID={first.sop_uid}",
        )
    ]


@pytest.mark.parametrize(
    ("service", "code"),
    [("s3", "SlowDown"), ("dynamodb", "ThrottlingException"), ("dynamodb", "ProvisionedThroughputExceededException")],
)
def test_every_read_path_answers_503_with_retry_after_when_its_storage_is_throttled_on_every_call(
    aws: Aws, http: TestClient, stored_study: list[Instance], service: str, code: str
) -> None:
    """Search, retrieve (instances, metadata, frames, bulk data, WADO-URI) and the render function's
    rendered and thumbnail resources: whatever storage call a path makes, a throttle that outlasts
    the retries is a 503 with Retry-After, never a 500 and never a polite empty answer."""
    client = aws.s3 if service == "s3" else aws.dynamodb
    for path, reads_s3 in _read_paths(stored_study):
        with raising(client, f"before-call.{service}.*", lambda: client_error(code, "Any", status=503)):
            r = http.get(path, headers={"Accept": "*/*"})
        if service == "s3" and not reads_s3:
            assert r.status_code == 200, (path, r.status_code)  # answered from the index alone
        else:
            service_unavailable(r)
