"""S3 drop: a Part-10 file put under ``incoming/`` is indexed through the same ``ingest`` path as
STOW-RS, stored under its object key, and removed from ``incoming/``.

Redelivered events are harmless: the second delivery finds the incoming object gone (or the
instance already indexed) and changes nothing. A file that is not a valid instance is moved to
``rejected/`` (kept 30 days by the bucket's lifecycle rule). If indexing fails midway, the incoming
object stays where it is and the retried event repairs the state.
"""

from __future__ import annotations

from enum import Enum

from ..blobs.keys import INCOMING_PREFIX, REJECTED_PREFIX
from ..ports import BlobNotFound, BlobStore, MetadataIndex
from ..settings import DuplicatePolicy
from .ingest import InvalidInstance, Stored, ingest


class DropOutcome(Enum):
    INDEXED = "indexed"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    GONE = "gone"
    IGNORED = "ignored"


def index_dropped(
    key: str,
    *,
    index: MetadataIndex,
    blobs: BlobStore,
    max_metadata_bytes: int = 300_000,
    bulk_threshold: int = 1024,
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.ACCEPT_IDENTICAL,
) -> tuple[DropOutcome, int | None]:
    """Index one dropped object; returns the outcome and, for a rejected file, its FailureReason."""
    if not key.startswith(INCOMING_PREFIX) or key.endswith("/"):
        return DropOutcome.IGNORED, None
    try:
        data, version = blobs.get_version(key)
    except BlobNotFound:
        return DropOutcome.GONE, None
    try:
        # The bytes read are what is stored (not a server-side copy of the key, which a newer
        # upload under the same name could have replaced meanwhile), and only the version read is
        # removed from incoming/: a newer upload stays for its own event.
        result = ingest(
            data,
            index=index,
            blobs=blobs,
            max_metadata_bytes=max_metadata_bytes,
            bulk_threshold=bulk_threshold,
            duplicate_policy=duplicate_policy,
        )
    except InvalidInstance as exc:
        blobs.put(REJECTED_PREFIX + key[len(INCOMING_PREFIX) :], data)
        blobs.delete(key, version)
        return DropOutcome.REJECTED, int(exc.reason)
    blobs.delete(key, version)
    return (DropOutcome.DUPLICATE if result.outcome is Stored.IDENTICAL_DUPLICATE else DropOutcome.INDEXED), None
