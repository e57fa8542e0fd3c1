"""What the routes are given: settings and the storage ports (dependency injection, no globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..ports import BlobStore, MetadataIndex
from ..settings import Settings
from ..store.uploads import UploadPorts

if TYPE_CHECKING:
    from ..store.parallel import Parser


@dataclass(frozen=True)
class Services:
    settings: Settings
    index: MetadataIndex
    blobs: BlobStore
    #: The upload sessions' items and presigned targets (the store service only).
    uploads: UploadPorts | None = None
    #: How STOW-RS runs the parse step (``store.parallel``: a pool of processes in the dev server);
    #: None: in the request's own thread.
    parser: Parser | None = None
