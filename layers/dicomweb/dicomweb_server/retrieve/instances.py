"""WADO-RS instances (PS3.18 §10.4.1.1.1): studies, series and instances as Part-10 objects in the
negotiated transfer syntax, or every frame as JPEG."""

from __future__ import annotations

import io
from collections.abc import Sequence

from pydicom import dcmread
from pydicom.uid import JPEGBaseline8Bit

from ..blobs.keys import stored_key
from ..errors import NotAcceptable, NotFound
from ..formats import multipart
from ..formats.media import DICOM, MediaType
from ..ports import BlobStore
from ..records import StoredInstance
from . import frames
from .negotiation import InstanceFormat
from .transcode import Pixels, choose, not_producible, transcode, transcode_to_first

__all__ = ["chosen_syntax", "load_instance", "load_instances", "render_instances", "render_jpeg_frames", "transcode"]


def instance_url(base_url: str, inst: StoredInstance) -> str:
    """The instance's WADO-RS URL (each part's Content-Location)."""
    return f"{base_url}/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"


def chosen_syntax(inst: StoredInstance, fmt: InstanceFormat) -> str:
    """The transfer syntax ``inst`` is sent in: the client's first choice it can have, judged from the
    index before the object is read; a 406 naming what it can have when none fits."""
    px = Pixels.from_attrs(inst.attrs)
    ts = choose(inst.transfer_syntax_uid, px, fmt.transfer_syntaxes)
    if ts is None:
        raise not_producible(inst.sop_uid, inst.transfer_syntax_uid, px, fmt.transfer_syntaxes)
    return ts


def load_instance(inst: StoredInstance, data: bytes, fmt: InstanceFormat) -> tuple[bytes, str]:
    """One instance's bytes (as read from its object) in the first syntax of ``fmt`` it can have
    (the object can rule out what the index could not, e.g. a signed 8-bit image as JPEG)."""
    first = chosen_syntax(inst, fmt)
    wanted = fmt.transfer_syntaxes[fmt.transfer_syntaxes.index(first) :] if first in fmt.transfer_syntaxes else [first]
    ts, out = transcode_to_first(data, inst.transfer_syntax_uid, wanted, inst.sop_uid)
    return out, ts


def load_instances(
    instances: Sequence[StoredInstance], blobs: BlobStore, fmt: InstanceFormat
) -> list[tuple[bytes, str]]:
    """The Part-10 bytes of each instance in its negotiated transfer syntax, with that syntax."""
    for inst in instances:  # every 406 the index can foresee, before the first read
        chosen_syntax(inst, fmt)
    return [load_instance(inst, blobs.get(stored_key(inst)), fmt) for inst in instances]


def render_instances(
    instances: Sequence[StoredInstance],
    blobs: BlobStore,
    fmt: InstanceFormat,
    *,
    boundary: str | None = None,
    base_url: str = "",
) -> tuple[bytes, str]:
    """The response body and Content-Type for a retrieve of ``instances``; each part carries its
    Content-Location under ``base_url``."""
    if not instances:
        raise NotFound("no instances")
    loaded = load_instances(instances if fmt.multipart else instances[:1], blobs, fmt)
    if not fmt.multipart:
        data, ts = loaded[0]
        return data, str(MediaType(DICOM, {"transfer-syntax": ts}))
    parts = [
        (
            data,
            {
                "Content-Type": str(MediaType(DICOM, {"transfer-syntax": ts})),
                "Content-Location": location,
            },
        )
        for (data, ts), location in zip(loaded, (instance_url(base_url, i) for i in instances), strict=True)
    ]
    return multipart.encode(parts, DICOM, boundary=boundary)


def jpeg_frames_of(data: bytes) -> list[bytes]:
    """One JPEG per frame of a Part-10 object (none when it has no pixel data)."""
    ds = dcmread(io.BytesIO(data))
    if "PixelData" not in ds:
        return []
    return [frames.frame_as_jpeg(ds, number) for number in range(1, frames.frame_count(ds) + 1)]


def render_jpeg_frames(
    instances: Sequence[StoredInstance], blobs: BlobStore, base_url: str, *, boundary: str | None = None
) -> tuple[bytes, str]:
    """Every frame of every image instance as a JPEG part (instances without pixels are skipped)."""
    parts: list[tuple[bytes, dict[str, str]]] = []
    for inst in instances:
        ds = dcmread(io.BytesIO(blobs.get(stored_key(inst))))
        if "PixelData" not in ds:
            continue
        location = instance_url(base_url, inst)
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
