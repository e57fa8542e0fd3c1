"""Rendered and thumbnail resources: time and S3 calls for a 512×512 16-bit CT frame.

Run: ``PYTHONPATH=layers/dicomweb .venv/bin/python benchmarks/render.py [--runs 20]``. Needs no
network: S3 is moto in process, the index is the in-memory one, requests go through ``create_app``
and Starlette's TestClient (the same app Lambda runs).

Measured:

1. **Rendered JPEG, cold**: the first ``GET …/rendered`` (Accept image/jpeg) in a fresh interpreter
   whose app is built and whose instance is stored, so what is timed is the request plus the lazy
   imports of numpy, Pillow and pydicom's pixel handlers that it triggers (what a Lambda's first
   rendered request pays after its cold start), in a child process.
2. **Rendered JPEG, warm**: the same request again, median and minimum of ``--runs``; and the
   rendering alone (``render.render`` on a parsed dataset), to separate it from S3 and HTTP.
3. **Thumbnail, first and second request**: time and S3 calls (botocore hooks); the second is one
   GetObject of the cached thumbnail and no pixel decoding.

Times are wall-clock on a shared machine: approximate. The call counts do not depend on it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUCKET, TABLE, REGION = "bench-render", "bench-render-index", "us-east-1"


def _ct_part10() -> tuple[bytes, str]:
    """A 512×512 CT slice, 16 bits allocated, 12 stored, Rescale Slope 1.5 / Intercept -1024."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(8)
    y, x = np.mgrid[0:512, 0:512]
    body = 1024 + 600 * np.sin(x / 37.0) * np.cos(y / 53.0) + 900 * (x + y) / 1024
    pixels = np.clip(body + rng.normal(0, 80, (512, 512)), 0, 4095).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.StudyDate, ds.Modality = "BENCH", "BENCH^RENDER", "20240105", "CT"
    ds.SeriesNumber = ds.InstanceNumber = 1
    ds.set_pixel_data(pixels, "MONOCHROME2", 12)
    ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = 1.5, -1024, 40, 400
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    path = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    return out.getvalue(), path


class Stack:
    """The retrieve and store app on moto S3 with the in-memory index, S3 calls counted."""

    def __init__(self) -> None:
        import boto3
        from starlette.testclient import TestClient

        from dicomweb_server.blobs.s3 import S3BlobStore
        from dicomweb_server.index.memory import MemoryIndex
        from dicomweb_server.settings import Settings
        from dicomweb_server.web import create_app

        self.s3 = boto3.client("s3", region_name=REGION)
        self.s3.create_bucket(Bucket=BUCKET)
        self.calls: list[str] = []
        self.s3.meta.events.register("before-parameter-build.s3", self._record)
        settings = Settings(bucket_name=BUCKET, table_name=TABLE)
        app = create_app(settings, index=MemoryIndex(), blobs=S3BlobStore(self.s3, BUCKET))
        self.client = TestClient(app)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        key = str(params.get("Key", ""))
        self.calls.append(f"{model.name} {'derived/…' if key.startswith('derived/') else 'studies/…'}")

    def store(self, data: bytes) -> None:
        boundary = "bench-render"
        head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body = head + data + f"\r\n--{boundary}--\r\n".encode()
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        response = self.client.post("/studies", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 200, response.text

    def get(self, url: str, accept: str = "image/jpeg") -> tuple[float, int, list[str]]:
        """(milliseconds, body bytes, S3 calls) of one GET."""
        self.calls.clear()
        start = time.perf_counter()
        response = self.client.get(url, headers={"Accept": accept})
        elapsed = (time.perf_counter() - start) * 1000
        assert response.status_code == 200, response.text
        return elapsed, len(response.content), list(self.calls)


def _moto() -> Any:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION)
    from moto import mock_aws

    return mock_aws()


def cold() -> dict[str, Any]:
    """In a fresh interpreter: the first rendered JPEG after the app is built and the CT stored."""
    with _moto():
        stack = Stack()
        data, path = _ct_part10()
        stack.store(data)
        # storing parsed the file with pydicom but decoded no pixels: numpy is loaded (by the test
        # data), Pillow and pydicom's pixel handlers are not
        loaded_before = sorted(m for m in ("PIL", "PIL.Image", "pydicom.pixels.decoders.base") if m in sys.modules)
        ms, size, calls = stack.get(f"{path}/rendered")
        return {"ms": round(ms, 1), "bytes": size, "s3_calls": calls, "loaded_before": loaded_before}


def _median_min(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(samples), 1), "min_ms": round(min(samples), 1)}


def _repeat(runs: int, call: Callable[[], float]) -> list[float]:
    call()
    return [call() for _ in range(runs)]


def warm(runs: int) -> dict[str, Any]:
    from pydicom import dcmread

    from dicomweb_server.retrieve import render

    with _moto():
        stack = Stack()
        data, path = _ct_part10()
        stack.store(data)
        out: dict[str, Any] = {}
        samples = _repeat(runs, lambda: stack.get(f"{path}/rendered")[0])
        _, size, calls = stack.get(f"{path}/rendered")
        out["rendered_jpeg_warm"] = {**_median_min(samples), "bytes": size, "s3_calls": calls}
        png = _repeat(runs, lambda: stack.get(f"{path}/rendered", "image/png")[0])
        out["rendered_png_warm"] = _median_min(png)

        def render_only() -> float:
            start = time.perf_counter()
            ds = dcmread(io.BytesIO(data))
            render.render(ds, 1, "image/jpeg")
            return (time.perf_counter() - start) * 1000

        out["render_only_jpeg"] = _median_min(_repeat(runs, render_only))
        ms, size, calls = stack.get(f"{path}/thumbnail")
        out["thumbnail_first"] = {"ms": round(ms, 1), "bytes": size, "s3_calls": calls}
        second = [stack.get(f"{path}/thumbnail") for _ in range(runs)]
        out["thumbnail_second"] = {
            **_median_min([s[0] for s in second]),
            "bytes": second[0][1],
            "s3_calls": second[0][2],
        }
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold:
        print(json.dumps(cold()))
        return 0
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'dicomweb'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    colds = []
    for _ in range(3):
        child = subprocess.run(
            [sys.executable, __file__, "--cold"], capture_output=True, text=True, env=env, check=True, cwd=ROOT
        )
        colds.append(json.loads(child.stdout.strip().splitlines()[-1]))
    results = {
        "rendered_jpeg_cold": {
            **_median_min([c["ms"] for c in colds]),
            "bytes": colds[0]["bytes"],
            "s3_calls": colds[0]["s3_calls"],
        },
        **warm(args.runs),
    }
    print(json.dumps(results, indent=2))
    print("\n| measurement | time | S3 calls |\n|---|---|---|")
    for name, value in results.items():
        time_text = f"{value['ms']} ms" if "ms" in value else f"{value['median_ms']} ms (min {value['min_ms']})"
        calls = ", ".join(value.get("s3_calls", [])) or "–"
        print(f"| {name.replace('_', ' ')} | {time_text} | {calls} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
