"""The retrieve function's entry under the Lambda Web Adapter: run.sh starts the app under uvicorn
on the adapter's port (loopback), as the adapter would run it in Lambda."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_sh_serves_the_retrieve_app_under_uvicorn_on_the_adapter_port():
    port = _free_port()
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "LAMBDA_TASK_ROOT": str(ROOT / "functions/retrieve"),
        "PYTHONPATH": str(ROOT / "layers/dicomweb"),
        "AWS_LWA_PORT": str(port),
        "BUCKET_NAME": "b",
        "TABLE_NAME": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # never called by this test
    }
    proc = subprocess.Popen(["sh", str(ROOT / "functions/retrieve/run.sh")], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=2)  # noqa: S310
            except urllib.error.HTTPError as answer:  # the app's own 404, as the readiness check sees it
                assert answer.code == 404
                assert "/nothing" in json.loads(answer.read())["message"]
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "run.sh exited"
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
