"""Upload sessions in the index table, and their in-memory twin (``ports.UploadSessions``).

=====================  ==========================  ==========================================
pk                     sk                          what
=====================  ==========================  ==========================================
``UP#{session}``       ``#META``                   the session: ``files``, ``expires``, ``mp``
                                                   (file number → [upload id, parts]), ``ttl``
``UP#{session}``       ``F#{number:06d}``          one file's outcome: ``state``, ``token``, the
                                                   instance's UIDs or ``reason`` / ``msg``
``UP#{session}``       ``R#{number:06d}#{token}``  an upload the session refused
=====================  ==========================  ==========================================

The session item is written once (``attribute_not_exists``) and never changed; every file's
outcome is an item of its own written under a condition on its claim, so the files of a session
finish in parallel Lambdas with no read-modify-write of a shared item. ``ttl`` removes the items
(the table's TimeToLiveSpecification) some days after the URLs expire.
"""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from ..cloud_errors import translating
from ..ports import Claim, UploadedFile, UploadSession

_META = "#META"
_HANDLED = ("ConditionalCheckFailedException",)


def session_pk(session_id: str) -> str:
    return f"UP#{session_id}"


def file_sk(number: int) -> str:
    return f"F#{number:06d}"


def refused_sk(number: int, token: str) -> str:
    return f"R#{number:06d}#{token}"


def _outcome_item(outcome: UploadedFile) -> dict[str, Any]:
    item: dict[str, Any] = {"n": outcome.number, "state": outcome.state, "token": outcome.token}
    for name, value in (
        ("cls", outcome.sop_class_uid),
        ("sop", outcome.sop_uid),
        ("study", outcome.study_uid),
        ("series", outcome.series_uid),
        ("msg", outcome.message),
    ):
        if value:
            item[name] = value
    if outcome.reason:
        item["reason"] = outcome.reason
    if outcome.warnings:
        item["warn"] = json.dumps([list(w) for w in outcome.warnings])
    return item


def _outcome(item: dict[str, Any]) -> UploadedFile:
    return UploadedFile(
        number=int(item["n"]),
        state=str(item["state"]),
        token=str(item.get("token", "")),
        sop_class_uid=str(item.get("cls", "")),
        sop_uid=str(item.get("sop", "")),
        study_uid=str(item.get("study", "")),
        series_uid=str(item.get("series", "")),
        reason=int(item.get("reason", 0)),
        message=str(item.get("msg", "")),
        refused=str(item["sk"]).startswith("R#"),
        warnings=tuple((int(r), str(m)) for r, m in json.loads(item["warn"])) if item.get("warn") else (),
    )


def _session(item: dict[str, Any]) -> UploadSession:
    return UploadSession(
        session_id=str(item["pk"])[3:],
        files=int(item["files"]),
        expires=int(item["expires"]),
        multipart={int(n): (str(v[0]), int(v[1])) for n, v in (item.get("mp") or {}).items()},
    )


class MemoryUploadSessions:
    """``UploadSessions`` in memory, with the same conditions (for tests and ``make dev``)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def create(self, session: UploadSession, keep_until: int) -> None:
        with self._lock:
            key = (session_pk(session.session_id), _META)
            if key in self._items:
                raise ValueError("session exists")
            self._items[key] = {
                "pk": key[0],
                "sk": _META,
                "files": session.files,
                "expires": session.expires,
                "mp": {str(n): [u, p] for n, (u, p) in session.multipart.items()},
                "ttl": keep_until,
            }

    def get(self, session_id: str) -> UploadSession | None:
        item = self._items.get((session_pk(session_id), _META))
        return _session(item) if item else None

    def claim(self, session_id: str, number: int, token: str, keep_until: int) -> tuple[Claim, int]:
        key = (session_pk(session_id), file_sk(number))
        with self._lock:
            held = self._items.get(key)
            if held is None or (held["token"] == token and held["state"] == "indexing"):
                tries = int((held or {}).get("tries", 0)) + 1
                self._items[key] = {
                    "pk": key[0], "sk": key[1], "n": number, "state": "indexing", "token": token, "tries": tries,
                }  # fmt: skip
                return Claim.CLAIMED, tries
            return (Claim.SETTLED if held["token"] == token else Claim.TAKEN), 0

    def settle(self, outcome: UploadedFile, session_id: str, keep_until: int, *, pending_only: bool = False) -> bool:
        key = (session_pk(session_id), file_sk(outcome.number))
        with self._lock:
            held = self._items.get(key)
            if (held is None) != (outcome.token == "") or (held is not None and held["token"] != outcome.token):
                return False
            if pending_only and (held is None or held["state"] != "indexing"):
                return False
            self._items[key] = {"pk": key[0], "sk": key[1], **_outcome_item(outcome), "ttl": keep_until}
            return True

    def refuse(self, outcome: UploadedFile, session_id: str, keep_until: int) -> None:
        key = (session_pk(session_id), refused_sk(outcome.number, outcome.token))
        with self._lock:
            self._items.setdefault(key, {"pk": key[0], "sk": key[1], **_outcome_item(outcome), "ttl": keep_until})

    def outcomes(self, session_id: str) -> list[UploadedFile]:
        pk = session_pk(session_id)
        with self._lock:
            items = [dict(v) for (p, s), v in sorted(self._items.items()) if p == pk and s != _META]
        return [_outcome(i) for i in items]


class DynamoDbUploadSessions:
    """``UploadSessions`` on the index table (consistent reads, conditional writes)."""

    def __init__(self, client: Any, table: str) -> None:
        self._db = translating(client, "DynamoDB", expected=_HANDLED)
        self.table = table

    def create(self, session: UploadSession, keep_until: int) -> None:
        self._db.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": session_pk(session.session_id)},
                "sk": {"S": _META},
                "files": {"N": str(session.files)},
                "expires": {"N": str(session.expires)},
                "mp": {
                    "M": {
                        str(n): {"L": [{"S": upload}, {"N": str(parts)}]}
                        for n, (upload, parts) in session.multipart.items()
                    }
                },
                "ttl": {"N": str(keep_until)},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )

    def get(self, session_id: str) -> UploadSession | None:
        got = self._db.get_item(
            TableName=self.table, Key={"pk": {"S": session_pk(session_id)}, "sk": {"S": _META}}, ConsistentRead=True
        )
        item = got.get("Item")
        return _session(_plain(item)) if item else None

    def claim(self, session_id: str, number: int, token: str, keep_until: int) -> tuple[Claim, int]:
        key = {"pk": {"S": session_pk(session_id)}, "sk": {"S": file_sk(number)}}
        try:
            got = self._db.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET #n = :n, #s = :indexing, #t = :t, #ttl = :ttl ADD #tries :one",
                ConditionExpression="attribute_not_exists(pk) OR (#t = :t AND #s = :indexing)",
                ExpressionAttributeNames={"#n": "n", "#t": "token", "#s": "state", "#ttl": "ttl", "#tries": "tries"},
                ExpressionAttributeValues={
                    ":n": {"N": str(number)},
                    ":t": {"S": token},
                    ":indexing": {"S": "indexing"},
                    ":ttl": {"N": str(keep_until)},
                    ":one": {"N": "1"},
                },
                ReturnValues="UPDATED_NEW",
            )
        except ClientError:  # the condition: another upload holds the file, or this upload settled it
            held = self._db.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item") or {}
            return (Claim.SETTLED if held.get("token", {}).get("S") == token else Claim.TAKEN), 0
        return Claim.CLAIMED, int(got.get("Attributes", {}).get("tries", {}).get("N", "1"))

    def settle(self, outcome: UploadedFile, session_id: str, keep_until: int, *, pending_only: bool = False) -> bool:
        names: dict[str, str] = {}
        if outcome.token:
            condition, names = "#t = :t", {"#t": "token"}
            values: dict[str, Any] = {":t": {"S": outcome.token}}
            if pending_only:
                condition += " AND #s = :indexing"
                names["#s"], values[":indexing"] = "state", {"S": "indexing"}
        else:  # a file that was never uploaded: only while no upload has claimed it
            condition, values = "attribute_not_exists(pk)", {}
        item = {k: _wire(v) for k, v in _outcome_item(outcome).items()}
        try:
            self._db.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": session_pk(session_id)},
                    "sk": {"S": file_sk(outcome.number)},
                    **item,
                    "ttl": {"N": str(keep_until)},
                },
                ConditionExpression=condition,
                **({"ExpressionAttributeNames": names} if names else {}),
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError:
            return False
        return True

    def refuse(self, outcome: UploadedFile, session_id: str, keep_until: int) -> None:
        item = {k: _wire(v) for k, v in _outcome_item(outcome).items()}
        self._db.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": session_pk(session_id)},
                "sk": {"S": refused_sk(outcome.number, outcome.token)},
                **item,
                "ttl": {"N": str(keep_until)},
            },
        )

    def outcomes(self, session_id: str) -> list[UploadedFile]:
        out: list[UploadedFile] = []
        start: dict[str, Any] | None = None
        while True:
            page = self._db.query(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND sk > :meta",
                ExpressionAttributeValues={":pk": {"S": session_pk(session_id)}, ":meta": {"S": _META}},
                ConsistentRead=True,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            out += [_outcome(_plain(i)) for i in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                return out


def _wire(value: Any) -> dict[str, Any]:
    return {"N": str(value)} if isinstance(value, int) else {"S": str(value)}


_des = TypeDeserializer()


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _ints(_des.deserialize(value)) for name, value in item.items()}


def _ints(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, list):
        return [_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    return value
