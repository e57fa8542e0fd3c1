"""A poison file in incoming/ (not DICOM, truncated, empty) is handled by the indexer itself: moved
to rejected/, reported on the dead-letter queue with its key and reason, counted in a metric, and
the other files of the same event are still indexed. The invocation succeeds, so the function's
OnFailure destination (for what the handler cannot handle) is not triggered by bad files."""

from __future__ import annotations

import json

import boto3
import pytest

from dicomweb_server.aws.runtime import metrics
from dicomweb_server.aws.s3_events import s3_handler
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.settings import Settings
from tests.conftest import load_event
from tests.corpus import list_keys, make_instance, truncated

from .conftest import REGION


def _event(aws, keys: list[str]) -> dict:  # noqa: ANN001 - the aws fixture
    """One record per key, naming the key's current version as S3 does for a versioned bucket."""
    template = load_event("s3-object-created")["Records"][0]
    records = []
    for key in keys:
        record = json.loads(json.dumps(template))
        record["s3"]["bucket"]["name"] = aws.bucket
        record["s3"]["object"]["key"] = key.replace(" ", "+")
        record["s3"]["object"]["versionId"] = aws.s3.head_object(Bucket=aws.bucket, Key=key)["VersionId"]
        records.append(record)
    return {"Records": records}


@pytest.fixture
def queue(aws) -> str:
    return boto3.client("sqs", region_name=REGION).create_queue(QueueName=f"{aws.bucket}-dlq")["QueueUrl"]


def _messages(url: str) -> list[dict]:
    sqs = boto3.client("sqs", region_name=REGION)
    found = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return sorted((json.loads(m["Body"]) for m in found), key=lambda m: m["key"])


def _total(emitted: list[dict], metric: str) -> float:
    """The sum of one metric over EMF records (a value, or a list of values added in one flush)."""
    values = [e[metric] for e in emitted if metric in e]
    return sum(sum(v) if isinstance(v, list) else v for v in values)


def test_poison_files_are_moved_aside_reported_and_counted_and_never_block_the_others(
    aws, queue, lambda_context, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(metrics.provider, "namespace", "DICOMweb")  # template.yaml sets it in AWS
    metrics.clear_metrics()  # what earlier handlers in this process added but never flushed
    good = make_instance("ct", PatientID="POISON-NEIGHBOUR")
    files = {
        "incoming/a not dicom.dcm": b"this is not a DICOM file" * 20,
        "incoming/b truncated.dcm": truncated(make_instance("mr").data, 2000),
        "incoming/c empty.dcm": b"",
        "incoming/d good.dcm": good.data,
    }
    for key, body in files.items():
        aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=body)
    handler = s3_handler(Settings(bucket_name=aws.bucket, table_name=aws.table, dead_letter_queue_url=queue))

    counts = handler(_event(aws, list(files)), lambda_context)

    assert counts == {"rejected": 3, "indexed": 1}
    index = DynamoDbIndex(aws.dynamodb, aws.table)
    assert index.get_study(good.study_uid).instance_count == 1
    assert sorted(k for k in list_keys(aws.s3, aws.bucket) if not k.startswith("studies/")) == [
        "rejected/a not dicom.dcm",
        "rejected/b truncated.dcm",
        "rejected/c empty.dcm",
    ]
    reported = _messages(queue)
    assert [(m["key"], m["moved_to"]) for m in reported] == [
        ("incoming/a not dicom.dcm", "rejected/a not dicom.dcm"),
        ("incoming/b truncated.dcm", "rejected/b truncated.dcm"),
        ("incoming/c empty.dcm", "rejected/c empty.dcm"),
    ]
    assert {m["failure_reason"] for m in reported} == {"C000"}
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert _total(emitted, "drop_rejected") == 3
    assert _total(emitted, "drop_indexed") == 1


def test_without_a_queue_poison_files_are_still_moved_aside(aws, lambda_context, monkeypatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    aws.s3.put_object(Bucket=aws.bucket, Key="incoming/x.dcm", Body=b"\0" * 10)
    handler = s3_handler(Settings(bucket_name=aws.bucket, table_name=aws.table))
    assert handler(_event(aws, ["incoming/x.dcm"]), lambda_context) == {"rejected": 1}
    assert list_keys(aws.s3, aws.bucket) == ["rejected/x.dcm"]
