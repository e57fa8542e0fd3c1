"""Series metadata precomputed: the cached document under the series' ``ver`` (one GetItem plus one
GetObject to open a 500-instance series), ETag/304, gzip, and instances added while a document is
built never missing from a later answer."""

from __future__ import annotations

import base64
import gzip
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from pydicom.uid import generate_uid
from starlette.testclient import TestClient

from dicomweb_server.aws.api import api_handler
from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.records import InstanceRecord
from dicomweb_server.settings import Settings
from dicomweb_server.store.ingest import build_record, parse_part10
from dicomweb_server.web import create_app
from tests.conftest import load_event
from tests.corpus import read_multipart, source_dataset, to_part10

from .doubles import Untransacted

SOP = "00080018"


def ct_records(count: int, study_uid: str, series_uid: str, start: int = 1) -> Iterator[InstanceRecord]:
    """Index records of ``count`` 512×512 16-bit CT slices of one series, built from their Part-10
    bytes as ingest builds them (the bytes themselves are not kept)."""
    ds = source_dataset("ct")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Rows = ds.Columns = 512
    pixels = np.random.default_rng(0).integers(0, 4096, (512, 512), dtype="<u2")
    for number in range(start, start + count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = number
        ds.ImagePositionPatient = [0, 0, float(number)]
        pixels[0, 0] = number
        ds.PixelData = pixels.tobytes()
        data = to_part10(ds)
        record = build_record(parse_part10(data), data)
        yield replace(record, object_key=f"studies/{study_uid}/series/{series_uid}/instances/{record.sop_uid}/x.dcm")


@contextmanager
def aws_calls(*clients: Any) -> Iterator[Counter[str]]:
    """Every botocore call the clients make, counted as ``service.Operation``."""
    counts: Counter[str] = Counter()

    def hook(model: Any, **_: Any) -> None:
        counts[f"{model.service_model.service_name}.{model.name}"] += 1

    for client in clients:
        client.meta.events.register("before-call", hook)
    try:
        yield counts
    finally:
        for client in clients:
            client.meta.events.unregister("before-call", hook)


def series_path(study_uid: str, series_uid: str) -> str:
    return f"/studies/{study_uid}/series/{series_uid}/metadata"


@pytest.fixture(scope="module")
def big_series(moto_clients: tuple[Any, Any]) -> tuple[str, str, str, str]:
    """500 CT instances of one series in a moto table (bucket, table, study, series)."""
    from tests.corpus import create_bucket, create_table

    s3, dynamodb = moto_clients
    bucket, table = "series-metadata-bucket", "series-metadata-index"
    create_bucket(s3, bucket)
    create_table(dynamodb, table)
    loader = DynamoDbIndex(Untransacted(dynamodb), table)  # the same items, loaded quickly
    study, series = generate_uid(), generate_uid()
    for record in ct_records(500, study, series):
        loader.add_instance(record)
    return bucket, table, study, series


def big_client(moto_clients: tuple[Any, Any], big_series: tuple[str, str, str, str]) -> TestClient:
    s3, dynamodb = moto_clients
    bucket, table, _, _ = big_series
    settings = Settings(bucket_name=bucket, table_name=table)
    return TestClient(create_app(settings, index=DynamoDbIndex(dynamodb, table), blobs=S3BlobStore(s3, bucket)))


def test_a_500_instance_series_opens_with_one_s3_read_and_one_index_read(moto_clients, big_series):
    s3, dynamodb = moto_clients
    _, _, study, series = big_series
    client = big_client(moto_clients, big_series)
    gzip_only = {"accept-encoding": "gzip"}
    with aws_calls(s3, dynamodb) as built:
        first = client.get(series_path(study, series), headers=gzip_only)
    assert first.status_code == 200 and first.headers["content-encoding"] == "gzip"
    items = first.json()
    assert len(items) == 500 and len({i[SOP]["Value"][0] for i in items}) == 500
    assert all(i["7FE00010"]["BulkDataURI"].endswith("/bulkdata/7FE00010") for i in items)
    assert built["s3.PutObject"] == 1 and built["dynamodb.GetItem"] == 2  # ver, then ver again
    with aws_calls(s3, dynamodb) as cached:
        second = client.get(series_path(study, series), headers=gzip_only)
    assert dict(cached) == {"dynamodb.GetItem": 1, "s3.GetObject": 1}
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
    with aws_calls(s3, dynamodb) as revalidated:
        again = client.get(series_path(study, series), headers={**gzip_only, "if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and dict(revalidated) == {"dynamodb.GetItem": 1}


def test_500_ct_instances_fit_the_response_limit_gzipped_and_say_so_when_not(moto_clients, big_series):
    _, _, study, series = big_series
    client = big_client(moto_clients, big_series)
    zipped = client.get(series_path(study, series), headers={"accept-encoding": "gzip"})
    assert zipped.status_code == 200 and int(zipped.headers["content-length"]) < Settings.max_response_bytes
    plain = client.get(series_path(study, series), headers={"accept-encoding": "identity"})
    assert len(json.dumps(zipped.json(), separators=(",", ":"))) > Settings.max_response_bytes
    assert plain.status_code == 413
    assert "send Accept-Encoding: gzip" in plain.json()["message"]


def test_an_added_instance_changes_ver_and_the_next_answer_holds_it(moto_clients, big_series):
    _, dynamodb = moto_clients
    _, table, study, series = big_series
    client = big_client(moto_clients, big_series)
    before = client.get(series_path(study, series))
    (record,) = ct_records(1, study, series, start=501)
    DynamoDbIndex(dynamodb, table).add_instance(record)
    after = client.get(series_path(study, series), headers={"if-none-match": before.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    assert [i[SOP]["Value"][0] for i in after.json()][-1] == record.sop_uid


def test_series_metadata_through_lambda_is_gzip_base64(moto_clients, big_series, lambda_context, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "dicomweb")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    bucket, table, study, series = big_series
    handler = api_handler("retrieve", Settings(bucket_name=bucket, table_name=table))
    event = load_event("apigw-get-studies")
    path = series_path(study, series)
    event.update(
        resource="/studies/{study}/series/{series}/metadata",
        path=path,
        pathParameters={"study": study, "series": series},
        queryStringParameters=None,
        multiValueQueryStringParameters=None,
    )
    event["requestContext"]["path"] = "/Prod" + path
    response = handler(event, lambda_context)
    assert response["statusCode"] == 200 and response["isBase64Encoded"] is True
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    assert headers["content-encoding"] == "gzip" and "Accept-Encoding" in headers["vary"]
    items = json.loads(gzip.decompress(base64.b64decode(response["body"])))
    assert len(items) >= 500
    uri = items[0]["7FE00010"]["BulkDataURI"]
    assert uri.startswith(f"https://abc123defg.execute-api.eu-west-1.amazonaws.com/Prod/studies/{study}/series/")


# -- races, on the in-memory ports -----------------------------------------------------------------


class AddsWhileListing:
    """An index whose listing of a series lets another writer add an instance just before
    (``when="before"``) or just after (``"after"``) it reads."""

    def __init__(self, index: MemoryIndex, record: InstanceRecord, when: str) -> None:
        self._index, self._record, self._when = index, record, when
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def list_instances(self, *args: Any, **kwargs: Any) -> Any:
        if self._when == "before" and not self.fired:
            self.fired = True
            self._index.add_instance(self._record)
        found = self._index.list_instances(*args, **kwargs)
        if self._when == "after" and not self.fired:
            self.fired = True
            self._index.add_instance(self._record)
        return found


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_instance_added_while_the_document_is_built_is_in_every_later_answer(when):
    index, blobs = MemoryIndex(), MemoryBlobStore()
    study, series = generate_uid(), generate_uid()
    for record in ct_records(3, study, series):
        index.add_instance(record)
    (late,) = ct_records(1, study, series, start=4)
    racing = AddsWhileListing(index, late, when)
    settings = Settings(bucket_name="b", table_name="t")
    client = TestClient(create_app(settings, index=racing, blobs=blobs))  # type: ignore[arg-type]
    first = client.get(series_path(study, series))
    assert racing.fired
    sops = [i[SOP]["Value"][0] for i in first.json()]
    assert (late.sop_uid in sops) == (when == "before")
    # nothing was cached under the ver read before the writer's instance
    cached = [k for k in blobs.objects if k.startswith("derived/")]
    assert cached == []
    later = TestClient(create_app(settings, index=index, blobs=blobs)).get(series_path(study, series))
    assert late.sop_uid in [i[SOP]["Value"][0] for i in later.json()]
    assert later.headers["etag"] != first.headers["etag"]


def test_concurrent_writers_and_readers_never_cache_a_document_missing_an_instance():
    index, blobs = MemoryIndex(), MemoryBlobStore()
    study, series = generate_uid(), generate_uid()
    records = list(ct_records(40, study, series))
    index.add_instance(records[0])
    client = TestClient(create_app(Settings(bucket_name="b", table_name="t"), index=index, blobs=blobs))
    done = threading.Event()
    errors: list[str] = []

    def write() -> None:
        for record in records[1:]:
            index.add_instance(record)
        done.set()

    def read() -> None:
        while not done.is_set():
            r = client.get(series_path(study, series))
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in range(3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = client.get(series_path(study, series)).json()
    assert sorted(i[SOP]["Value"][0] for i in final) == sorted(r.sop_uid for r in records)
    # every cached document holds exactly the instances its ver counts (one per add here)
    documents = [k for k in blobs.objects if k.startswith(f"derived/series-metadata/{study}/{series}/")]
    assert documents
    for key in documents:
        ver = int(key.split("/")[4])
        assert len(json.loads(gzip.decompress(blobs.objects[key]))) == ver


def test_xml_series_metadata_is_cached_byte_for_byte():
    index, blobs = MemoryIndex(), MemoryBlobStore()
    study, series = generate_uid(), generate_uid()
    for record in ct_records(2, study, series):
        index.add_instance(record)
    client = TestClient(create_app(Settings(bucket_name="b", table_name="t"), index=index, blobs=blobs))
    xml = {"accept": 'multipart/related; type="application/dicom+xml"'}
    first, second = (client.get(series_path(study, series), headers=xml) for _ in range(2))
    assert first.content == second.content and first.headers["content-type"] == second.headers["content-type"]
    assert len([k for k in blobs.objects if k.endswith(".xml.gz")]) == 1
    parts = read_multipart(first.content, first.headers["content-type"])
    assert len(parts) == 2 and all(b"<BulkData uri=" in payload for _, payload in parts)


def test_unknown_series_metadata_is_404_without_caching_anything(memory_client):
    response = memory_client.get(series_path(generate_uid(), generate_uid()))
    assert response.status_code == 404 and "series" in response.json()["message"]
