"""WADO-RS metadata (PS3.18 §10.4.1.1.2): each instance's DICOM JSON (or XML) with bulk data as
``BulkDataURI`` (``{instance URL}/bulkdata/{tag path}``, served by ``retrieve.bulkdata``) and small
binary values inline, from the index when it holds it, else from the stored object.

Series metadata is cached: the series item's ``ver`` changes in the same transaction as every
change of the series' instances, so a document built for ``ver`` stays right for as long as ``ver``
does. It is kept gzip-compressed in the bucket at a key naming ``ver`` and the representation
(``derived_key``); opening a series is then one read of the series item and one GetObject. A
document is only cached when ``ver`` is still the same after its instances were listed, so one
built from a listing that already held a newer instance is sent but never stored as ``ver``'s.
Concurrent builders of one ``ver`` write the same bytes (the compression and the XML boundary
are deterministic), so the write needs no condition.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..blobs.keys import stored_key
from ..errors import NotFound
from ..formats import dicom_json, dicom_xml, multipart
from ..ports import BlobNotFound, BlobStore, MetadataIndex
from ..records import DicomJson, StoredInstance
from ..store.ingest import parse_part10

XML = "application/dicom+xml"
#: Where derived documents live in the bucket (the retrieve function may write only there).
DERIVED_PREFIX = "derived/"
#: Changes whenever the document format changes, so older cached documents are not served.
_FORMAT = "1"


def instance_url(base_url: str, inst: StoredInstance) -> str:
    return f"{base_url}/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"


def metadata(
    instances: Sequence[StoredInstance], blobs: BlobStore, base_url: str, threshold: int = dicom_json.BULK_THRESHOLD
) -> list[DicomJson]:
    """WADO-RS metadata for each instance, bulk data as absolute ``BulkDataURI``."""
    out: list[DicomJson] = []
    for inst in instances:
        meta = inst.metadata
        if meta is None:  # too large for the index: read it from the object
            meta = dicom_json.metadata(parse_part10(blobs.get(stored_key(inst))), threshold)
        out.append(dicom_json.absolute_bulk_uris(meta, instance_url(base_url, inst)))
    return out


def encode(datasets: list[DicomJson], media: str, *, boundary: str | None = None) -> tuple[bytes, str]:
    """The answer body and its Content-Type: a JSON array, or one XML part per dataset."""
    if media == XML:
        return multipart.encode(dicom_xml.to_xml_multipart_parts(datasets), XML, boundary=boundary)
    return json.dumps(datasets, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), media


def compress(body: bytes) -> bytes:
    """gzip with no timestamp: the same body always gives the same bytes."""
    return gzip.compress(body, compresslevel=6, mtime=0)


def body_etag(body: bytes) -> str:
    """A strong entity tag of an identity-encoded body (RFC 9110 §8.8.3)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@dataclass(frozen=True)
class Document:
    """A metadata answer: its identity body (or only its gzip form, ``gz``), Content-Type and ETag
    of the identity encoding."""

    content_type: str
    etag: str
    body: bytes | None = None
    gz: bytes | None = None

    def identity(self) -> bytes:
        if self.body is not None:
            return self.body
        assert self.gz is not None
        return gzip.decompress(self.gz)

    def gzipped(self) -> bytes:
        return self.gz if self.gz is not None else compress(self.identity())


@dataclass(frozen=True)
class SeriesVersion:
    """What one read of the series item says about its metadata document."""

    study_uid: str
    series_uid: str
    ver: int
    media: str
    base_url: str

    @property
    def digest(self) -> str:
        text = "\n".join((_FORMAT, self.study_uid, self.series_uid, str(self.ver), self.media, self.base_url))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'

    @property
    def derived_key(self) -> str:
        ext = "xml" if self.media == XML else "json"
        return f"{DERIVED_PREFIX}series-metadata/{self.study_uid}/{self.series_uid}/{self.ver}/{self.digest}.{ext}.gz"

    @property
    def boundary(self) -> str:
        return f"dicomweb-{self.digest}"

    @property
    def content_type(self) -> str:
        if self.media == XML:
            return f'multipart/related; type="{XML}"; boundary={self.boundary}'
        return self.media


def series_version(index: MetadataIndex, study_uid: str, series_uid: str, media: str, base_url: str) -> SeriesVersion:
    """One read of the series item; ``NotFound`` when the series is not stored."""
    ver = index.series_version(study_uid, series_uid)
    if ver is None:
        raise NotFound(f"series {series_uid} is not stored here")
    return SeriesVersion(study_uid, series_uid, ver, media, base_url)


def series_document(
    version: SeriesVersion,
    *,
    index: MetadataIndex,
    blobs: BlobStore,
    threshold: int = dicom_json.BULK_THRESHOLD,
) -> tuple[Document, list[StoredInstance]]:
    """The series' metadata at ``version``: the cached document (one GetObject), or built from
    its instances and cached when ``ver`` did not move meanwhile. The instances are returned when
    they were listed (for the size policy's hint), else an empty list."""
    try:
        return Document(version.content_type, version.etag, gz=blobs.get(version.derived_key)), []
    except BlobNotFound:
        pass
    found = index.list_instances(version.study_uid, version.series_uid, with_metadata=True)
    if not found:
        raise NotFound(f"series {version.series_uid} is not stored here")
    datasets = metadata(found, blobs, version.base_url, threshold)
    body, _ = encode(datasets, version.media, boundary=version.boundary)
    gz = compress(body)
    if index.series_version(version.study_uid, version.series_uid) == version.ver:
        blobs.put(version.derived_key, gz, content_type="application/gzip")
        return Document(version.content_type, version.etag, body=body, gz=gz), found
    # Instances were added while listing: this answer is newer than ``ver``, so it is neither
    # cached nor tagged as ``ver``'s.
    return Document(version.content_type, body_etag(body), body=body, gz=gz), found
