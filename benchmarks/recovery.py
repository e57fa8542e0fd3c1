"""What a crash of the local stack costs at archive scale: the recovery `make run` does after an
unclean stop (redeploy, then reconcile the index with the bucket), at 10,000 studies.

1. An embedded ministack (persistent, in a temporary folder) with the stack deployed.
2. ``--studies`` studies bulk-loaded through the project's own index code (one instance each,
   its object in S3), then a graceful stop: ministack saves the tables.
3. A clean start, ``--fresh`` instances stored through STOW-RS (indexed by the deployed stack,
   in memory only), then SIGKILL to every ministack process at once.
4. The next start recovers; the report gives its phases, what the reconcile indexed, and the
   AWS calls of one reconcile pass over the whole archive (counted with botocore event hooks).

    .venv/bin/python benchmarks/recovery.py [--studies 10000] [--fresh 30]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "layers" / "dicomweb")]

import requests  # noqa: E402

import localcloud  # noqa: E402
from dicomweb_server.blobs.keys import instance_key  # noqa: E402
from dicomweb_server.blobs.s3 import S3BlobStore  # noqa: E402
from dicomweb_server.index.dynamodb import DynamoDbIndex  # noqa: E402
from dicomweb_server.store.repair import repair  # noqa: E402
from tests.archive import record, studies  # noqa: E402
from tests.corpus import make_study, stow_body  # noqa: E402


def _counted(client: object, counts: collections.Counter[str]) -> object:
    def count(event_name: str, **_: object) -> None:
        counts[event_name.split(".", 2)[-1]] += 1

    client.meta.events.register("before-call.*.*", count)  # type: ignore[attr-defined]
    return client


def _bulk_load(cloud: localcloud.Cloud, count: int) -> float:
    index = DynamoDbIndex(cloud.boto3_client("dynamodb"), cloud.table)
    s3 = cloud.boto3_client("s3")
    started = time.perf_counter()

    def one(spec: object) -> None:
        rec = record(spec)  # type: ignore[arg-type]
        index.add_instance(rec)
        s3.put_object(Bucket=cloud.bucket, Key=instance_key(rec.study_uid, rec.series_uid, rec.sop_uid), Body=b"x")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, studies(count)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--fresh", type=int, default=30, help="instances stored after the last graceful stop")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dicomweb-recovery-"))
    out: dict[str, object] = {"studies": args.studies, "fresh_instances": args.fresh}

    cloud = localcloud.start_cloud(workdir, persist=True)
    port = cloud.port
    out["bulk_load_s"] = round(_bulk_load(cloud, args.studies), 1)
    cloud.stop()  # graceful: the tables are saved

    cloud = localcloud.start_cloud(workdir, port=port, persist=True)
    fresh = make_study(("ct",) * args.fresh, PatientName="RECOVERY^FRESH")
    body, ctype = stow_body(fresh)
    assert requests.post(f"{cloud.base_url}/studies", data=body, headers={"Content-Type": ctype}, timeout=300).ok
    os.killpg(cloud.process.pid, signal.SIGKILL)
    cloud.process.wait(30)
    cloud.stop()

    started = time.perf_counter()
    cloud = localcloud.start_cloud(workdir, port=port, persist=True)
    out["recovery_s"] = round(time.perf_counter() - started, 1)
    out["recovery_report"] = cloud.recovery
    found = requests.get(f"{cloud.base_url}/studies", params={"StudyInstanceUID": fresh[0].study_uid}, timeout=60)
    out["fresh_study_found"] = found.status_code == 200 and found.json()[0]["00201208"]["Value"] == [args.fresh]

    counts: collections.Counter[str] = collections.Counter()
    index = DynamoDbIndex(_counted(cloud.boto3_client("dynamodb"), counts), cloud.table)
    blobs = S3BlobStore(_counted(cloud.boto3_client("s3"), counts), cloud.bucket)
    started = time.perf_counter()
    report = repair(index, blobs, grace=0.0)
    out["reconcile_pass_s"] = round(time.perf_counter() - started, 1)
    out["reconcile_pass_objects"] = report.objects
    out["reconcile_pass_calls"] = dict(counts)
    cloud.stop()
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
