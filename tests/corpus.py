"""Test data built at test time from the files pydicom ships, re-identified on every call.

Every instance gets fresh Study/Series/SOP Instance UIDs (``pydicom.uid.generate_uid``), so tests
never collide with each other or with data left in a shared stack. Patient and study attributes are
set by DICOM keyword. Also here: a ``multipart/related`` STOW-RS body builder written independently
of the server's encoder, and the S3 bucket and DynamoDB table of ``template.yaml`` for moto (or any
S3/DynamoDB endpoint). Shared by the unit and integration tests.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

#: Source files (all shipped inside the pydicom wheel, no download) by what they are good for.
SOURCES = {
    "ct": "CT_small.dcm",  # CT, Explicit VR Little Endian
    "mr": "MR_small.dcm",  # MR, Explicit VR Little Endian
    "mr_implicit": "MR_small_implicit.dcm",  # MR, Implicit VR Little Endian
    "jpeg": "SC_rgb_jpeg_dcmtk.dcm",  # OT, JPEG Baseline (compressed)
    "multiframe": "SC_rgb_rle_2frame.dcm",  # OT, RLE Lossless, 2 frames
}
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"


@dataclass(frozen=True)
class Instance:
    """One generated Part-10 object and the identifiers a test needs to find it again."""

    data: bytes
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    source: str

    @property
    def prefix(self) -> str:
        """The folder the server stores its objects in (``blobs.keys``), spelled out independently."""
        return f"studies/{self.study_uid}/series/{self.series_uid}/instances/{self.sop_uid}/"

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()  # noqa: S324 - the server's content check

    def stored_key(self, index: Any) -> str:
        """The key of the object ``index`` names for this instance, checked to be one of this
        instance's keys and named after this content's MD5."""
        found = index.indexed_object(self.study_uid, self.series_uid, self.sop_uid)
        assert found is not None, f"{self.sop_uid} is not indexed"
        md5, key = found
        assert key.startswith(self.prefix) and key[len(self.prefix) :].startswith(md5 + "-"), key
        return str(key)

    def dataset(self) -> Dataset:
        return dcmread(io.BytesIO(self.data))


@cache
def _source_bytes(source: str) -> bytes:
    name = SOURCES[source]
    path = get_testdata_file(name, download=False)
    if path is None:
        raise RuntimeError(f"pydicom test file {name} is not available offline")
    with open(str(path), "rb") as fh:
        return fh.read()


def source_dataset(source: str) -> Dataset:
    """A fresh, mutable copy of one source file."""
    return dcmread(io.BytesIO(_source_bytes(source)))


def to_part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def make_instance(
    source: str = "ct",
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    **attributes: Any,
) -> Instance:
    """A Part-10 instance from ``source`` with new UIDs (unless given) and ``attributes`` set by keyword.

    ``make_instance("mr", PatientName="DOE^JANE", StudyDate="20240131", Modality="MR")``; an
    attribute given as ``None`` is removed.
    """
    ds = source_dataset(source)
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8, so any name can be set (the sources are ASCII)
    for keyword, value in attributes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return Instance(
        data=to_part10(ds),
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.get("SOPClassUID", "")),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        source=source,
    )


def make_study(
    sources: Sequence[str] = ("ct", "mr"),
    *,
    instances_per_series: int = 1,
    study_uid: str | None = None,
    **attributes: Any,
) -> list[Instance]:
    """One study with a series per entry of ``sources`` (numbered 1, 2, ...), sharing ``attributes``."""
    study_uid = study_uid or generate_uid()
    out: list[Instance] = []
    for number, source in enumerate(sources, start=1):
        series_uid = generate_uid()
        for i in range(1, instances_per_series + 1):
            out.append(
                make_instance(
                    source,
                    study_uid=study_uid,
                    series_uid=series_uid,
                    SeriesNumber=number,
                    InstanceNumber=i,
                    **attributes,
                )
            )
    return out


def make_corpus() -> list[Instance]:
    """A small varied archive: five studies, three patients, CT/MR/OT, compressed and multi-frame."""
    return [
        *make_study(
            ("ct", "mr"), PatientName="DOE^JANE", PatientID="PID-1", StudyDate="20240105", AccessionNumber="ACC-1"
        ),
        *make_study(
            ("mr_implicit",), PatientName="DOE^JOHN", PatientID="PID-2", StudyDate="20230610", AccessionNumber="ACC-2"
        ),
        *make_study(
            ("jpeg",), PatientName="SIIM^JOE", PatientID="PID-3", StudyDate="20220301", AccessionNumber="ACC-3"
        ),
        *make_study(
            ("multiframe",), PatientName="SIIM^JOE", PatientID="PID-3", StudyDate="20220302", AccessionNumber="ACC-4"
        ),
        *make_study(
            ("ct",),
            instances_per_series=3,
            PatientName="MÜLLER^RENÉ",
            PatientID="PID-4",
            StudyDate="20210101",
            AccessionNumber="ACC-5",
        ),
    ]


def truncated(data: bytes, missing: int = 100) -> bytes:
    """The object with its last ``missing`` bytes cut off (a Part-10 file cut short in transit)."""
    return data[:-missing]


def stow_body(
    payloads: Iterable[bytes | Instance],
    *,
    boundary: str | None = None,
    part_type: str = "application/dicom",
) -> tuple[bytes, str]:
    """A STOW-RS request body (``multipart/related``, CRLF delimiters) and its Content-Type."""
    boundary = boundary or "corpus-" + secrets.token_hex(12)
    chunks = []
    for item in payloads:
        data = item.data if isinstance(item, Instance) else item
        chunks += [f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode(), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{part_type}"; boundary={boundary}'


# -- cloud resources as template.yaml declares them --------------------------------------------------

#: ``IndexTable`` in template.yaml: string hash key ``pk``, string range key ``sk``, on demand.
TABLE_KEYS = {"pk": ("S", "HASH"), "sk": ("S", "RANGE")}


def create_table(dynamodb: Any, name: str) -> None:
    """The index table of template.yaml (``dynamodb`` is a boto3 DynamoDB client)."""
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": t} for k, (t, _) in TABLE_KEYS.items()],
        KeySchema=[{"AttributeName": k, "KeyType": kt} for k, (_, kt) in TABLE_KEYS.items()],
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def create_bucket(s3: Any, name: str) -> None:
    """The DICOM bucket of template.yaml, versioned (``s3`` is a boto3 S3 client)."""
    region = s3.meta.region_name
    kwargs: dict[str, Any] = {"Bucket": name}
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def list_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    """Every current object key under ``prefix``."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


# -- reading responses ---------------------------------------------------------------------------------


def read_multipart(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a server's ``multipart/related`` response into (lower-cased headers, payload) pairs.

    Deliberately strict and independent of the server's decoder: CRLF delimiters only (RFC 2046),
    the body starts with the first delimiter and ends with the close delimiter.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise ValueError(f"no boundary in {content_type!r}")
    dash = b"--" + match.group(1).encode("ascii")
    opening, closing = dash + b"\r\n", b"\r\n" + dash + b"--\r\n"
    if not body.startswith(opening) or not body.endswith(closing):
        raise ValueError("the body does not start with the boundary or end with the close delimiter")
    inner = body[len(opening) : len(body) - len(closing)]
    parts = []
    for chunk in inner.split(b"\r\n" + dash + b"\r\n"):
        if chunk.startswith(b"\r\n"):
            head, payload = b"", chunk[2:]
        else:
            head, sep, payload = chunk.partition(b"\r\n\r\n")
            if not sep:
                raise ValueError("a part has no end of headers")
        headers = {}
        for line in head.decode("latin-1").split("\r\n") if head else []:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, payload))
    return parts
