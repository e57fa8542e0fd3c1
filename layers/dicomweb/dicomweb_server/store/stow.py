"""STOW-RS: store instances from a ``multipart/related`` request (PS3.18 §10.5).

Each part is stored and indexed on its own: a bad part is reported in FailedSOPSequence with a
FailureReason and leaves nothing behind, while the valid parts of the same request are stored.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import BadRequest, NotAcceptable, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType
from ..formats import dicom_json as dj
from ..formats import multipart
from ..formats.media import DICOM, DICOM_JSON, DICOM_XML, JSON, MediaType, parse_accept
from ..logsafe import exception_summary
from ..ports import BlobStore, MetadataIndex
from ..records import DicomJson
from ..settings import DuplicatePolicy
from .compose import compose
from .ingest import MAX_FRAME_TABLE_BYTES, InvalidInstance, Reason, StorageFailed, Stored, store_parsed
from .parallel import Parser, parse_in_order

log = logging.getLogger("dicomweb.stow")


@dataclass(frozen=True)
class StoredRef:
    sop_class_uid: str
    sop_uid: str
    retrieve_url: str
    #: (WarningReason, message) of an instance stored with warnings (``store.validate``).
    warnings: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class FailedRef:
    sop_class_uid: str
    sop_uid: str
    reason: int
    message: str


@dataclass
class StowOutcome:
    stored: list[StoredRef] = field(default_factory=list)
    failed: list[FailedRef] = field(default_factory=list)
    study_uids: set[str] = field(default_factory=set)
    #: Instances this request stored (new or replacing another version; identical duplicates excluded).
    new: int = 0
    #: A throttle or outage that failed an instance: its Retry-After goes with the answer.
    unavailable: ServiceUnavailable | None = None

    @property
    def status(self) -> int:
        """200 all stored, 202 some failed or stored with warnings, 409 none stored (PS3.18 Table 10.5.3-1)."""
        if not self.failed:
            return 202 if any(s.warnings for s in self.stored) else 200
        return 202 if self.stored else 409

    @property
    def warning_messages(self) -> list[str]:
        """What the ``Warning`` headers say: each failure, and each warning of a stored instance."""
        return [f.message for f in self.failed] + [m for s in self.stored for _, m in s.warnings]


def check_request_type(content_type: MediaType) -> str:
    """Refuse request bodies STOW-RS cannot take, before reading them; returns the part type."""
    if content_type.type != "multipart/related":
        raise UnsupportedMediaType(
            f'STOW-RS takes multipart/related; type="{DICOM}" (or dicom+xml / dicom+json metadata with '
            f"bulk data), not {content_type.type}"
        )
    multipart.boundary_of(content_type)
    part_type = (content_type.param("type") or DICOM).lower()
    if part_type not in (DICOM, DICOM_JSON, DICOM_XML):
        raise UnsupportedMediaType(
            f'multipart/related; type="{part_type}" is not a STOW-RS request; expected type '
            f'"{DICOM}", "{DICOM_XML}" or "{DICOM_JSON}"'
        )
    return part_type


def negotiate_store_response(accept: str | None, request_part_type: str) -> str:
    """The Store Instances Response type: what the client accepts, preferring the request's own
    metadata type (an XML request gets an XML answer unless it asks for JSON)."""
    for r in parse_accept(accept):
        if r.type in (DICOM_JSON, JSON, DICOM_XML):
            return r.type
        if r.type == "application/xml":
            return DICOM_XML
        if r.type == "multipart/related" and (r.param("type") or "").lower() == DICOM_XML:
            return DICOM_XML  # as several clients ask for it; the answer is one XML document
        if r.type in ("*/*", "application/*"):
            return DICOM_XML if request_part_type == DICOM_XML else DICOM_JSON
    raise NotAcceptable(
        f"cannot satisfy Accept: {accept}; the Store Instances Response is available as "
        f'{DICOM_JSON}, {JSON} or {DICOM_XML} (also asked for as multipart/related; type="{DICOM_XML}")'
    )


def store(
    body: bytes,
    content_type: MediaType,
    *,
    index: MetadataIndex,
    blobs: BlobStore,
    base_url: str,
    study_uid: str | None = None,
    max_metadata_bytes: int = 300_000,
    bulk_threshold: int = 1024,
    max_frame_table_bytes: int = MAX_FRAME_TABLE_BYTES,
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.ACCEPT_IDENTICAL,
    deadline: float | None = None,
    parser: Parser | None = None,
) -> StowOutcome:
    """Store every ``application/dicom`` part of a STOW-RS request body.

    ``deadline`` (``time.monotonic()`` seconds): no instance is started after it; those left are
    failed with 0xA700 and Retry-After (a Lambda about to time out answers instead of dying midway).
    ``parser``: how the parse step runs (``store.parallel``); by default here, one instance at a time.
    """
    part_type = check_request_type(content_type)
    parts = multipart.decode(body, content_type)
    outcome = StowOutcome()
    instances = list(_instances(parts, part_type, study_uid))
    options = {
        "expected_study_uid": study_uid,
        "max_metadata_bytes": max_metadata_bytes,
        "bulk_threshold": bulk_threshold,
        "max_frame_table_bytes": max_frame_table_bytes,
    }
    # Parsed in this order, each when it is reached (or all at once by a pool of processes):
    # once the deadline has passed, every later instance is refused and nothing more is parsed.
    parsed = (parser or parse_in_order)([data for _, data, failure in instances if failure is None], options)
    for label, data, failure in instances:
        if failure is None and deadline is not None and time.monotonic() >= deadline:
            outcome.unavailable = ServiceUnavailable("the request ran out of time; send the rest again", retry_after=1)
            failure = InvalidInstance(
                Reason.OUT_OF_RESOURCES,
                "the request ran out of time before this instance was stored; send it again",
                *_uids_of(data),
            )
        if failure is None:
            got = next(parsed)
            try:
                if isinstance(got, InvalidInstance):
                    raise got
                result = store_parsed(got, index=index, blobs=blobs, duplicate_policy=duplicate_policy)
            except InvalidInstance as exc:
                failure = exc
            except StorageFailed as exc:  # S3 or DynamoDB failed for this instance only
                log.error("storing an instance failed", extra=exception_summary(exc.cause))
                failure = _storage_failure(exc, outcome)
        if failure is not None:
            outcome.failed.append(
                FailedRef(failure.sop_class_uid, failure.sop_uid, failure.reason, f"{label}: {failure.message}")
            )
            continue
        rec = result.record
        outcome.study_uids.add(rec.study_uid)
        if result.outcome is not Stored.IDENTICAL_DUPLICATE:
            outcome.new += 1
        outcome.stored.append(
            StoredRef(
                rec.sop_class_uid,
                rec.sop_uid,
                f"{base_url}/studies/{rec.study_uid}/series/{rec.series_uid}/instances/{rec.sop_uid}",
                tuple((int(w.reason), f"{label}: {w.message}") for w in result.warnings),
            )
        )
    if outcome.unavailable is not None and not outcome.new:
        raise outcome.unavailable  # nothing was stored: the whole request is a 503 with Retry-After
    return outcome


def _uids_of(data: bytes) -> tuple[str, str]:
    """(SOPClassUID, SOPInstanceUID) of an instance not stored, for its FailedSOPSequence item
    (empty where they cannot be read cheaply)."""
    from pydicom import dcmread

    from .validate import MALFORMED

    try:
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        return str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))
    except MALFORMED:
        return "", ""


def _storage_failure(exc: StorageFailed, outcome: StowOutcome) -> InvalidInstance:
    """The FailedSOPSequence entry of an instance whose storage failed: 0xA700 (out of resources)
    for throttling or an outage, which a retry can cure, else 0x0110 (processing failure)."""
    if isinstance(exc.cause, ServiceUnavailable):
        outcome.unavailable = exc.cause
        return InvalidInstance(
            Reason.OUT_OF_RESOURCES,
            "storage is busy or briefly unavailable; send this instance again",
            exc.sop_class_uid,
            exc.sop_uid,
        )
    return InvalidInstance(
        Reason.PROCESSING_FAILURE, "the instance could not be stored (a storage error)", exc.sop_class_uid, exc.sop_uid
    )


def _instances(
    parts: list[multipart.Part], part_type: str, study_uid: str | None
) -> Iterator[tuple[str, bytes, InvalidInstance | None]]:
    """(label, Part-10 bytes, failure) for each instance a request carries."""
    if part_type in (DICOM_JSON, DICOM_XML):
        for i, built in enumerate(compose(parts, part_type, study_uid), start=1):
            yield f"instance {i}", built.data or b"", built.failure
        return
    for part in parts:
        ptype = part.content_type.type if part.content_type else DICOM
        if ptype != DICOM:
            yield (
                f"part {part.index + 1}",
                b"",
                InvalidInstance(Reason.CANNOT_UNDERSTAND, f"Content-Type is {ptype}, not {DICOM}"),
            )
        else:
            yield f"part {part.index + 1}", part.body, None


def response_dataset(outcome: StowOutcome, base_url: str, study_uid: str | None = None) -> DicomJson:
    """The Store Instances Response Module (PS3.18 §10.5.3.2) as DICOM JSON."""
    out: DicomJson = {}
    study = study_uid or (next(iter(outcome.study_uids)) if len(outcome.study_uids) == 1 else None)
    if study and outcome.stored:
        out["00081190"] = dj.element("UR", f"{base_url}/studies/{study}")
    if outcome.failed:
        out["00081198"] = dj.element(
            "SQ",
            *[
                {
                    "00081150": dj.element("UI", *([f.sop_class_uid] if f.sop_class_uid else [])),
                    "00081155": dj.element("UI", *([f.sop_uid] if f.sop_uid else [])),
                    "00081197": dj.element("US", int(f.reason)),
                }
                for f in outcome.failed
            ],
        )
    if outcome.stored:
        out["00081199"] = dj.element(
            "SQ",
            *[
                {
                    "00081150": dj.element("UI", s.sop_class_uid),
                    "00081155": dj.element("UI", s.sop_uid),
                    "00081190": dj.element("UR", s.retrieve_url),
                    # WarningReason is VM 1: the first one; the Warning headers name them all
                    **({"00081196": dj.element("US", s.warnings[0][0])} if s.warnings else {}),
                }
                for s in outcome.stored
            ],
        )
    return dict(sorted(out.items()))


def require_body_size(length: int | None, limit: int, uploads_url: str = "/uploads") -> None:
    if length is not None and length > limit:
        raise PayloadTooLarge(
            f"the request body is {length} bytes; this server accepts at most {limit} bytes per STOW-RS "
            "request: send fewer instances per request, or upload larger files straight to S3 through an "
            f'upload session: POST {uploads_url} with {{"files": [{{"name": ..., "size": ...}}]}} (docs/uploads.md)'
        )
    if length == 0:
        raise BadRequest("the request body is empty")
