"""Opening the metadata of a 500-instance CT series: AWS calls and time, cold (document built and
cached) and warm (cached), gzip and identity, and a revalidation with If-None-Match.

Run: ``.venv/bin/python benchmarks/series_metadata.py [--instances 500]`` (about a minute; moto
in-process, no network). The calls are counted with botocore ``before-call`` hooks on the real
S3BlobStore and DynamoDbIndex adapters behind ``create_app``; times are in-process on moto, so
only their ratio means something (on AWS each call is a network round trip: tens of ms).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "dicomweb"))

import boto3  # noqa: E402
import numpy as np  # noqa: E402
from moto import mock_aws  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from benchmarks.run import moto_without_rollback_copies  # noqa: E402
from dicomweb_server.blobs.s3 import S3BlobStore  # noqa: E402
from dicomweb_server.index.dynamodb import DynamoDbIndex  # noqa: E402
from dicomweb_server.settings import Settings  # noqa: E402
from dicomweb_server.store.ingest import build_record, parse_part10  # noqa: E402
from dicomweb_server.web import create_app  # noqa: E402
from tests.corpus import create_bucket, create_table, source_dataset, to_part10  # noqa: E402

BUCKET, TABLE, REGION = "bench-series-bucket", "bench-series-index", "eu-west-1"


@contextmanager
def counted(*clients: Any) -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()

    def hook(model: Any, **_: Any) -> None:
        counts[f"{model.service_model.service_name}.{model.name}"] += 1

    for c in clients:
        c.meta.events.register("before-call", hook)
    try:
        yield counts
    finally:
        for c in clients:
            c.meta.events.unregister("before-call", hook)


def load(index: DynamoDbIndex, count: int) -> tuple[str, str]:
    """``count`` 512×512 16-bit CT slices of one series, indexed as ingest indexes them."""
    study, series = generate_uid(), generate_uid()
    ds = source_dataset("ct")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.Rows = ds.Columns = 512
    pixels = np.random.default_rng(0).integers(0, 4096, (512, 512), dtype="<u2")
    for number in range(1, count + 1):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = number
        pixels[0, 0] = number
        ds.PixelData = pixels.tobytes()
        data = to_part10(ds)
        record = build_record(parse_part10(data), data)
        index.add_instance(replace(record, object_key=f"studies/{study}/series/{series}/x/{number}.dcm"))
    return study, series


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500)
    args = parser.parse_args()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    with mock_aws():
        s3, ddb = boto3.client("s3", region_name=REGION), boto3.client("dynamodb", region_name=REGION)
        create_bucket(s3, BUCKET)
        create_table(ddb, TABLE)
        index = DynamoDbIndex(ddb, TABLE)
        t0 = time.perf_counter()
        with moto_without_rollback_copies():
            study, series = load(index, args.instances)
        print(f"loaded {args.instances} instances in {time.perf_counter() - t0:.1f} s")
        settings = Settings(bucket_name=BUCKET, table_name=TABLE)
        client = TestClient(create_app(settings, index=index, blobs=S3BlobStore(s3, BUCKET)))
        path = f"/studies/{study}/series/{series}/metadata"
        rows = []
        etag = ""
        for label, headers in (
            ("cold (builds and caches), gzip", {"accept-encoding": "gzip"}),
            ("warm (cached), gzip", {"accept-encoding": "gzip"}),
            ("warm (cached), identity", {"accept-encoding": "identity"}),
            ("revalidate (If-None-Match)", {"accept-encoding": "gzip", "if-none-match": "ETAG"}),
        ):
            headers = {k: (etag if v == "ETAG" else v) for k, v in headers.items()}
            with counted(s3, ddb) as calls:
                t = time.perf_counter()
                r = client.get(path, headers=headers)
                ms = (time.perf_counter() - t) * 1000
            etag = etag or r.headers.get("etag", "")
            sent = int(r.headers.get("content-length", 0) or 0)
            rows.append((label, r.status_code, sent, dict(sorted(calls.items())), ms))
    print(f"\n| series of {args.instances} CT instances | status | bytes sent | AWS calls | ms (moto) |")
    print("|---|---|---|---|---|")
    for label, status, sent, calls, ms in rows:
        text = ", ".join(f"{k} {v}" for k, v in calls.items()) or "none"
        print(f"| {label} | {status} | {sent:,} | {text} | {ms:.0f} |")
    warm = rows[1][3]
    ok = warm == {"dynamodb.GetItem": 1, "s3.GetObject": 1} and rows[1][1] == 200
    print(f"\n{'PASS' if ok else 'FAIL'}: a cached series opens with 1 GetItem + 1 GetObject ({warm})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
