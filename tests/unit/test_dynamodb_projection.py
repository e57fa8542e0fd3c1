"""Every Query the DynamoDB index sends names each projected attribute once: DynamoDB (and the
local emulator) refuse overlapping document paths with a ValidationException, which moto does not
check. Found when the crash recovery's repair listed the frame tables of a study ("sk" twice)."""

from __future__ import annotations

from typing import Any

from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.store.ingest import ingest
from dicomweb_server.store.repair import repair
from tests.corpus import make_study


def test_repair_and_reads_never_project_an_attribute_twice(aws) -> None:
    index, blobs = DynamoDbIndex(aws.dynamodb, aws.table), S3BlobStore(aws.s3, aws.bucket)
    for instance in make_study(("ct", "mr", "multiframe")):
        ingest(instance.data, index=index, blobs=blobs)
    projections: list[list[str]] = []

    def check(params: dict[str, Any], **_: Any) -> None:
        if "ProjectionExpression" in params:
            names = params.get("ExpressionAttributeNames", {})
            projections.append([names.get(p.strip(), p.strip()) for p in params["ProjectionExpression"].split(",")])

    aws.dynamodb.meta.events.register("provide-client-params.dynamodb.Query", check)
    try:
        repair(index, blobs, grace=0.0)
    finally:
        aws.dynamodb.meta.events.unregister("provide-client-params.dynamodb.Query", check)
    assert projections, "the repair made no projected Query: nothing was checked"
    for paths in projections:
        assert len(paths) == len(set(paths)), f"overlapping projection paths: {paths}"
