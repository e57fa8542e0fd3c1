"""Streaming ingest and frames by range: peak memory of the indexer for a large S3 drop and upload, and the
AWS calls and bytes one frame of a 120-frame instance costs.

Run: ``.venv/bin/python benchmarks/ingest_memory.py [--size-mb 1024] [--json out.json]``
(with ``PYTHONPATH=layers/dicomweb:.`` from the repository root).

1. A native multi-frame of ``--size-mb`` MB (1024 × 1024 16-bit frames) is written to a temporary
   folder under /tmp frame by frame, uploaded to ``incoming/`` (an S3 drop), to
   ``uploads/{session}/1.dcm`` (file 1 of an upload session, ``store.uploads.index_upload``), and,
   with a file meta group that disagrees with the data set, to ``incoming/`` again (the corrected
   object is streamed into a multipart upload), each to a bucket on the local emulator
   (ministack from ``scripts/localcloud.py``, its own process, objects on disk), and indexed by
   ``index_dropped`` / ``index_upload`` over the real S3 / DynamoDB adapters **in a child process** that
   can import only what the indexer's Lambda package carries (``benchmarks/run.py``'s packaged
   view: no numpy, Pillow…); its peak RSS (``VmHWM``) is reported next to its RSS after imports
   and client set-up. The file is deleted afterwards.
2. A 120-frame native instance (256 × 256 16-bit) is dropped the same way; one frame is fetched
   through the retrieve app with ``transfer-syntax=*``, every botocore call and GetObject body
   byte counted with event hooks.

Target (issue 9): indexer peak < 128 MB for a 1 GB file; (issue 8): ≤ frame size + 64 KiB read and
≤ 2 AWS calls for one frame.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "dicomweb"), str(ROOT)]

REGION = "us-east-1"
BUCKET, TABLE = "bench-ingest", "bench-ingest-index"

CHILD = r"""
import json, sys, time
def hwm_kb():  # VmHWM: peak RSS of this process image (ru_maxrss keeps the forking parent's)
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
hidden = set(json.loads(sys.argv[5]))  # what the indexer's Lambda package does not carry (numpy...)
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in hidden:
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Hide())
import boto3
from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.index.uploads import DynamoDbUploadSessions
from dicomweb_server.store.drop import index_dropped
from dicomweb_server.store.uploads import index_upload

endpoint, bucket, table, key = sys.argv[1:5]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
s3, ddb = boto3.client("s3", **kw), boto3.client("dynamodb", **kw)
blobs, index = S3BlobStore(s3, bucket), DynamoDbIndex(ddb, table)
sessions = DynamoDbUploadSessions(ddb, table)
ddb.describe_table(TableName=table)
before = hwm_kb()
start = time.perf_counter()
if key.startswith("uploads/"):
    outcome = index_upload(key, sessions=sessions, index=index, blobs=blobs).value
else:
    outcome = index_dropped(key, index=index, blobs=blobs)[0].value
elapsed = time.perf_counter() - start
peak = hwm_kb()
print(json.dumps({"outcome": outcome, "rss_before_kb": before, "rss_peak_kb": peak, "seconds": elapsed}))
"""


def _clients(endpoint: str) -> tuple[Any, Any]:
    import boto3

    kw: dict[str, Any] = {
        "endpoint_url": endpoint,
        "region_name": REGION,
        "aws_access_key_id": "x",
        "aws_secret_access_key": "x",
    }
    return boto3.client("s3", **kw), boto3.client("dynamodb", **kw)


#: What is measured: (name, where the file goes, whether its file meta group disagrees with its data set).
PATHS = (
    ("drop", "incoming/large.dcm", False),
    ("upload", "uploads/{session}/1.dcm", False),
    ("drop, file meta rewritten (0xB000)", "incoming/coerced.dcm", True),
)


def indexer_memory(endpoint: str, size_mb: int, key: str, coerced: bool = False) -> dict[str, Any]:
    """Index one file of ``size_mb`` MB put at ``key`` (an S3 drop, or file 1 of an upload
    session created here) in a child process; its peak RSS."""
    from tests.frames_data import large_native_file

    s3, ddb = _clients(endpoint)
    folder = Path(tempfile.mkdtemp(prefix="ingest-bench-", dir="/tmp"))
    try:
        path = folder / "large.dcm"
        meta = {"MediaStorageSOPInstanceUID": "1.2.3"} if coerced else None
        frames = large_native_file(str(path), size_mb * 1024**2, meta=meta)
        size = path.stat().st_size
        if "{session}" in key:
            import secrets

            from dicomweb_server.index.uploads import DynamoDbUploadSessions
            from dicomweb_server.ports import UploadSession

            session = secrets.token_hex(16)
            expires = int(time.time()) + 3600
            DynamoDbUploadSessions(ddb, TABLE).create(UploadSession(session, 1, expires, {}), expires + 3600)
            key = key.format(session=session)
        s3.upload_file(str(path), BUCKET, key)  # multipart, as a client's upload of a large file is
        path.unlink()  # the indexer reads S3, not the file
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'dicomweb'}{os.pathsep}{ROOT}"}
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from run import hidden_modules  # the packaged view of benchmarks/run.py

        out = subprocess.run(
            [sys.executable, "-c", CHILD, endpoint, BUCKET, TABLE, key, json.dumps(hidden_modules("indexer"))],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        child = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "object_bytes": size,
        "frames": frames,
        "outcome": child["outcome"],
        "indexer_rss_after_imports_mb": round(child["rss_before_kb"] / 1024, 1),
        "indexer_rss_peak_mb": round(child["rss_peak_kb"] / 1024, 1),
        "indexer_seconds": round(child["seconds"], 1),
    }


def one_frame(endpoint: str) -> dict[str, Any]:
    from pydicom import dcmread
    from starlette.testclient import TestClient

    from dicomweb_server.blobs.s3 import S3BlobStore
    from dicomweb_server.index.dynamodb import DynamoDbIndex
    from dicomweb_server.settings import Settings
    from dicomweb_server.store.drop import index_dropped
    from dicomweb_server.web import create_app
    from tests.frames_data import native, noise

    s3, ddb = _clients(endpoint)
    blobs, index = S3BlobStore(s3, BUCKET), DynamoDbIndex(ddb, TABLE)
    data, frames = native(noise(120, 256, 256))
    blobs.put("incoming/mf.dcm", data)
    index_dropped("incoming/mf.dcm", index=index, blobs=blobs)
    import io

    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    url = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames/60"
    client = TestClient(create_app(Settings(bucket_name=BUCKET, table_name=TABLE), index=index, blobs=blobs))
    calls: Counter[str] = Counter()
    read = {"bytes": 0}

    def before(event_name: str, **_: Any) -> None:
        calls[event_name.split(".", 1)[1]] += 1

    def after(parsed: dict[str, Any], **_: Any) -> None:
        read["bytes"] += int(parsed.get("ContentLength", 0))

    for c in (s3, ddb):
        c.meta.events.register("before-call.*.*", before)
        c.meta.events.register("after-call.s3.GetObject", after)
    response = client.get(url, headers={"Accept": "application/octet-stream; transfer-syntax=*"})
    assert response.status_code == 200 and response.content == frames[59], "wrong frame"
    return {
        "instance_bytes": len(data),
        "frame_bytes": len(frames[59]),
        "s3_bytes_read": read["bytes"],
        "aws_calls": sum(calls.values()),
        "calls": dict(calls),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the dropped file (default 1024)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "scripts"))
    import localcloud  # noqa: I001 - from scripts/, put on the path just above
    from tests.corpus import create_bucket, create_table

    os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION=REGION)
    workdir = Path(tempfile.mkdtemp(prefix="ingest-bench-cloud-", dir="/tmp"))
    (workdir / "logs").mkdir()
    port = localcloud.free_port()
    server = localcloud._start_ministack(workdir, port, persist=True)
    try:
        localcloud._wait_healthy(server, port, workdir / "logs" / "ministack.log")
        endpoint = f"http://127.0.0.1:{port}"
        s3, ddb = _clients(endpoint)
        create_bucket(s3, BUCKET)
        create_table(ddb, TABLE)
        started = time.perf_counter()
        results: dict[str, Any] = {"frame": one_frame(endpoint)}
        for name, key, coerced in PATHS:
            results[name] = indexer_memory(endpoint, args.size_mb, key, coerced)
        results["seconds"] = round(time.perf_counter() - started, 1)
    finally:
        server.terminate()  # SIGTERM: ministack's graceful stop
        server.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
    frame = results["frame"]
    ok_frame = frame["s3_bytes_read"] <= frame["frame_bytes"] + 64 * 1024 and frame["aws_calls"] <= 2
    print(
        f"{'PASS' if ok_frame else 'FAIL'} one frame of 120: {frame['aws_calls']} AWS calls {frame['calls']}, "
        f"{frame['s3_bytes_read']:,} bytes read for a {frame['frame_bytes']:,}-byte frame "
        f"(instance {frame['instance_bytes']:,} bytes)"
    )
    ok_all = ok_frame
    for name, _, _ in PATHS:
        got = results[name]
        ok = got["outcome"] in ("indexed", "stored") and got["indexer_rss_peak_mb"] < 128
        ok_all = ok_all and ok
        print(
            f"{'PASS' if ok else 'FAIL'} indexer, {name}, {got['object_bytes'] / 1024**2:,.0f} MB "
            f"({got['frames']} frames): peak RSS {got['indexer_rss_peak_mb']} MB "
            f"(after imports {got['indexer_rss_after_imports_mb']} MB), {got['indexer_seconds']} s, {got['outcome']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
