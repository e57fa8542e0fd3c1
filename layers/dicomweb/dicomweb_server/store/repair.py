"""Reconcile the index with the bucket: the repair command (``dicomweb repair``).

S3 is the source of truth. Every stored object the index does not name is indexed (an object
whose index write was lost: a crash, a local emulator that lost its tables); a leftover of a
writer that lost a race, or of a failed write, is removed once it is older than ``grace`` seconds
(a younger one may belong to a write still in progress); a file waiting in ``incoming/`` is
indexed through the S3-drop path; and every index entry whose object is missing is reported. It
only adds what is missing and removes what nothing names: running it twice changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import groupby

from ..blobs.keys import INCOMING_PREFIX, instance_key, stored_key
from ..ports import AddOutcome, BlobNotFound, BlobStore, MetadataIndex
from ..records import StoredInstance
from ..search.query import Level, parse_query
from ..settings import DuplicatePolicy
from ..uids import is_valid_uid
from .drop import DropOutcome, index_dropped
from .ingest import InvalidInstance, build_record, parse_part10, with_preamble

STUDIES_PREFIX = "studies/"


@dataclass
class RepairReport:
    objects: int = 0
    #: Objects that had no index entry and now have one.
    indexed: list[str] = field(default_factory=list)
    #: Objects no index entry names (another writer's copy is the instance), removed.
    removed: list[str] = field(default_factory=list)
    #: Objects no entry names that are younger than the grace period: left alone.
    pending: list[str] = field(default_factory=list)
    #: Objects under studies/ that are not valid instances (key, why), left where they are.
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    #: Files of incoming/ indexed (or moved to rejected/) through the S3-drop path.
    dropped: list[str] = field(default_factory=list)
    #: Index entries whose object is missing ("study/series/sop"): reported, not removed.
    missing: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"objects examined:           {self.objects}",
            f"indexed (had no entry):     {len(self.indexed)}",
            f"leftovers removed:          {len(self.removed)}",
            f"leftovers kept (too young): {len(self.pending)}",
            f"unreadable objects:         {len(self.unreadable)}",
            f"incoming files handled:     {len(self.dropped)}",
            f"entries without an object:  {len(self.missing)}",
        ]


def repair(
    index: MetadataIndex,
    blobs: BlobStore,
    *,
    grace: float = 900.0,
    now: Callable[[], float] = time.time,
    progress: Callable[[int], None] | None = None,
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.ACCEPT_IDENTICAL,
) -> RepairReport:
    report = RepairReport()
    seen: set[str] = set()
    for study_uid, group in groupby(blobs.list(STUDIES_PREFIX), key=lambda o: _study_of(o[0])):
        # One Query per study says which objects its index entries name; only the others are read.
        objects = list(group)
        instances = index.list_instances(study_uid) if study_uid else []
        seen.add(study_uid)
        named = {stored_key(i) for i in instances}
        for key, modified in objects:
            report.objects += 1
            if key not in named:
                _reconcile(key, modified, index, blobs, report, grace, now)
            if progress:
                progress(report.objects)
        report.missing += _missing(instances, {key for key, _ in objects})
    for key, _ in list(blobs.list(INCOMING_PREFIX)):
        outcome, _reason = index_dropped(key, index=index, blobs=blobs, duplicate_policy=duplicate_policy)
        if outcome is not DropOutcome.IGNORED:
            report.dropped.append(key)
    for study_uid in _every_study(index):
        if study_uid not in seen:  # no object under the study's folder was listed above
            present = {key for key, _ in blobs.list(f"{STUDIES_PREFIX}{study_uid}/")}
            report.missing += _missing(index.list_instances(study_uid), present)
    return report


def _missing(instances: list[StoredInstance], present: set[str]) -> list[str]:
    return [f"{i.study_uid}/{i.series_uid}/{i.sop_uid}" for i in instances if stored_key(i) not in present]


def _study_of(key: str) -> str:
    """The Study Instance UID an object key names (``studies/{study}/…``), or "" for another key."""
    parts = key.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "studies" and is_valid_uid(parts[1]) else ""


def _reconcile(
    key: str,
    modified: float,
    index: MetadataIndex,
    blobs: BlobStore,
    report: RepairReport,
    grace: float,
    now: Callable[[], float],
) -> None:
    if now() - modified < grace:
        # A write may be in progress (its index entry not yet written, or its own cleanup about
        # to remove it): neither index nor remove it now.
        report.pending.append(key)
        return
    try:
        data = blobs.get(key)
    except BlobNotFound:
        return  # removed meanwhile
    if with_preamble(data) is not data:
        report.unreadable.append((key, "not a complete Part-10 file"))
        return
    try:
        record = replace(build_record(parse_part10(data), data), object_key=key)
    except InvalidInstance as exc:
        report.unreadable.append((key, exc.message))
        return
    uids = (record.study_uid, record.series_uid, record.sop_uid)
    known = index.indexed_object(*uids)
    if known is None:
        if index.add_instance(record) is AddOutcome.ADDED:
            report.indexed.append(key)
            return
        known = index.indexed_object(*uids)
    if known is None or (known[1] or instance_key(*uids)) == key:
        return
    blobs.delete(key)
    report.removed.append(key)


def _every_study(index: MetadataIndex) -> list[str]:
    """Every indexed study, newest first, through the same keyset continuation as QIDO-RS."""
    query = parse_query([("limit", "1000")], Level.STUDY, max_limit=1000, read_budget=10**9)
    out: list[str] = []
    while True:
        page = index.search_studies(query)
        out += [s.study_uid for s in page.items]
        if not page.more or page.cursor is None:
            return out
        query = replace(query, after=page.cursor, offset=page.skip)
