"""AWS calls per stored instance (issue 9's target: one S3 PUT, at most three DynamoDB requests),
counted with botocore ``before-call`` hooks on the real S3 and DynamoDB adapters over moto: a count
that does not depend on the machine."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.store.ingest import Stored, ingest
from tests.corpus import make_instance, make_study

S3_PUTS = ("PutObject", "CopyObject", "UploadPart", "CreateMultipartUpload")


@contextmanager
def counted(*clients: Any) -> Iterator[Counter[str]]:
    """Every API request the clients send, as ``service.Operation`` (a retry is not counted again)."""
    calls: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        calls[f"{service}.{operation}"] += 1

    for client in clients:
        client.meta.events.register("before-call.*.*", count)
    try:
        yield calls
    finally:
        for client in clients:
            client.meta.events.unregister("before-call.*.*", count)


def _split(calls: Counter[str]) -> tuple[dict[str, int], dict[str, int]]:
    s3 = {k.split(".", 1)[1]: v for k, v in calls.items() if k.startswith("s3.")}
    ddb = {k.split(".", 1)[1]: v for k, v in calls.items() if k.startswith("dynamodb.")}
    return s3, ddb


@pytest.mark.parametrize("first_of_its_study", [True, False], ids=["new study", "study exists"])
def test_a_new_instance_costs_one_s3_put_and_at_most_three_dynamodb_requests(aws, first_of_its_study) -> None:
    index, blobs = DynamoDbIndex(aws.dynamodb, aws.table), S3BlobStore(aws.s3, aws.bucket)
    study = make_study(("ct",), instances_per_series=2)
    if not first_of_its_study:
        ingest(study[0].data, index=index, blobs=blobs)
    instance = study[1]
    with counted(aws.s3, aws.dynamodb) as calls:
        result = ingest(instance.data, index=index, blobs=blobs)
    assert result.outcome is Stored.NEW
    s3, ddb = _split(calls)
    assert s3 == {"PutObject": 1}, s3
    assert sum(ddb.values()) <= 3, ddb
    assert ddb.get("TransactWriteItems") == 1, ddb  # the instance and its aggregates in one write
    # and what was counted is what was stored
    assert instance.stored_key(index) == result.key


def test_an_identical_resend_writes_nothing(aws) -> None:
    index, blobs = DynamoDbIndex(aws.dynamodb, aws.table), S3BlobStore(aws.s3, aws.bucket)
    instance = make_instance("mr")
    ingest(instance.data, index=index, blobs=blobs)
    with counted(aws.s3, aws.dynamodb) as calls:
        result = ingest(instance.data, index=index, blobs=blobs)
    assert result.outcome is Stored.IDENTICAL_DUPLICATE
    s3, ddb = _split(calls)
    assert not any(op in s3 for op in S3_PUTS), s3
    assert ddb == {"GetItem": 1}, ddb


def test_an_instance_stored_with_a_coerced_file_meta_costs_the_same(aws) -> None:
    """Validation and correction happen in process: no extra AWS request."""
    from tests.unit.test_stow_validation import ct, part10

    index, blobs = DynamoDbIndex(aws.dynamodb, aws.table), S3BlobStore(aws.s3, aws.bucket)
    ds = ct()
    data = part10(ds, declared="1.2.840.10008.1.2.1", implicit=True, meta={"MediaStorageSOPInstanceUID": None})
    with counted(aws.s3, aws.dynamodb) as calls:
        result = ingest(data, index=index, blobs=blobs)
    assert result.warnings
    s3, ddb = _split(calls)
    assert s3 == {"PutObject": 1}, s3
    assert sum(ddb.values()) <= 3, ddb
