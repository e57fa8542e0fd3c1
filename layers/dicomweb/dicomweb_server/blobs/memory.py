"""An in-memory ``BlobStore`` for unit tests and ``make dev``. Thread-safe."""

from __future__ import annotations

import threading

from ..ports import BlobNotFound


class MemoryBlobStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, content_type: str = "application/dicom") -> None:
        with self._lock:
            self.objects[key] = bytes(data)

    def get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise BlobNotFound(key) from None

    def copy(self, source_key: str, target_key: str) -> None:
        self.put(target_key, self.get(source_key))

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)
