"""A real-size series end to end through the deployed stack: 120 slices of 512×512 16-bit CT
(about 63 MB), stored through STOW-RS in batches under the request limit, retrieved whole with
dicomweb-client's ``retrieve_series`` and byte for byte with a plain GET.

On the local stack the retrieve function answers buffered (Mangum; ministack cannot stream) with
its buffered limit raised (``localcloud.LOCAL_PARAMETERS``); on AWS the same request streams."""

from __future__ import annotations

import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from tests.corpus import make_instance, read_multipart, stow_body

from .conftest import Endpoint

pytestmark = pytest.mark.integration

SLICES = 120
#: Instances per STOW-RS request: 7 × 525 KB stays under the 4.5 MB request limit.
BATCH = 7


def _ct_series() -> list:
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(8)
    out = []
    for n in range(1, SLICES + 1):
        pixels = rng.integers(0, 4096, size=(512, 512), dtype=np.uint16)
        out.append(
            make_instance(
                "ct",
                study_uid=study,
                series_uid=series,
                PatientID="LARGE-ANSWERS",
                InstanceNumber=n,
                Rows=512,
                Columns=512,
                BitsAllocated=16,
                BitsStored=12,
                HighBit=11,
                PixelRepresentation=0,
                PixelData=pixels.tobytes(),
            )
        )
    return out


def test_a_63_mb_ct_series_is_retrieved_whole_and_byte_exact(endpoint: Endpoint) -> None:
    series = _ct_series()
    total = sum(len(i.data) for i in series)
    assert total > 60_000_000
    for start in range(0, SLICES, BATCH):
        body, ctype = stow_body(series[start : start + BATCH])
        r = endpoint.post("/studies", body, ctype)
        assert r.status_code == 200, r.text[:500]
    path = f"/studies/{series[0].study_uid}/series/{series[0].series_uid}"

    client = DICOMwebClient(url=endpoint.base_url, headers=endpoint.headers())
    datasets = client.retrieve_series(series[0].study_uid, series[0].series_uid)
    by_uid = {i.sop_uid: i for i in series}
    assert sorted(str(ds.SOPInstanceUID) for ds in datasets) == sorted(by_uid)
    for ds in datasets:
        assert ds.PixelData == by_uid[str(ds.SOPInstanceUID)].dataset().PixelData

    r = endpoint.get(path, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert r.status_code == 200
    parts = read_multipart(r.content, r.headers["content-type"])
    assert sorted(payload for _, payload in parts) == sorted(i.data for i in series)  # every byte as stored
