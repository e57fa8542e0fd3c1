"""An in-memory ``BlobStore`` for unit tests and ``make dev``. Thread-safe."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Iterator

from ..ports import BlobChanged, BlobNotFound, OpenedBlob, Readable


class MemoryBlobStore:
    def __init__(self, part_size: int = 5 * 1024**2) -> None:
        self.part_size = part_size
        self.parts: dict[str, int] = {}
        self.objects: dict[str, bytes] = {}
        self.modified: dict[str, float] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, content_type: str = "application/dicom") -> None:
        with self._lock:
            self.objects[key] = bytes(data)
            self.modified[key] = time.time()

    def get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise BlobNotFound(key) from None

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return self.get(key)[start : end + 1]

    def exists(self, key: str) -> bool:
        return key in self.objects

    def chunks(self, key: str, chunk_size: int) -> Iterator[bytes]:
        data = self.get(key)
        return (data[i : i + chunk_size] for i in range(0, len(data), chunk_size))

    def presign(self, key: str, seconds: int, content_type: str) -> str | None:
        return None

    def copy(
        self,
        source_key: str,
        target_key: str,
        *,
        if_match: str | None = None,
        version: str | None = None,
        size: int | None = None,
    ) -> None:
        data = self.get(source_key)
        if if_match is not None and if_match != _etag(data):
            raise BlobChanged(source_key)
        self.put(target_key, data)

    def open(self, key: str, *, version: str | None = None, if_match: str | None = None) -> OpenedBlob:
        data = self.get(key)
        etag = _etag(data)
        if if_match is not None and if_match != etag:
            raise BlobChanged(key)
        return OpenedBlob(io.BytesIO(data), len(data), None, etag)

    def put_stream(
        self, key: str, source: Readable, *, size_hint: int = 0, content_type: str = "application/dicom"
    ) -> int:
        """Parts of ``part_size`` joined once ``source`` is read to its end (as S3 completes a
        multipart upload: nothing is stored if ``source`` fails midway). ``parts`` counts the parts
        of each key written so, for tests."""
        parts: list[bytes] = []
        while True:
            chunk = bytearray()
            while len(chunk) < self.part_size:
                got = source.read(self.part_size - len(chunk))
                if not got:
                    break
                chunk += got
            if chunk:
                parts.append(bytes(chunk))
            if len(chunk) < self.part_size:
                break
        self.parts[key] = len(parts)
        self.put(key, b"".join(parts))
        return sum(map(len, parts))

    def get_version(self, key: str) -> tuple[bytes, str | None]:
        return self.get(key), None

    def delete(self, key: str, version: str | None = None) -> None:
        with self._lock:
            self.objects.pop(key, None)
            self.modified.pop(key, None)

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        with self._lock:
            found = sorted((k, self.modified[k]) for k in self.objects if k.startswith(prefix))
        yield from found


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'  # noqa: S324 - S3's ETag of a single-part object
