"""A STOW-RS request that runs out of time (the Lambda's remaining time, or the STOW time budget,
less a margin) starts no new instance: the instances stored so far are answered as stored, the
rest fail with 0xA700 and Retry-After, and nothing is left half written. Simulated with a slow
blob store and a tiny budget; through the Lambda handler, the context's remaining time decides."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from starlette.testclient import TestClient

from dicomweb_server.aws.api import api_handler
from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.web.app import create_app
from tests.conftest import LambdaContext, load_event
from tests.corpus import list_keys, make_study, stow_body

FAILED_SOP_SEQUENCE, FAILURE_REASON, REFERENCED_SOP_SEQUENCE = "00081198", "00081197", "00081199"


class SlowBlobs(MemoryBlobStore):
    """Every put takes ``delay`` seconds (a slow or distant S3)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def put(self, key: str, data: bytes, content_type: str = "application/dicom") -> None:
        time.sleep(self.delay)
        super().put(key, data, content_type)


def _client(blobs: MemoryBlobStore, index: MemoryIndex, budget_ms: int) -> TestClient:
    settings = Settings(bucket_name="b", table_name="t", stow_time_budget_ms=budget_ms, stow_time_margin_ms=0)
    return TestClient(create_app(settings, index=index, blobs=blobs))


def test_instances_past_the_deadline_fail_with_0xa700_and_retry_after_and_the_rest_are_stored() -> None:
    blobs, index = SlowBlobs(0.1), MemoryIndex()
    study = make_study(("ct",) * 10, PatientName="DEADLINE^PARTIAL")
    body, ctype = stow_body(study)
    answer = _client(blobs, index, budget_ms=350).post("/studies", content=body, headers={"Content-Type": ctype})
    assert answer.status_code == 202
    assert answer.headers["Retry-After"]
    stored = answer.json()[REFERENCED_SOP_SEQUENCE]["Value"]
    failed = answer.json()[FAILED_SOP_SEQUENCE]["Value"]
    assert 1 <= len(stored) < 10 and len(stored) + len(failed) == 10
    assert {f[FAILURE_REASON]["Value"][0] for f in failed} == {0xA700}
    failed_uids = {f["00081155"]["Value"][0] for f in failed}
    assert failed_uids == {i.sop_uid for i in study[len(stored) :]}
    # Exactly what was answered as stored is stored and indexed: no object without its entry.
    assert index.get_study(study[0].study_uid).instance_count == len(stored)
    assert len(list(blobs.list("studies/"))) == len(stored)


@dataclass(frozen=True)
class EndingContext(LambdaContext):
    """A Lambda context with little time left."""

    remaining_ms: int = 3_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_a_lambda_with_less_time_left_than_the_margin_stores_nothing_and_answers_503(aws, monkeypatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    body, ctype = stow_body(make_study(("ct", "mr")))
    event = load_event("apigw-get-studies")
    event.update(
        httpMethod="POST",
        body=base64.b64encode(body).decode(),
        isBase64Encoded=True,
        queryStringParameters=None,
        multiValueQueryStringParameters=None,
    )
    event["headers"] = {**event.get("headers", {}), "Content-Type": ctype, "Content-Length": str(len(body))}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    handler = api_handler("store", Settings(bucket_name=aws.bucket, table_name=aws.table, stow_time_margin_ms=5_000))

    response = handler(event, EndingContext(remaining_ms=3_000))

    assert response["statusCode"] == 503, response.get("body")
    assert list_keys(aws.s3, aws.bucket) == []
    enough = handler(event, EndingContext(remaining_ms=60_000))
    assert enough["statusCode"] == 200, enough.get("body")
