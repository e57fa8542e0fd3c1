"""WADO-RS metadata (PS3.18 §10.4.1.1.2): each instance's DICOM JSON without bulk data, from the
index when it holds it, else from the stored object."""

from __future__ import annotations

from collections.abc import Sequence

from ..blobs.keys import stored_key
from ..formats import dicom_json
from ..ports import BlobStore
from ..records import DicomJson, StoredInstance
from ..store.ingest import parse_part10


def metadata(instances: Sequence[StoredInstance], blobs: BlobStore) -> list[DicomJson]:
    """WADO-RS metadata for each instance, without bulk data."""
    out: list[DicomJson] = []
    for inst in instances:
        meta = inst.metadata
        if meta is None:  # too large for the index: read it from the object
            ds = parse_part10(blobs.get(stored_key(inst)))
            meta = dicom_json.metadata(ds)
        out.append(meta)
    return out
