"""WADO-RS: retrieve studies, series and instances as Part-10 objects, and their metadata
(PS3.18 §10.4).

Sizes come from the index, so an oversized response is refused (413) before any object is read.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.uid import UID, JPEGBaseline8Bit

from ..blobs.keys import instance_key
from ..errors import NotAcceptable, NotFound, PayloadTooLarge
from ..formats import dicom_json, multipart
from ..formats.media import DICOM, JPEG_TYPES, MULTIPART_RELATED, MediaType, negotiate_dicom_model, parse_accept
from ..ports import BlobStore
from ..records import DicomJson, StoredInstance
from ..store.ingest import parse_part10
from . import render as pixels

#: Multipart framing per part (boundary line and headers), for size planning.
_PART_OVERHEAD = 200


@dataclass(frozen=True)
class InstanceFormat:
    """How the client wants instances: multipart or a single ``application/dicom`` body, and in which
    transfer syntax (None = as stored)."""

    multipart: bool
    transfer_syntax: str | None
    #: Every frame of every image instance as a JPEG part instead of Part-10 objects.
    jpeg_frames: bool = False


def negotiate_instances(accept: str | None, *, single_allowed: bool) -> InstanceFormat:
    """Choose the representation of a retrieve of instances (PS3.18 §8.7.3.5.2, Table 8.7.3-2)."""
    ranges = parse_accept(accept)
    for r in ranges:
        ts = r.param("transfer-syntax")
        ts = None if ts in (None, "*") else ts
        if r.type == MULTIPART_RELATED:
            part = (r.param("type") or DICOM).lower()
            if part in (DICOM, "*/*", "application/*"):
                return InstanceFormat(True, ts)
            if part in JPEG_TYPES:
                return InstanceFormat(True, JPEGBaseline8Bit, jpeg_frames=True)
        elif r.type == DICOM and single_allowed:
            return InstanceFormat(False, ts)
        elif r.type in ("*/*", "application/*"):
            return InstanceFormat(True, None)
    offered = 'multipart/related; type="application/dicom", multipart/related; type="image/jpeg"' + (
        ", application/dicom" if single_allowed else ""
    )
    raise NotAcceptable(f"cannot satisfy Accept: {accept}; this resource is available as {offered}")


def negotiate_metadata(accept: str | None) -> str:
    return negotiate_dicom_model(accept, "metadata")


def check_size(instances: Sequence[StoredInstance], limit: int, resource: str, base_url: str) -> None:
    planned = sum(i.size + _PART_OVERHEAD for i in instances)
    if planned <= limit:
        return
    series = sorted({i.series_uid for i in instances})
    hint = "retrieve its series one by one" if len(series) > 1 else "retrieve its instances one by one"
    first = instances[0]
    example = (
        f"{base_url}/studies/{first.study_uid}/series/{series[0]}"
        if len(series) > 1
        else f"{base_url}/studies/{first.study_uid}/series/{first.series_uid}/instances/{first.sop_uid}"
    )
    raise PayloadTooLarge(
        f"the {resource} is {planned} bytes, above this server's response limit of {limit} bytes; "
        f"{hint} (for example {example})"
    )


def transcode(data: bytes, source: str, target: str, sop_uid: str) -> bytes:
    ds = dcmread(io.BytesIO(data))
    if UID(source).is_compressed:
        if UID(target).is_compressed:
            raise NotAcceptable(f"cannot transcode instance {sop_uid} from {source} to {target}")
        try:
            ds.decompress()
        except Exception:
            raise NotAcceptable(
                f"instance {sop_uid} is stored as {source} and cannot be decompressed here; "
                "ask with transfer-syntax=* to receive it as stored"
            ) from None
    elif UID(target).is_compressed:
        raise NotAcceptable(
            f"instance {sop_uid} is stored as {source}; compressing to {target} is not supported, "
            "ask with transfer-syntax=* to receive it as stored"
        )
    ds.file_meta.TransferSyntaxUID = UID(target)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def load_instances(
    instances: Sequence[StoredInstance], blobs: BlobStore, fmt: InstanceFormat
) -> list[tuple[bytes, str]]:
    """The Part-10 bytes of each instance in the requested transfer syntax, with that syntax."""
    out: list[tuple[bytes, str]] = []
    for inst in instances:
        data = blobs.get(instance_key(inst.study_uid, inst.series_uid, inst.sop_uid))
        ts = inst.transfer_syntax_uid
        if fmt.transfer_syntax and fmt.transfer_syntax != ts:
            data = transcode(data, ts, fmt.transfer_syntax, inst.sop_uid)
            ts = fmt.transfer_syntax
        out.append((data, ts))
    return out


def render_instances(
    instances: Sequence[StoredInstance],
    blobs: BlobStore,
    fmt: InstanceFormat,
    *,
    boundary: str | None = None,
) -> tuple[bytes, str]:
    """The response body and Content-Type for a retrieve of ``instances``."""
    if not instances:
        raise NotFound("no instances")
    loaded = load_instances(instances, blobs, fmt)
    if not fmt.multipart:
        data, ts = loaded[0]
        return data, str(MediaType(DICOM, {"transfer-syntax": ts}))
    parts = [(data, {"Content-Type": str(MediaType(DICOM, {"transfer-syntax": ts}))}) for data, ts in loaded]
    return multipart.encode(parts, DICOM, boundary=boundary)


def render_jpeg_frames(
    instances: Sequence[StoredInstance], blobs: BlobStore, base_url: str, *, boundary: str | None = None
) -> tuple[bytes, str]:
    """Every frame of every image instance as a JPEG part (instances without pixels are skipped)."""
    parts: list[tuple[bytes, dict[str, str]]] = []
    for inst in instances:
        ds = dcmread(io.BytesIO(blobs.get(instance_key(inst.study_uid, inst.series_uid, inst.sop_uid))))
        if "PixelData" not in ds:
            continue
        location = f"{base_url}/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"
        for number in range(1, pixels.frame_count(ds) + 1):
            parts.append(
                (
                    pixels.frame_as_jpeg(ds, number),
                    {
                        "Content-Type": f"image/jpeg; transfer-syntax={JPEGBaseline8Bit}",
                        "Content-Location": f"{location}/frames/{number}",
                    },
                )
            )
    if not parts:
        raise NotAcceptable("none of the requested instances has pixel data to return as image/jpeg")
    return multipart.encode(parts, "image/jpeg", boundary=boundary)


def metadata(instances: Sequence[StoredInstance], blobs: BlobStore) -> list[DicomJson]:
    """WADO-RS metadata for each instance (PS3.18 §10.4.1.1.2), without bulk data."""
    out: list[DicomJson] = []
    for inst in instances:
        meta = inst.metadata
        if meta is None:  # too large for the index: read it from the object
            ds = parse_part10(blobs.get(instance_key(inst.study_uid, inst.series_uid, inst.sop_uid)))
            meta = dicom_json.metadata(ds)
        out.append(meta)
    return out


__all__ = [
    "InstanceFormat",
    "check_size",
    "metadata",
    "negotiate_instances",
    "negotiate_metadata",
    "render_instances",
    "render_jpeg_frames",
]
