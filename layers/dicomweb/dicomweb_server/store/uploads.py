"""Upload sessions: Part-10 files of any size go straight to S3, past the 6 MB Lambda event and
the 10 MB API Gateway request, and are indexed through the same ``ingest`` as STOW-RS.

1. ``create_session``: the client announces its files (``{"files": [{"name", "size"}, …]}``);
   the answer names one presigned PUT per file, or for a file above the part size an S3
   multipart upload (one presigned UploadPart URL per part, then ``complete_file``).
2. The client PUTs each file to its URL (``uploads/{session}/{n}.dcm``); the S3 event runs
   ``index_upload`` in the indexer function, which claims the file for these bytes, ingests
   them, records the outcome and removes the upload object.
3. ``session_status``: pending files (202 and Retry-After), or the Store Instances Response of
   the whole session once every file is stored or failed (PS3.18 §10.5.3).

Every write is conditional (``ports.UploadSessions``): a file is claimed by the first upload that
reaches the indexer; a redelivered event of the same bytes changes nothing; a second upload with
other bytes, or a file number beyond the session's, is refused and reported, never stored.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..blobs.keys import UPLOADS_PREFIX, upload_key
from ..errors import BadRequest, Conflict, Gone, NotFound, ServiceUnavailable, StorageError
from ..logsafe import exception_summary
from ..ports import (
    BlobChanged,
    BlobNotFound,
    BlobStore,
    Claim,
    MetadataIndex,
    UploadedFile,
    UploadSession,
    UploadSessions,
    UploadTargets,
)
from ..settings import DuplicatePolicy, Settings
from .drop import payload_of, reading
from .ingest import MAX_FRAME_TABLE_BYTES, InvalidInstance, Reason, StorageFailed, ingest
from .stow import FailedRef, StoredRef, StowOutcome

log = logging.getLogger("dicomweb.uploads")

#: S3's largest object and most parts per multipart upload.
MAX_FILE_BYTES = 5 * 1024**4
MAX_PARTS = 10_000
#: Session and outcome items are kept this long after the URLs expire, then removed (DynamoDB TTL).
KEEP_SECONDS = 7 * 24 * 3600
#: What a pending status answer asks the client to wait before asking again.
RETRY_AFTER_SECONDS = 2
_SESSION_ID = re.compile(r"[0-9a-f]{32}")
_UPLOAD_KEY = re.compile(rf"{UPLOADS_PREFIX}([0-9a-f]{{32}})/([1-9][0-9]{{0,8}})\.dcm")

Clock = Callable[[], float]


@dataclass(frozen=True)
class UploadPorts:
    """What the upload routes need: the session items and the presigned upload targets."""

    sessions: UploadSessions
    targets: UploadTargets


@dataclass(frozen=True)
class FileAsk:
    name: str | None
    size: int


def parse_request(body: bytes, settings: Settings) -> tuple[list[FileAsk], int]:
    """The files a session request announces and the validity it asks for (seconds); a 400 that
    says what is wrong otherwise."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the upload session request is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest('the upload session request must be a JSON object, e.g. {"files": [{"size": 123}]}')
    unknown = set(doc) - {"files", "count", "expires_in"}
    if unknown:
        raise BadRequest(f"unknown fields in the upload session request: {', '.join(sorted(unknown))}")
    if ("files" in doc) == ("count" in doc):
        raise BadRequest('give either "files" (a list of {"name", "size"}) or "count" (a number of files)')
    if "count" in doc:
        count = doc["count"]
        if not _is_int(count) or count < 1:
            raise BadRequest('"count" must be a positive integer')
        asks = [FileAsk(None, 0)] * count
    else:
        files = doc["files"]
        if not isinstance(files, list) or not files:
            raise BadRequest('"files" must be a non-empty list of {"name": ..., "size": ...}')
        asks = [_file_ask(i, f) for i, f in enumerate(files, start=1)]
    if len(asks) > settings.upload_max_files:
        raise BadRequest(
            f"{len(asks)} files is more than one upload session takes ({settings.upload_max_files}); "
            "use several sessions"
        )
    expires_in = doc.get("expires_in", settings.upload_session_seconds)
    if not _is_int(expires_in) or not 1 <= expires_in <= settings.upload_session_seconds:
        raise BadRequest(f'"expires_in" must be a number of seconds from 1 to {settings.upload_session_seconds}')
    return asks, expires_in


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _file_ask(n: int, entry: Any) -> FileAsk:
    if not isinstance(entry, dict):
        raise BadRequest(f'file {n}: expected an object {{"name": ..., "size": ...}}')
    unknown = set(entry) - {"name", "size"}
    if unknown:
        raise BadRequest(f"file {n}: unknown fields {', '.join(sorted(unknown))}")
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 1024):
        raise BadRequest(f'file {n}: "name" must be a string of at most 1024 characters')
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool):
        raise BadRequest(f'file {n}: "size" (bytes) must be an integer')
    if size <= 0:
        raise BadRequest(f"file {n}: a file of {size} bytes cannot be a DICOM instance")
    if size > MAX_FILE_BYTES:
        raise BadRequest(f"file {n}: {size} bytes is more than S3 stores in one object ({MAX_FILE_BYTES})")
    return FileAsk(name, size)


def part_plan(size: int, part_bytes: int) -> tuple[int, int] | None:
    """(part size, number of parts) for a file uploaded in parts, None for one PUT."""
    if size <= part_bytes:
        return None
    part = max(part_bytes, math.ceil(size / MAX_PARTS))
    return part, math.ceil(size / part)


def create_session(
    body: bytes, *, ports: UploadPorts, settings: Settings, base_url: str, clock: Clock = time.time
) -> dict[str, Any]:
    """A new upload session for the files ``body`` announces; the answer the client uploads by."""
    asks, expires_in = parse_request(body, settings)
    plans = [part_plan(a.size, settings.upload_part_bytes) for a in asks]
    urls = sum(p[1] if p else 1 for p in plans)
    if urls > settings.upload_max_urls:
        raise BadRequest(
            f"these files need {urls} upload URLs, more than one answer carries ({settings.upload_max_urls}); "
            "use several sessions"
        )
    session_id = secrets.token_hex(16)
    expires = int(clock()) + expires_in
    multipart: dict[int, tuple[str, int]] = {}
    files: list[dict[str, Any]] = []
    status_url = f"{base_url}/uploads/{session_id}"
    for n, (ask, plan) in enumerate(zip(asks, plans, strict=True), start=1):
        key = upload_key(session_id, n)
        entry: dict[str, Any] = {"file": n}
        if ask.name is not None:
            entry["name"] = ask.name
        if ask.size:
            entry["size"] = ask.size
        if plan is None:
            entry.update(method="PUT", url=ports.targets.presign_put(key, expires_in))
        else:
            upload_id = ports.targets.start_multipart(key)
            multipart[n] = (upload_id, plan[1])
            entry.update(
                method="multipart",
                part_size=plan[0],
                parts=[ports.targets.presign_part(key, upload_id, p, expires_in) for p in range(1, plan[1] + 1)],
                complete=f"{status_url}/files/{n}/complete",
            )
        files.append(entry)
    ports.sessions.create(UploadSession(session_id, len(asks), expires, multipart), expires + KEEP_SECONDS)
    log.info("upload session created", extra={"files": len(asks), "multipart": len(multipart)})
    return {
        "session": session_id,
        "status": status_url,
        "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
        "files": files,
    }


def _session(ports: UploadPorts, session_id: str, now: float) -> UploadSession:
    found = ports.sessions.get(session_id) if _SESSION_ID.fullmatch(session_id) else None
    if found is None:
        raise NotFound(f"no upload session {session_id[:40]}: not stored here (never created, or expired and removed)")
    if now > found.expires + KEEP_SECONDS:
        raise Gone(f"upload session {session_id} expired and its results are no longer kept")
    return found


def complete_file(session_id: str, number: int, *, ports: UploadPorts, clock: Clock = time.time) -> dict[str, Any]:
    """Join the uploaded parts of a multipart file (the server side of CompleteMultipartUpload,
    so that a client needs no S3 XML): 400 while parts are missing, 410 after the session
    expired, 409 when the upload was completed already."""
    now = clock()
    session = _session(ports, session_id, now)
    if now > session.expires:
        raise Gone(
            f"upload session {session_id} expired at {_iso(session.expires)}; "
            "create a new session and upload the file again"
        )
    if not 1 <= number <= session.files:
        raise NotFound(f"upload session {session_id} has files 1 to {session.files}, not {number}")
    if number not in session.multipart:
        raise BadRequest(f"file {number} is uploaded with one PUT; there are no parts to complete")
    upload_id, expected = session.multipart[number]
    key = upload_key(session_id, number)
    parts = ports.targets.uploaded_parts(key, upload_id)
    if parts is None:
        raise Conflict(f"file {number} was completed already (or its upload was aborted)")
    have = {n for n, _, _ in parts}
    missing = [n for n in range(1, expected + 1) if n not in have]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", …" if len(missing) > 10 else "")
        raise BadRequest(f"file {number}: {len(missing)} of its {expected} parts are not uploaded yet (parts {shown})")
    extra = sorted(have - set(range(1, expected + 1)))
    if extra:
        raise BadRequest(f"file {number} has {expected} parts; parts {extra[:10]} are not part of it")
    if not ports.targets.complete_multipart(key, upload_id, [(n, etag) for n, etag, _ in sorted(parts)]):
        raise Conflict(f"file {number} was completed already (or its upload was aborted)")
    return {"file": number, "parts": expected, "bytes": sum(s for _, _, s in parts), "status": "uploaded"}


@dataclass
class SessionStatus:
    outcome: StowOutcome = field(default_factory=StowOutcome)
    files: int = 0
    pending: list[int] = field(default_factory=list)

    @property
    def status(self) -> int:
        return 202 if self.pending else self.outcome.status


def session_status(session_id: str, *, ports: UploadPorts, base_url: str, clock: Clock = time.time) -> SessionStatus:
    """What became of each file of a session: stored, failed (with its reason), or pending.

    After the session expired, a file that was never uploaded is recorded as failed (under the
    condition that no upload claimed it meanwhile, so a late upload is refused, not stored), and
    the answer is final."""
    now = clock()
    session = _session(ports, session_id, now)
    result = SessionStatus(files=session.files)
    outcomes = ports.sessions.outcomes(session_id)
    by_number = {o.number: o for o in outcomes if not o.refused}
    for n in range(1, session.files + 1):
        got = by_number.get(n)
        if got is None and now > session.expires and not ports.targets.exists(upload_key(session_id, n)):
            lapsed = UploadedFile(
                n,
                "failed",
                "",
                reason=int(Reason.PROCESSING_FAILURE),
                message="not uploaded before the session expired",
            )
            if ports.sessions.settle(lapsed, session_id, session.expires + KEEP_SECONDS):
                got = lapsed
        if got is None or got.state == "indexing":
            result.pending.append(n)
        elif got.state == "stored":
            result.outcome.study_uids.add(got.study_uid)
            result.outcome.stored.append(
                StoredRef(
                    got.sop_class_uid,
                    got.sop_uid,
                    f"{base_url}/studies/{got.study_uid}/series/{got.series_uid}/instances/{got.sop_uid}",
                    tuple((reason, f"file {n}: {message}") for reason, message in got.warnings),
                )
            )
        else:
            result.outcome.failed.append(_failed(got))
    result.outcome.failed += [_failed(o) for o in outcomes if o.refused]
    return result


def _failed(o: UploadedFile) -> FailedRef:
    label = f"file {o.number}" + (" (a refused upload)" if o.refused else "")
    return FailedRef(o.sop_class_uid, o.sop_uid, o.reason, f"{label}: {o.message}")


def _iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class UploadOutcome(Enum):
    STORED = "stored"
    FAILED = "failed"  # not a valid instance: recorded in the session with its reason
    REFUSED = "refused"  # a second upload of a file, or a file beyond the session's
    SETTLED = "settled"  # a redelivered event of an upload already indexed
    ORPHAN = "orphan"  # no such session (removed, or never created)
    GONE = "gone"  # the upload object is gone (a redelivered event after it was removed)
    IGNORED = "ignored"  # not an upload key


def index_upload(
    key: str,
    *,
    sessions: UploadSessions,
    index: MetadataIndex,
    blobs: BlobStore,
    max_metadata_bytes: int = 300_000,
    bulk_threshold: int = 1024,
    max_frame_table_bytes: int = MAX_FRAME_TABLE_BYTES,
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.ACCEPT_IDENTICAL,
    attempts: int = 3,
    version: str | None = None,
) -> UploadOutcome:
    """Index one uploaded file (the indexer's S3 event for ``uploads/{session}/{n}.dcm``).

    The object is read once as a stream (``store.scan``, as an S3 drop is) and stored by a
    conditional server-side copy of exactly the version read; the claim token is that version's
    ETag, so nothing needs the file whole. Storage failures (``StorageFailed``) propagate: the
    file stays claimed for this upload and the upload object stays, so the retried event
    finishes it, except on the ``attempts``-th claim of the same upload (the event's last
    delivery: Lambda's ``MaximumRetryAttempts`` + 1), which records the file failed first
    (0xA700 when storage was busy or unavailable, else 0x0110), so that the session ends."""
    matched = _UPLOAD_KEY.fullmatch(key)
    if not matched:
        return UploadOutcome.IGNORED
    session_id, number = matched[1], int(matched[2])
    try:
        opened = blobs.open(key, version=version)  # the event's version (``index_dropped``)
    except BlobNotFound:
        return UploadOutcome.GONE
    with reading(opened):
        version = opened.version
        session = sessions.get(session_id)
        if session is None:
            blobs.delete(key, version)
            return UploadOutcome.ORPHAN
        keep = session.expires + KEEP_SECONDS
        token = content_token(opened.etag)
        if number > session.files:
            sessions.refuse(
                UploadedFile(
                    number,
                    "failed",
                    token,
                    reason=int(Reason.PROCESSING_FAILURE),
                    message=f"the session was created for {session.files} files; this one was not stored",
                    refused=True,
                ),
                session_id,
                keep,
            )
            blobs.delete(key, version)
            return UploadOutcome.REFUSED
        claim, attempt = sessions.claim(session_id, number, token, keep)
        if claim is Claim.SETTLED:
            blobs.delete(key, version)
            return UploadOutcome.SETTLED
        if claim is Claim.TAKEN:
            sessions.refuse(
                UploadedFile(
                    number,
                    "failed",
                    token,
                    reason=int(Reason.PROCESSING_FAILURE),
                    message="uploaded again with other content (or after the session expired); "
                    "the first upload counts, this one was not stored",
                    refused=True,
                ),
                session_id,
                keep,
            )
            blobs.delete(key, version)
            return UploadOutcome.REFUSED
        try:
            result = ingest(
                payload_of(key, opened, blobs),
                index=index,
                blobs=blobs,
                max_metadata_bytes=max_metadata_bytes,
                bulk_threshold=bulk_threshold,
                max_frame_table_bytes=max_frame_table_bytes,
                duplicate_policy=duplicate_policy,
            )
        except InvalidInstance as exc:
            sessions.settle(
                UploadedFile(
                    number,
                    "failed",
                    token,
                    exc.sop_class_uid,
                    exc.sop_uid,
                    reason=int(exc.reason),
                    message=exc.message,
                ),
                session_id,
                keep,
            )
            blobs.delete(key, version)
            return UploadOutcome.FAILED
        except (BlobChanged, BlobNotFound):
            # The version read was removed meanwhile: a concurrent delivery of this very event
            # finished it (and settled the claim), or the object was replaced in a bucket that keeps
            # no versions (the deployed bucket does), whose new upload has an event of its own.
            return UploadOutcome.GONE
        except StorageFailed as exc:  # storing failed
            if attempt >= attempts:
                _give_up(exc, number, token, attempt, sessions, session_id, keep)
            raise
        except StorageError as exc:  # reading the upload failed (its streamed GET broke, or timed out)
            if attempt >= attempts:
                _give_up(StorageFailed(exc, "", ""), number, token, attempt, sessions, session_id, keep)
            raise
        rec = result.record
        sessions.settle(
            UploadedFile(
                number,
                "stored",
                token,
                rec.sop_class_uid,
                rec.sop_uid,
                rec.study_uid,
                rec.series_uid,
                warnings=tuple((int(w.reason), w.message) for w in result.warnings),
            ),
            session_id,
            keep,
        )
        blobs.delete(key, version)
        return UploadOutcome.STORED


def content_token(etag: str) -> str:
    """What tells two uploads of a file apart: the S3 ETag of the version read, without its
    quotes. For a single PUT (SSE-S3, the bucket's encryption) it is the MD5 of the bytes; for a
    multipart upload the MD5 of the parts' MD5s and the part count, so the same bytes uploaded
    again in the same parts (the session fixes the part size) give the same token. Known from
    the GET's headers, before any byte is read."""
    return etag.strip().strip('"')


def _give_up(
    exc: StorageFailed,
    number: int,
    token: str,
    attempt: int,
    sessions: UploadSessions,
    session_id: str,
    keep: int,
) -> None:
    """The last delivery of the event failed too: record the file failed, so the session's
    status reaches its final answer. 0xA700 (Out of Resources) when storage was busy or
    unavailable, as STOW-RS answers it, else 0x0110 (Processing failure). When even this write
    fails, the file stays ``indexing`` (the caller re-raises either way; the event goes to the
    dead-letter queue)."""
    busy = isinstance(exc.cause, ServiceUnavailable)
    why = "storage was busy or unavailable" if busy else "a storage error"
    outcome = UploadedFile(
        number,
        "failed",
        token,
        exc.sop_class_uid,
        exc.sop_uid,
        reason=int(Reason.OUT_OF_RESOURCES if busy else Reason.PROCESSING_FAILURE),
        message=f"indexing failed on each of {attempt} attempts ({why}); upload the file again in a new session",
    )
    try:
        sessions.settle(outcome, session_id, keep, pending_only=True)
    except StorageError as settle_exc:
        log.error("a failed upload could not be recorded", extra=exception_summary(settle_exc))
        return
    log.error("upload indexing gave up", extra={"attempts": attempt, "failure_reason": f"{outcome.reason:04X}"})
