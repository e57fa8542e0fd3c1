"""The dicomweb command's import and export against the deployed stack: folders and zip files in
STOW-RS batches under the request limit, a file too large for one request through an upload
session (presigned S3 URLs, the API key only), a rerun that sends nothing again, and an export
that gives back the stored bytes."""

from __future__ import annotations

import hashlib
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from dicomweb_server.cli import main
from tests.corpus import make_instance

from .conftest import Endpoint

pytestmark = pytest.mark.integration


def test_import_then_export_round_trip(endpoint: Endpoint, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pid = f"IMP{generate_uid()[-8:]}"
    folder = tmp_path / "in"
    (folder / "a" / "b").mkdir(parents=True)
    sent: dict[str, bytes] = {}
    for n in range(6):
        inst = make_instance("ct" if n % 2 else "mr", PatientID=pid, StudyDescription=f"IMPORT {n % 2}")
        (folder / "a" / "b" / f"{n}.dcm").write_bytes(inst.data)
        sent[inst.sop_uid] = inst.data
    with zipfile.ZipFile(folder / "more.zip", "w") as archive:
        for n in range(3):
            inst = make_instance("ct", PatientID=pid)
            archive.writestr(f"zipped/{n}.dcm", inst.data)
            sent[inst.sop_uid] = inst.data
    (folder / "notes.txt").write_text("not DICOM")
    big = make_instance(
        "ct", PatientID=pid, Rows=512, Columns=512, BitsAllocated=16, BitsStored=16, HighBit=15,
        PixelData=np.arange(512 * 512, dtype=np.uint16).tobytes(),
    )  # fmt: skip
    (folder / "big.dcm").write_bytes(big.data)  # above the 200 kB request limit below: an upload session
    sent[big.sop_uid] = big.data
    common = ["--url", endpoint.base_url, "--api-key", endpoint.api_key or "", "--quiet", "--workers", "3"]
    args = ["import", str(folder), *common, "--max-request-bytes", "200000"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "stored:                 9" in out and "uploaded to S3:         1" in out, out
    assert "dropped into incoming/: 0" in out, out
    assert "not DICOM, skipped:     1" in out and "failed:                 0" in out, out
    assert main(args) == 0  # a rerun: the journal says everything was sent
    assert "already sent before:    10" in capsys.readouterr().out
    deadline = time.time() + 30
    while time.time() < deadline:  # the upload session answered once the file was indexed
        found = endpoint.get("/instances", params={"PatientID": pid, "limit": "100"})
        if found.status_code == 200 and len(found.json()) == 10:
            break
        time.sleep(0.5)
    assert len(found.json()) == 10
    target = tmp_path / "out"
    assert main(["export", "--search", f"PatientID={pid}", "--to", str(target), *common]) == 0
    assert "written:         10" in capsys.readouterr().out
    written = {p.stem: p.read_bytes() for p in target.rglob("*.dcm")}
    assert {k: hashlib.md5(v).hexdigest() for k, v in written.items()} == {  # noqa: S324
        k: hashlib.md5(v).hexdigest()
        for k, v in sent.items()  # noqa: S324
    }
    assert main(["export", "--search", f"PatientID={pid}", "--to", str(target), *common]) == 0
    assert "already present: 10" in capsys.readouterr().out
