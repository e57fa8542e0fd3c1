"""AWS calls per stored instance under each duplicate policy (docs/duplicates.md), counted with
botocore event hooks on the real S3 and DynamoDB adapters over moto: a number that does not
depend on the machine.

    PYTHONPATH=layers/dicomweb .venv/bin/python benchmarks/duplicate_calls.py
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):  # moto only, never real credentials
    for suffix in ("", "_S3", "_DYNAMODB"):
        os.environ.pop(name + suffix, None)
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="eu-west-1")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from dicomweb_server.blobs.s3 import S3BlobStore  # noqa: E402
from dicomweb_server.index.dynamodb import DynamoDbIndex  # noqa: E402
from dicomweb_server.settings import DuplicatePolicy  # noqa: E402
from dicomweb_server.store.ingest import InvalidInstance, ingest  # noqa: E402
from tests.corpus import create_bucket, create_table, make_instance  # noqa: E402


def main() -> None:
    with mock_aws():
        s3, db = boto3.client("s3"), boto3.client("dynamodb")
        create_bucket(s3, "bench-dup")
        create_table(db, "bench-dup")
        calls: Counter[str] = Counter()

        def count(event_name: str, **_: Any) -> None:
            _, service, operation = event_name.split(".")
            calls[f"{service}:{operation}"] += 1

        for client in (s3, db):
            client.meta.events.register("before-call.*.*", count)
        index, blobs = DynamoDbIndex(db, "bench-dup"), S3BlobStore(s3, "bench-dup")
        study, series, sop = generate_uid(), generate_uid(), generate_uid()
        same = {"study_uid": study, "series_uid": series, "sop_uid": sop}
        first = make_instance("ct", **same, PatientName="FIRST^NAME")
        cases = [
            ("new instance", first, DuplicatePolicy.ACCEPT_IDENTICAL),
            ("identical duplicate (accept-identical)", first, DuplicatePolicy.ACCEPT_IDENTICAL),
            ("duplicate (reject)", first, DuplicatePolicy.REJECT),
            ("other content (accept-identical)", make_instance("ct", **same), DuplicatePolicy.ACCEPT_IDENTICAL),
            (
                "overwrite, same study attributes",
                make_instance("ct", **same, PatientName="FIRST^NAME", InstanceNumber=7),
                DuplicatePolicy.OVERWRITE,
            ),
            (
                "overwrite, new PatientName",
                make_instance("ct", **same, PatientName="SECOND^NAME", InstanceNumber=7),
                DuplicatePolicy.OVERWRITE,
            ),
            (
                "overwrite, new Modality and SOP class",
                make_instance("mr", **same, PatientName="SECOND^NAME"),
                DuplicatePolicy.OVERWRITE,
            ),
        ]
        print("| case | outcome | AWS calls |\n|---|---|---|")
        for label, inst, policy in cases:
            calls.clear()
            try:
                outcome = ingest(inst.data, index=index, blobs=blobs, duplicate_policy=policy).outcome.value
            except InvalidInstance as exc:
                outcome = f"0x{int(exc.reason):04X}"
            spelled = ", ".join(f"{n} {op}" for op, n in sorted(calls.items()))
            print(f"| {label} | {outcome} | {sum(calls.values())}: {spelled} |")


if __name__ == "__main__":
    main()
