"""STOW-RS failure and warning reasons (PS3.18 §10.5.3, PS3.4 Annex B.2.3) from ``store.validate``:
file meta that disagrees with the data set is corrected and warned (0xB000) or refused (0xC000),
never stored inconsistent; an image SOP class without pixel data is stored with 0xB007; a SOP class
UID that is not a storage SOP class is refused with 0x0122."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.store.ingest import InvalidInstance, Reason, ingest
from tests.corpus import Instance, make_instance, source_dataset, stow_body

FAILED, REFERENCED = "00081198", "00081199"
SOP_INSTANCE, FAILURE_REASON, WARNING_REASON = "00081155", "00081197", "00081196"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def part10(ds: Dataset, *, declared: str, implicit: bool, meta: dict[str, str | None] | None = None) -> bytes:
    """A Part-10 file whose file meta says ``declared`` while the data set is written in Implicit
    (``implicit``) or Explicit VR Little Endian, with file meta elements overridden by ``meta``
    (None removes one): what a careless sender writes."""
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    file_meta.TransferSyntaxUID = declared
    file_meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    for keyword, value in (meta or {}).items():
        if value is None:
            delattr(file_meta, keyword)
        else:
            setattr(file_meta, keyword, value)
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    out.write(bytes(128) + b"DICM")
    write_file_meta_info(out, file_meta, enforce_standard=False)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, implicit
    write_dataset(body, ds)
    return out.getvalue() + body.getvalue()


def ct(**attrs: object) -> Dataset:
    ds = source_dataset("ct")
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    for keyword, value in attrs.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def post(client, payloads, accept="application/dicom+json"):
    body, ctype = stow_body(payloads)
    return client.post("/studies", content=body, headers={"content-type": ctype, "accept": accept})


def references(response) -> list[dict]:
    return response.json().get(REFERENCED, {}).get("Value", [])


def failure_reasons(response) -> list[int]:
    return [item[FAILURE_REASON]["Value"][0] for item in response.json().get(FAILED, {}).get("Value", [])]


def stored_file(backend, ds: Dataset) -> Dataset:
    key = backend.index.indexed_object(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)[1]
    return dcmread(io.BytesIO(backend.blobs.get(key)))


def test_a_file_meta_naming_another_sop_instance_is_corrected_and_warned(client, backend) -> None:
    ds = ct()
    wrong = generate_uid()
    data = part10(ds, declared=ExplicitVRLittleEndian, implicit=False, meta={"MediaStorageSOPInstanceUID": wrong})
    good = make_instance("mr")
    response = post(client, [data, good])
    assert response.status_code == 202
    refs = references(response)
    assert [r[SOP_INSTANCE]["Value"][0] for r in refs] == [ds.SOPInstanceUID, good.sop_uid]
    assert refs[0][WARNING_REASON] == {"vr": "US", "Value": [0xB000]}
    assert WARNING_REASON not in refs[1]
    assert "MediaStorageSOPInstanceUID" in response.headers["warning"]
    assert response.headers["warning"].startswith("299 ")
    stored = stored_file(backend, ds)
    assert stored.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    # only the file meta group was written again: the data set's bytes are the sender's
    sent = dcmread(io.BytesIO(data))
    assert stored.PixelData == sent.PixelData and stored.PatientName == sent.PatientName
    assert backend.blobs.get(
        backend.index.indexed_object(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)[1]
    ).endswith(data[-len(sent.PixelData) - 200 :])


def test_a_missing_media_storage_sop_class_is_set_from_the_data_set(memory_client, memory) -> None:
    ds = ct()
    data = part10(ds, declared=ExplicitVRLittleEndian, implicit=False, meta={"MediaStorageSOPClassUID": None})
    response = post(memory_client, [data])
    assert response.status_code == 202
    assert references(response)[0][WARNING_REASON]["Value"] == [0xB000]
    assert "MediaStorageSOPClassUID set to the data set's SOPClassUID (was missing)" in response.headers["warning"]
    assert stored_file(memory, ds).file_meta.MediaStorageSOPClassUID == CT_IMAGE_STORAGE


def test_an_implicit_vr_data_set_declared_explicit_is_stored_as_implicit(memory_client, memory) -> None:
    ds = ct()
    response = post(memory_client, [part10(ds, declared=ExplicitVRLittleEndian, implicit=True)])
    assert response.status_code == 202
    assert "TransferSyntaxUID set to 1.2.840.10008.1.2 " in response.headers["warning"]
    stored = stored_file(memory, ds)
    assert stored.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert stored.original_encoding == (True, True)
    assert stored.PatientName == ds.PatientName
    # and retrieve serves it as stored
    got = memory_client.get(
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
        headers={"accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert got.status_code == 200


def test_an_explicit_vr_data_set_declared_implicit_is_stored_as_explicit(memory_client, memory) -> None:
    ds = ct()
    response = post(memory_client, [part10(ds, declared=ImplicitVRLittleEndian, implicit=False)])
    assert response.status_code == 202
    assert stored_file(memory, ds).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_a_compressed_transfer_syntax_over_an_implicit_data_set_is_refused(memory_client, memory) -> None:
    ds = ct()
    response = post(memory_client, [part10(ds, declared=JPEGBaseline8Bit, implicit=True)])
    assert response.status_code == 409
    assert failure_reasons(response) == [0xC000]
    assert "Implicit VR" in response.headers["warning"]
    assert memory.index.indexed_object(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) is None
    assert not memory.blobs.objects


def test_pixel_data_encoding_that_contradicts_the_transfer_syntax_is_refused(memory_client, memory) -> None:
    encapsulated = ct()
    encapsulated.PixelData = encapsulate([b"\xff\xd8fake jpeg\xff\xd9"])
    encapsulated["PixelData"].VR = "OB"
    encapsulated["PixelData"].is_undefined_length = True
    native = ct()
    response = post(
        memory_client,
        [
            part10(encapsulated, declared=ExplicitVRLittleEndian, implicit=False),
            part10(native, declared=JPEGBaseline8Bit, implicit=False),
        ],
    )
    assert response.status_code == 409
    assert failure_reasons(response) == [0xC000, 0xC000]
    assert "Pixel Data is encapsulated" in response.headers["warning"]
    assert "Pixel Data is not encapsulated" in response.headers["warning"]
    assert not memory.blobs.objects


def test_an_image_without_pixel_data_is_stored_with_warning_b007(client, backend) -> None:
    ds = ct(PixelData=None, Rows=None)
    response = post(client, [part10(ds, declared=ExplicitVRLittleEndian, implicit=False)])
    assert response.status_code == 202
    assert references(response)[0][WARNING_REASON]["Value"] == [0xB007]
    assert "CT Image Storage without PixelData, Rows" in response.headers["warning"]
    assert backend.index.indexed_object(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


@pytest.mark.parametrize(
    ("sop_class", "what"),
    [
        ("1.2.840.10008.1.1", "Verification SOP Class"),
        ("1.2.840.10008.1.20.1", "Storage Commitment Push Model SOP Class"),
        ("1.2.840.10008.1.2.4.50", "JPEG Baseline"),
        ("1.2.840.10008.5.1.4.1.2.2.1", "Study Root Query/Retrieve"),
    ],
)
def test_a_sop_class_that_is_not_for_storage_is_refused_with_0122(memory_client, memory, sop_class, what) -> None:
    ds = ct(SOPClassUID=sop_class)
    response = post(memory_client, [part10(ds, declared=ExplicitVRLittleEndian, implicit=False)])
    assert response.status_code == 409
    assert failure_reasons(response) == [0x0122]
    assert what in response.headers["warning"]
    assert not memory.blobs.objects


def test_a_private_sop_class_is_stored(memory_client) -> None:
    ds = ct(SOPClassUID="1.2.826.0.1.3680043.8.498.777")
    response = post(memory_client, [part10(ds, declared=ExplicitVRLittleEndian, implicit=False)])
    assert response.status_code == 200
    assert WARNING_REASON not in references(response)[0]
    assert "warning" not in response.headers


def test_a_missing_sop_class_uid_is_refused_with_a900(memory_client) -> None:
    ds = ct()
    data = part10(ds, declared=ExplicitVRLittleEndian, implicit=False)
    read = dcmread(io.BytesIO(data))
    del read.SOPClassUID
    out = io.BytesIO()
    read.save_as(out)
    response = post(memory_client, [out.getvalue()])
    assert response.status_code == 409
    assert failure_reasons(response) == [0xA900]
    assert "SOPClassUID is missing" in response.headers["warning"]


def test_a_consistent_instance_has_no_warning(memory_client) -> None:
    response = post(memory_client, [make_instance("ct"), make_instance("mr_implicit"), make_instance("jpeg")])
    assert response.status_code == 200
    assert all(WARNING_REASON not in r for r in references(response))
    assert "warning" not in response.headers


def test_the_xml_answer_carries_the_warning_reason(memory_client) -> None:
    ds = ct()
    data = part10(ds, declared=ExplicitVRLittleEndian, implicit=False, meta={"MediaStorageSOPInstanceUID": "1.2.3"})
    response = post(memory_client, [data], accept="application/dicom+xml")
    assert response.status_code == 202
    assert response.headers["content-type"].startswith("application/dicom+xml")
    root = ET.fromstring(response.content)
    ns = {"d": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}
    path = ".//d:DicomAttribute[@tag='00081199']/d:Item/d:DicomAttribute[@tag='00081196']/d:Value"
    reasons = root.findall(path, ns)
    assert [r.text for r in reasons] == [str(0xB000)]


def test_the_s3_drop_path_stores_the_corrected_file_too() -> None:
    """ingest is the one code path: whatever calls it stores the corrected file and sees the warning."""
    index, blobs = MemoryIndex(), MemoryBlobStore()
    ds = ct()
    data = part10(ds, declared=ExplicitVRLittleEndian, implicit=True, meta={"MediaStorageSOPInstanceUID": None})
    result = ingest(data, index=index, blobs=blobs)
    assert [w.reason for w in result.warnings] == [0xB000]
    assert "MediaStorageSOPInstanceUID" in result.warnings[0].message
    assert "TransferSyntaxUID" in result.warnings[0].message
    stored = dcmread(io.BytesIO(blobs.get(result.key)))
    assert stored.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert stored.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert result.record.md5 == Instance(blobs.get(result.key), "", "", "", "", "", "").md5
    assert result.record.transfer_syntax_uid == ImplicitVRLittleEndian
    offset, length = result.record.bulk["7FE00010"]  # the pixel data's place in the stored file
    assert blobs.get(result.key)[offset : offset + length] == stored.PixelData
    with pytest.raises(InvalidInstance) as refused:
        ingest(part10(ct(), declared=JPEGBaseline8Bit, implicit=True), index=index, blobs=blobs)
    assert refused.value.reason is Reason.CANNOT_UNDERSTAND
