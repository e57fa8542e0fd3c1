"""Rendered and thumbnail resources at study, series, instance and frame level (PS3.18 §8.3.5,
§10.4.1.1.4 rendered, §10.4.1.1.5 thumbnail): which instance and frames a request shows, in which
image type, and the thumbnail cache.

* **Which instance.** An instance or frame request shows itself. A study or series shows a
  representative instance: the middle image (by retrieve order: series, then Instance Number) of
  the series (for a study, of its first series that has images). Instances without pixel data
  (SR, encapsulated documents) are never chosen; a study or series with no image is a 406.
* **Which frames.** A frame request shows the frames it lists: one frame as JPEG, PNG or GIF,
  several only as an animated GIF. An instance, series or study shows frame 1, or, as GIF, every
  frame of a multi-frame instance as an animation. A thumbnail shows one frame: the first listed,
  else the middle frame of a multi-frame instance.
* **Thumbnails** fit in ``Settings.thumbnail_size`` pixels (never enlarged) unless the request
  gives a ``viewport``, and are cached in the bucket after the first request
  (``blobs.keys.thumbnail_key``: the key names the instance's MD5, so an instance stored again
  with other content gets a new thumbnail). Writers of one key write the same bytes; a failed
  cache write is logged and the image is still answered.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.dataset import Dataset

from ..blobs.keys import stored_key, thumbnail_key
from ..errors import NotAcceptable, StorageError
from ..formats.media import RENDERED_TYPES, parse_accept
from ..logsafe import exception_summary
from ..ports import BlobNotFound, BlobStore
from ..records import StoredInstance
from . import frame_source, negotiation, render
from . import size_policy as policy

log = logging.getLogger("dicomweb")

#: JPEG quality of thumbnails (small images: artefacts show less than bytes do).
THUMBNAIL_QUALITY = 80
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif"}


@dataclass(frozen=True)
class Presentation:
    """How to show the pixels: the request's window, viewport and quality."""

    window: render.Window | None = None
    viewport: render.Viewport | None = None
    quality: int = 90


def has_image(instance: StoredInstance) -> bool:
    """Whether the index says the instance has pixels (Rows and Columns above 0)."""
    return policy.decoded_frame_bytes(instance) > 0


def require_image(instance: StoredInstance) -> None:
    if not has_image(instance):
        raise NotAcceptable(
            f"instance {instance.sop_uid} has no pixel data; it cannot be rendered as {', '.join(RENDERED_TYPES)}"
        )


def representative(instances: Sequence[StoredInstance], what: str, uid: str) -> StoredInstance:
    """The instance a study or series is shown by: the middle image of its first series with images."""
    images = [i for i in instances if has_image(i)]
    if not images:
        raise NotAcceptable(f"{what} {uid} has no instance with pixel data to render")
    series = [i for i in images if i.series_uid == images[0].series_uid]
    return series[len(series) // 2]


def negotiate(accept: str | None, *, several_frames: bool) -> str:
    """The image type: as for one frame (JPEG unless PNG or GIF is preferred), but only GIF, the one
    animated type, for several frames."""
    if not several_frames:
        return negotiation.negotiate_rendered(accept)
    for r in parse_accept(accept):
        if r.covers("image/gif"):
            return "image/gif"
    raise NotAcceptable(
        f"cannot satisfy Accept: {accept}; several frames are rendered only as image/gif "
        "(an animation): ask for image/gif, or for one frame"
    )


def default_frames(instance: StoredInstance, media_type: str) -> list[int]:
    """The frames an instance, series or study rendering shows: all of them as GIF, else frame 1."""
    if media_type == "image/gif":
        return list(range(1, max(instance.number_of_frames, 1) + 1))
    return [1]


def thumbnail_frame(instance: StoredInstance) -> int:
    """The frame a thumbnail of a whole instance shows: the middle one."""
    return max(instance.number_of_frames, 1) // 2 + 1 if instance.number_of_frames > 1 else 1


def planned_size(instance: StoredInstance, frames: int) -> policy.Size:
    """An upper bound before anything is read: one rendered frame's bound per frame."""
    one = policy.rendered_size(instance)
    return policy.Size(one.bytes * max(frames, 1), exact=False)


def _load(blobs: BlobStore, instance: StoredInstance) -> Dataset:
    return dcmread(io.BytesIO(blobs.get(stored_key(instance))))


def _render(
    blobs: BlobStore,
    instance: StoredInstance,
    frames: Sequence[int],
    media_type: str,
    *,
    window: render.Window | None = None,
    quality: int = 90,
    size: tuple[int, int] | None = None,
    viewport: render.Viewport | None = None,
) -> bytes:
    """``frames`` of the instance rendered: for a multi-frame instance whose frame table is known,
    from the object's header and each frame's byte range only (one single-frame dataset per frame);
    else from the whole object (for a single frame, the whole object is one read of about the same
    bytes instead of two)."""
    source = frame_source.of_instance(instance, blobs) if instance.number_of_frames > 1 else None
    if source is None:
        ds = _load(blobs, instance)
        return render.render_frames(
            ds, frames, media_type, window=window, quality=quality, size=size, viewport=viewport
        )
    return render.render_each(
        ((source.dataset(n), 1) for n in frames),
        len(frames),
        media_type,
        duration=render.frame_duration_ms(source.header()),
        window=window,
        quality=quality,
        size=size,
        viewport=viewport,
    )


def render_instance(
    blobs: BlobStore, instance: StoredInstance, frames: Sequence[int], media_type: str, presentation: Presentation
) -> bytes:
    """Render ``frames`` (1-based) of the instance as ``media_type``."""
    require_image(instance)
    return _render(
        blobs,
        instance,
        frames,
        media_type,
        window=presentation.window,
        quality=presentation.quality,
        viewport=presentation.viewport,
    )


def thumbnail_variant(frame: int, media_type: str, viewport: render.Viewport | None, size: int) -> str:
    """The last part of a thumbnail's key: frame, size or viewport, and image type."""
    shape = f"vp{viewport.key()}" if viewport else f"fit{size}"
    return f"f{frame}-{shape}.{_EXTENSIONS[media_type]}"


def thumbnail(
    blobs: BlobStore,
    instance: StoredInstance,
    frame: int,
    media_type: str,
    *,
    viewport: render.Viewport | None,
    size: int,
) -> bytes:
    """The cached thumbnail of ``frame``, rendered and cached on the first request (one GET when
    cached; else GET, the instance's GET, and a PUT)."""
    require_image(instance)
    key = thumbnail_key(
        instance.study_uid,
        instance.series_uid,
        instance.sop_uid,
        instance.md5,
        thumbnail_variant(frame, media_type, viewport, size),
    )
    try:
        return blobs.get(key)
    except BlobNotFound:
        pass
    body = _render(
        blobs,
        instance,
        [frame],
        media_type,
        quality=THUMBNAIL_QUALITY,
        size=None if viewport else (size, size),
        viewport=viewport,
    )
    try:
        blobs.put(key, body, media_type)
    except StorageError as exc:  # the image is still good; the next request renders it again
        log.warning("thumbnail not cached", extra=exception_summary(exc))
    return body
