"""Test doubles wrapped around the real ports and clients."""

from __future__ import annotations

import threading
from typing import Any

from dicomweb_server.errors import StorageError


class FailingIndex:
    """The real index, except that writing to it fails (DynamoDB down, throttled, ...)."""

    def __init__(self, index):
        self._index = index

    def __getattr__(self, name):
        return getattr(self._index, name)

    def add_instance(self, record):
        raise StorageError("the index is unavailable")


class Untransacted:
    """A DynamoDB client that runs each action of TransactWriteItems as its own call, for loading
    test data only: moto copies the whole table for every transaction, which makes loading a hundred
    studies take seconds. Same items and conditions, just not atomic."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        for action in TransactItems:
            ((kind, params),) = action.items()
            {"Put": self._client.put_item, "Update": self._client.update_item}[kind](**params)
        return {}


class Serialized:
    """A boto3 client on moto whose calls run one at a time. moto is not thread-safe (two
    concurrent transactions can both pass their conditions, and its tables change size while
    another thread iterates them); DynamoDB and S3 decide each call atomically. Writers on
    several threads still interleave between calls, which is where races happen."""

    _lock = threading.Lock()

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._client, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            with Serialized._lock:
                return found(*args, **kwargs)

        return call


def pair(page: Any) -> tuple[list[Any], bool]:
    """A search ``Page`` as (items, more), the two things most contract tests compare."""
    return page.items, page.more
