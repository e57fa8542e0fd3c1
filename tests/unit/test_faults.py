"""Faults injected between the ports and AWS, with the clients the Lambda functions build
(``aws.runtime.aws_ports``: standard retry mode, bounded attempts with backoff): each outcome is
the one ``docs/reliability.md`` specifies. A throttled or failing AWS answer is made by a botocore
``before-send`` hook, so botocore's own retry logic sees it as it would see AWS's answer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ReadTimeoutError
from starlette.testclient import TestClient

from dicomweb_server.aws.runtime import aws_clients
from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.settings import Settings
from dicomweb_server.store.repair import repair
from dicomweb_server.web import create_app
from tests.corpus import make_instance, stow_body

from .conftest import Aws


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _answer(status: int, body: bytes, headers: dict[str, str]) -> AWSResponse:
    return AWSResponse("https://aws.invalid/", status, headers, _Raw(body))


THROTTLED = {
    "dynamodb": lambda: _answer(
        400,
        b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}',
        {"Content-Type": "application/x-amz-json-1.0"},
    ),
    "s3": lambda: _answer(503, b"<Error><Code>SlowDown</Code><Message>Reduce your request rate</Message></Error>", {}),
}


@contextmanager
def failing(client: Any, service: str, operation: str, times: int | None) -> Iterator[list[int]]:
    """The first ``times`` attempts of ``operation`` (every attempt when None) get AWS's throttling
    answer; yields the attempt counter."""
    attempts = [0]

    def hook(request: Any = None, **_: Any) -> AWSResponse | None:
        attempts[0] += 1
        if times is None or attempts[0] <= times:
            return THROTTLED[service]()
        return None

    event = f"before-send.{service}.{operation}"
    client.meta.events.register_first(event, hook)  # before moto's own before-send handler
    try:
        yield attempts
    finally:
        client.meta.events.unregister(event, hook)


@dataclass
class Ports:
    index: DynamoDbIndex
    blobs: S3BlobStore
    dynamodb: Any
    s3: Any
    http: TestClient


@pytest.fixture
def lambda_ports(aws: Aws) -> Ports:
    """The ports on the very clients the functions build (``aws_clients``), on moto."""
    settings = Settings(bucket_name=aws.bucket, table_name=aws.table)
    dynamodb, s3 = aws_clients()
    index, blobs = DynamoDbIndex(dynamodb, aws.table), S3BlobStore(s3, aws.bucket)
    return Ports(index, blobs, dynamodb, s3, TestClient(create_app(settings, index=index, blobs=blobs)))


def _keys(aws: Aws) -> list[str]:
    return [o["Key"] for o in aws.s3.list_objects_v2(Bucket=aws.bucket).get("Contents", [])]


@pytest.mark.parametrize("fault", ["dynamodb", "s3"])
def test_a_write_throttled_twice_is_retried_and_the_instance_stored_and_indexed(
    aws, lambda_ports: Ports, fault
) -> None:
    index, http = lambda_ports.index, lambda_ports.http
    instance = make_instance("ct")
    body, ctype = stow_body([instance])
    operation = "TransactWriteItems" if fault == "dynamodb" else "PutObject"
    with failing(getattr(lambda_ports, fault), fault, operation, times=2) as attempts:
        answer = http.post("/studies", content=body, headers={"Content-Type": ctype})
    assert answer.status_code == 200, answer.text[:300]
    assert attempts[0] == 3
    assert index.get_study(instance.study_uid).instance_count == 1
    assert _keys(aws) == [instance.stored_key(index)]


@pytest.mark.parametrize("fault", ["dynamodb", "s3"])
def test_a_write_that_keeps_failing_after_the_retries_is_a_503_that_leaves_nothing_half_written(
    aws, lambda_ports: Ports, fault
) -> None:
    """What botocore's bounded retries could not cure reaches the port as a throttling error:
    the answer is a 503 with Retry-After, and neither an object nor an index entry is left."""
    index, http = lambda_ports.index, lambda_ports.http
    instance = make_instance("ct")
    body, ctype = stow_body([instance])
    code, operation = (
        ("ProvisionedThroughputExceededException", "TransactWriteItems")
        if fault == "dynamodb"
        else ("SlowDown", "PutObject")
    )
    client = getattr(lambda_ports, fault)

    def throttled(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": code, "Message": "Rate exceeded"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
            operation,
        )

    client.meta.events.register(f"before-call.{fault}.{operation}", throttled)
    try:
        answer = http.post("/studies", content=body, headers={"Content-Type": ctype})
    finally:
        client.meta.events.unregister(f"before-call.{fault}.{operation}", throttled)
    assert answer.status_code == 503 and answer.headers["Retry-After"].isdigit()
    assert index.get_study(instance.study_uid) is None
    assert _keys(aws) == []  # the object put before a failed index write is removed again


def test_an_s3_put_whose_answer_times_out_is_not_acknowledged_and_the_repair_settles_it(aws, lambda_ports) -> None:
    """The object was written but its answer lost: the client is told to send it again (503),
    nothing is indexed, and the repair command indexes the object (or removes it once a resend
    has been indexed): never an entry without its object, never an acknowledged instance lost."""
    index, blobs, http, s3 = lambda_ports.index, lambda_ports.blobs, lambda_ports.http, lambda_ports.s3
    instance = make_instance("ct")
    body, ctype = stow_body([instance])

    def lost(http_response: Any = None, **_: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://s3.invalid/")

    s3.meta.events.register("after-call.s3.PutObject", lost)
    try:
        answer = http.post("/studies", content=body, headers={"Content-Type": ctype})
    finally:
        s3.meta.events.unregister("after-call.s3.PutObject", lost)
    assert answer.status_code == 503
    assert index.get_study(instance.study_uid) is None
    report = repair(index, blobs, grace=0.0)
    assert len(report.indexed) == 1 and not report.missing
    assert index.get_study(instance.study_uid).instance_count == 1
    assert _keys(aws) == [instance.stored_key(index)]


@pytest.mark.parametrize("operation", ["CopyObject", "DeleteObject"])
def test_an_s3_drop_whose_storage_keeps_failing_is_retried_with_the_file_still_in_incoming(
    aws, lambda_ports: Ports, operation
) -> None:
    """The S3 drop's writes (the server-side copy to the object key, the removal from incoming/): a
    throttle that outlasts the retries fails the invocation (so the event is retried, then
    dead-lettered) and leaves the dropped file in incoming/; the retried event finishes it."""
    from dicomweb_server.errors import ServiceUnavailable
    from dicomweb_server.store.drop import DropOutcome, index_dropped
    from dicomweb_server.store.ingest import StorageFailed

    instance = make_instance("ct")
    aws.s3.put_object(Bucket=aws.bucket, Key="incoming/x.dcm", Body=instance.data)

    def throttled(**_: Any) -> None:
        error = {"Error": {"Code": "SlowDown", "Message": "Reduce"}, "ResponseMetadata": {"HTTPStatusCode": 503}}
        raise ClientError(error, operation)

    event = f"before-call.s3.{operation}"
    lambda_ports.s3.meta.events.register(event, throttled)
    try:
        with pytest.raises((ServiceUnavailable, StorageFailed)):
            index_dropped("incoming/x.dcm", index=lambda_ports.index, blobs=lambda_ports.blobs)
    finally:
        lambda_ports.s3.meta.events.unregister(event, throttled)
    assert "incoming/x.dcm" in _keys(aws)  # waits for the retried event
    outcome, _ = index_dropped("incoming/x.dcm", index=lambda_ports.index, blobs=lambda_ports.blobs)
    assert outcome in (DropOutcome.INDEXED, DropOutcome.DUPLICATE)  # DUPLICATE: indexed before the delete failed
    assert lambda_ports.index.get_study(instance.study_uid).instance_count == 1
    assert _keys(aws) == [instance.stored_key(lambda_ports.index)]
