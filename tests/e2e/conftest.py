"""The viewer test's fixtures: the template deployed into an embedded ministack (no API key, so the
viewer can call it cross-origin as it would a public endpoint; the same-origin case goes through
the viewer's own server), the generated studies stored with ``dicomweb import``, the OHIF viewer
served on 127.0.0.1, and Debian's Chromium driven by Playwright.

``make e2e`` runs it; ``E2E_ARTIFACTS`` (default ``.local/e2e``) is where the screenshots and the
timing report go.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import ohif  # noqa: E402

import localcloud  # noqa: E402

from . import data  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: The flags this machine kind's Chromium needs (no sandbox as root, no GPU, no background network).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = Path(os.environ.get("E2E_ARTIFACTS", ROOT / ".local" / "e2e"))
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def cloud() -> Iterator[Any]:
    workdir = ROOT / ".local" / "e2e-cloud"
    for stale in ("state", "s3"):
        shutil.rmtree(workdir / stale, ignore_errors=True)
    found = localcloud.start_cloud(workdir, persist=False, api_key=None)
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="session")
def studies(cloud: Any) -> dict[str, data.Study]:
    from dicomweb_server import cli

    folder = Path(tempfile.mkdtemp(prefix="e2e-studies-"))
    try:
        ct, ct_datasets = data.ct_series(folder)
        made = [ct, data.us_jpeg(folder), data.xa_rle(folder), data.ct_segmentation(folder, ct_datasets)]
        endpoint = cloud.workdir / "e2e-endpoint.json"
        endpoint.write_text(json.dumps(cloud.endpoint()))
        code = cli.main(["import", str(folder), "--endpoint-file", str(endpoint), "--quiet", "--no-resume"])
        assert code == 0, "dicomweb import failed"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {s.name: s for s in made}


@pytest.fixture(scope="session")
def viewer_dist() -> Path:
    return ohif.fetch_viewer()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
