"""Whole-study retrieval throughput and memory: through the dev server (uvicorn on 127.0.0.1, with
in-memory storage, or with S3 and DynamoDB in a separate emulator process: ministack with nothing
deployed, as moto's server needs Flask, which the project does not install), and through the local stack (API
Gateway → Lambda → S3 in ministack), with the local stack's time split between our code and the
emulator.

Run: ``.venv/bin/python benchmarks/retrieve_stream.py`` (dev server, 200 MB study; about 2 min),
``--local`` to add the local stack (it starts one under .local/bench-cloud, or uses
``--endpoint .local/endpoint.json`` from ``make run``), ``--mb`` / ``--local-mb`` for the sizes.

* **MB/s** = bytes of the multipart answer / wall time of the GET, read in 1 MiB pieces.
* **Peak RSS** of the dev server while it streams: its ``VmHWM`` after the GET, with the
  high-water mark reset (``/proc/<pid>/clear_refs``) once the study is stored. With ``s3`` storage
  the objects live in the emulator's process, not the server's, so the number is what streaming
  costs (target < 256 MB); in memory the stored study itself is resident in the server.
* **Concurrency**: a 100-instance series body assembled in process over a store that answers each
  read after a fixed latency (``--latency-ms``, 20 ms: an S3 GET on AWS), with 1 and with 8 reads
  at once: retrieval time follows the reads in flight, not the instance count.
* **Split on the local stack**: the same request run in this process through the retrieve
  function's own handler (Mangum, ``api_handler("retrieve")``) against the stack's S3 and DynamoDB,
  under cProfile with one read at a time (cProfile sees one thread): time waiting on the emulator's
  S3/DynamoDB (socket reads, writes and connects) vs our code (reading the index, assembling the
  body, Mangum's base64). The rest of the HTTP time is
  the emulator's API Gateway and Lambda (the event and the base64 answer through its JSON).

The machine is shared: numbers are approximate; rerun for stable ones.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "dicomweb"))
sys.path.insert(0, str(ROOT / "scripts"))

from pydicom.uid import generate_uid  # noqa: E402

from tests.corpus import create_bucket, create_table, make_instance, stow_body  # noqa: E402

SLICE = 512 * 512 * 2
BATCH = 7  # instances per STOW (under the 4.5 MB request limit)
ACCEPT = 'multipart/related; type="application/dicom"'
MB = 1_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_study(megabytes: int) -> list[Any]:
    """512×512 16-bit CT slices (random pixels, so nothing compresses) adding up to ``megabytes``."""
    study, rng = generate_uid(), np.random.default_rng(1)
    series = [generate_uid() for _ in range(4)]
    count = max(1, megabytes * MB // (SLICE + 1500))
    return [
        make_instance(
            "ct",
            study_uid=study,
            series_uid=series[n % len(series)],
            PatientID="BENCH-STREAM",
            InstanceNumber=n + 1,
            Rows=512,
            Columns=512,
            BitsAllocated=16,
            BitsStored=12,
            HighBit=11,
            PixelRepresentation=0,
            PixelData=rng.integers(0, 4096, size=(512, 512), dtype=np.uint16).tobytes(),
        )
        for n in range(count)
    ]


def store(base: str, study: list[Any], headers: dict[str, str] | None = None) -> None:
    for start in range(0, len(study), BATCH):
        body, ctype = stow_body(study[start : start + BATCH])
        r = requests.post(f"{base}/studies", data=body, headers={**(headers or {}), "Content-Type": ctype}, timeout=300)
        r.raise_for_status()


def timed_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, float]:
    """Bytes received and seconds taken for the whole answer, read in 1 MiB pieces."""
    t0 = time.perf_counter()
    received = 0
    with requests.get(url, headers={"Accept": ACCEPT, **(headers or {})}, stream=True, timeout=900) as r:
        r.raise_for_status()
        for piece in r.iter_content(1024 * 1024):
            received += len(piece)
        if "content-length" in r.headers:
            assert received == int(r.headers["content-length"]), "short answer"
    return received, time.perf_counter() - t0


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def dev_server(megabytes: int, storage: str) -> dict[str, Any]:
    """Start web/dev.py, store a study of ``megabytes`` through STOW-RS, retrieve it whole."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "dicomweb")}
    argv = [sys.executable, "-m", "dicomweb_server.web.dev", "--port", str(port)]
    emulator = None
    if storage == "s3":
        import localcloud

        # ministack's S3 and DynamoDB, nothing deployed: the objects live in its process, not the server's.
        emulator = localcloud.start_cloud(ROOT / ".local" / "bench-s3", persist=False, deploy_stack=False)
        endpoint = emulator.aws_endpoint_url
        aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
        aws["AWS_DEFAULT_REGION"] = "us-east-1"
        env.update(aws)
        os.environ.update({k: v for k, v in aws.items() if k != "AWS_ENDPOINT_URL"})
        import boto3

        create_bucket(boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"), "dicomweb-dev")
        create_table(boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1"), "dicomweb-dev")
        argv.append("--aws")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(f"{base}/studies", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        study = make_study(megabytes)
        store(base, study)
        idle = _status(proc.pid, "VmRSS")
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # reset the peak RSS
        size, seconds = timed_get(f"{base}/studies/{study[0].study_uid}")
        peak = _status(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if emulator:
            emulator.stop()
    return {
        "storage": storage,
        "instances": len(study),
        "bytes": size,
        "seconds": round(seconds, 2),
        "mb_per_s": round(size / MB / seconds, 1),
        "rss_before_mb": round(idle / MB, 1),
        "peak_rss_mb": round(peak / MB, 1),
    }


def concurrency(latency: float, count: int) -> dict[str, Any]:
    """A series body over a store that answers each read after ``latency`` seconds (what an S3 GET
    costs on AWS, tens of ms), read one at a time and RetrieveConcurrency at a time."""
    from dicomweb_server.blobs.memory import MemoryBlobStore
    from dicomweb_server.records import StoredInstance
    from dicomweb_server.retrieve import instances as wado
    from dicomweb_server.retrieve import streams
    from dicomweb_server.retrieve.negotiation import InstanceFormat

    class SlowStore(MemoryBlobStore):
        def get(self, key: str) -> bytes:
            time.sleep(latency)
            return super().get(key)

    store, rng = SlowStore(), np.random.default_rng(2)
    found = []
    for n in range(count):
        key = f"studies/1.2/series/1.3/instances/1.4.{n}.dcm"
        store.put(key, rng.bytes(SLICE))
        found.append(
            StoredInstance(
                "1.2",
                "1.3",
                f"1.4.{n}",
                "1.2.840.10008.5.1.4.1.1.2",
                "1.2.840.10008.1.2.1",
                SLICE,
                "",
                1,
                {},
                {},
                None,
                key,
            )  # fmt: skip
        )
    out: dict[str, Any] = {"instances": count, "latency_ms": latency * 1000}
    for workers in (1, 8):
        t0 = time.perf_counter()
        body = streams.instances_body(found, store, InstanceFormat(True, None), wado.transcode, workers=workers)
        size = sum(len(piece) for piece in body.chunks)
        out[f"workers_{workers}_seconds"] = round(time.perf_counter() - t0, 2)
        out[f"workers_{workers}_mb_per_s"] = round(size / MB / (time.perf_counter() - t0), 1)
    return out


def _local_endpoint(path: str | None) -> tuple[dict[str, Any], Any]:
    import localcloud

    if path:
        return json.loads(Path(path).read_text()), None
    cloud = localcloud.start_cloud(ROOT / ".local" / "bench-cloud", persist=False, api_key="bench-key-0123456789")
    info = {
        "base_url": cloud.base_url,
        "api_key": "bench-key-0123456789",
        "aws_endpoint_url": cloud.aws_endpoint_url,
        "bucket": cloud.bucket,
        "table": cloud.table,
    }
    return info, cloud


def _waiting_on_emulator(stats: pstats.Stats) -> float:
    """Seconds spent in socket sends, receives and connects (the emulator serving S3/DynamoDB)."""
    total = 0.0
    for (_, _, name), (_, _, tt, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if any(f"'{call}' of '_socket.socket'" in name for call in ("recv_into", "recv", "sendall", "connect")):
            total += tt
    return total


def local_stack(megabytes: int, endpoint_file: str | None) -> dict[str, Any]:
    info, cloud = _local_endpoint(endpoint_file)
    headers = {"apikey": info["api_key"]} if info.get("api_key") else {}
    try:
        study = make_study(megabytes)
        store(info["base_url"], study, headers)
        path = f"/studies/{study[0].study_uid}"
        size, seconds = timed_get(info["base_url"] + path, headers)

        # The same request through the retrieve function's handler, in this process, profiled.
        os.environ.update(
            AWS_ENDPOINT_URL=info["aws_endpoint_url"],
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION="us-east-1",
            POWERTOOLS_METRICS_NAMESPACE="bench",
            POWERTOOLS_SERVICE_NAME="bench",
        )
        from dicomweb_server.aws.api import api_handler
        from dicomweb_server.settings import Settings

        # One read at a time here: cProfile sees only the calling thread, and the split needs every
        # S3 read on it. (The deployed function reads RetrieveConcurrency objects at once.)
        handler = api_handler(
            "retrieve",
            Settings(
                bucket_name=info["bucket"],
                table_name=info["table"],
                max_response_bytes=2_000_000_000,
                retrieve_concurrency=1,
            ),
        )
        event = json.loads((ROOT / "events" / "apigw-get-studies.json").read_text())
        event.update(
            path=path,
            resource="/studies/{study}",
            pathParameters={"study": study[0].study_uid},
            headers={"Accept": ACCEPT, "Host": "127.0.0.1"},
            multiValueHeaders={"Accept": [ACCEPT], "Host": ["127.0.0.1"]},
            queryStringParameters=None,
            multiValueQueryStringParameters=None,
        )

        class Context:
            function_name, memory_limit_in_mb, aws_request_id = "bench", 1024, "bench"
            invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"

        profiler = cProfile.Profile()
        t0 = time.perf_counter()
        profiler.enable()
        answer = handler(event, Context())
        profiler.disable()
        in_handler = time.perf_counter() - t0
        assert answer["statusCode"] == 200, answer.get("body", "")[:300]
        stats = pstats.Stats(profiler, stream=io.StringIO())
        waiting = _waiting_on_emulator(stats)
        top = io.StringIO()
        pstats.Stats(profiler, stream=top).sort_stats("tottime").print_stats(8)
    finally:
        if cloud:
            cloud.stop()
    return {
        "instances": len(study),
        "bytes": size,
        "seconds": round(seconds, 2),
        "mb_per_s": round(size / MB / seconds, 1),
        "handler_seconds": round(in_handler, 2),
        "handler_waiting_on_emulator_s3_dynamodb_seconds": round(waiting, 2),
        "our_code_seconds": round(in_handler - waiting, 2),
        "emulator_api_gateway_and_lambda_seconds": round(seconds - in_handler, 2),
        "profile_top": top.getvalue().splitlines()[-14:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200, help="study size for the dev server (MB)")
    parser.add_argument("--local", action="store_true", help="also measure through the local stack")
    parser.add_argument("--local-mb", type=int, default=60, help="study size for the local stack (MB)")
    parser.add_argument("--endpoint", help=".local/endpoint.json of a running `make run` stack")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulated S3 GET latency (concurrency)")
    parser.add_argument("--storage", choices=("memory", "s3", "both", "none"), default="both")
    args = parser.parse_args()
    results: dict[str, Any] = {"concurrency": concurrency(args.latency_ms / 1000, 100)}
    print(json.dumps({"concurrency": results["concurrency"]}), flush=True)
    for storage in {"both": ("memory", "s3"), "none": ()}.get(args.storage, (args.storage,)):
        results[f"dev_{storage}"] = dev_server(args.mb, storage)
        print(json.dumps({f"dev_{storage}": results[f"dev_{storage}"]}), flush=True)
    if args.local:
        results["local_stack"] = local_stack(args.local_mb, args.endpoint)
        print(json.dumps({"local_stack": results["local_stack"]}, indent=1), flush=True)
    if "dev_s3" in results:
        peak = results["dev_s3"]["peak_rss_mb"]
        print(f"{'PASS' if peak < 256 else 'FAIL'} dev server peak RSS while streaming {args.mb} MB: {peak} MB (< 256)")
    out = Path(tempfile.gettempdir()) / "retrieve_stream.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
