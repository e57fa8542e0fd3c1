"""``MetadataIndex`` on one DynamoDB table: the reads and writes. Keys are built in ``keys``; which
posting list a search drives on is decided in ``plan``.

An instance is added with one TransactWriteItems: a conditional Put of the instance (so a
redelivered event changes nothing) and ADD updates of the series and study aggregates (so counts
are exact), plus the study's postings when the study is new (so a search right after a store sees
it: base-table reads, no GSI lag). A QIDO query runs the plan (never a Scan), then checks every
predicate with ``search`` on the hydrated study items.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ..cloud_errors import translating
from ..errors import ServiceUnavailable
from ..ports import AddOutcome
from ..records import InstanceRecord, SeriesSummary, StoredInstance, StudySummary
from ..search import results
from ..search.ordering import instance_order, series_order, study_order
from ..search.query import Query
from . import keys
from .keys import META, instance_sk, series_sk, study_pk
from .plan import ByDate, ByPostings, ByUids, plan_studies

_ser = TypeSerializer()
_des = TypeDeserializer()
_RETRIES = 6
#: Error codes this adapter interprets itself; every other failure is translated (``cloud_errors``).
_HANDLED = ("TransactionCanceledException", "ConditionalCheckFailedException")
#: Upper bound of candidates one search reads from a non-ordered posting list.
MAX_CANDIDATES = 10_000


def _item(**values: Any) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def _values(**values: Any) -> dict[str, Any]:
    """ExpressionAttributeValues: ``_values(a=1)`` is ``{":a": {"N": "1"}}``."""
    return {f":{k}": _ser.serialize(v) for k, v in values.items() if v is not None}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _des.deserialize(v) for k, v in item.items()}


class DynamoDbIndex:
    def __init__(self, client: Any, table: str) -> None:
        self._db = translating(client, "DynamoDB", expected=_HANDLED)
        self.table = table

    # -- writes ---------------------------------------------------------------------------------

    def indexed_md5(self, study_uid: str, series_uid: str, sop_uid: str) -> str | None:
        got = self._db.get_item(
            TableName=self.table,
            Key=_item(pk=study_pk(study_uid), sk=instance_sk(series_uid, sop_uid)),
            ProjectionExpression="md5",
            ConsistentRead=True,
        ).get("Item")
        return _plain(got)["md5"] if got else None

    def add_instance(self, record: InstanceRecord) -> AddOutcome:
        for attempt in range(_RETRIES):
            meta = self._db.get_item(
                TableName=self.table,
                Key=_item(pk=study_pk(record.study_uid), sk=META),
                ProjectionExpression="mods",
                ConsistentRead=True,
            ).get("Item")
            known_mods = set(_plain(meta).get("mods", set())) if meta else set()
            actions = self._actions(record, study_exists=meta is not None, known_mods=known_mods)
            try:
                self._db.transact_write_items(TransactItems=actions)
                return AddOutcome.ADDED
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    return AddOutcome.ALREADY_INDEXED
                if not reasons and self.indexed_md5(record.study_uid, record.series_uid, record.sop_uid):
                    return AddOutcome.ALREADY_INDEXED
                # The study was created concurrently, or a transaction conflict: read again and retry.
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise ServiceUnavailable(
            "the index is busy with concurrent writes to this study; send the instance again", retry_after=1
        )

    def _actions(self, record: InstanceRecord, *, study_exists: bool, known_mods: set[str]) -> list[dict[str, Any]]:
        pk = study_pk(record.study_uid)
        meta_blob = zlib.compress(json.dumps(record.metadata).encode()) if record.metadata is not None else None
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": _item(
                        pk=pk,
                        sk=instance_sk(record.series_uid, record.sop_uid),
                        type="instance",
                        attrs=json.dumps(record.instance),
                        meta=Binary(meta_blob) if meta_blob else None,
                        **keys.instance_fields(record),
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _item(pk=pk, sk=series_sk(record.series_uid)),
                    "UpdateExpression": "SET #t = :t, attrs = if_not_exists(attrs, :a) ADD n_inst :one",
                    "ExpressionAttributeNames": {"#t": "type"},
                    "ExpressionAttributeValues": _values(t="series", a=json.dumps(record.series), one=1),
                }
            },
        ]
        mods = {record.modality} if record.modality else set()
        if study_exists:
            update = "ADD n_inst :one, series :s" + (", mods :m" if mods else "")
            values = _values(one=1, s={record.series_uid}, m=mods or None)
            actions.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _item(pk=pk, sk=META),
                        "UpdateExpression": update,
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeValues": values,
                    }
                }
            )
            if record.modality and record.modality not in known_mods:
                actions.append(
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": _item(
                                pk=keys.modality_posting(record.modality), sk=record.study_uid, study=record.study_uid
                            ),
                        }
                    }
                )
        else:
            actions.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _item(
                            pk=pk,
                            sk=META,
                            type="study",
                            attrs=json.dumps(record.study),
                            n_inst=1,
                            series={record.series_uid},
                            mods=mods or None,
                        ),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
            for ppk, psk in keys.postings(record):
                actions.append(
                    {"Put": {"TableName": self.table, "Item": _item(pk=ppk, sk=psk, study=record.study_uid)}}
                )
        return actions

    # -- reads ----------------------------------------------------------------------------------

    def _query(self, consistent: bool = False, **kwargs: Any) -> Iterator[dict[str, Any]]:
        kwargs = {"TableName": self.table, "ConsistentRead": consistent, **kwargs}
        while True:
            page = self._db.query(**kwargs)
            for item in page.get("Items", []):
                yield _plain(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _study(self, item: dict[str, Any]) -> StudySummary:
        return StudySummary(
            study_uid=item["pk"][3:],
            attrs=json.loads(item["attrs"]),
            modalities=tuple(sorted(item.get("mods", set()))),
            series_count=len(item.get("series", set())),
            instance_count=int(item.get("n_inst", 0)),
        )

    def get_study(self, study_uid: str) -> StudySummary | None:
        got = self._db.get_item(
            TableName=self.table, Key=_item(pk=study_pk(study_uid), sk=META), ConsistentRead=True
        ).get("Item")
        return self._study(_plain(got)) if got else None

    def _hydrate(self, study_uids: list[str]) -> list[StudySummary]:
        out: list[StudySummary] = []
        for start in range(0, len(study_uids), 100):
            wanted = [_item(pk=study_pk(u), sk=META) for u in study_uids[start : start + 100]]
            out.extend(self._study(_plain(i)) for i in self._batch_get(wanted))
        return out

    def _batch_get(self, wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Consistent BatchGetItem of at most 100 keys, retrying unprocessed ones."""
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {self.table: {"Keys": wanted, "ConsistentRead": True}}
        while request:
            got = self._db.batch_get_item(RequestItems=request)
            items.extend(got.get("Responses", {}).get(self.table, []))
            request = got.get("UnprocessedKeys") or {}
        return items

    def _posting_uids(self, pk: str, begins: str | None = None) -> list[str]:
        cond = "pk = :pk" + (" AND begins_with(sk, :b)" if begins else "")
        values = _values(pk=pk, b=begins)
        uids: list[str] = []
        for item in self._query(
            KeyConditionExpression=cond, ExpressionAttributeValues=values, ProjectionExpression="study"
        ):
            uids.append(item["study"])
            if len(uids) >= MAX_CANDIDATES:
                break
        return uids

    def _candidates(self, plan: ByUids | ByPostings) -> list[str]:
        if isinstance(plan, ByUids):
            return list(plan.uids)
        found: dict[str, None] = {}
        for partition in plan.partitions:
            found.update(dict.fromkeys(self._posting_uids(partition, plan.begins)))
        return list(found)

    def search_studies(self, query: Query) -> tuple[list[StudySummary], bool]:
        plan = plan_studies(query)
        if not isinstance(plan, ByDate):
            found = [
                s
                for s in self._hydrate(self._candidates(plan))
                if query.matches(results.study_attrs_with_aggregates(s))
            ]
            found.sort(key=study_order, reverse=True)
            return results.page(found, query)
        # Walk the date postings newest first, stopping once the page (+1) is full.
        cond, values = "pk = :pk", _values(pk=keys.DATE_POSTINGS)
        if plan.low is not None:
            cond += " AND sk BETWEEN :lo AND :hi"
            values.update(_values(lo=plan.low, hi=plan.high))
        elif plan.prefix is not None:
            cond += " AND begins_with(sk, :d)"
            values.update(_values(d=plan.prefix))
        wanted = query.offset + query.limit + 1
        matched: list[StudySummary] = []
        batch: list[str] = []
        postings_iter = self._query(
            KeyConditionExpression=cond,
            ExpressionAttributeValues=values,
            ProjectionExpression="study",
            ScanIndexForward=False,
            Limit=min(wanted, 100),
        )
        for item in postings_iter:
            batch.append(item["study"])
            if len(batch) >= min(100, wanted - len(matched)):
                matched.extend(s for s in self._hydrate(batch) if query.matches(results.study_attrs_with_aggregates(s)))
                batch = []
                if len(matched) >= wanted:
                    break
        if batch and len(matched) < wanted:
            matched.extend(s for s in self._hydrate(batch) if query.matches(results.study_attrs_with_aggregates(s)))
        matched.sort(key=study_order, reverse=True)
        return results.page(matched, query)

    def _series_items(self, study_uid: str) -> dict[str, dict[str, Any]]:
        return {
            item["sk"][3:]: item
            for item in self._query(
                KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                ExpressionAttributeValues=_values(pk=study_pk(study_uid), p="SE#"),
            )
        }

    def search_series(self, study_uid: str, query: Query) -> tuple[list[SeriesSummary], bool]:
        found = []
        for uid, item in self._series_items(study_uid).items():
            summary = SeriesSummary(study_uid, uid, json.loads(item["attrs"]), int(item.get("n_inst", 0)))
            if query.matches(results.series_attrs_with_aggregates(summary)):
                found.append(summary)
        found.sort(key=series_order)
        return results.page(found, query)

    def _instances(
        self, study_uid: str, series_uid: str | None, sop_uid: str | None, with_metadata: bool
    ) -> list[StoredInstance]:
        if sop_uid is not None and series_uid is not None:
            # One round trip for the instance and its series item.
            wanted = [
                _item(pk=study_pk(study_uid), sk=sk) for sk in (instance_sk(series_uid, sop_uid), series_sk(series_uid))
            ]
            found = [_plain(i) for i in self._batch_get(wanted)]
            series = {i["sk"][3:]: i for i in found if i["sk"].startswith("SE#")}
            items = [i for i in found if i["sk"].startswith("IN#")]
        else:
            series = self._series_items(study_uid)
            prefix = f"IN#{series_uid}#" if series_uid else "IN#"
            kwargs: dict[str, Any] = {
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
                "ExpressionAttributeValues": _values(pk=study_pk(study_uid), p=prefix),
            }
            if not with_metadata:
                names = {f"#{attr}": attr for attr in keys.INSTANCE_FIELDS.values()}
                kwargs["ProjectionExpression"] = ", ".join(["sk", "attrs", *names])
                kwargs["ExpressionAttributeNames"] = names
            items = list(self._query(**kwargs))
        out = []
        for item in items:
            _, se, sop = item["sk"].split("#", 2)
            if sop_uid is not None and sop != sop_uid:
                continue
            meta = item.get("meta")
            out.append(
                StoredInstance(
                    study_uid=study_uid,
                    series_uid=se,
                    sop_uid=sop,
                    attrs=json.loads(item["attrs"]),
                    series_attrs=json.loads(series[se]["attrs"]) if se in series else {},
                    metadata=json.loads(zlib.decompress(bytes(meta.value))) if meta is not None else None,
                    **keys.fields_of_item(item),
                )
            )
        return sorted(out, key=instance_order)

    def search_instances(
        self, study_uid: str, series_uid: str | None, query: Query
    ) -> tuple[list[StoredInstance], bool]:
        found = [
            i
            for i in self._instances(study_uid, series_uid, None, with_metadata=False)
            if query.matches(results.instance_attrs(i))
        ]
        return results.page(found, query)

    def list_instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None, *, with_metadata: bool = False
    ) -> list[StoredInstance]:
        return self._instances(study_uid, series_uid, sop_uid, with_metadata=with_metadata)
