"""The item-store port on one DynamoDB table, and ``DynamoDbIndex``: the index (``core``) over it.

Reads are consistent (a search right after a store sees it); every failure botocore reports is
translated (``cloud_errors``) except the two this module interprets: a cancelled transaction
becomes ``ConditionFailed`` (which action) or ``Contention`` (retry).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ..cloud_errors import error_code, translating
from .core import ItemIndex
from .items import Action, ConditionFailed, Contention, Delete, Expect, Item, Put, Range

_ser = TypeSerializer()
_des = TypeDeserializer()
#: Error codes this adapter interprets itself; every other failure is translated (``cloud_errors``).
_HANDLED = ("TransactionCanceledException", "ConditionalCheckFailedException")
_BATCH = 100


def _wire(value: Any) -> Any:
    return _ser.serialize(value)


def _item(values: Item) -> dict[str, Any]:
    """To DynamoDB's wire form; empty sets are left out (DynamoDB cannot store them)."""
    return {k: _wire(v) for k, v in values.items() if v is not None and v != set()}


def _plain(item: dict[str, Any]) -> Item:
    out: Item = {}
    for name, value in item.items():
        plain = _des.deserialize(value)
        if isinstance(plain, Decimal):
            plain = int(plain)
        elif isinstance(plain, Binary):
            plain = bytes(plain.value)
        out[name] = plain
    return out


class DynamoItems:
    """``ItemStore`` on a DynamoDB table with string keys ``pk`` / ``sk``."""

    def __init__(self, client: Any, table: str) -> None:
        self._db = translating(client, "DynamoDB", expected=_HANDLED)
        self.table = table
        self.reads = 0
        self.requests = 0
        self._counting = threading.Lock()  # a search reads a group's partitions from several threads

    def _count(self, *, reads: int = 0, requests: int = 0) -> None:
        with self._counting:
            self.reads += reads
            self.requests += requests

    def get(self, pk: str, sk: str) -> Item | None:
        got = self._db.get_item(TableName=self.table, Key=_item({"pk": pk, "sk": sk}), ConsistentRead=True)
        self._count(requests=1)
        if "Item" not in got:
            return None
        self._count(reads=1)
        return _plain(got["Item"])

    def batch_get(self, keys: Sequence[tuple[str, str]]) -> list[Item]:
        wanted = [_item({"pk": pk, "sk": sk}) for pk, sk in dict.fromkeys(keys)]
        found: list[Item] = []
        for start in range(0, len(wanted), _BATCH):
            request: dict[str, Any] = {self.table: {"Keys": wanted[start : start + _BATCH], "ConsistentRead": True}}
            while request:
                got = self._db.batch_get_item(RequestItems=request)
                self._count(requests=1)
                found += [_plain(i) for i in got.get("Responses", {}).get(self.table, [])]
                request = got.get("UnprocessedKeys") or {}
        self._count(reads=len(found))
        return found

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
        cond, values = "pk = :pk", {":pk": _wire(pk)}
        if where.begins is not None:
            cond += " AND begins_with(sk, :b)"
            values[":b"] = _wire(where.begins)
        elif where.low is not None or where.high is not None:
            cond += " AND sk BETWEEN :lo AND :hi"
            values[":lo"] = _wire(where.low if where.low is not None else " ")  # keys are never empty
            values[":hi"] = _wire(where.high if where.high is not None else "\uffff")
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": cond,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not descending,
            "ConsistentRead": True,
        }
        if attrs is not None:
            # Each attribute once: DynamoDB refuses a projection whose paths overlap ("sk", "sk").
            names = {f"#a{i}": a for i, a in enumerate(dict.fromkeys(("pk", "sk", *attrs)))}
            kwargs["ProjectionExpression"] = ", ".join(names)
            kwargs["ExpressionAttributeNames"] = names
        items: list[Item] = []
        while True:
            if limit is not None:
                kwargs["Limit"] = limit - len(items)
            page = self._db.query(**kwargs)
            self._count(requests=1)
            items += [_plain(i) for i in page.get("Items", [])]
            last = page.get("LastEvaluatedKey")
            if last is None or (limit is not None and len(items) >= limit):
                break
            kwargs["ExclusiveStartKey"] = last
        self._count(reads=len(items))
        # DynamoDB reports a LastEvaluatedKey when it stopped at the limit, even if nothing follows:
        # "more" may be a false positive, which costs the caller one empty Query, never a lost item.
        return items, last is not None

    def transact(self, actions: Sequence[Action]) -> None:
        try:
            self._db.transact_write_items(TransactItems=[self._wire_action(a) for a in actions])
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:
                raise ConditionFailed(reasons.index("ConditionalCheckFailed")) from None
            raise Contention() from None

    def _wire_action(self, action: Action) -> dict[str, Any]:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        conditions = _conditions(action.expect or {}, names, values)
        if isinstance(action, Put):
            put: dict[str, Any] = {"TableName": self.table, "Item": _item(action.item)}
            if action.if_absent:
                conditions.insert(0, "attribute_not_exists(pk)")
            return {"Put": _conditioned(put, conditions, names, values)}
        key = _item({"pk": action.pk, "sk": action.sk})
        if isinstance(action, Delete):
            return {"Delete": _conditioned({"TableName": self.table, "Key": key}, conditions, names, values)}
        sets, adds, removes = [], [], []
        for i, (name, value) in enumerate(action.fields.items()):
            names[f"#f{i}"] = name
            if value == set():  # DynamoDB stores no empty set: the attribute goes
                removes.append(f"#f{i}")
                continue
            values[f":f{i}"] = _wire(value)
            sets.append(f"#f{i} = :f{i}")
        for i, (name, value) in enumerate(action.defaults.items()):
            names[f"#d{i}"], values[f":d{i}"] = name, _wire(value)
            sets.append(f"#d{i} = if_not_exists(#d{i}, :d{i})")
        for i, (name, value) in enumerate(action.add.items()):
            names[f"#n{i}"], values[f":n{i}"] = name, _wire(value)
            adds.append(f"#n{i} :n{i}")
        clauses = (("SET", sets), ("ADD", adds), ("REMOVE", removes))
        expression = " ".join(verb + " " + ", ".join(parts) for verb, parts in clauses if parts)
        if action.if_exists:
            conditions.insert(0, "attribute_exists(pk)")
        update = {"TableName": self.table, "Key": key, "UpdateExpression": expression}
        return {"Update": _conditioned(update, conditions, names, values)}


def _conditions(expect: Expect, names: dict[str, str], values: dict[str, Any]) -> list[str]:
    out = []
    for i, (name, value) in enumerate(expect.items()):
        names[f"#c{i}"] = name
        if value is None:
            out.append(f"attribute_not_exists(#c{i})")
        else:
            values[f":c{i}"] = _wire(value)
            out.append(f"#c{i} = :c{i}")
    return out


def _conditioned(
    request: dict[str, Any], conditions: list[str], names: dict[str, str], values: dict[str, Any]
) -> dict[str, Any]:
    if conditions:
        request["ConditionExpression"] = " AND ".join(conditions)
    if names:
        request["ExpressionAttributeNames"] = names
    if values:
        request["ExpressionAttributeValues"] = values
    return request


class DynamoDbIndex(ItemIndex):
    """``MetadataIndex`` on one DynamoDB table (``docs/data-model.md``)."""

    def __init__(self, client: Any, table: str) -> None:
        super().__init__(DynamoItems(client, table), sleep=lambda seconds: time.sleep(seconds))
        self.table = table
