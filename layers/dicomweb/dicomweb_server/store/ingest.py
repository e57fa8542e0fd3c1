"""The one indexing code path, shared by STOW-RS and S3-drop: parse a Part-10 object, check it,
put it at its canonical key and index it, never leaving an object without its index entry.

Where the object goes in the bucket is ``blobs.keys``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .. import frame_table
from ..blobs.keys import frames_key, instance_key, object_key
from ..errors import ServiceUnavailable, StorageError
from ..formats import dicom_json
from ..frame_table import FrameTable
from ..logsafe import exception_summary
from ..ports import AddOutcome, BlobStore, MetadataIndex, Readable
from ..records import (
    INSTANCE_KEYWORDS,
    SERIES_KEYWORDS,
    STUDY_KEYWORDS,
    InstanceRecord,
)
from ..settings import DuplicatePolicy
from ..uids import is_valid_uid
from . import validate
from .failures import InvalidInstance as InvalidInstance
from .failures import Reason as Reason
from .failures import StorageFailed as StorageFailed
from .scan import Scanned, SkippedValue, scan
from .validate import MALFORMED

log = logging.getLogger("dicomweb.ingest")

#: A frame table larger than this goes to a sidecar object (a DynamoDB item holds 400 KB).
MAX_FRAME_TABLE_BYTES = 350_000

_DEFLATED = "1.2.840.10008.1.2.1.99"

_UNDECODABLE: tuple[type[Exception], ...] = (*MALFORMED, IndexError, AttributeError)
#: pydicom's writer on a data set read from malformed bytes: TypeError for a value it cannot encode,
#: AttributeError for required file meta elements that are missing (found by the fuzz, as MALFORMED).
_UNWRITABLE: tuple[type[Exception], ...] = (TypeError, AttributeError)


def with_preamble(data: bytes) -> bytes:
    """A Part-10 file written without its 128-byte preamble and ``DICM`` prefix (what pydicom's
    ``dcmwrite`` makes of a dataset built in memory, which the Python dicomweb-client sends as it
    is) becomes a complete one, so what is stored is a Part-10 file. With a file meta group length
    only the preamble and prefix are added (the rest stays byte for byte); without one, pydicom
    writes the file again with a complete file meta group."""
    if data[128:132] == b"DICM" or data[:2] != b"\x02\x00" or not data[4:6].isalpha():
        return data
    if data[:4] == b"\x02\x00\x00\x00" and data[4:6] == b"UL":
        return bytes(128) + b"DICM" + data
    try:
        ds = dcmread(io.BytesIO(data), force=True)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
    except (*MALFORMED, *_UNWRITABLE):  # parse_part10 then says what is wrong with it
        return data
    return out.getvalue()


def parse(data: bytes) -> tuple[Dataset, validate.Checked]:
    """The parse step: read a Part-10 object (``parse_part10``) and check it (``store.validate``);
    the Part-10 bytes to store (with a corrected file meta group) and the warnings go with it."""
    ds, read_warnings = _read_part10(data)
    try:
        checked = validate.check(ds, data, read_warnings)
    except validate.Refused as exc:
        sop_class, sop_uid = (_text_or_blank(ds, k) for k in ("SOPClassUID", "SOPInstanceUID"))
        raise InvalidInstance(Reason(exc.reason), exc.message, sop_class, sop_uid) from None
    except MALFORMED as exc:  # a file meta element that does not decode (a VR or length gone wrong)
        raise InvalidInstance(Reason.CANNOT_UNDERSTAND, f"unreadable DICOM data: {type(exc).__name__}") from None
    if checked.data is not None and checked.data is not data:
        ds = _read_part10(checked.data)[0]  # the file meta was written again: read what is stored (its offsets)
    return ds, checked


def parse_part10(data: bytes) -> Dataset:
    """Read a DICOM Part-10 object, refusing anything that is not one or is cut short."""
    return _read_part10(data)[0]


def _read_part10(data: bytes) -> tuple[Dataset, list[str]]:
    """``parse_part10``, and the messages of the warnings pydicom gave reading the object."""
    if len(data) < 132:
        raise InvalidInstance(Reason.CANNOT_UNDERSTAND, f"not a DICOM Part-10 file ({len(data)} bytes)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = dcmread(io.BytesIO(data))
        except InvalidDicomError:
            raise InvalidInstance(
                Reason.CANNOT_UNDERSTAND, "not a DICOM Part-10 file (no 'DICM' prefix after the preamble)"
            ) from None
        except MALFORMED as exc:
            raise InvalidInstance(Reason.CANNOT_UNDERSTAND, f"unreadable DICOM data: {type(exc).__name__}") from None
    for w in caught:
        text = str(w.message)
        if "End of file" in text or "delimiter" in text.lower():
            raise InvalidInstance(
                Reason.CANNOT_UNDERSTAND, "DICOM file is truncated (an item or sequence is cut short)"
            )
    tags = list(ds.keys())
    if tags:
        try:
            last = ds.get_item(tags[-1])
        except MALFORMED as exc:
            # pydicom reads elements lazily: a corrupt VR or length surfaces here
            raise InvalidInstance(Reason.CANNOT_UNDERSTAND, f"unreadable DICOM data: {type(exc).__name__}") from None
        if isinstance(last, RawDataElement) and last.value is not None:
            where = f"({last.tag.group:04X},{last.tag.element:04X})"
            undefined = last.length == 0xFFFFFFFF
            if not undefined and len(last.value) < last.length:
                raise InvalidInstance(
                    Reason.CANNOT_UNDERSTAND,
                    f"DICOM file is truncated: element {where} "
                    f"declares {last.length} bytes but only {len(last.value)} are present",
                )
            # The last element must end the file (an undefined length ends with an 8-byte delimiter item);
            # pydicom silently stops at a cut-off element header or delimiter. (Offsets of a deflated
            # dataset are in the inflated stream, so this check does not apply to it.)
            end = last.value_tell + len(last.value) + (8 if undefined else 0)
            deflated = str(ds.file_meta.get("TransferSyntaxUID", "")) == _DEFLATED
            if end != len(data) and not deflated:
                cut = f"inside the element after {where}" if end < len(data) else f"inside element {where}"
                raise InvalidInstance(
                    Reason.CANNOT_UNDERSTAND, f"DICOM file is truncated: the data ends at byte {len(data)}, {cut}"
                )
    tsuid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not tsuid:
        raise InvalidInstance(Reason.CANNOT_UNDERSTAND, "the file meta information has no Transfer Syntax UID")
    return ds, [str(w.message) for w in caught]


def _text_or_blank(ds: Dataset, keyword: str) -> str:
    try:
        return dicom_json.uid_text(ds, keyword)
    except MALFORMED:
        return ""


def _required_uid(ds: Dataset, keyword: str) -> str:
    value = _text_or_blank(ds, keyword)
    problem = "is missing" if not value else "is not a valid UID" if not is_valid_uid(value) else ""
    if problem:
        raise InvalidInstance(
            Reason.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"{keyword} {problem}",
            _text_or_blank(ds, "SOPClassUID"),
            _text_or_blank(ds, "SOPInstanceUID"),
        )
    return value


def build_record(
    ds: Dataset,
    data: bytes | None = None,
    *,
    size: int | None = None,
    md5: str | None = None,
    frame_table: FrameTable | None = None,
    skipped: tuple[SkippedValue, ...] = (),
    offsets_known: bool = True,
    max_metadata_bytes: int = 300_000,
    bulk_threshold: int = dicom_json.BULK_THRESHOLD,
) -> InstanceRecord:
    """Everything the index keeps about ``ds``: its metadata with bulk data URIs, and where each
    bulk data value is in the object (for ranged reads). The object's bytes are ``data``, or (read
    as a stream by ``scan``) ``size`` bytes with that ``md5``, frame table, and the values the
    stream skipped (pixel data, large values: ``skipped``)."""
    sop_class = _required_uid(ds, "SOPClassUID")
    sop_uid = _required_uid(ds, "SOPInstanceUID")
    study_uid = _required_uid(ds, "StudyInstanceUID")
    series_uid = _required_uid(ds, "SeriesInstanceUID")
    try:
        built = dicom_json.instance_json(ds, bulk_threshold)
        study, series, instance = (
            built.select(ds, STUDY_KEYWORDS),
            built.select(ds, SERIES_KEYWORDS),
            built.select(ds, INSTANCE_KEYWORDS),
        )
        metadata, bulk_elements = built.metadata, built.bulk
    except _UNDECODABLE as exc:
        # IndexError: pydicom's JSON of a person name list with an empty value; AttributeError: an
        # ambiguous VR (US or SS) without the PixelRepresentation that decides it. Both are the input's.
        if isinstance(exc, AttributeError) and not str(exc).startswith("Failed to resolve ambiguous VR"):
            raise
        raise InvalidInstance(
            Reason.CANNOT_UNDERSTAND, f"an attribute cannot be decoded ({type(exc).__name__})", sop_class, sop_uid
        ) from None
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1
    bulk: dict[str, tuple[int, int]] = {}
    for found in bulk_elements:
        if data is not None:
            offset = found.value_offset(data)
        else:  # read as a stream: a top-level value's offset is certain, a nested one's may not be
            offset = found.candidates[0] if len(found.candidates) == 1 and offsets_known else None
        bulk[found.path] = (-1 if offset is None else offset, len(found.value_bytes()))
    if skipped:
        for value in skipped:
            path = dicom_json.tag_path((), value.tag)
            metadata[f"{value.tag:08X}"] = {"vr": value.vr, "BulkDataURI": dicom_json.BULK_PREFIX + path}
            bulk[path] = (value.offset, value.length)
        metadata = dict(sorted(metadata.items()))  # in tag order, as the dataset is
    header_bytes = len(data) if data is not None else (size or 0) - sum(v.length for v in skipped)
    keep_metadata = _metadata_fits(metadata, header_bytes, max_metadata_bytes)
    if data is not None:
        size = len(data)
        md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - an ETag-style content check, not security
    if size is None or md5 is None:
        raise ValueError("build_record needs the object's bytes, or its size and MD5")
    return InstanceRecord(
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        sop_class_uid=sop_class,
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        study=study,
        series=series,
        instance=instance,
        size=size,
        md5=md5,
        number_of_frames=frames,
        metadata=metadata if keep_metadata else None,
        bulk=bulk,
        frame_table=frame_table,
    )


#: The most characters of metadata (its ``repr``) one byte of a Part-10 header makes: about 14 for
#: a person name of many one-letter values in the third group (each ``\==X`` becomes
#: ``{'Phonetic': 'X'}, ``), less for everything else (``test_ingest``'s worst cases).
_JSON_PER_HEADER_BYTE = 16


def _metadata_fits(metadata: dicom_json.DicomJson, header_bytes: int, limit: int) -> bool:
    """Whether the metadata's size (its ``repr``) is within ``limit``: certain from the header's size
    for most instances, measured for the others (measuring costs about a tenth of building it)."""
    return header_bytes * _JSON_PER_HEADER_BYTE <= limit or len(repr(metadata)) <= limit


def read_record(
    source: Readable | bytes,
    *,
    max_metadata_bytes: int = 300_000,
    max_frame_table_bytes: int = MAX_FRAME_TABLE_BYTES,
    bulk_threshold: int = dicom_json.BULK_THRESHOLD,
) -> InstanceRecord:
    """The index record of one Part-10 object read once, front to back (``scan``)."""
    return _record(scan(source), max_metadata_bytes, max_frame_table_bytes, bulk_threshold)


def _record(
    scanned: Scanned, max_metadata_bytes: int, max_frame_table_bytes: int, bulk_threshold: int
) -> InstanceRecord:
    record = build_record(
        scanned.dataset,
        size=scanned.size,
        md5=scanned.md5,
        frame_table=scanned.frame_table,
        skipped=scanned.skipped,
        offsets_known=not scanned.deflated,
        max_metadata_bytes=max_metadata_bytes,
        bulk_threshold=bulk_threshold,
    )
    if record.frame_table is not None and len(frame_table.encode(record.frame_table)) > max_frame_table_bytes:
        record = replace(record, frame_table_aside=True)
    return record


class Payload(Protocol):
    """Where an instance's bytes come from, and how they are written to their key."""

    def open(self) -> Readable:
        """A stream of the bytes, front to back."""
        ...

    def with_file_meta(self, ds: Dataset) -> Payload:
        """The same object with its file meta group written again from ``ds.file_meta``
        (WarningReason 0xB000): a payload whose ``open`` and ``write`` give the corrected bytes
        (a stream stays a stream: ``open`` may have been used already)."""
        ...

    def write(self, blobs: BlobStore, key: str) -> None: ...


@dataclass(frozen=True)
class InMemory:
    """Bytes at hand (a STOW-RS part): written with a PutObject."""

    data: bytes

    def open(self) -> Readable:
        return io.BytesIO(self.data)

    def with_file_meta(self, ds: Dataset) -> InMemory:
        return InMemory(validate.rewrite_file_meta(self.data, ds))

    def write(self, blobs: BlobStore, key: str) -> None:
        blobs.put(key, self.data)


def scan_checked(payload: Payload) -> tuple[Scanned, validate.Checked, Payload]:
    """The parse step of a payload read as a stream: ``scan`` it and check it (``store.validate``,
    as ``parse`` does for bytes). When the file meta group is corrected (WarningReason 0xB000),
    the stored object is the corrected one and it is scanned again, so that the offsets and the
    MD5 the index keeps are the corrected object's: the payload becomes the corrected one
    (``Payload.with_file_meta``; for an S3 drop or upload a second streamed GET, never held whole)."""
    data = payload.data if isinstance(payload, InMemory) else None
    scanned = scan(data if data is not None else payload.open())
    ds = scanned.dataset
    try:
        checked = validate.check(ds, data, scanned.read_warnings, pixel_element=scanned.pixel_element)
    except validate.Refused as exc:
        sop_class, sop_uid = (_text_or_blank(ds, k) for k in ("SOPClassUID", "SOPInstanceUID"))
        raise InvalidInstance(Reason(exc.reason), exc.message, sop_class, sop_uid) from None
    except MALFORMED as exc:  # a file meta element that does not decode (a VR or length gone wrong)
        raise InvalidInstance(Reason.CANNOT_UNDERSTAND, f"unreadable DICOM data: {type(exc).__name__}") from None
    if checked.coerced:
        if checked.data is not None:
            payload = InMemory(checked.data)
            scanned = scan(checked.data)
        else:
            payload = payload.with_file_meta(ds)
            scanned = scan(payload.open())
    return scanned, checked, payload


class Stored(Enum):
    NEW = "new"
    IDENTICAL_DUPLICATE = "identical-duplicate"
    #: Stored in place of another version (duplicate policy ``overwrite``).
    REPLACED = "replaced"


@dataclass(frozen=True)
class IngestResult:
    record: InstanceRecord
    key: str
    outcome: Stored
    #: Stored with these warnings (WarningReason 0xB000, 0xB007: ``store.validate``).
    warnings: tuple[validate.Warned, ...] = ()


def ingest(
    data: bytes | Payload,
    *,
    index: MetadataIndex,
    blobs: BlobStore,
    expected_study_uid: str | None = None,
    max_metadata_bytes: int = 300_000,
    bulk_threshold: int = dicom_json.BULK_THRESHOLD,
    max_frame_table_bytes: int = MAX_FRAME_TABLE_BYTES,
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.ACCEPT_IDENTICAL,
) -> IngestResult:
    """Store and index one Part-10 object, exactly once.

    ``data`` is the object's bytes, or a ``Payload`` read as a stream (an S3 drop: one streamed
    GET, then a server-side copy of exactly that version), so a large object is never held whole.
    The object goes under a key of this writer's own
    (``blobs.keys.object_key``), and the index's conditional write decides: the first writer of a
    SOP Instance UID wins. Every other writer is answered by the duplicate policy
    (``_settle``): it removes its own object and is told the instance is stored or fails, or,
    for ``overwrite``, its object replaces the indexed one by one more conditional write (and it
    removes the object it replaced). No writer ever overwrites an object, or deletes one the index
    names, so the stored object always has the MD5 its index entry names. If indexing fails, this writer's
    object is removed again, unless the index does name it (a write that succeeded although its
    answer was lost).
    """
    parsed = parse_instance(
        data,
        expected_study_uid=expected_study_uid,
        max_metadata_bytes=max_metadata_bytes,
        bulk_threshold=bulk_threshold,
        max_frame_table_bytes=max_frame_table_bytes,
    )
    return store_parsed(parsed, index=index, blobs=blobs, duplicate_policy=duplicate_policy)


@dataclass(frozen=True)
class Parsed:
    """An instance read and checked, not yet stored (``parse_instance``): its index record, the
    bytes to store (a file meta group written again, when it was corrected) and the warnings."""

    record: InstanceRecord
    payload: Payload
    warnings: tuple[validate.Warned, ...] = ()


def parse_instance(
    data: bytes | Payload,
    *,
    expected_study_uid: str | None = None,
    max_metadata_bytes: int = 300_000,
    bulk_threshold: int = dicom_json.BULK_THRESHOLD,
    max_frame_table_bytes: int = MAX_FRAME_TABLE_BYTES,
) -> Parsed:
    """The parse step of ``ingest``: read, check and index one object, without storing anything
    (CPU only, no I/O for bytes: it may run in another process, ``store.parallel``)."""
    payload = InMemory(with_preamble(data)) if isinstance(data, bytes) else data
    scanned, checked, payload = scan_checked(payload)
    record = _record(scanned, max_metadata_bytes, max_frame_table_bytes, bulk_threshold)
    if expected_study_uid is not None and record.study_uid != expected_study_uid:
        raise InvalidInstance(
            Reason.STUDY_UID_MISMATCH,
            f"the instance belongs to study {record.study_uid}, not to the study in the request URL",
            record.sop_class_uid,
            record.sop_uid,
        )
    return Parsed(record, payload, checked.warnings)


def store_parsed(
    parsed: Parsed,
    *,
    index: MetadataIndex,
    blobs: BlobStore,
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.ACCEPT_IDENTICAL,
) -> IngestResult:
    """The store step of ``ingest``: write the object and its index entry (``ingest`` says how)."""
    record = parsed.record
    try:
        if record.frame_table_aside and record.frame_table is not None:
            # Named by content: every writer of these bytes writes the same sidecar.
            sidecar = frames_key(record.study_uid, record.series_uid, record.sop_uid, record.md5)
            blobs.put(sidecar, frame_table.encode(record.frame_table), "application/octet-stream")
        result = _store(record, parsed.payload, index, blobs, duplicate_policy)
    except StorageError as exc:
        raise StorageFailed(exc, record.sop_class_uid, record.sop_uid) from exc
    return replace(result, warnings=parsed.warnings) if parsed.warnings else result


#: Times one writer reads the index again after another writer changed the instance under it
#: (each time means another writer committed).
_ROUNDS = 16


def _store(
    record: InstanceRecord,
    data: Payload,
    index: MetadataIndex,
    blobs: BlobStore,
    policy: DuplicatePolicy,
) -> IngestResult:
    uids = (record.study_uid, record.series_uid, record.sop_uid)
    known = index.indexed_object(*uids)
    if known is not None:  # no write at all when the policy settles it
        settled = _settle(record, known, blobs, policy)
        if settled is not None:
            return settled
    key = object_key(*uids, record.md5)
    record = replace(record, object_key=key)
    data.write(blobs, key)
    try:
        for _ in range(_ROUNDS):
            if known is None:
                if index.add_instance(record) is AddOutcome.ADDED:
                    return IngestResult(record, key, Stored.NEW)
            elif index.replace_instance(record, known):
                return _replaced(record, known, blobs)
            # Another writer indexed or replaced this SOP Instance UID since we read it.
            current = index.indexed_object(*uids)
            if current is not None and current[1] == key:
                # Our write did land (its answer was lost, or the repair command indexed this
                # very object meanwhile).
                return IngestResult(record, key, Stored.NEW) if known is None else _replaced(record, known, blobs)
            known = current
            if known is not None:
                settled = _settle(record, known, blobs, policy)
                if settled is not None:
                    blobs.delete(key)
                    return settled
        raise ServiceUnavailable("the instance changed while it was being stored; send it again", retry_after=1)
    except BaseException:
        _remove_unless_indexed(index, blobs, uids, key)
        raise


def _replaced(record: InstanceRecord, old: tuple[str, str], blobs: BlobStore) -> IngestResult:
    """The index names this writer's object instead of ``old``: the replaced object is removed
    (a versioned bucket keeps it as a noncurrent version). If that fails, the repair command
    removes it later: it is named by no index entry."""
    old_key = old[1] or instance_key(record.study_uid, record.series_uid, record.sop_uid)
    # The replaced object's frame table sidecar, if it had one (named by its MD5; the index's FR#
    # item was replaced in the same transaction). The same bytes share one sidecar: it stays then.
    sidecar = frames_key(record.study_uid, record.series_uid, record.sop_uid, old[0])
    try:
        blobs.delete(old_key)
        if old[0] != record.md5 and blobs.exists(sidecar):
            blobs.delete(sidecar)
    except StorageError as exc:
        log.warning("a replaced object was left for the repair command", extra=exception_summary(exc))
    return IngestResult(record, record.object_key, Stored.REPLACED)


def _remove_unless_indexed(index: MetadataIndex, blobs: BlobStore, uids: tuple[str, str, str], key: str) -> None:
    """After a failed index write: remove this writer's object, unless the write did land (its
    answer lost) and the index names it. When even that cannot be read, the object stays for the
    repair command: the error being handled is what the caller sees."""
    try:
        named = (index.indexed_object(*uids) or ("", ""))[1]
    except Exception:  # noqa: BLE001 - the original error propagates; this lookup is best effort
        return
    if named != key:
        blobs.delete(key)


def _settle(
    record: InstanceRecord, stored: tuple[str, str], blobs: BlobStore, policy: DuplicatePolicy
) -> IngestResult | None:
    """What the duplicate policy makes of an instance whose SOP Instance UID is indexed already
    as ``stored`` (MD5, object key): an answer (or an ``InvalidInstance``), or None when this
    writer's object is to replace it (``overwrite`` with other bytes, or any policy when the
    object the index names is not there: an index write that landed after its writer, told it
    had failed, removed its object)."""
    md5, key = stored
    if policy is DuplicatePolicy.OVERWRITE and md5 != record.md5:
        return None
    key = key or instance_key(record.study_uid, record.series_uid, record.sop_uid)
    if not blobs.exists(key):
        return None
    if policy is DuplicatePolicy.REJECT:
        raise InvalidInstance(
            Reason.DUPLICATE_SOP_INSTANCE,
            "an instance with this SOP Instance UID is already stored (this server's duplicate policy is 'reject')",
            record.sop_class_uid,
            record.sop_uid,
        )
    if md5 != record.md5:
        raise InvalidInstance(
            Reason.DUPLICATE_SOP_INSTANCE,
            "an instance with this SOP Instance UID is already stored with different content",
            record.sop_class_uid,
            record.sop_uid,
        )
    return IngestResult(replace(record, object_key=key), key, Stored.IDENTICAL_DUPLICATE)
