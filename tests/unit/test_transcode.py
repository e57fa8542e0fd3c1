"""WADO-RS instances in the transfer syntax the client asks for (PS3.18 §8.7.3.5.2, Table 8.7.3-2/5),
over HTTP on the full app with real-size instances generated here (``tests.synthetic``).

Each source × each syntax the server offers: the part says the syntax, pydicom reads it in that
syntax, and for lossless syntaxes the decoded pixels equal the source's; where a source cannot take
a syntax, the 406 names the ones it can. What is expected is written out per source below, not
taken from the server's own capability code.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from tests import synthetic
from tests.corpus import read_multipart, stow_body

MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
BASE = "http://testserver"
LOSSLESS = (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless)
ALL = (*LOSSLESS, JPEGBaseline8Bit)


@cache
def source(name: str) -> bytes:
    return {
        "ct-implicit-512": synthetic.ct_implicit,
        "mr-big-endian-512": synthetic.mr_big_endian,
        "rgb8-512": synthetic.rgb8,
        "jpeg-ybr422-512": synthetic.jpeg_ybr422,
        "rle-12-frames": synthetic.rle_multiframe,
    }[name]()[0]


#: What each source can be given in, besides as stored.
CAN = {
    "ct-implicit-512": LOSSLESS,  # 16-bit: no JPEG Baseline
    "mr-big-endian-512": LOSSLESS,
    "rgb8-512": ALL,
    "jpeg-ybr422-512": ALL,  # JPEG Baseline is how it is stored
    "rle-12-frames": LOSSLESS,
}
CASES = [(name, ts) for name in CAN for ts in ALL]


def store(client, data: bytes, status: int = 200):
    body, content_type = stow_body([data])
    response = client.post("/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    ds = dcmread(io.BytesIO(data))
    return ds, f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def parts(response):
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("multipart/related")
    return read_multipart(response.content, response.headers["content-type"])


def reference_pixels(ds):
    """The source's pixels as pydicom decodes them (colour as RGB)."""
    return ds.pixel_array


@pytest.mark.parametrize(("name", "ts"), CASES, ids=[f"{n}-to-{ts}" for n, ts in CASES])
def test_each_syntax_round_trips_or_is_refused_naming_the_possible_ones(memory_client, name, ts):
    data = source(name)
    ds, path = store(memory_client, data)
    response = memory_client.get(path, headers={"Accept": f"{MULTIPART_DICOM}; transfer-syntax={ts}"})
    if ts not in CAN[name]:
        assert response.status_code == 406, response.text
        message = response.json()["message"]
        assert f"cannot be given as transfer-syntax={ts}" in message
        for possible in CAN[name]:
            assert possible in message
        assert "transfer-syntax=*" in message
        return
    ((headers, payload),) = parts(response)
    assert headers["content-type"] == f"application/dicom; transfer-syntax={ts}"
    assert headers["content-location"] == BASE + path
    got = dcmread(io.BytesIO(payload))
    assert got.file_meta.TransferSyntaxUID == ts
    assert got.SOPInstanceUID == ds.SOPInstanceUID
    assert got.get("NumberOfFrames") == ds.get("NumberOfFrames")
    pixels, want = got.pixel_array, reference_pixels(ds)
    assert pixels.shape == want.shape
    if ts == str(ds.file_meta.TransferSyntaxUID):
        assert payload == data  # nothing to do: the stored object
    elif ts in LOSSLESS:
        assert np.array_equal(pixels, want)
    else:
        assert got.LossyImageCompression == "01"
        assert got.PhotometricInterpretation == "YBR_FULL_422"
        assert np.abs(pixels.astype(np.int64) - want.astype(np.int64)).mean() < 4


def test_without_a_transfer_syntax_a_big_endian_instance_comes_back_little_endian(memory_client):
    data, pixels, overlay = synthetic.mr_big_endian()
    _, path = store(memory_client, data)
    ((headers, payload),) = parts(memory_client.get(path))
    assert headers["content-type"] == f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"
    got = dcmread(io.BytesIO(payload))
    assert got.original_encoding == (False, True)
    assert np.array_equal(got.pixel_array, pixels)
    assert np.array_equal(got.overlay_array(0x6000), overlay)  # the OW overlay was swapped too
    assert got.PixelData == pixels.astype("<u2").tobytes()


def test_a_compressed_instance_is_decompressed_by_default_and_kept_as_stored_on_request(memory_client):
    data = source("jpeg-ybr422-512")
    ds, path = store(memory_client, data)
    ((headers, payload),) = parts(memory_client.get(path, headers={"Accept": "*/*"}))
    got = dcmread(io.BytesIO(payload))
    assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert got.PhotometricInterpretation == "RGB"  # decoded JPEG colour is RGB (PS3.5 §8.2.1)
    assert np.array_equal(got.pixel_array, ds.pixel_array)
    ((headers, payload),) = parts(memory_client.get(path, headers={"Accept": f"{MULTIPART_DICOM}; transfer-syntax=*"}))
    assert payload == data and headers["content-type"].endswith(f"transfer-syntax={JPEGBaseline8Bit}")


def test_a_single_instance_as_application_dicom_in_a_requested_syntax(memory_client):
    data = source("ct-implicit-512")
    ds, path = store(memory_client, data)
    response = memory_client.get(path, headers={"Accept": f"application/dicom; transfer-syntax={JPEG2000Lossless}"})
    assert response.status_code == 200
    assert response.headers["content-type"] == f"application/dicom; transfer-syntax={JPEG2000Lossless}"
    assert np.array_equal(dcmread(io.BytesIO(response.content)).pixel_array, ds.pixel_array)


def test_each_instance_of_a_study_gets_the_best_syntax_it_can_have(memory_client):
    """An Accept list with q-values: JPEG Baseline first, Explicit VR Little Endian second. The 8-bit
    photo can be JPEG; the 16-bit CT of the same study falls back; each part says which it got."""
    ct = dcmread(io.BytesIO(source("ct-implicit-512")))
    photo = dcmread(io.BytesIO(source("rgb8-512")))
    photo.StudyInstanceUID = ct.StudyInstanceUID
    out = io.BytesIO()
    photo.save_as(out, enforce_file_format=True)
    store(memory_client, source("ct-implicit-512"))
    store(memory_client, out.getvalue())
    accept = (
        f"{MULTIPART_DICOM}; transfer-syntax={ExplicitVRLittleEndian}; q=0.5, "
        f"{MULTIPART_DICOM}; transfer-syntax={JPEGBaseline8Bit}"
    )
    got = parts(memory_client.get(f"/studies/{ct.StudyInstanceUID}", headers={"Accept": accept}))
    by_sop = {dcmread(io.BytesIO(p)).SOPInstanceUID: (h, p) for h, p in got}
    assert set(by_sop) == {ct.SOPInstanceUID, photo.SOPInstanceUID}
    assert by_sop[ct.SOPInstanceUID][0]["content-type"].endswith(f"transfer-syntax={ExplicitVRLittleEndian}")
    assert by_sop[photo.SOPInstanceUID][0]["content-type"].endswith(f"transfer-syntax={JPEGBaseline8Bit}")
    for sop, (headers, _) in by_sop.items():
        assert headers["content-location"].endswith(f"/instances/{sop}")
    # only JPEG Baseline acceptable: the CT cannot have it, and the 406 says so before anything is sent
    only_jpeg = memory_client.get(
        f"/studies/{ct.StudyInstanceUID}", headers={"Accept": f"{MULTIPART_DICOM}; transfer-syntax={JPEGBaseline8Bit}"}
    )
    assert only_jpeg.status_code == 406
    assert ct.SOPInstanceUID in only_jpeg.json()["message"]


def test_an_instance_without_pixel_data_takes_any_syntax(memory_client):
    """PS3.5 §A.4: without Pixel Data the data set is Explicit VR Little Endian whatever the label."""
    ds = dcmread(io.BytesIO(source("ct-implicit-512")))
    del ds.PixelData
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    _, path = store(memory_client, out.getvalue(), status=202)  # stored with 0xB007: an image without pixels
    accept = f"{MULTIPART_DICOM}; transfer-syntax={JPEG2000Lossless}"
    ((headers, payload),) = parts(memory_client.get(path, headers={"Accept": accept}))
    got = dcmread(io.BytesIO(payload))
    assert got.file_meta.TransferSyntaxUID == JPEG2000Lossless and "PixelData" not in got
    assert got.PatientID == ds.PatientID


def test_what_only_the_object_shows_still_falls_back_to_the_next_syntax(memory_client):
    """The index keeps no PixelRepresentation: a signed 8-bit image looks like a JPEG Baseline
    candidate until its object is read. It then gets the client's next choice, or a 406."""
    ds = dcmread(io.BytesIO(source("ct-implicit-512")))
    values = (ds.pixel_array // 16).clip(-128, 127).astype(np.int8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 1
    ds.PixelData = values.tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    _, path = store(memory_client, out.getvalue())
    accept = (
        f"{MULTIPART_DICOM}; transfer-syntax={JPEGBaseline8Bit}, "
        f"{MULTIPART_DICOM}; transfer-syntax={RLELossless}; q=0.5"
    )
    ((headers, payload),) = parts(memory_client.get(path, headers={"Accept": accept}))
    assert headers["content-type"] == f"application/dicom; transfer-syntax={RLELossless}"
    assert np.array_equal(dcmread(io.BytesIO(payload)).pixel_array, values)
    only = memory_client.get(path, headers={"Accept": f"{MULTIPART_DICOM}; transfer-syntax={JPEGBaseline8Bit}"})
    assert only.status_code == 406
    assert f"it is available as {ExplicitVRLittleEndian}" in only.json()["message"]
