"""The storage interfaces the services depend on. Implementations live in ``dicomweb_server.index``
and ``dicomweb_server.blobs``; one contract test suite (tests/unit/test_contract.py) runs against
every implementation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from .frame_table import FrameTable
from .records import InstanceRecord, SeriesSummary, StoredInstance, StudySummary
from .search.query import Query


class BlobNotFound(KeyError):
    """No object under that key."""


class BlobChanged(Exception):
    """A conditional copy found the source object changed (another version than the one read)."""


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class OpenedBlob:
    """An object opened for one front-to-back read: its body, size, version id (None where the
    store keeps no versions) and ETag (the condition of a copy of exactly this version)."""

    body: Readable
    size: int
    version: str | None
    etag: str


class AddOutcome(Enum):
    ADDED = "added"
    ALREADY_INDEXED = "already-indexed"


@dataclass(frozen=True)
class Page[T]:
    """One page of search results.

    ``more``: results exist beyond this page. ``cursor``: where the next page starts (the sort key
    of the last row, or of the last index entry examined when the read budget ran out), for keyset
    continuation. ``budget_spent``: set when the read budget stopped the search before the page
    was full (the number of index items read)."""

    items: list[T] = field(default_factory=list)
    more: bool = False
    cursor: str | None = None
    budget_spent: int | None = None
    #: Matches of the offset still to skip after ``cursor`` (the budget ran out while skipping).
    skip: int = 0


class BlobStore(Protocol):
    """Where Part-10 objects live (S3 in the cloud)."""

    def put(self, key: str, data: bytes, content_type: str = "application/dicom") -> None: ...

    def get(self, key: str) -> bytes:
        """The object's bytes, or ``BlobNotFound``."""
        ...

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (inclusive, as HTTP ranges count) of the object, or
        ``BlobNotFound``."""
        ...

    def chunks(self, key: str, chunk_size: int) -> Iterator[bytes]:
        """The object's bytes in pieces of at most ``chunk_size`` (memory stays at one piece), or
        ``BlobNotFound`` before the first piece."""
        ...

    def presign(self, key: str, seconds: int, content_type: str) -> str | None:
        """A URL that GETs the object without credentials for ``seconds``, answered with
        ``content_type``; None where the store has no such URLs (in memory)."""
        ...

    def copy(
        self,
        source_key: str,
        target_key: str,
        *,
        if_match: str | None = None,
        version: str | None = None,
        size: int | None = None,
    ) -> None:
        """Copy an object server-side (of that version, when given). With ``if_match``, only when
        the source's ETag is still that one, else ``BlobChanged``; a missing source is ``BlobNotFound``.
        ``size`` (the source's, when known) lets an object above one copy's limit go in parts."""
        ...

    def open(self, key: str, *, version: str | None = None, if_match: str | None = None) -> OpenedBlob:
        """The object as a stream (never read whole into memory), or ``BlobNotFound``: that
        version of it, when given; with ``if_match``, only while its ETag is that one, else
        ``BlobChanged``."""
        ...

    def put_stream(
        self, key: str, source: Readable, *, size_hint: int = 0, content_type: str = "application/dicom"
    ) -> int:
        """Write the bytes ``source`` gives, front to back, as the object ``key`` without holding
        them whole (S3: a multipart upload, one part in memory at a time; parts of at least
        5 MiB but the last). Nothing is stored under ``key`` if ``source`` or a part fails.
        ``size_hint`` (the expected size) lets a very large object use larger parts. Returns
        the number of bytes written."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key`` (a HEAD request on S3)."""
        ...

    def delete(self, key: str, version: str | None = None) -> None:
        """Remove the object (only that version of it, when given); deleting a missing key is not
        an error."""
        ...

    def get_version(self, key: str) -> tuple[bytes, str | None]:
        """The object's bytes and its version id (None where the store keeps no versions), or
        ``BlobNotFound``."""
        ...

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        """(key, last-modified time as a Unix timestamp) of every object under ``prefix``, in key
        order (for the repair command; never on a request path)."""
        ...


class MetadataIndex(Protocol):
    """The searchable index of stored instances (DynamoDB in the cloud)."""

    def indexed_md5(self, study_uid: str, series_uid: str, sop_uid: str) -> str | None:
        """MD5 of the instance if it is indexed, else None (read-after-write consistent)."""
        ...

    def indexed_object(self, study_uid: str, series_uid: str, sop_uid: str) -> tuple[str, str] | None:
        """The indexed instance's MD5 and object key ("" for an object stored before keys carried
        a writer), or None when it is not indexed (a consistent read)."""
        ...

    def add_instance(self, record: InstanceRecord) -> AddOutcome:
        """Index one instance and update its study and series aggregates exactly once.

        Adding an instance that is already indexed changes nothing and returns ``ALREADY_INDEXED``.
        """
        ...

    def add_frame_table(
        self, study_uid: str, series_uid: str, sop_uid: str, table: FrameTable | None, *, aside: bool = False
    ) -> None:
        """Record the frame table of an instance indexed before tables were (None: its frames
        cannot be located unread; ``aside``: it is in the object's sidecar); one already recorded
        stays."""
        ...

    def frame_tables_of(self, study_uid: str) -> set[tuple[str, str]]:
        """(series, SOP Instance UID) of the study's instances whose frame table is recorded."""
        ...

    def replace_instance(self, record: InstanceRecord, old: tuple[str, str]) -> bool:
        """Make ``record`` the indexed instance in place of the one indexed as ``old`` (MD5,
        object key), in one conditional write: False, with nothing written, when the index no
        longer names ``old``. Its series and study follow the new instance (attributes,
        SOPClassesInStudy, ModalitiesInStudy, postings; the counts stay), and the series'
        ``ver`` goes up by one, as it does with every instance added."""
        ...

    def get_study(self, study_uid: str) -> StudySummary | None: ...

    def series_version(self, study_uid: str, series_uid: str) -> int | None:
        """The series' version (one read of the series item): it changes whenever an instance of
        the series is added or replaced, so what is derived from the series can be cached under it;
        None when the series is not stored."""
        ...

    def search_studies(self, query: Query) -> Page[StudySummary]:
        """Matching studies (newest StudyDate first, then UID) for the query's page, read under the
        query's read budget, resuming after ``query.after`` when it is set."""
        ...

    def search_series(self, study_uid: str, query: Query) -> Page[SeriesSummary]:
        """Matching series of a study, by SeriesNumber then UID."""
        ...

    def search_instances(self, study_uid: str, series_uid: str | None, query: Query) -> Page[StoredInstance]:
        """Matching instances of a study or series, by series then InstanceNumber then UID."""
        ...

    def search_series_everywhere(self, query: Query) -> Page[SeriesSummary] | None:
        """``/series`` (a relational query) when a series-level index drives it better than the
        study walk (a Modality without a sharper study key); None otherwise."""
        ...

    def studies_holding(self, kind: str, uids: tuple[str, ...]) -> list[str]:
        """The studies that hold these series (``kind="SE"``) or SOP instances (``kind="IN"``)."""
        ...

    def list_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        with_metadata: bool = False,
    ) -> list[StoredInstance]:
        """Every indexed instance under the given study / series / instance, in retrieve order.

        ``with_metadata`` also loads each instance's stored WADO-RS metadata."""
        ...


# ── Upload sessions (store/uploads.py): Part-10 files of any size PUT straight to S3 ──────────


@dataclass(frozen=True)
class UploadSession:
    """What an upload session promised: ``files`` files (numbered from 1) under
    ``uploads/{session_id}/``, presigned URLs valid until ``expires`` (Unix time); ``multipart``
    maps a file number to its S3 multipart upload (upload id, number of parts)."""

    session_id: str
    files: int
    expires: int
    multipart: dict[int, tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class UploadedFile:
    """The outcome of one file of a session, or of one upload the session refused.

    ``state`` is ``indexing`` (claimed by an indexer, not finished), ``stored`` or ``failed``.
    ``token`` is the S3 ETag of the upload that claimed the file (``store.uploads.content_token``):
    a redelivered event carries the same upload, a second upload to the same URL with other
    bytes another ETag. ``warnings`` are the (WarningReason, message) of a file stored with
    warnings (``store.validate``). ``refused`` is set for an
    upload that did not count (another upload had claimed its file, or its number is beyond the
    session's files)."""

    number: int
    state: str
    token: str
    sop_class_uid: str = ""
    sop_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    reason: int = 0
    message: str = ""
    refused: bool = False
    warnings: tuple[tuple[int, str], ...] = ()


class Claim(Enum):
    CLAIMED = "claimed"  # this upload is the file's: index it
    SETTLED = "settled"  # these very bytes were indexed already (a redelivered event)
    TAKEN = "taken"  # another upload (other bytes) is the file's


class UploadSessions(Protocol):
    """Upload sessions and their per-file outcomes (DynamoDB items in the cloud). The session item
    is written once; each file's outcome is its own item, written under a condition, so the files
    of one session finish in parallel Lambdas without reading and rewriting a shared item."""

    def create(self, session: UploadSession, keep_until: int) -> None: ...

    def get(self, session_id: str) -> UploadSession | None:
        """The session, or None when it was never created or has been removed (``keep_until``)."""
        ...

    def claim(self, session_id: str, number: int, token: str, keep_until: int) -> tuple[Claim, int]:
        """Make the upload ``token`` file ``number``'s, unless another upload is; with the
        number of times this upload has claimed it (1 the first time: a retried event counts
        its attempts so)."""
        ...

    def settle(self, outcome: UploadedFile, session_id: str, keep_until: int, *, pending_only: bool = False) -> bool:
        """Record a claimed file's outcome; False when the claim is not ``outcome.token``'s (or,
        for ``state="failed"`` with ``token=""``, when the file was claimed meanwhile).
        ``pending_only``: only while the file is still ``indexing`` (a give-up must not replace
        what a concurrent delivery of the same upload recorded)."""
        ...

    def refuse(self, outcome: UploadedFile, session_id: str, keep_until: int) -> None:
        """Record an upload that does not count (idempotent for the same number and token)."""
        ...

    def outcomes(self, session_id: str) -> list[UploadedFile]:
        """Every file outcome and refused upload of the session (a consistent read)."""
        ...


class UploadTargets(Protocol):
    """Where clients upload: presigned S3 requests under ``uploads/`` (S3 in the cloud)."""

    def presign_put(self, key: str, expires_in: int) -> str: ...

    def start_multipart(self, key: str) -> str:
        """A new multipart upload of ``key``; its upload id."""
        ...

    def presign_part(self, key: str, upload_id: str, part: int, expires_in: int) -> str: ...

    def uploaded_parts(self, key: str, upload_id: str) -> list[tuple[int, str, int]] | None:
        """(part number, ETag, size) of each uploaded part; None when the upload is no longer
        open (completed or aborted)."""
        ...

    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> bool:
        """Join the parts into the object; False when the upload is no longer open."""
        ...

    def exists(self, key: str) -> bool: ...
