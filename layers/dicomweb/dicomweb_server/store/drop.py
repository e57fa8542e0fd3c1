"""S3 drop: a Part-10 file put under ``incoming/`` is indexed through the same ``ingest`` path as
STOW-RS, stored under its object key, and removed from ``incoming/``.

The file is read once as a stream (one GET; memory stays bounded whatever its size), and the stored
copy is a server-side copy of exactly the version read (``CopySourceIfMatch`` on its ETag, and its
version id where the bucket keeps versions), so a newer upload under the same name cannot slip in:
it stays in ``incoming/`` for its own event, and only the version read is removed.

Redelivered events are harmless: the second delivery finds the incoming object gone (or the
instance already indexed) and changes nothing. A file that is not a valid instance is moved to
``rejected/`` (kept 30 days by the bucket's lifecycle rule). If indexing fails midway, the incoming
object stays where it is and the retried event repairs the state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

from pydicom.dataset import Dataset

from ..blobs.keys import INCOMING_PREFIX, REJECTED_PREFIX
from ..ports import BlobChanged, BlobNotFound, BlobStore, MetadataIndex, OpenedBlob, Readable
from ..settings import DuplicatePolicy
from . import validate
from .ingest import MAX_FRAME_TABLE_BYTES, InvalidInstance, Payload, Reason, Stored, ingest, with_preamble

log = logging.getLogger("dicomweb.drop")


class DropOutcome(Enum):
    INDEXED = "indexed"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    GONE = "gone"
    IGNORED = "ignored"


@dataclass
class Dropped:
    """The incoming object (an S3 drop, or an upload session's file) as one ``ingest`` payload:
    read by its one streamed GET, written by a conditional server-side copy of the version that
    GET read."""

    key: str
    opened: OpenedBlob
    blobs: BlobStore
    head: bytes = b""
    used: bool = False

    def open(self) -> Readable:
        if self.used:
            raise RuntimeError("a dropped object is read once")
        self.used = True
        return _Prefixed(self.head, self.opened.body)

    def with_file_meta(self, ds: Dataset) -> Corrected:
        return Corrected(self.key, self.opened, self.blobs, ds)

    def write(self, blobs: BlobStore, key: str) -> None:
        blobs.copy(self.key, key, if_match=self.opened.etag, version=self.opened.version, size=self.opened.size)


#: How much of the object's beginning is read to find where its file meta group ends.
_HEAD_BYTES = 1 << 20


@dataclass
class Corrected:
    """A dropped or uploaded object whose file meta group is written again (WarningReason 0xB000):
    the new preamble and file meta group, then the original's bytes from its first data set
    element on. Each ``open`` is one more streamed GET of exactly the version first read
    (``BlobChanged`` if it is gone); ``write`` streams those bytes into a multipart upload. So
    the object is never held whole, and what is scanned (offsets, MD5) is byte for byte what is
    stored."""

    key: str
    opened: OpenedBlob
    blobs: BlobStore
    ds: Dataset

    def open(self) -> Readable:
        body = self.blobs.open(self.key, version=self.opened.version, if_match=self.opened.etag).body
        head = bytearray()
        while len(head) < _HEAD_BYTES:
            got = body.read(_HEAD_BYTES - len(head))
            if not got:
                break
            head += got
        try:
            header, start = validate.corrected_header(bytes(head), self.ds)
        except validate.MALFORMED as exc:  # read once already, so only a file meta group above _HEAD_BYTES
            raise InvalidInstance(
                Reason.CANNOT_UNDERSTAND, f"the file meta group cannot be written again: {type(exc).__name__}"
            ) from None
        return _Prefixed(header + bytes(head[start:]), body)

    def with_file_meta(self, ds: Dataset) -> Corrected:
        return Corrected(self.key, self.opened, self.blobs, ds)

    def write(self, blobs: BlobStore, key: str) -> None:
        blobs.put_stream(key, self.open(), size_hint=self.opened.size)


class _Prefixed:
    """``head`` (already read, to look at the preamble) followed by the rest of ``body``."""

    def __init__(self, head: bytes, body: Readable) -> None:
        self._head = head
        self._body = body

    def read(self, size: int = -1, /) -> bytes:
        if self._head:
            if size < 0:
                out, self._head = self._head + self._body.read(), b""
                return out
            out, self._head = self._head[:size], self._head[size:]
            return out
        return self._body.read(size)


def index_dropped(
    key: str,
    *,
    index: MetadataIndex,
    blobs: BlobStore,
    max_metadata_bytes: int = 300_000,
    bulk_threshold: int = 1024,
    max_frame_table_bytes: int = MAX_FRAME_TABLE_BYTES,
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.ACCEPT_IDENTICAL,
    version: str | None = None,
) -> tuple[DropOutcome, int | None]:
    """Index one dropped object; returns the outcome and, for a rejected file, its FailureReason.
    ``version``: the version the S3 event names (events may arrive out of order: each indexes
    its own version, and one whose version is gone already finds it gone)."""
    if not key.startswith(INCOMING_PREFIX) or key.endswith("/"):
        return DropOutcome.IGNORED, None
    try:
        opened = blobs.open(key, version=version)
    except BlobNotFound:
        return DropOutcome.GONE, None
    with reading(opened):
        try:
            result = ingest(
                payload_of(key, opened, blobs),
                index=index,
                blobs=blobs,
                max_metadata_bytes=max_metadata_bytes,
                max_frame_table_bytes=max_frame_table_bytes,
                bulk_threshold=bulk_threshold,
                duplicate_policy=duplicate_policy,
            )
        except InvalidInstance as exc:
            try:
                blobs.copy(
                    key, REJECTED_PREFIX + key[len(INCOMING_PREFIX) :], if_match=opened.etag, version=opened.version
                )
            except (BlobChanged, BlobNotFound):
                return DropOutcome.GONE, None  # replaced or removed meanwhile: a newer upload has its own event
            blobs.delete(key, opened.version)
            return DropOutcome.REJECTED, int(exc.reason)
        except (BlobChanged, BlobNotFound):
            return DropOutcome.GONE, None
        if result.warnings:  # the codes only: the messages may quote the file's UIDs
            log.warning(
                "dropped file stored with warnings",
                extra={"warning_reasons": [f"{int(w.reason):04X}" for w in result.warnings]},
            )
        blobs.delete(key, opened.version)
        return (DropOutcome.DUPLICATE if result.outcome is Stored.IDENTICAL_DUPLICATE else DropOutcome.INDEXED), None


@contextmanager
def reading(opened: OpenedBlob) -> Iterator[OpenedBlob]:
    """``opened``, its body closed afterwards however the read ended (a body read only in part
    holds its connection until it is collected)."""
    try:
        yield opened
    finally:
        close = getattr(opened.body, "close", None)
        if close is not None:
            close()


def payload_of(key: str, opened: OpenedBlob, blobs: BlobStore) -> Payload | bytes:
    """What ``ingest`` reads of an opened drop or upload: the streamed ``Dropped``, or for a file
    written without a preamble (pydicom's dcmwrite of an in-memory dataset) its bytes, since what
    is stored is the completed Part-10 file (such files are small in practice)."""
    head = _read_head(opened.body)
    if head[128:132] != b"DICM" and with_preamble(head) is not head:
        return head + opened.body.read()
    return Dropped(key, opened, blobs, head)


def _read_head(body: Readable) -> bytes:
    out = b""
    while len(out) < 132:
        got = body.read(132 - len(out))
        if not got:
            break
        out += got
    return out
