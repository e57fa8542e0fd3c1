"""The ``MetadataIndex``, written once over the item-store port (``items``): exact aggregates on
write, and searches that read postings newest first, stop when the page is full or the read budget
is spent, and hand back a keyset cursor (``docs/data-model.md``). ``dynamodb.DynamoDbIndex`` and
``memory.MemoryIndex`` are this class over DynamoDB and over memory.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import random
import secrets
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .. import frame_table
from ..errors import ServiceUnavailable, StorageError
from ..formats import dicom_json as dj
from ..frame_table import FrameTable
from ..ports import AddOutcome, Page
from ..records import InstanceRecord, SeriesSummary, StoredInstance, StudySummary
from ..search import results
from ..search.ordering import instance_order, series_order, study_order, study_sort_text
from ..search.query import Query, split_study_keys
from . import keys
from .items import Action, ConditionFailed, Contention, Delete, Item, ItemStore, Put, Range, Update, key_of
from .keys import META, instance_sk, series_sk, study_pk
from .plan import ByUids, Walk, plan_series, plan_studies

if TYPE_CHECKING:
    from concurrent.futures import Executor


def _dumps(value: Any) -> str:
    """JSON as the index stores it: compact, and without the check for circular references (the
    values are JSON data; this halves the time of a CT slice's metadata with its compression)."""
    return json.dumps(value, separators=(",", ":"), check_circular=False)


_RETRIES = 6
#: A replacement that changes the study is serialized with every write to the study: each failed
#: attempt means another writer committed.
_REPLACE_RETRIES = 12
#: TransactWriteItems takes at most 100 actions.
_MAX_ACTIONS = 100
#: Prefix catalog entries a writer remembers before it starts over.
_KNOWN_MAX = 100_000
#: Postings read per Query after the first page of a partition.
_PAGE = 100
#: Partitions read at once (a group has SHARDS partitions per modality or value).
_PARALLEL = 8

log = logging.getLogger("dicomweb.index")


class ItemIndex:
    #: Threads that read the partitions of a group at once (shared by every index in the process).
    _pool: Executor | None = None

    def __init__(self, store: ItemStore, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self._sleep = sleep
        self._months: set[str] = set()  # months known to be in the catalog (never shrinks)
        self._prefix_months: set[tuple[str, str, str]] = set()  # (kind, prefix, month) in prefix catalogs

    # -- writes ---------------------------------------------------------------------------------

    def indexed_md5(self, study_uid: str, series_uid: str, sop_uid: str) -> str | None:
        found = self.indexed_object(study_uid, series_uid, sop_uid)
        return found[0] if found else None

    def indexed_object(self, study_uid: str, series_uid: str, sop_uid: str) -> tuple[str, str] | None:
        got = self.store.get(study_pk(study_uid), instance_sk(series_uid, sop_uid))
        return (str(got["md5"]), str(got.get("obj", ""))) if got else None

    def add_instance(self, record: InstanceRecord) -> AddOutcome:
        for attempt in range(_RETRIES):
            study = self.store.get(study_pk(record.study_uid), META)
            actions = self._fit(self._actions(record, study))
            try:
                self.store.transact(actions)
                if not study:
                    self._known(record, keys.month_of(self._sort14(record, None)))
                return AddOutcome.ADDED
            except ConditionFailed as exc:
                if exc.index == 0:  # the instance is indexed already
                    return AddOutcome.ALREADY_INDEXED
                # The study was created (or its item changed) concurrently: read again and retry.
            except Contention:
                if self.indexed_md5(record.study_uid, record.series_uid, record.sop_uid):
                    return AddOutcome.ALREADY_INDEXED
                self._sleep(min(0.05 * 2**attempt, 1.0))
        raise ServiceUnavailable(
            "the index is busy with concurrent writes to this study; send the instance again", retry_after=1
        )

    @staticmethod
    def _frames_actions(record: InstanceRecord) -> list[Action]:
        table = record.frame_table
        encoded = None if table is None or record.frame_table_aside else frame_table.encode(table)
        aside = table is not None and record.frame_table_aside
        return [Put(keys.frames_item(record.study_uid, record.series_uid, record.sop_uid, encoded, aside=aside))]

    def add_frame_table(
        self, study_uid: str, series_uid: str, sop_uid: str, table: FrameTable | None, *, aside: bool = False
    ) -> None:
        encoded = None if table is None or aside else frame_table.encode(table)
        item = keys.frames_item(study_uid, series_uid, sop_uid, encoded, aside=aside and table is not None)
        # Another reader or the repair may have recorded it first (the same table: it is the object's).
        with contextlib.suppress(ConditionFailed, Contention):
            self.store.transact([Put(item, if_absent=True)])

    def frame_tables_of(self, study_uid: str) -> set[tuple[str, str]]:
        """(series, SOP Instance UID) of every instance of the study with a frame-table item."""
        found = self._all(study_pk(study_uid), "FR#", ("sk",))
        return {tuple(item["sk"].split("#", 2)[1:]) for item in found}

    def _fit(self, actions: list[Action]) -> list[Action]:
        """What fits one transaction: when there is more, the postings that do not fit go first,
        in transactions of their own. They are idempotent, and a posting whose study does not
        exist (yet), carries another sort key or other values is skipped when read."""
        if len(actions) <= _MAX_ACTIONS:
            return actions
        fixed = [a for a in actions if not _spare(a)]
        spare = [a for a in actions if _spare(a)]
        room = _MAX_ACTIONS - len(fixed)
        if room < 0:
            raise StorageError(f"this change needs {len(fixed)} index writes in one transaction (at most 100)")
        for start in range(room, len(spare), _MAX_ACTIONS):
            self._transact_spare(spare[start : start + _MAX_ACTIONS])
        return fixed + spare[:room]

    def replace_instance(self, record: InstanceRecord, old: tuple[str, str]) -> bool:
        """Make ``record`` the indexed instance in place of the one whose (MD5, object key) is
        ``old``, in one transaction conditioned on the entry still naming ``old``; False (nothing
        written) when it names something else by now. The instance count stays; the series and
        study attributes become the new instance's, SOPClassesInStudy and ModalitiesInStudy are
        counted again when its values changed, the study's postings follow changed study
        attributes, and the series and study ``ver`` go up by one. A change of the study
        attributes is serialized with every other write to the study (its ``ver``)."""
        pk = study_pk(record.study_uid)
        isk, ssk = instance_sk(record.series_uid, record.sop_uid), series_sk(record.series_uid)
        for attempt in range(_REPLACE_RETRIES):
            found = {i["sk"]: i for i in self.store.batch_get([(pk, isk), (pk, ssk), (pk, META)])}
            inst = found.get(isk)
            if inst is None or (str(inst["md5"]), str(inst.get("obj", ""))) != old:
                return False
            actions, stale = self._replacement(record, old, inst, found[ssk], found[META])
            try:
                self.store.transact(self._fit(actions))
            except ConditionFailed as exc:
                if exc.index == 0:  # another writer replaced the instance first
                    return False
                # The study changed meanwhile (another writer committed): read it again.
                self._sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311 - jitter, not security
                continue
            except Contention:
                self._sleep(min(0.05 * 2**attempt, 1.0))
                continue
            self._sweep(stale)
            return True
        raise ServiceUnavailable(
            "the index is busy with concurrent writes to this study; send the instance again", retry_after=1
        )

    def _replacement(
        self, record: InstanceRecord, old: tuple[str, str], inst: Item, series: Item, study: Item
    ) -> tuple[list[Action], list[Delete]]:
        """The transaction that replaces ``inst`` by ``record`` (its first action the instance's
        conditional Put), and the postings to remove once it has committed."""
        pk, uid = study_pk(record.study_uid), record.study_uid
        old_series = json.loads(series["attrs"])
        old_study = json.loads(study["attrs"])
        old_sort = str(study.get("sort") or study_sort_text(old_study))
        new_sort = old_sort if record.study == old_study else study_sort_text(record.study)
        old_mod = str(inst.get("mod") or dj.first(old_series, "00080060", "") or "")
        study_changed, sort_changed = record.study != old_study, new_sort != old_sort
        series_changed = record.series != old_series
        recount = str(inst.get("sop_class", "")) != record.sop_class_uid or old_mod != record.modality
        actions: list[Action] = [
            Put(self._instance_item(record), expect={"md5": old[0], "obj": old[1] or None}),
            # The frame table is the new object's (an unconditional Put: it replaces the old one's).
            *self._frames_actions(record),
            Update(
                pk,
                series_sk(record.series_uid),
                fields={"attrs": _dumps(record.series)} if series_changed else {},
                add={"ver": 1},
                if_exists=True,
            ),
        ]
        fields: dict[str, Any] = {}
        old_mods = set(study.get("mods", set()))
        mods, classes = old_mods, set(study.get("classes", set()))
        others = self._series_items(uid) if recount or sort_changed else {}
        if recount:
            mods, classes = self._counted(record, others)
            fields |= {"mods": mods, "classes": classes}
        stale: list[Delete] = []
        gen = study.get("pgen")
        if study_changed:
            fields |= {"attrs": _dumps(record.study), "sort": new_sort, "pgen": secrets.token_hex(6)}
            before = self._study_postings(record, old_study, old_sort, old_mods)
            after = _tagged(self._study_postings(record, record.study, new_sort, mods), fields["pgen"])
            kept = {key_of(Put(p)) for p in after}
            actions += [Put(p) for p in after]
            stale = [Delete(p["pk"], p["sk"], expect={"gen": gen}) for p in before if key_of(Put(p)) not in kept]
            month = keys.month_of(new_sort)
            actions.append(Update(*keys.CATALOG, add={"months": {month}}))
            actions += [
                Update(*keys.prefix_catalog(kind, prefix), add={"months": {month}})
                for kind, prefix in sorted(keys.dense_prefixes(record))
            ]
        elif record.modality and record.modality not in old_mods:
            actions += [Put(p) for p in _tagged(keys.modality_postings(record.modality, old_sort, uid), gen)]
        # Series postings carry the study's sort key and the series' rank and modality: they move
        # in this transaction (their reads do not check the study's sort key).
        moved = (
            {se: (json.loads(item["attrs"]), json.loads(item["attrs"])) for se, item in others.items()}
            if sort_changed
            else {}
        )
        if series_changed or sort_changed:
            moved[record.series_uid] = (old_series, record.series)
        for se, (before_attrs, after_attrs) in sorted(moved.items()):
            gone = keys.series_posting(uid, se, before_attrs, old_sort)
            new = keys.series_posting(uid, se, after_attrs, new_sort)
            if gone and (not new or key_of(Put(gone)) != key_of(Put(new))):
                actions.append(Delete(gone["pk"], gone["sk"]))
            if new and (not gone or key_of(Put(gone)) != key_of(Put(new))):
                actions.append(Put(new))
        serialized = bool(fields) or series_changed
        actions.append(
            Update(
                pk,
                META,
                fields=fields,
                add={"ver": 1},
                if_exists=True,
                expect={"ver": study.get("ver")} if serialized else None,
            )
        )
        return actions, stale

    def _counted(self, record: InstanceRecord, series: dict[str, Item]) -> tuple[set[str], set[str]]:
        """ModalitiesInStudy and SOPClassesInStudy counted over every instance of the study, with
        ``record`` in place of its indexed version (instances indexed before instance items named
        their modality count with their series' one)."""
        mods: set[str] = {record.modality} if record.modality else set()
        classes = {record.sop_class_uid}
        for item in self._all(study_pk(record.study_uid), "IN#", ("sop_class", "mod")):
            _, se, sop = item["sk"].split("#", 2)
            if (se, sop) == (record.series_uid, record.sop_uid):
                continue
            classes.add(str(item["sop_class"]))
            attrs = json.loads(series[se]["attrs"]) if se in series else {}
            mod = str(item.get("mod") or dj.first(attrs, "00080060", "") or "")
            mods |= {mod} if mod else set()
        return mods, classes

    @staticmethod
    def _study_postings(record: InstanceRecord, attrs: dict[str, Any], sort14: str, mods: set[str]) -> list[Item]:
        """Every study posting of a study with these attributes, sort key and modalities."""
        probe = replace(record, study=attrs, series={})
        out = keys.study_postings(probe, sort14)
        for modality in sorted(mods):
            out += keys.modality_postings(modality, sort14, record.study_uid)
        return out

    def _sweep(self, stale: list[Delete]) -> None:
        """Remove the postings a replacement left behind, unless a later writer wrote them again
        (their ``gen`` changed). Best effort once the replacement has committed: a posting left
        behind is skipped or filtered when read, it only costs a read."""
        pending = list(stale)
        try:
            for attempt in range(len(pending) + _RETRIES):
                if not pending:
                    return
                chunk = pending[:_MAX_ACTIONS]
                try:
                    self.store.transact(chunk)
                    pending = pending[len(chunk) :]
                except ConditionFailed as exc:
                    del pending[exc.index]  # written again by a later writer: it stays
                except Contention:
                    self._sleep(min(0.05 * 2**attempt, 1.0))
        except StorageError as exc:
            log.warning("stale postings left after a replacement", extra={"error": type(exc).__name__})

    def _transact_spare(self, actions: list[Action]) -> None:
        for attempt in range(_RETRIES):
            try:
                return self.store.transact(actions)
            except Contention:
                self._sleep(min(0.05 * 2**attempt, 1.0))
        raise ServiceUnavailable("the index is busy; send the instance again", retry_after=1)

    def _known(self, record: InstanceRecord, month: str) -> None:
        """Remember the catalog entries a new study wrote, so the next studies skip them."""
        self._months.add(month)
        if len(self._prefix_months) > _KNOWN_MAX:
            self._prefix_months.clear()  # bounded memory; forgetting only costs an idempotent ADD
        self._prefix_months |= {(kind, prefix, month) for kind, prefix in keys.dense_prefixes(record)}

    @staticmethod
    def _sort14(record: InstanceRecord, study: Item | None) -> str:
        """The study's order key: fixed when the study is created (first instance wins)."""
        if study and study.get("sort"):
            return str(study["sort"])
        return study_sort_text(record.study)

    @staticmethod
    def _instance_item(record: InstanceRecord) -> Item:
        instance: Item = {
            "pk": study_pk(record.study_uid),
            "sk": instance_sk(record.series_uid, record.sop_uid),
            "type": "instance",
            "attrs": _dumps(record.instance),
            **keys.instance_fields(record),
        }
        if record.modality:
            instance["mod"] = record.modality
        if record.metadata is not None:
            instance["meta"] = zlib.compress(_dumps(record.metadata).encode())
        if record.bulk:
            instance["bulk"] = _dumps(record.bulk)
        return instance

    def _actions(self, record: InstanceRecord, study: Item | None) -> list[Action]:
        pk = study_pk(record.study_uid)
        mods = {record.modality} if record.modality else set()
        sort14 = self._sort14(record, study)
        actions: list[Action] = [
            Put(self._instance_item(record), if_absent=True),
            *(Put(p) for p in keys.lookup_postings(record)),
            *self._frames_actions(record),
            Update(
                pk,
                series_sk(record.series_uid),
                fields={"type": "series"},
                defaults={"attrs": _dumps(record.series)},
                # ``ver`` changes with every change of the series' instances: cached series
                # metadata is keyed by it (``retrieve.metadata``).
                add={"n_inst": 1, "ver": 1},
            ),
        ]
        if study is not None:
            add: dict[str, int | set[str]] = {
                "n_inst": 1,
                "series": {record.series_uid},
                "classes": {record.sop_class_uid},
                "ver": 1,
            }
            if mods:
                add["mods"] = mods
            # The postings below carry the study's sort key as read: a replacement that moved it
            # meanwhile makes this write read the study again.
            actions.append(Update(pk, META, add=add, if_exists=True, expect={"sort": study.get("sort")}))
            if record.modality and record.modality not in set(study.get("mods", set())):
                postings = keys.modality_postings(record.modality, sort14, record.study_uid)
                actions += [Put(p) for p in _tagged(postings, study.get("pgen"))]
            if record.modality and record.series_uid not in set(study.get("series", set())):
                actions.append(Put(keys.series_modality_posting(record, sort14)))
            return actions
        gen = secrets.token_hex(6)
        study_item: Item = {
            "pk": pk,
            "sk": META,
            "type": "study",
            "attrs": _dumps(record.study),
            "n_inst": 1,
            "series": {record.series_uid},
            "classes": {record.sop_class_uid},
            "sort": sort14,
            "ver": 1,
            "pgen": gen,
        }
        if mods:
            study_item["mods"] = mods
        actions.append(Put(study_item, if_absent=True))
        actions += [Put(p) for p in _tagged(keys.study_postings(record, sort14), gen)]
        if record.modality:
            actions.append(Put(keys.series_modality_posting(record, sort14)))
        month = keys.month_of(sort14)
        if month not in self._months:
            actions.append(Update(*keys.CATALOG, add={"months": {month}}))
        for kind, prefix in sorted(keys.dense_prefixes(record)):
            if (kind, prefix, month) not in self._prefix_months:
                actions.append(Update(*keys.prefix_catalog(kind, prefix), add={"months": {month}}))
        return actions

    # -- reads: studies -------------------------------------------------------------------------

    def _spent(self) -> int:
        """What the read budget counts: items read plus read requests (an empty Query costs one)."""
        return self.store.reads + self.store.requests

    def _study(self, item: Item) -> StudySummary:
        return StudySummary(
            study_uid=item["pk"][3:],
            attrs=json.loads(item["attrs"]),
            modalities=tuple(sorted(item.get("mods", set()))),
            series_count=len(item.get("series", set())),
            instance_count=int(item.get("n_inst", 0)),
            sop_classes=tuple(sorted(item.get("classes", set()))),
        )

    def get_study(self, study_uid: str) -> StudySummary | None:
        got = self.store.get(study_pk(study_uid), META)
        return self._study(got) if got else None

    def _hydrate(self, study_uids: list[str]) -> dict[str, StudySummary]:
        return {uid: study for uid, (study, _) in self._hydrate_sorted(study_uids).items()}

    def _hydrate_sorted(self, study_uids: list[str]) -> dict[str, tuple[StudySummary, str]]:
        """Study items by UID, with the ``sort14`` their postings must carry."""
        items = self.store.batch_get([(study_pk(u), META) for u in study_uids])
        return {item["pk"][3:]: (self._study(item), str(item.get("sort", ""))) for item in items}

    def _catalog_months(self, kind: str = "", prefix: str = "") -> list[str]:
        """The months that hold studies, newest first; with ``kind`` and ``prefix``, those that
        hold that dense prefix's postings."""
        got = self.store.get(*(keys.prefix_catalog(kind, prefix) if kind else keys.CATALOG))
        months = set(got.get("months", set())) if got else set()
        if not kind:
            self._months |= months
        return sorted(months, reverse=True)

    def _page(self, pk: str, where: Range, limit: int) -> tuple[list[Item], bool]:
        return self.store.query(pk, where, descending=True, limit=limit, attrs=("study", "v", "series"))

    def _first_pages(self, pks: tuple[str, ...], where: Range, limit: int) -> list[tuple[list[Item], bool]]:
        """The first page of every partition of a group, read concurrently (one round trip's wait
        for the whole group, not one per shard)."""
        if len(pks) == 1:
            return [self._page(pks[0], where, limit)]
        if ItemIndex._pool is None:
            from concurrent.futures import ThreadPoolExecutor  # on first use: not at cold start

            ItemIndex._pool = ThreadPoolExecutor(max_workers=_PARALLEL, thread_name_prefix="index")
        return list(ItemIndex._pool.map(lambda pk: self._page(pk, where, limit), pks))

    def _partition(
        self,
        pk: str,
        where: Range,
        page_size: Callable[[int], int],
        fetched: list[int],
        first: tuple[list[Item], bool],
        limit: int,
    ) -> Iterator[Item]:
        """A posting partition newest first, from its ``first`` page (read with ``limit``) on, the
        rest read lazily; ``page_size(previous)`` sizes each further page, ``fetched[0]`` counts the
        postings read."""
        items, more = first
        while True:
            fetched[0] += len(items)
            yield from items
            if not more or not items:
                return
            where = Range(low=where.low, high=_before(items[-1]["sk"]))
            limit = page_size(limit)
            items, more = self._page(pk, where, limit)

    def _walk(self, plan: Walk, after: str | None, wanted: int) -> Iterator[Item]:
        """Every posting of the plan, newest first, once, strictly after the cursor ``after``.

        ``wanted`` is how many postings the caller expects to need. The partitions of a merged group
        are first read concurrently for a little less than their share of it; a partition that runs
        dry first reads its share of what is still missing, then one at a time once enough waits in
        the others (a merge must see every partition's next posting); past ``wanted`` (postings
        that did not match), pages double up to ``_PAGE``."""
        yielded = [0]  # read live by page_size: postings handed out so far
        fetched = [0]  # postings read from the store (handed out, or waiting in a stream)
        for group in plan.groups:
            if after and group.bucket and group.bucket > after[: len(group.bucket)]:
                continue  # the whole bucket lies before the cursor in walking order
            high = group.high
            if after:
                high = min(high, _before(after)) if high else _before(after)
            if group.low is not None and high is not None and high < group.low:
                continue  # the cursor lies before this group's range: nothing of it is left
            where = Range(low=group.low, high=high)
            parts = len(group.partitions)

            def page_size(previous: int, parts: int = parts) -> int:
                if previous == 0 and yielded[0] < wanted:  # a first page: this partition's share
                    return max(1, -(-(wanted - yielded[0]) // parts) - 2)
                if fetched[0] < wanted:  # a partition that ran dry first: its share of what is missing
                    return -(-(wanted - fetched[0]) // parts)
                if yielded[0] < wanted:  # enough is waiting in the other partitions: one at a time
                    return 1
                return min(max(previous * 2, 2), _PAGE)

            limit = page_size(0)
            firsts = self._first_pages(group.partitions, where, limit)
            streams = [
                self._partition(pk, where, page_size, fetched, first, limit)
                for pk, first in zip(group.partitions, firsts, strict=True)
            ]
            last = None
            for posting in heapq.merge(*streams, key=lambda i: str(i["sk"]), reverse=True):
                if posting["sk"] == last:  # the same study under two modalities
                    continue
                last = posting["sk"]
                if group.check and not any(v.startswith(group.check) for v in str(posting.get("v", "")).split("\n")):
                    continue
                yielded[0] += 1
                yield posting

    def search_studies(self, query: Query) -> Page[StudySummary]:
        start = self._spent()
        plan = plan_studies(query, self._catalog_months)
        if isinstance(plan, ByUids):
            hydrated = self._hydrate(list(plan.uids))
            found = [s for s in hydrated.values() if query.matches(results.study_attrs_with_aggregates(s))]
            found.sort(key=study_order, reverse=True)
            if query.after:  # the same keyset order as every posting walk
                found = [s for s in found if _sort_key(s) < query.after]
            items, more = results.page(found, query)
            return Page(items, more, cursor=_sort_key(items[-1]) if more and items else None)

        def studies(batch: list[Item]) -> list[StudySummary | None]:
            hydrated = self._hydrate_sorted([str(p["study"]) for p in batch])
            out: list[StudySummary | None] = []
            for posting in batch:
                study, sort14 = hydrated.get(str(posting["study"]), (None, ""))
                # A posting of a study that lost the race to create it under another sort key
                # points at nothing: the study's own postings stand for it.
                if study is None or (sort14 and not str(posting["sk"]).startswith(sort14 + "#")):
                    out.append(None)
                else:
                    out.append(study if query.matches(results.study_attrs_with_aggregates(study)) else None)
            return out

        return self._paged(plan, query, studies, start)

    def _paged[T](self, plan: Walk, query: Query, rows: Callable[[list[Item]], list[T | None]], start: int) -> Page[T]:
        """Walk the plan's postings in batches; ``rows`` turns a batch into its rows (None where a
        posting's row does not match). Stops when the page is full (plus one row, to know there are
        more) or the read budget is spent; the cursor is the sort key of the last posting used."""
        wanted = query.offset + query.limit + 1
        postings = self._walk(plan, query.after, wanted)
        matched: list[tuple[str, T]] = []
        skipped = 0
        last_seen: str | None = None
        while True:
            need = wanted - skipped - len(matched)
            batch = [p for _, p in zip(range(need), postings, strict=False)]
            if not batch:
                return Page([r for _, r in matched], False)
            for posting, row in zip(batch, rows(batch), strict=True):
                last_seen = str(posting["sk"])
                if row is None:
                    continue
                if skipped < query.offset:
                    skipped += 1
                    continue
                if len(matched) == query.limit:  # one more match: there are more results
                    return Page([r for _, r in matched], True, cursor=matched[-1][0])
                matched.append((last_seen, row))
            if self._spent() - start >= query.read_budget:
                spent = self._spent() - start
                left = query.offset - skipped
                return Page([r for _, r in matched], True, cursor=last_seen, budget_spent=spent, skip=left)

    def search_series_everywhere(self, query: Query) -> Page[SeriesSummary] | None:
        """``/series`` over the series Modality postings (``plan.plan_series``), or None when the
        study walk is the better plan. Rows come in the study walk's order (newest study first,
        then its series by SeriesNumber and UID: ``keys.series_rank``); the cursor is the last
        series' posting sort key."""
        plan = plan_series(query, self._catalog_months)
        if plan is None:
            return None
        start = self._spent()
        study_query, rest = split_study_keys(query)

        def series(batch: list[Item]) -> list[SeriesSummary | None]:
            wanted = [(study_pk(str(p["study"])), series_sk(str(p["series"]))) for p in batch]
            if study_query.predicates:
                wanted += [(study_pk(str(p["study"])), META) for p in batch]
            found = {(i["pk"], i["sk"]): i for i in self.store.batch_get(list(dict.fromkeys(wanted)))}
            out: list[SeriesSummary | None] = []
            for p in batch:
                study_uid, series_uid = str(p["study"]), str(p["series"])
                item = found.get((study_pk(study_uid), series_sk(series_uid)))
                if item is None:
                    out.append(None)
                    continue
                if study_query.predicates:
                    study = found.get((study_pk(study_uid), META))
                    attrs = results.study_attrs_with_aggregates(self._study(study)) if study else None
                    if attrs is None or not study_query.matches(attrs):
                        out.append(None)
                        continue
                summary = SeriesSummary(study_uid, series_uid, json.loads(item["attrs"]), int(item.get("n_inst", 0)))
                if not str(p["sk"]).endswith("#" + keys.series_rank(summary.attrs, series_uid)):
                    # Written by an instance whose SeriesNumber lost the race to be the series'
                    # (first write wins): the series' own posting stands for it.
                    out.append(None)
                    continue
                out.append(summary if rest.matches(results.series_attrs_with_aggregates(summary)) else None)
            return out

        return self._paged(plan, query, series, start)

    def studies_holding(self, kind: str, uids: tuple[str, ...]) -> list[str]:
        """The studies that hold these series (``kind="SE"``) or instances (``"IN"``)."""
        found: dict[str, None] = {}
        for uid in uids:
            items, _ = self.store.query(f"P#{kind}#{uid}", limit=10, attrs=("study",))
            found.update(dict.fromkeys(str(i["study"]) for i in items))
        return list(found)

    # -- reads: series and instances ------------------------------------------------------------

    def _all(self, pk: str, begins: str, attrs: tuple[str, ...] | None = None) -> list[Item]:
        out: list[Item] = []
        where = Range(begins=begins)
        while True:
            items, more = self.store.query(pk, where, limit=1000, attrs=attrs)
            out += items
            if not more or not items:
                return out
            where = Range(low=_after(items[-1]["sk"]), high=begins + "\uffff")

    def _series_items(self, study_uid: str) -> dict[str, Item]:
        return {item["sk"][3:]: item for item in self._all(study_pk(study_uid), "SE#")}

    def series_version(self, study_uid: str, series_uid: str) -> int | None:
        got = self.store.get(study_pk(study_uid), series_sk(series_uid))
        return int(got.get("ver", 0)) if got else None

    def search_series(self, study_uid: str, query: Query) -> Page[SeriesSummary]:
        found = []
        for uid, item in self._series_items(study_uid).items():
            summary = SeriesSummary(study_uid, uid, json.loads(item["attrs"]), int(item.get("n_inst", 0)))
            if query.matches(results.series_attrs_with_aggregates(summary)):
                found.append(summary)
        found.sort(key=series_order)
        return Page(*results.page(found, query))

    def _instances(
        self, study_uid: str, series_uid: str | None, sop_uid: str | None, with_metadata: bool
    ) -> list[StoredInstance]:
        tables: list[Item] = []
        if sop_uid is not None and series_uid is not None:
            # One round trip for the instance, its series item and its frame table.
            wanted = [
                (study_pk(study_uid), sk)
                for sk in (instance_sk(series_uid, sop_uid), series_sk(series_uid), keys.frames_sk(series_uid, sop_uid))
            ]
            found = self.store.batch_get(wanted)
            series = {i["sk"][3:]: i for i in found if i["sk"].startswith("SE#")}
            items = [i for i in found if i["sk"].startswith("IN#")]
            tables = [i for i in found if i["sk"].startswith("FR#")]
        else:
            series = self._series_items(study_uid)
            attrs = None if with_metadata else ("attrs", *keys.INSTANCE_FIELDS.values())
            items = self._all(study_pk(study_uid), f"IN#{series_uid}#" if series_uid else "IN#", attrs)
        table: FrameTable | None = None
        state = keys.frames_state(tables[0] if tables else None)
        if state == "inline":
            table = frame_table.decode(bytes(tables[0]["t"]))
        out = []
        for item in items:
            _, se, sop = item["sk"].split("#", 2)
            meta = item.get("meta")
            bulk = item.get("bulk")
            out.append(
                StoredInstance(
                    frame_table=table,
                    frames_state=state,
                    study_uid=study_uid,
                    series_uid=se,
                    sop_uid=sop,
                    attrs=json.loads(item["attrs"]),
                    series_attrs=json.loads(series[se]["attrs"]) if se in series else {},
                    metadata=json.loads(zlib.decompress(bytes(meta))) if meta is not None else None,
                    bulk={k: (int(v[0]), int(v[1])) for k, v in json.loads(bulk).items()} if bulk else None,
                    **keys.fields_of_item(item),
                )
            )
        return sorted(out, key=instance_order)

    def search_instances(self, study_uid: str, series_uid: str | None, query: Query) -> Page[StoredInstance]:
        found = [
            i
            for i in self._instances(study_uid, series_uid, None, with_metadata=False)
            if query.matches(results.instance_attrs(i))
        ]
        return Page(*results.page(found, query))

    def list_instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None, *, with_metadata: bool = False
    ) -> list[StoredInstance]:
        return self._instances(study_uid, series_uid, sop_uid, with_metadata=with_metadata)


def _spare(action: Action) -> bool:
    """A study posting or a catalog entry written (not removed): idempotent, and harmless on its own."""
    pk = key_of(action)[0]
    return not isinstance(action, Delete) and pk.startswith("P#") and not pk.startswith(("P#SE#", "P#IN#", "P#SMOD#"))


def _tagged(postings: list[Item], gen: object) -> list[Item]:
    """Study postings marked with the writer generation (``pgen``) of the study values they index,
    so that removing a replaced value's postings never removes one a later writer wrote again."""
    return [{**p, "gen": gen} for p in postings] if gen else postings


def _sort_key(study: StudySummary) -> str:
    """A study's place in the newest-first order, as its postings' sort keys spell it."""
    return keys.posting_sk(study_sort_text(study.attrs), study.study_uid)


def _before(sk: str) -> str:
    """The largest string below ``sk`` that sort keys can reach (an inclusive bound excluding ``sk``):
    sort keys are printable ASCII, so ``sk`` without its last character, that character lowered by
    one, then U+FFFF."""
    return sk[:-1] + chr(ord(sk[-1]) - 1) + "\uffff" if sk else ""


def _after(sk: str) -> str:
    """The smallest string above ``sk``."""
    return sk + "\x00"


__all__ = ["ItemIndex"]
