"""Metadata with bulk data URIs (PS3.18 §8.6.1.3, §10.4.1.1.2) and the bulk data resource they name,
with byte ranges (RFC 9110 §14), on the in-memory ports and on S3/DynamoDB in moto."""

from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid
from starlette.testclient import TestClient

from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.settings import Settings
from dicomweb_server.web import create_app
from tests.corpus import Instance, read_multipart, source_dataset, stow_body, to_part10

BASE = "http://testserver"
CREATOR = "DICOMWEB TEST"
NS = "{http://dicom.nema.org/PS3.19/models/NativeDICOM}"


def ct_slice(
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    number: int = 1,
    seed: int = 0,
    transfer_syntax: str | None = None,
) -> Instance:
    """A 512×512 16-bit CT slice with a private OB value above the bulk threshold (5,000 bytes),
    a small one (16 bytes), and a large one inside item 1 of a sequence."""
    rng = np.random.default_rng(seed)
    ds = source_dataset("ct")
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if transfer_syntax:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = 512
    ds.PixelData = rng.integers(0, 4096, (512, 512), dtype="<u2").tobytes()
    block = ds.private_block(0x0009, CREATOR, create=True)
    block.add_new(0x10, "OB", rng.bytes(5000))
    block.add_new(0x11, "OB", rng.bytes(16))
    item = Dataset()
    item.private_block(0x0009, CREATOR, create=True).add_new(0x12, "OB", rng.bytes(3000))
    ds.ReferencedImageSequence = Sequence([Dataset(), item])
    return Instance(
        data=to_part10(ds),
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        source="ct",
    )


def stow(client: Any, *instances: Instance) -> None:
    body, content_type = stow_body(list(instances))
    response = client.post("/studies", content=body, headers={"content-type": content_type})
    assert response.status_code == 200, response.text


def instance_path(inst: Instance) -> str:
    return f"/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"


def private_tag(ds: Dataset, offset: int) -> str:
    return f"{ds.private_block(0x0009, CREATOR).get_tag(offset):08X}"


def bulk_value(client: Any, uri: str, **headers: str) -> Any:
    assert uri.startswith(BASE)
    return client.get(uri[len(BASE) :], headers=headers)


def single_part(response: Any) -> tuple[dict[str, str], bytes]:
    assert response.headers["content-type"].startswith('multipart/related; type="application/octet-stream"')
    ((headers, payload),) = read_multipart(response.content, response.headers["content-type"])
    return headers, payload


@pytest.fixture
def stored(client: Any) -> Instance:
    inst = ct_slice()
    stow(client, inst)
    return inst


def test_metadata_names_pixel_data_and_large_binary_values_as_bulk_data_uris(client, stored):
    ds = stored.dataset()
    (item,) = client.get(instance_path(stored) + "/metadata").json()
    here = BASE + instance_path(stored)
    big, small = private_tag(ds, 0x10), private_tag(ds, 0x11)
    nested = f"{ds.ReferencedImageSequence[1].private_block(0x0009, CREATOR).get_tag(0x12):08X}"
    assert item["7FE00010"] == {"vr": "OW", "BulkDataURI": f"{here}/bulkdata/7FE00010"}
    assert item[big] == {"vr": "OB", "BulkDataURI": f"{here}/bulkdata/{big}"}
    assert item[small] == {"vr": "OB", "InlineBinary": base64.b64encode(ds[small].value).decode()}
    inner = item["00081140"]["Value"][1][nested]
    assert inner == {"vr": "OB", "BulkDataURI": f"{here}/bulkdata/00081140.1.{nested}"}
    assert item["00431029"]["BulkDataURI"] == f"{here}/bulkdata/00431029"  # the source's own private OB


def test_every_bulk_data_uri_resolves_to_the_exact_value(client, stored):
    ds = stored.dataset()
    (item,) = client.get(instance_path(stored) + "/metadata").json()
    nested_tag = ds.ReferencedImageSequence[1].private_block(0x0009, CREATOR).get_tag(0x12)
    expected = {
        "7FE00010": ds.PixelData,
        private_tag(ds, 0x10): ds[private_tag(ds, 0x10)].value,
        "00431029": ds[0x00431029].value,
    }
    for tag, value in expected.items():
        headers, payload = single_part(bulk_value(client, item[tag]["BulkDataURI"]))
        assert payload == value and headers["content-type"] == "application/octet-stream"
    uri = item["00081140"]["Value"][1][f"{nested_tag:08X}"]["BulkDataURI"]
    response = bulk_value(client, uri, accept="application/octet-stream")
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    assert response.content == ds.ReferencedImageSequence[1][nested_tag].value
    assert len(ds.PixelData) == 512 * 512 * 2


def test_the_bulk_data_threshold_is_a_setting(make_client, settings):
    client = make_client(
        Settings(bucket_name=settings.bucket_name, table_name=settings.table_name, bulk_data_threshold=8)
    )
    inst = ct_slice(seed=3)
    stow(client, inst)
    ds = inst.dataset()
    (item,) = client.get(instance_path(inst) + "/metadata").json()
    small = private_tag(ds, 0x11)
    assert "BulkDataURI" in item[small]  # 16 bytes is above a threshold of 8
    response = bulk_value(client, item[small]["BulkDataURI"], accept="application/octet-stream")
    assert response.content == ds[small].value


def test_series_and_study_metadata_carry_the_same_bulk_data_uris(client):
    first = ct_slice(seed=1)
    second = ct_slice(study_uid=first.study_uid, series_uid=first.series_uid, number=2, seed=2)
    stow(client, first, second)
    for path in (f"/studies/{first.study_uid}", f"/studies/{first.study_uid}/series/{first.series_uid}"):
        items = client.get(path + "/metadata").json()
        uris = [i["7FE00010"]["BulkDataURI"] for i in items]
        assert uris == [f"{BASE}{instance_path(i)}/bulkdata/7FE00010" for i in (first, second)]
        for uri, inst in zip(uris, (first, second), strict=True):
            assert single_part(bulk_value(client, uri))[1] == inst.dataset().PixelData


def test_xml_metadata_carries_bulk_data_elements_with_uris(client, stored):
    response = client.get(
        instance_path(stored) + "/metadata", headers={"accept": 'multipart/related; type="application/dicom+xml"'}
    )
    assert response.status_code == 200
    ((_, xml),) = read_multipart(response.content, response.headers["content-type"])
    root = ET.fromstring(xml)
    pixel = root.find(f"{NS}DicomAttribute[@tag='7FE00010']")
    assert pixel is not None
    uri = pixel.find(f"{NS}BulkData").get("uri")
    assert uri == f"{BASE}{instance_path(stored)}/bulkdata/7FE00010"
    assert single_part(bulk_value(client, uri))[1] == stored.dataset().PixelData
    small = root.find(f"{NS}DicomAttribute[@tag='{private_tag(stored.dataset(), 0x11)}']")
    assert small is not None and small.find(f"{NS}InlineBinary") is not None


# -- byte ranges -----------------------------------------------------------------------------------


def pixel_uri(stored: Instance) -> str:
    return f"{instance_path(stored)}/bulkdata/7FE00010"


@pytest.mark.parametrize(
    "header, start, end",
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, 524_287),
        ("bytes=-10", 524_278, 524_287),
        ("bytes=524000-999999", 524_000, 524_287),
    ],
)
def test_a_byte_range_is_206_with_content_range(client, stored, header, start, end):
    pixels = stored.dataset().PixelData
    response = client.get(pixel_uri(stored), headers={"range": header, "accept": "application/octet-stream"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(pixels)}"
    assert response.content == pixels[start : end + 1]
    response = client.get(pixel_uri(stored), headers={"range": header})  # multipart: the part says it too
    assert response.status_code == 206
    headers, payload = single_part(response)
    assert payload == pixels[start : end + 1] and headers["content-range"] == f"bytes {start}-{end}/{len(pixels)}"


@pytest.mark.parametrize("header", ["bytes=524288-", "bytes=600000-600010", "bytes=-0"])
def test_an_unsatisfiable_range_is_416_with_the_length(client, stored, header):
    response = client.get(pixel_uri(stored), headers={"range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */524288"
    assert "524288-byte value" in response.json()["message"]


@pytest.mark.parametrize("header", ["bytes=abc", "bytes=5-2", "items=0-10", "bytes=0-1,5-9", "bytes=-", "bytes"])
def test_a_malformed_or_multiple_range_is_ignored_and_the_whole_value_sent(client, stored, header):
    response = client.get(pixel_uri(stored), headers={"range": header, "accept": "application/octet-stream"})
    assert response.status_code == 200 and "content-range" not in response.headers
    assert response.content == stored.dataset().PixelData


def test_if_range_with_another_etag_sends_the_whole_value(client, stored):
    whole = client.get(pixel_uri(stored), headers={"accept": "application/octet-stream"})
    etag = whole.headers["etag"]
    same = client.get(
        pixel_uri(stored), headers={"range": "bytes=0-9", "if-range": etag, "accept": "application/octet-stream"}
    )
    assert same.status_code == 206 and same.content == whole.content[:10]
    other = client.get(
        pixel_uri(stored), headers={"range": "bytes=0-9", "if-range": '"other"', "accept": "application/octet-stream"}
    )
    assert other.status_code == 200 and other.content == whole.content
    assert client.get(pixel_uri(stored), headers={"if-none-match": etag}).status_code == 304


def test_a_value_above_the_response_limit_is_413_naming_a_range(make_client, settings):
    client = make_client(
        Settings(bucket_name=settings.bucket_name, table_name=settings.table_name, max_response_bytes=100_000)
    )
    inst = ct_slice(seed=5)
    stow(client, inst)
    response = client.get(pixel_uri(inst))
    assert response.status_code == 413 and "Range: bytes=" in response.json()["message"]
    response = client.get(pixel_uri(inst), headers={"range": "bytes=0-49999", "accept": "application/octet-stream"})
    assert response.status_code == 206 and response.content == inst.dataset().PixelData[:50_000]


# -- bad input -------------------------------------------------------------------------------------


def test_bulk_data_of_another_or_unknown_instance_is_404(client, stored):
    other = ct_slice(seed=9)
    stow(client, other)
    # the other instance's SOP Instance UID under this instance's series
    wrong = f"/studies/{stored.study_uid}/series/{stored.series_uid}/instances/{other.sop_uid}/bulkdata/7FE00010"
    response = client.get(wrong)
    assert response.status_code == 404 and other.sop_uid in response.json()["message"]


@pytest.mark.parametrize(
    "path, status, words",
    [
        ("7FE00011", 404, "no bulk data element 7FE00011"),
        ("00100010", 404, "no bulk data element 00100010"),  # PatientName: stored, but no bulk data
        ("00081140.5.00091012", 404, "no bulk data element"),
        ("7FE0001", 400, "not a tag of 8 hex digits"),
        ("00081140.x.00091012", 400, "not an item number"),
        ("00081140.1", 400, "SEQUENCE.ITEM.TAG"),
    ],
)
def test_an_unknown_or_malformed_tag_path_is_a_clear_4xx(client, stored, path, status, words):
    response = client.get(f"{instance_path(stored)}/bulkdata/{path}")
    assert response.status_code == status and words in response.json()["message"]


def test_an_unsupported_accept_is_406(client, stored):
    response = client.get(pixel_uri(stored), headers={"accept": "image/jpeg"})
    assert response.status_code == 406 and "application/octet-stream" in response.json()["message"]


# -- where the bytes are read from -----------------------------------------------------------------


@contextmanager
def s3_gets(s3: Any) -> Iterator[list[dict[str, Any]]]:
    """The parameters of every GetObject the client makes (a botocore event hook)."""
    calls: list[dict[str, Any]] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    s3.meta.events.register("provide-client-params.s3.GetObject", hook)
    try:
        yield calls
    finally:
        s3.meta.events.unregister("provide-client-params.s3.GetObject", hook)


def aws_client(aws: Any, **settings: Any) -> TestClient:
    ports = {"index": DynamoDbIndex(aws.dynamodb, aws.table), "blobs": S3BlobStore(aws.s3, aws.bucket)}
    return TestClient(create_app(Settings(bucket_name=aws.bucket, table_name=aws.table, **settings), **ports))


def test_a_bulk_value_is_one_ranged_s3_read_of_its_own_bytes(aws):
    client = aws_client(aws)
    inst = ct_slice(seed=11)
    stow(client, inst)
    with s3_gets(aws.s3) as calls:
        response = client.get(pixel_uri(inst), headers={"range": "bytes=100-199", "accept": "application/octet-stream"})
    assert response.status_code == 206 and response.content == inst.dataset().PixelData[100:200]
    (call,) = calls
    start = inst.data.index(inst.dataset().PixelData)
    assert call["Range"] == f"bytes={start + 100}-{start + 199}"


def test_a_deflated_instance_is_parsed_to_find_its_bulk_data(client):
    inst = ct_slice(seed=13, transfer_syntax=DeflatedExplicitVRLittleEndian)
    stow(client, inst)
    (item,) = client.get(instance_path(inst) + "/metadata").json()
    ds = dcmread(io.BytesIO(inst.data))
    response = bulk_value(
        client, item["7FE00010"]["BulkDataURI"], range="bytes=10-19", accept="application/octet-stream"
    )
    assert response.status_code == 206 and response.content == ds.PixelData[10:20]
    nested = ds.ReferencedImageSequence[1].private_block(0x0009, CREATOR).get_tag(0x12)
    uri = item["00081140"]["Value"][1][f"{nested:08X}"]["BulkDataURI"]
    assert single_part(bulk_value(client, uri))[1] == ds.ReferencedImageSequence[1][nested].value


def test_instance_metadata_is_gzipped_when_asked_and_has_an_etag(client, stored):
    plain = client.get(instance_path(stored) + "/metadata", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and "Accept-Encoding" in plain.headers["vary"]
    zipped = client.get(instance_path(stored) + "/metadata", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.json() == plain.json()  # httpx decodes it
    assert zipped.headers["etag"] != plain.headers["etag"]
    for etag in (plain.headers["etag"], zipped.headers["etag"]):
        again = client.get(instance_path(stored) + "/metadata", headers={"if-none-match": etag})
        assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("keyword, vr, dtype", [("FloatPixelData", "OF", "<f4"), ("DoubleFloatPixelData", "OD", "<f8")])
def test_float_pixel_data_is_bulk_data_too(client, keyword, vr, dtype):
    ds = ct_slice(seed=17).dataset()
    del ds.PixelData
    ds.Rows = ds.Columns = 64
    value = np.random.default_rng(17).random((64, 64)).astype(dtype).tobytes()
    ds.add_new(keyword, vr, value)
    inst = Instance(
        to_part10(ds), ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SOPClassUID, "", "ct"
    )
    stow(client, inst)
    (item,) = client.get(instance_path(inst) + "/metadata").json()
    tag = f"{ds[keyword].tag:08X}"
    assert item[tag]["BulkDataURI"] == f"{BASE}{instance_path(inst)}/bulkdata/{tag}" and "7FE00010" not in item
    assert bulk_value(client, item[tag]["BulkDataURI"], accept="application/octet-stream").content == value


def test_if_range_for_another_version_sends_the_whole_value_even_past_the_end(client, stored):
    response = client.get(
        pixel_uri(stored),
        headers={"range": "bytes=900000-", "if-range": '"other"', "accept": "application/octet-stream"},
    )
    assert response.status_code == 200 and response.content == stored.dataset().PixelData
