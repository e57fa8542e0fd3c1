"""WADO-RS instances (PS3.18 §10.4.1.1.1): studies, series and instances as Part-10 objects in the
negotiated transfer syntax, or every frame as JPEG."""

from __future__ import annotations

import io
from collections.abc import Sequence

from pydicom import dcmread
from pydicom.uid import UID, JPEGBaseline8Bit

from ..blobs.keys import stored_key
from ..errors import NotAcceptable, NotFound
from ..formats import multipart
from ..formats.media import DICOM, MediaType
from ..ports import BlobStore
from ..records import StoredInstance
from . import frames
from .negotiation import InstanceFormat


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
        data = blobs.get(stored_key(inst))
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
        ds = dcmread(io.BytesIO(blobs.get(stored_key(inst))))
        if "PixelData" not in ds:
            continue
        location = f"{base_url}/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"
        for number in range(1, frames.frame_count(ds) + 1):
            parts.append(
                (
                    frames.frame_as_jpeg(ds, number),
                    {
                        "Content-Type": f"image/jpeg; transfer-syntax={JPEGBaseline8Bit}",
                        "Content-Location": f"{location}/frames/{number}",
                    },
                )
            )
    if not parts:
        raise NotAcceptable("none of the requested instances has pixel data to return as image/jpeg")
    return multipart.encode(parts, "image/jpeg", boundary=boundary)
