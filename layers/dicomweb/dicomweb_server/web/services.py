"""What the routes are given: settings and the storage ports (dependency injection, no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from ..ports import BlobStore, MetadataIndex
from ..settings import Settings
from ..store.uploads import UploadPorts


@dataclass(frozen=True)
class Services:
    settings: Settings
    index: MetadataIndex
    blobs: BlobStore
    #: The upload sessions' items and presigned targets (the store service only).
    uploads: UploadPorts | None = None
