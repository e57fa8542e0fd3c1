"""``MemoryIndex``: the index (``core``) over the in-memory item store, for unit tests and
``make dev``. It runs the same plans and reads the same items as the DynamoDB index. Thread-safe."""

from __future__ import annotations

from .core import ItemIndex
from .items import MemoryItems


class MemoryIndex(ItemIndex):
    def __init__(self) -> None:
        super().__init__(MemoryItems())
