"""The item-store port the index is written against, and its in-memory implementation.

The index (``index.core``) keeps its whole model (keys, plans, merges, the read budget, exact
aggregates) in one place and talks to storage only through these few operations, which DynamoDB
(``index.dynamodb``) and a sorted in-memory store implement alike. So the in-memory index runs the
same plans as the DynamoDB one and reads the same items: a planner bug cannot hide behind a backend
that filters everything, and ``reads`` (items returned by the store) can be compared between them.

Items are plain dicts with a string ``pk`` and ``sk``; values are ``str``, ``int``, ``bytes`` or
``set[str]``.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Item = dict[str, Any]


#: ``expect`` maps attribute names to the value the item must hold; ``None`` means the item must
#: not have that attribute. A missing item holds no attribute at all.
Expect = dict[str, Any]


@dataclass(frozen=True)
class Put:
    """Write ``item`` whole; with ``if_absent``, only when no item has its key; with ``expect``,
    only when the item there holds those values."""

    item: Item
    if_absent: bool = False
    expect: Expect | None = None


@dataclass(frozen=True)
class Update:
    """Change one item: set ``fields`` always (an empty set removes the attribute), ``defaults``
    only where missing, and add to ``add`` (numbers are summed, sets are unioned). With
    ``if_exists``, only when the item exists; with ``expect``, only when it holds those values."""

    pk: str
    sk: str
    fields: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    add: dict[str, int | set[str]] = field(default_factory=dict)
    if_exists: bool = False
    expect: Expect | None = None


@dataclass(frozen=True)
class Delete:
    """Remove one item (nothing when it is not there); with ``expect``, only when it holds those
    values."""

    pk: str
    sk: str
    expect: Expect | None = None


Action = Put | Update | Delete


def key_of(action: Action) -> tuple[str, str]:
    return (action.item["pk"], action.item["sk"]) if isinstance(action, Put) else (action.pk, action.sk)


def holds(item: Item | None, expect: Expect) -> bool:
    """Whether ``item`` (None: no item) holds what ``expect`` asks for."""
    found = item or {}
    return all(found.get(name) == value if value is not None else name not in found for name, value in expect.items())


class ConditionFailed(Exception):
    """A transaction was refused because action ``index`` failed its condition; nothing was written."""

    def __init__(self, index: int) -> None:
        super().__init__(f"condition of action {index} failed")
        self.index = index


class Contention(Exception):
    """A transaction collided with another writer (or was throttled); nothing was written: retry."""


@dataclass(frozen=True)
class Range:
    """A key condition on ``sk``: ``low <= sk <= high`` (both optional), or ``sk`` starting with
    ``begins``."""

    low: str | None = None
    high: str | None = None
    begins: str | None = None


class ItemStore(Protocol):
    #: Items returned so far (reads of the index, for budgets, benchmarks and the contract suite).
    reads: int
    #: Read requests made so far (a DynamoDB GetItem, BatchGetItem or Query call each), so a search
    #: budget also bounds queries that return nothing.
    requests: int

    def get(self, pk: str, sk: str) -> Item | None:
        """One item, read-after-write consistent."""
        ...

    def batch_get(self, keys: Sequence[tuple[str, str]]) -> list[Item]:
        """The items that exist among ``keys`` (any number of keys; any order)."""
        ...

    def query(
        self,
        pk: str,
        where: Range | None = None,
        *,
        descending: bool = False,
        limit: int | None = None,
        attrs: Sequence[str] | None = None,
    ) -> tuple[list[Item], bool]:
        """Items of partition ``pk`` within ``where``, in ``sk`` order: at most ``limit`` of them,
        and whether more follow. ``attrs`` restricts the attributes returned (``pk``/``sk`` always)."""
        ...

    def transact(self, actions: Sequence[Action]) -> None:
        """All of ``actions`` or none; raises ``ConditionFailed`` or ``Contention``."""
        ...


def _copy(item: Item) -> Item:
    """A copy a caller can change freely (values are immutable but for sets)."""
    return {k: set(v) if isinstance(v, set) else v for k, v in item.items()}


class MemoryItems:
    """``ItemStore`` in memory: a sorted list of sort keys per partition. Thread-safe."""

    def __init__(self) -> None:
        self.reads = 0
        self.requests = 0
        self._items: dict[str, dict[str, Item]] = {}
        self._keys: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def get(self, pk: str, sk: str) -> Item | None:
        with self._lock:
            found = self._items.get(pk, {}).get(sk)
            self.reads += found is not None
            self.requests += 1
            return _copy(found) if found is not None else None

    def batch_get(self, keys: Sequence[tuple[str, str]]) -> list[Item]:
        with self._lock:
            found = [self._items[pk][sk] for pk, sk in dict.fromkeys(keys) if sk in self._items.get(pk, {})]
            self.reads += len(found)
            self.requests += -(-len(keys) // 100)  # BatchGetItem takes 100 keys
            return [_copy(i) for i in found]

    def query(
        self,
        pk: str,
        where: Range | None = None,
        *,
        descending: bool = False,
        limit: int | None = None,
        attrs: Sequence[str] | None = None,
    ) -> tuple[list[Item], bool]:
        where = where or Range()
        with self._lock:
            keys = self._keys.get(pk, [])
            if where.begins is not None:
                start = bisect.bisect_left(keys, where.begins)
                end = start
                while end < len(keys) and keys[end].startswith(where.begins):
                    end += 1
            else:
                start = bisect.bisect_left(keys, where.low) if where.low is not None else 0
                end = bisect.bisect_right(keys, where.high) if where.high is not None else len(keys)
            chosen = keys[start:end]
            if descending:
                chosen = chosen[::-1]
            more = limit is not None and len(chosen) > limit
            chosen = chosen[:limit] if limit is not None else chosen
            items = [self._items[pk][sk] for sk in chosen]
            if attrs is not None:
                wanted = {"pk", "sk", *attrs}
                items = [{k: v for k, v in item.items() if k in wanted} for item in items]
            self.reads += len(items)
            self.requests += 1
            return [_copy(i) for i in items], more

    def transact(self, actions: Sequence[Action]) -> None:
        if len(actions) > 100:  # as DynamoDB's TransactWriteItems refuses it
            raise ValueError(f"a transaction takes at most 100 actions, not {len(actions)}")
        if len({key_of(a) for a in actions}) < len(actions):  # as DynamoDB refuses it
            raise ValueError("a transaction cannot change one item twice")
        with self._lock:
            for i, action in enumerate(actions):
                pk, sk = key_of(action)
                current = self._items.get(pk, {}).get(sk)
                if (
                    (isinstance(action, Put) and action.if_absent and current is not None)
                    or (isinstance(action, Update) and action.if_exists and current is None)
                    or (action.expect is not None and not holds(current, action.expect))
                ):
                    raise ConditionFailed(i)
            for action in actions:
                if isinstance(action, Put):
                    self._store(_copy(action.item))
                    continue
                if isinstance(action, Delete):
                    if self._items.get(action.pk, {}).pop(action.sk, None) is not None:
                        self._keys[action.pk].remove(action.sk)
                    continue
                item = _copy(self._items.get(action.pk, {}).get(action.sk) or {"pk": action.pk, "sk": action.sk})
                item.update(_copy(action.fields))
                for name in [n for n, v in action.fields.items() if v == set()]:
                    del item[name]  # as DynamoDB, which stores no empty set
                for name, value in _copy(action.defaults).items():
                    item.setdefault(name, value)
                for name, value in action.add.items():
                    if isinstance(value, set):
                        item[name] = set(item.get(name, set())) | value
                    else:
                        item[name] = int(item.get(name, 0)) + value
                self._store(item)

    def _store(self, item: Item) -> None:
        pk, sk = item["pk"], item["sk"]
        partition = self._items.setdefault(pk, {})
        if sk not in partition:
            bisect.insort(self._keys.setdefault(pk, []), sk)
        partition[sk] = item
