"""Frames and renderings of a large multi-frame instance: what is read from S3 and what is held in
memory (issue 8).

Run: ``PYTHONPATH=layers/dicomweb .venv/bin/python benchmarks/frames_stream.py [--frames 120]``.
Needs no network: S3 is moto in process (bytes and calls counted with botocore event hooks), the
index is the in-memory one, requests go through ``create_app``.

The instance: ``--frames`` native 512 × 512 16-bit frames (120: 63 MB), stored with its frame table.

1. **All frames as one multipart answer** (``…/frames/1,2,…,N``, ``transfer-syntax=*``), streamed
   (buffered limit 1 MiB): S3 GetObject calls and bytes (moto), and the peak of Python allocations
   while the body is written (tracemalloc, over the in-memory blob store, as moto copies the whole
   object on every ranged GET), with 1, 4 and 8 reads at once.
2. **Decoded frames** of the same instance stored RLE Lossless (``--rle-frames`` frames, default
   12, as pydicom's RLE encoder is slow): every frame as Explicit VR Little Endian, calls and
   bytes (one header read, then one range per frame).
3. **One rendered frame** (PNG of the middle frame) and the **thumbnail**: S3 bytes read vs the
   object's size (header + frame, never the whole object).

Counts do not depend on the machine; the memory peak depends only a little on it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import asgi  # noqa: E402

BUCKET, TABLE, REGION = "bench-frames", "bench-frames-index", "us-east-1"


class S3Count:
    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.bytes = 0
        client.meta.events.register("before-call.s3.*", self._before)
        client.meta.events.register("after-call.s3.GetObject", self._after)

    def _before(self, event_name: str, **_: Any) -> None:
        self.calls[event_name.rsplit(".", 1)[1]] += 1

    def _after(self, parsed: dict[str, Any], **_: Any) -> None:
        self.bytes += int(parsed.get("ContentLength", 0))

    def reset(self) -> None:
        self.calls.clear()
        self.bytes = 0


def drain(app: Any, path: str, accept: str) -> tuple[int, int]:
    """GET through ASGI, discarding the body as it is sent: (status, body bytes)."""
    out = {"status": 0, "bytes": 0}

    def sent(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["bytes"] += len(message.get("body", b""))

    asgi.get(app, path, accept, sent)
    return out["status"], out["bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--rle-frames", type=int, default=12)
    args = parser.parse_args()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION)

    import boto3
    from moto import mock_aws
    from pydicom import dcmread
    from starlette.testclient import TestClient

    from dicomweb_server.blobs.memory import MemoryBlobStore
    from dicomweb_server.blobs.s3 import S3BlobStore
    from dicomweb_server.index.memory import MemoryIndex
    from dicomweb_server.settings import Settings
    from dicomweb_server.store.ingest import ingest
    from dicomweb_server.web import create_app
    from tests import frames_data as fd

    results: dict[str, Any] = {}
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        count = S3Count(s3)

        def stored(data: bytes) -> tuple[Any, Any, str]:
            index, blobs = MemoryIndex(), S3BlobStore(s3, BUCKET)
            ingest(data, index=index, blobs=blobs)
            ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
            url = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
            return index, blobs, url

        data, _ = fd.native(fd.noise(args.frames, 512, 512))
        index, blobs, url = stored(data)
        frame = 512 * 512 * 2
        accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
        all_frames = ",".join(str(n) for n in range(1, args.frames + 1))
        results["instance"] = {"frames": args.frames, "bytes": len(data)}
        rows = []
        for workers in (1, 4, 8):
            settings = Settings(
                bucket_name=BUCKET,
                table_name=TABLE,
                max_response_bytes=1024**2,
                stream_response_bytes=1024**3,
                retrieve_concurrency=workers,
            )
            count.reset()
            status, sent = drain(create_app(settings, index=index, blobs=blobs), f"{url}/frames/{all_frames}", accept)
            calls, read = count.calls["GetObject"], count.bytes
            # memory on the in-memory store: moto copies the whole object on every ranged GET
            mem_index, mem_blobs = MemoryIndex(), MemoryBlobStore()
            ingest(data, index=mem_index, blobs=mem_blobs)
            app = create_app(settings, index=mem_index, blobs=mem_blobs)
            tracemalloc.start()
            drain(app, f"{url}/frames/{all_frames}", accept)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rows.append(
                {
                    "workers": workers,
                    "status": status,
                    "body_bytes": sent,
                    "s3_get_calls": calls,
                    "s3_bytes_read": read,
                    "peak_traced_mb": round(peak / 1024**2, 1),
                    "peak_in_frames": round(peak / frame, 1),
                }
            )
        results["all_frames_streamed"] = rows

        rle = fd.rle(fd.noise(args.rle_frames, 512, 512))
        r_index, r_blobs, r_url = stored(rle)
        client = TestClient(
            create_app(
                Settings(
                    bucket_name=BUCKET, table_name=TABLE, max_response_bytes=1024**2, stream_response_bytes=1024**3
                ),
                index=r_index,
                blobs=r_blobs,
            )
        )
        count.reset()
        r = client.get(
            f"{r_url}/frames/{','.join(str(n) for n in range(1, args.rle_frames + 1))}",
            headers={"Accept": 'multipart/related; type="application/octet-stream"'},
        )
        results["rle_decoded_frames"] = {
            "frames": args.rle_frames,
            "object_bytes": len(rle),
            "status": r.status_code,
            "s3_get_calls": count.calls["GetObject"],
            "s3_bytes_read": count.bytes,
        }

        client = TestClient(create_app(Settings(bucket_name=BUCKET, table_name=TABLE), index=index, blobs=blobs))
        middle = args.frames // 2 + 1
        for name, path, accept in (
            ("rendered_frame", f"{url}/frames/{middle}/rendered", "image/png"),
            ("thumbnail", f"{url}/thumbnail", "image/jpeg"),
        ):
            count.reset()
            r = client.get(path, headers={"Accept": accept})
            results[name] = {
                "status": r.status_code,
                "s3_get_calls": count.calls["GetObject"],
                "s3_bytes_read": count.bytes,
                "object_bytes": len(data),
                "frame_bytes": frame,
            }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
