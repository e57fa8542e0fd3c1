"""WADO-RS bulk data (PS3.18 §8.7.3.3.2 and §10.4): the value of one bulk data element, as a
metadata answer's ``BulkDataURI`` names it (``{instance}/bulkdata/{tag path}``), whole or a byte
range of it (RFC 9110 §14).

Where ingest recorded the value's offset in the object (``InstanceRecord.bulk``), only those bytes
are read (one ranged GetObject); otherwise (a deflated file, an instance indexed before offsets
were recorded) the object is read and parsed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..blobs.keys import stored_key
from ..errors import NotFound, RangeNotSatisfiable
from ..formats import dicom_json
from ..ports import BlobStore
from ..records import StoredInstance
from ..store.ingest import parse_part10


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` (inclusive) of a value of ``length`` bytes."""

    start: int
    end: int
    length: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.length}"


_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str | None, length: int) -> ByteRange | None:
    """The range a ``Range`` header asks for (RFC 9110 §14.1.2), or None for the whole value.

    A header that is malformed, in another unit, or asks for several ranges is ignored (the whole
    value is sent, as §14.2 allows); a well-formed range of which no byte exists is a 416.
    """
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        return None
    found = _SPEC.match(spec)
    if found is None or (not found.group(1) and not found.group(2)):
        return None
    first, last = found.group(1), found.group(2)
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or length == 0:
            raise RangeNotSatisfiable(
                f"the range {spec.strip()} selects no byte of the {length}-byte value", length=length
            )
        return ByteRange(max(length - suffix, 0), length - 1, length)
    start = int(first)
    end = int(last) if last else length - 1
    if last and end < start:
        return None  # invalid: ignored
    if start >= length:
        raise RangeNotSatisfiable(
            f"the range {spec.strip()} starts at or after the end of the {length}-byte value", length=length
        )
    return ByteRange(start, min(end, length - 1), length)


def etag(inst: StoredInstance, path: str) -> str:
    """A strong entity tag of one value: the stored object's MD5 names its bytes."""
    return '"' + hashlib.sha256(f"{inst.md5}\n{path}".encode()).hexdigest()[:32] + '"'


@dataclass(frozen=True)
class Located:
    """Where a value is: an offset in the object (-1: only a parse finds it) and its length, or
    the value itself when the object had to be read to find it."""

    offset: int
    length: int
    value: bytes | None = None


def locate(inst: StoredInstance, path: str, blobs: BlobStore, threshold: int) -> Located:
    """Find the bulk data element ``path`` of ``inst`` (``BadRequest`` for a malformed path,
    ``NotFound`` when the instance has no such bulk data element)."""
    parents, tag = dicom_json.parse_tag_path(path)
    missing = NotFound(f"instance {inst.sop_uid} has no bulk data element {path}")
    if inst.bulk is not None:
        entry = inst.bulk.get(path)
        if entry is None:
            raise missing
        if entry[0] >= 0:
            return Located(entry[0], entry[1])
    ds = parse_part10(blobs.get(stored_key(inst)))
    elem = dicom_json.find_element(ds, parents, tag)
    if elem is None or (inst.bulk is None and not dicom_json.is_bulk(elem, threshold)):
        raise missing
    value = elem.value if isinstance(elem.value, bytes) else b""
    return Located(-1, len(value), value)


def read(inst: StoredInstance, where: Located, blobs: BlobStore, wanted: ByteRange | None) -> bytes:
    """The value's bytes (``wanted`` of them): a ranged read where the offset is known."""
    if where.value is not None:
        return where.value if wanted is None else where.value[wanted.start : wanted.end + 1]
    if where.length == 0:
        return b""
    start, end = (wanted.start, wanted.end) if wanted else (0, where.length - 1)
    return blobs.get_range(stored_key(inst), where.offset + start, where.offset + end)
