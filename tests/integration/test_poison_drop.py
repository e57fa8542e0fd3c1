"""On the deployed stack: a poison file dropped into incoming/ is moved to rejected/ and reported
on the indexer's dead-letter queue by the handler, and a good file dropped beside it is indexed."""

from __future__ import annotations

import json
import time

import pytest

from tests.corpus import make_instance

from .conftest import Endpoint


def test_a_poison_drop_is_moved_aside_and_dead_lettered_while_its_neighbour_is_indexed(endpoint: Endpoint, s3) -> None:
    outputs = endpoint.cloud.outputs if endpoint.cloud is not None else {}
    queue = outputs.get("IndexerDeadLetterQueueUrl")
    if not queue:
        pytest.skip("needs the stack's IndexerDeadLetterQueueUrl output (an embedded or LocalStack cloud)")
    sqs = endpoint.boto3("sqs")
    good = make_instance("ct", PatientName="POISON^NEIGHBOUR")
    poison_key = f"incoming/poison-{good.sop_uid}.dcm"
    s3.put_object(Bucket=endpoint.bucket, Key=poison_key, Body=b"definitely not DICOM" * 10)
    s3.put_object(Bucket=endpoint.bucket, Key=f"incoming/good-{good.sop_uid}.dcm", Body=good.data)
    deadline, reported = time.monotonic() + 60, None
    while time.monotonic() < deadline and reported is None:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            body = json.loads(message["Body"])
            if body.get("key") == poison_key:
                reported = body
    assert reported is not None, "the poison file was not reported on the dead-letter queue"
    assert reported["moved_to"] == f"rejected/poison-{good.sop_uid}.dcm" and reported["failure_reason"] == "C000"
    s3.head_object(Bucket=endpoint.bucket, Key=reported["moved_to"])
    while time.monotonic() < deadline:
        if endpoint.get("/studies", params={"StudyInstanceUID": good.study_uid}).status_code == 200:
            return
        time.sleep(0.5)
    raise AssertionError("the good file dropped beside the poison one was not indexed")
