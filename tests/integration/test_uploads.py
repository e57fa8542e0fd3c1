"""Upload sessions against the deployed stack: plain ``requests`` PUTs to the presigned S3 URLs
(what curl does), the S3 event indexes each file, the status resource answers the Store
Instances Response, search finds the instances and frames come back byte for byte.

The 1 GB study (10 × 100 MB multi-frame instances streamed from disk) is part of the run; see
docs/uploads.md for its measured time."""

from __future__ import annotations

import hashlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from pydicom.uid import generate_uid

from tests import frames_data as fd
from tests.corpus import make_instance

from .conftest import Endpoint
from .multipart_util import parts_of

pytestmark = pytest.mark.integration

REFERENCED, FAILED, REASON, SOP = "00081199", "00081198", "00081197", "00081155"
FRAME = 512 * 512 * 2
MiB = 1024 * 1024
WAVE = 12
OCTETS = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}


def ct(pid: str, study: str, series: str, n: int, frames: int = 1, **extra: Any) -> Any:
    pixels = np.random.default_rng(n).integers(0, 4096, (frames, 512, 512), dtype=np.uint16)
    attrs: dict[str, Any] = {"NumberOfFrames": str(frames)} if frames > 1 else {}
    return make_instance(
        "ct", study_uid=study, series_uid=series, PatientID=pid, Rows=512, Columns=512, BitsAllocated=16,
        BitsStored=16, HighBit=15, SamplesPerPixel=1, InstanceNumber=str(n), PixelData=pixels.tobytes(),
        **attrs, **extra,
    )  # fmt: skip


def create(endpoint: Endpoint, files: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    r = endpoint.post("/uploads", json_body({"files": files, **extra}), "application/json")
    assert r.status_code == 201, r.text
    answer = r.json()
    assert r.headers["Location"] == answer["status"]
    return answer


def json_body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def put_file(endpoint: Endpoint, entry: dict[str, Any], read: Any) -> None:
    """PUT a file (``read(offset, size)`` gives its bytes) to its URL, or its parts, then complete."""
    if entry["method"] == "PUT":
        r = requests.put(entry["url"], data=read(0, None), timeout=300)
        assert r.status_code == 200, r.text[:300]
        return
    size = entry["part_size"]
    for n, url in enumerate(entry["parts"]):
        r = requests.put(url, data=read(n * size, size), timeout=300)
        assert r.status_code == 200, r.text[:300]
    done = requests.post(entry["complete"], headers=endpoint.headers(), timeout=120)
    assert done.status_code == 202, done.text


def from_bytes(data: bytes) -> Any:
    return lambda offset, size: data[offset : None if size is None else offset + size]


def from_file(path: Path) -> Any:
    def read(offset: int, size: int | None) -> bytes:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read() if size is None else f.read(size)

    return read


def final_status(endpoint: Endpoint, answer: dict[str, Any], timeout: float = 300) -> requests.Response:
    """Ask the status resource until it stops answering 'pending' (202 with Retry-After)."""
    deadline = time.time() + timeout
    while True:
        accept = {**endpoint.headers(), "Accept": "application/dicom+json"}
        r = requests.get(answer["status"], headers=accept, timeout=120)
        if not (r.status_code == 202 and "Retry-After" in r.headers):
            return r
        assert "upload session pending" in r.headers["Warning"]
        assert time.time() < deadline, f"still pending: {r.headers['Warning']}"
        time.sleep(float(r.headers["Retry-After"]))


def wait_pending(endpoint: Endpoint, answer: dict[str, Any], at_most: int, timeout: float = 300) -> None:
    """Ask the status resource until at most ``at_most`` files are pending."""
    deadline = time.time() + timeout
    while True:
        r = requests.get(answer["status"], headers=endpoint.headers(), timeout=120)
        pending = re.search(r"upload session pending: (\d+) of", r.headers.get("Warning", ""))
        if r.status_code != 202 or not pending or int(pending[1]) <= at_most:
            return
        assert time.time() < deadline, r.headers["Warning"]
        time.sleep(float(r.headers["Retry-After"]))


def frame(endpoint: Endpoint, inst: Any, n: int) -> bytes:
    path = f"/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}/frames/{n}"
    [(_, payload)] = parts_of(endpoint.get(path, headers=OCTETS))
    return payload


def stored_sops(response: requests.Response) -> list[str]:
    return sorted(r[SOP]["Value"][0] for r in response.json().get(REFERENCED, {}).get("Value", []))


def uploads_left(endpoint: Endpoint, s3: Any, session: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=f"uploads/{session}/")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_a_120_slice_ct_series_uploaded_to_s3_is_indexed_and_retrievable(endpoint: Endpoint, s3: Any) -> None:
    pid, study, series = f"UPCT{generate_uid()[-8:]}", generate_uid(), generate_uid()
    slices = [ct(pid, study, series, n) for n in range(1, 121)]
    total = sum(len(s.data) for s in slices)
    assert total > 60_000_000
    answer = create(endpoint, [{"name": f"slice{n}.dcm", "size": len(s.data)} for n, s in enumerate(slices)])
    assert all(f["method"] == "PUT" for f in answer["files"])
    if endpoint.aws_endpoint_url:  # presigned for the S3 endpoint clients reach
        assert answer["files"][0]["url"].startswith(endpoint.aws_endpoint_url + "/")
    # In waves, each indexed before the next is sent: the local emulator runs every Lambda as a
    # subprocess on the machine's 2 shared cores, and 120 at once starve it (AWS runs them apart).
    for start in range(0, 120, WAVE):
        wave = list(zip(answer["files"], slices, strict=True))[start : start + WAVE]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda p: put_file(endpoint, p[0], from_bytes(p[1].data)), wave))
        wait_pending(endpoint, answer, at_most=120 - start - len(wave))
    final = final_status(endpoint, answer)
    assert final.status_code == 200, final.text[:500]
    assert stored_sops(final) == sorted(s.sop_uid for s in slices)
    assert uploads_left(endpoint, s3, answer["session"]) == []
    found = endpoint.get(f"/studies/{study}/series/{series}/instances", params={"limit": "200"})
    assert len(found.json()) == 120
    by_pid = endpoint.get("/studies", params={"PatientID": pid})
    assert [s["0020000D"]["Value"][0] for s in by_pid.json()] == [study]
    assert frame(endpoint, slices[59], 1) == slices[59].dataset().PixelData


def test_a_100_mb_multiframe_instance_goes_through_the_multipart_path(endpoint: Endpoint, s3: Any) -> None:
    inst = ct(f"UPMF{generate_uid()[-8:]}", generate_uid(), generate_uid(), 7, frames=200)
    assert len(inst.data) > 100_000_000
    answer = create(endpoint, [{"name": "multiframe.dcm", "size": len(inst.data)}])
    (entry,) = answer["files"]
    assert entry["method"] == "multipart" and len(entry["parts"]) == 2
    put_file(endpoint, entry, from_bytes(inst.data))
    final = final_status(endpoint, answer)
    assert final.status_code == 200, final.text[:500]
    assert stored_sops(final) == [inst.sop_uid]
    pixels = inst.dataset().PixelData
    assert frame(endpoint, inst, 137) == pixels[136 * FRAME : 137 * FRAME]
    assert uploads_left(endpoint, s3, answer["session"]) == []


def test_a_1_gb_study_goes_through_upload_sessions(endpoint: Endpoint, s3: Any, tmp_path: Path) -> None:
    """10 × 100 MiB multi-frame instances (1.05 GB) written to disk frame by frame, uploaded in parts
    (4 files in flight), indexed by the S3 events. Checked: the final Store Instances Response,
    the MD5 the index computed for each instance (it names the stored object) against the file's,
    and sampled frames byte for byte (re-downloading 1 GB would only measure the emulator)."""
    pid, study = f"UPGB{generate_uid()[-8:]}", generate_uid()
    clock, times = time.monotonic(), {}
    files: list[tuple[Path, str, str, str, int]] = []  # path, series, sop, md5, frames
    for n in range(10):
        path, series, sop = tmp_path / f"{n}.dcm", generate_uid(), generate_uid()
        attrs = {"StudyInstanceUID": study, "SeriesInstanceUID": series, "SOPInstanceUID": sop, "PatientID": pid}
        frames = fd.large_native_file(str(path), 100 * MiB + 1, rows=512, cols=512, attrs=attrs)
        files.append((path, series, sop, _md5(path), frames))
    assert sum(f[0].stat().st_size for f in files) > 1_000_000_000
    times["generate"], clock = time.monotonic() - clock, time.monotonic()
    answer = create(endpoint, [{"name": f[0].name, "size": f[0].stat().st_size} for f in files])
    assert all(e["method"] == "multipart" for e in answer["files"])
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda e: put_file(endpoint, e[0], from_file(e[1][0])), zip(answer["files"], files, strict=True)))
    times["upload"], clock = time.monotonic() - clock, time.monotonic()
    final = final_status(endpoint, answer, timeout=900)
    times["indexing after the last upload"], clock = time.monotonic() - clock, time.monotonic()
    assert final.status_code == 200, final.text[:500]
    assert stored_sops(final) == sorted(f[2] for f in files)
    assert uploads_left(endpoint, s3, answer["session"]) == []
    listed = s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=f"studies/{study}/")
    stored = {k.split("/")[-2]: k.split("/")[-1].split("-")[0] for k in (o["Key"] for o in listed["Contents"])}
    assert stored == {sop: md5 for _, _, sop, md5, _ in files}  # the index's MD5 of each, the file's
    for path, series, sop, _, frames in (files[3], files[8]):
        pixels = path.stat().st_size - frames * FRAME
        with path.open("rb") as fh:
            for n in (1, frames):
                fh.seek(pixels + (n - 1) * FRAME)
                url = f"/studies/{study}/series/{series}/instances/{sop}/frames/{n}"
                [(_, payload)] = parts_of(endpoint.get(url, headers=OCTETS))
                assert payload == fh.read(FRAME), (sop, n)
    times["verify"] = time.monotonic() - clock
    print("\n1 GB study: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))


def _md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - the index's content check
    with path.open("rb") as fh:
        while chunk := fh.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def test_bad_files_fail_with_reasons_and_the_valid_one_is_stored(endpoint: Endpoint, s3: Any) -> None:
    good, cut, other = make_instance("ct"), make_instance("mr"), make_instance("ct")
    files = [good.data, b"plain text, not DICOM " * 40, cut.data[:-300], b""]
    answer = create(endpoint, [{"size": max(len(f), 1)} for f in files])
    for entry, data in zip(answer["files"], files, strict=True):
        put_file(endpoint, entry, from_bytes(data))
    final = final_status(endpoint, answer, timeout=120)
    assert final.status_code == 202 and "Retry-After" not in final.headers  # final and partial
    assert stored_sops(final) == [good.sop_uid]
    assert [f[REASON]["Value"][0] for f in final.json()[FAILED]["Value"]] == [0xC000] * 3
    assert "file 4: not a DICOM Part-10 file (0 bytes)" in final.headers["Warning"]
    assert "file 3: DICOM file is truncated" in final.headers["Warning"]
    assert endpoint.get("/instances", params={"SOPInstanceUID": cut.sop_uid}).status_code in (200, 204)
    assert not endpoint.get("/instances", params={"SOPInstanceUID": cut.sop_uid}).content.strip(b"[]")

    # The first file's URL used again with other bytes: refused and reported, not stored.
    put_file(endpoint, answer["files"][0], from_bytes(other.data))
    deadline = time.time() + 60
    while "refused" not in final.headers.get("Warning", "") and time.time() < deadline:
        time.sleep(1)
        final = final_status(endpoint, answer)
    assert "file 1 (a refused upload): uploaded again with other content" in final.headers["Warning"]
    assert stored_sops(final) == [good.sop_uid]
    assert not endpoint.get("/instances", params={"SOPInstanceUID": other.sop_uid}).content.strip(b"[]")
    assert uploads_left(endpoint, s3, answer["session"]) == []


def test_presigned_urls_name_one_file_and_expire(endpoint: Endpoint) -> None:
    inst = make_instance("ct")
    answer = create(endpoint, [{"size": len(inst.data)}, {"size": 70 * 1024 * 1024}], expires_in=3)
    single, multi = answer["files"]
    tampered = single["url"].replace("/1.dcm?", "/3.dcm?")
    assert requests.put(tampered, data=inst.data, timeout=30).status_code == 403  # a third file: no URL for it
    time.sleep(4)
    assert requests.put(single["url"], data=inst.data, timeout=30).status_code == 403  # expired
    late = requests.post(multi["complete"], headers=endpoint.headers(), timeout=30)
    assert late.status_code == 410 and "expired" in late.json()["message"]
    final = final_status(endpoint, answer, timeout=60)  # nothing was uploaded: final, all failed
    assert final.status_code == 409
    assert final.headers["Warning"].count("not uploaded before the session expired") == 2


def test_session_requests_that_make_no_sense_are_4xx(endpoint: Endpoint) -> None:
    for body, words in [
        (b"{nope", "not JSON"),
        (b'{"files": [{"size": 0}]}', "0 bytes"),
        (b'{"files": [{"size": 10}], "count": 1}', 'either "files"'),
        (b'{"count": 100000}', "more than one upload session takes"),
    ]:
        r = endpoint.post("/uploads", body, "application/json")
        assert r.status_code == 400 and words in r.json()["message"], (body, r.text)
    assert endpoint.post("/uploads", b"x", "text/plain").status_code == 415
    unknown = endpoint.get(f"/uploads/{'0' * 32}")
    assert unknown.status_code == 404 and "no upload session" in unknown.json()["message"]
    no_key = requests.post(endpoint.base_url + "/uploads", data=b'{"count": 1}', timeout=30)
    assert no_key.status_code == (401 if endpoint.api_key else 201)
    complete = f"/uploads/{'0' * 32}/files/1/complete"
    assert requests.post(endpoint.base_url + complete, headers=endpoint.headers(), timeout=30).status_code == 404


def test_the_stow_413_names_the_upload_resource(endpoint: Endpoint) -> None:
    r = endpoint.post("/studies", b"x" * 4_600_000, 'multipart/related; type="application/dicom"; boundary=b')
    assert r.status_code == 413 and f"POST {endpoint.base_url}/uploads" in r.json()["message"]
