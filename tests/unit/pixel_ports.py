"""Ports for the pixel tests: the in-memory store counting what it reads, and one instance stored
on in-memory ports with an app over them."""

from __future__ import annotations

import io
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.store.ingest import ingest
from dicomweb_server.web import create_app


class CountingBlobs(MemoryBlobStore):
    """The in-memory store, counting whole reads and ranged reads of stored objects, and bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.bytes = 0
        self.count_lock = threading.Lock()

    def _count(self, key: str, op: str, n: int) -> None:
        if key.startswith("studies/"):
            with self.count_lock:
                self.calls[op] += 1
                self.bytes += n

    def get(self, key: str) -> bytes:
        data = super().get(key)
        self._count(key, "get", len(data))
        return data

    def get_range(self, key: str, start: int, end: int) -> bytes:
        data = MemoryBlobStore.get(self, key)[start : end + 1]
        self._count(key, "range", len(data))
        return data

    def reset(self) -> None:
        self.calls.clear()
        self.bytes = 0


@dataclass
class Stored:
    data: bytes
    frames: list[bytes]
    index: MemoryIndex = field(default_factory=MemoryIndex)
    blobs: CountingBlobs = field(default_factory=CountingBlobs)

    @property
    def url(self) -> str:
        ds = dcmread(io.BytesIO(self.data), stop_before_pixels=True)
        return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"

    def app(self, **settings: Any) -> Any:
        return create_app(Settings(bucket_name="b", table_name="t", **settings), index=self.index, blobs=self.blobs)

    def client(self, **settings: Any) -> TestClient:
        return TestClient(self.app(**settings))


def store_instance(data: bytes, frames: list[bytes]) -> Stored:
    stored = Stored(data, frames)
    ingest(data, index=stored.index, blobs=stored.blobs)
    stored.blobs.reset()
    return stored
