"""Values above ``scan.DEFER_BYTES`` (4 MiB) before the pixel data, such as the document of an
Encapsulated PDF, are skipped by the streamed read and indexed as bulk data: stored through STOW-RS
and through the S3 drop alike, and served byte for byte from their BulkDataURI."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomweb_server.store.drop import DropOutcome, index_dropped
from dicomweb_server.store.scan import DEFER_BYTES
from tests.corpus import read_multipart, stow_body, to_part10

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def encapsulated_pdf(size: int) -> tuple[Dataset, bytes]:
    document = b"%PDF-1.4\n" + np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes()
    if len(document) % 2:
        document += b"\n"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = ENCAPSULATED_PDF
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Pdf^Large", "PDF-1", "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = document
    ds.DocumentTitle = "a report"  # (0042,0010), before the document
    return ds, document


def _bulk_of_document(client, ds: Dataset) -> str:
    url = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/metadata"
    answer = client.get(url)
    assert answer.status_code == 200, answer.text
    (meta,) = answer.json()
    assert meta["00420010"]["Value"] == ["a report"]
    element = meta["00420011"]
    assert element["vr"] == "OB" and "InlineBinary" not in element
    return str(element["BulkDataURI"])


def _served(client, uri: str) -> bytes:
    answer = client.get(uri, headers={"Accept": 'multipart/related; type="application/octet-stream"'})
    assert answer.status_code == 200, answer.text
    ((_, body),) = read_multipart(answer.content, answer.headers["content-type"])
    return body


def test_a_document_above_the_defer_size_is_stored_by_stow_and_served_from_its_bulk_uri(make_client, settings) -> None:
    client = make_client(replace(settings, max_request_bytes=20_000_000, max_response_bytes=20_000_000))
    ds, document = encapsulated_pdf(DEFER_BYTES + 1_000_000)
    body, ctype = stow_body([to_part10(ds)])
    stored = client.post("/studies", content=body, headers={"Content-Type": ctype})
    assert stored.status_code == 200, stored.text
    assert _served(client, _bulk_of_document(client, ds)) == document


def test_a_dropped_document_above_the_defer_size_is_indexed_and_served(backend, make_client, settings) -> None:
    ds, document = encapsulated_pdf(DEFER_BYTES + 1_000_000)
    backend.blobs.put("incoming/report.dcm", to_part10(ds))
    assert index_dropped("incoming/report.dcm", index=backend.index, blobs=backend.blobs) == (
        DropOutcome.INDEXED,
        None,
    )
    client = make_client(replace(settings, max_response_bytes=20_000_000))
    assert _served(client, _bulk_of_document(client, ds)) == document
