"""Values above ``scan.DEFER_BYTES`` (4 MiB) before the pixel data, such as the document of an
Encapsulated PDF, are skipped by the streamed read and indexed as bulk data: stored through STOW-RS
and through the S3 drop alike, and served byte for byte from their BulkDataURI, streamed in
bounded reads above the buffered limit where the deployment streams, refused before any read
beyond every limit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from starlette.testclient import TestClient

from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.retrieve import bulkdata
from dicomweb_server.settings import Settings
from dicomweb_server.store.drop import DropOutcome, index_dropped
from dicomweb_server.store.scan import DEFER_BYTES
from dicomweb_server.web import create_app
from tests.corpus import read_multipart, stow_body, to_part10
from tests.unit.pixel_ports import CountingBlobs

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


@pytest.fixture
def counted() -> tuple[MemoryIndex, CountingBlobs]:
    return MemoryIndex(), CountingBlobs()


def _stored_pdf(counted, size: int, **limits: int) -> tuple[TestClient, Dataset, bytes, str]:  # noqa: ANN001
    index, blobs = counted
    ds, document = encapsulated_pdf(size)
    blobs.put("incoming/report.dcm", to_part10(ds))
    assert index_dropped("incoming/report.dcm", index=index, blobs=blobs)[0] is DropOutcome.INDEXED
    client = TestClient(create_app(Settings(bucket_name="b", table_name="t", **limits), index=index, blobs=blobs))
    return client, ds, document, _bulk_of_document(client, ds)


def test_a_value_above_the_buffered_limit_streams_in_chunks_where_the_deployment_streams(counted, monkeypatch) -> None:
    monkeypatch.setattr(bulkdata, "READ_CHUNK", 1 << 20)
    client, _, document, uri = _stored_pdf(
        counted, 6_000_000, max_response_bytes=1_000_000, stream_response_bytes=10**8
    )
    _, blobs = counted
    blobs.reset()
    with client.stream("GET", uri, headers={"Accept": 'multipart/related; type="application/octet-stream"'}) as answer:
        assert answer.status_code == 200
        assert int(answer.headers["content-length"]) > len(document)
        body = b"".join(answer.iter_bytes())
    ((_, value),) = read_multipart(body, answer.headers["content-type"])
    assert value == document
    assert blobs.calls == {"range": -(-len(document) // (1 << 20))}  # one ranged read per MiB, no whole read
    assert blobs.bytes == len(document)

    blobs.reset()
    ranged = client.get(uri, headers={"Accept": "application/octet-stream", "Range": "bytes=1000000-4999999"})
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes 1000000-4999999/{len(document)}"
    assert ranged.content == document[1_000_000:5_000_000]
    assert blobs.bytes == 4_000_000


def test_a_value_above_every_limit_is_refused_before_it_is_read(counted) -> None:
    client, _, document, uri = _stored_pdf(
        counted, 6_000_000, max_response_bytes=1_000_000, stream_response_bytes=2_000_000
    )
    _, blobs = counted
    blobs.reset()
    refused = client.get(uri, headers={"Accept": "application/octet-stream"})
    assert refused.status_code == 413
    assert "Range" in refused.json()["message"]
    assert blobs.calls == {}
    part = client.get(uri, headers={"Accept": "application/octet-stream", "Range": "bytes=0-1499999"})
    assert part.status_code == 206 and part.content == document[:1_500_000]
