"""A ~100 MB multi-frame dropped into incoming/ on the deployed stack is indexed by the S3 event
(streamed, server-side copy) and one of its frames comes back byte for byte."""

from __future__ import annotations

import io
import time

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from tests.frames_data import large_native_file

from .conftest import Endpoint


def test_a_100_mb_multiframe_drop_serves_one_frame_exactly(endpoint: Endpoint, s3, tmp_path) -> None:
    path = tmp_path / "large.dcm"
    rows = cols = 1024
    frames = large_native_file(str(path), 100 * 1024**2, rows=rows, cols=cols)
    with open(path, "rb") as fh:
        ds = dcmread(fh, stop_before_pixels=True)
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    key = f"incoming/large-{sop[-8:]}.dcm"
    s3.upload_file(str(path), endpoint.bucket, key)  # multipart: CompleteMultipartUpload fires the event
    url = f"/studies/{study}/series/{series}/instances/{sop}/frames/{frames - 1}"
    deadline = time.monotonic() + 120
    response = None
    while time.monotonic() < deadline:
        response = endpoint.get(url, headers={"Accept": "application/octet-stream; transfer-syntax=*"})
        if response.status_code == 200:
            break
        time.sleep(1)
    assert response is not None and response.status_code == 200, "the dropped file was not indexed within 120 s"
    frame = rows * cols * 2
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(size - 2 * frame)
        expected = fh.read(frame)
    assert response.content == expected
    assert response.headers["Content-Type"] == f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
    assert not s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=key).get("KeyCount")  # incoming/ emptied
    found = endpoint.get(f"/studies/{study}/series/{series}/instances", params={"includefield": "00280008"})
    assert found.status_code == 200 and len(found.json()) == 1
    assert io.BytesIO(response.content).getbuffer().nbytes == frame
