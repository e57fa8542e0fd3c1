"""Content negotiation for every retrieve resource (PS3.18 §8.7.3.5, Tables 8.7.3-2 to 8.7.3-5):
which representation of instances, metadata, frames or a rendered image the Accept header asks for.

``image/dicom+jpeg`` (seen in the wild, not in the standard) is served as ``image/jpeg``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from ..errors import NotAcceptable
from ..formats.media import (
    DICOM,
    JPEG_TYPES,
    MULTIPART_RELATED,
    OCTET_STREAM,
    RENDERED_TYPES,
    MediaType,
    negotiate_dicom_model,
    parse_accept,
)


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
    for r in parse_accept(accept):
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


@dataclass(frozen=True)
class FrameFormat:
    """What a frames request wants: ``jpeg`` (rendered or passed through) or ``octet`` (pixel bytes);
    for octet, the transfer syntax (None = as stored, ``*``), and whether the body is multipart."""

    kind: str
    transfer_syntax: str | None
    multipart: bool


def _octet_syntax(r: MediaType) -> str | None:
    """The transfer syntax asked for: ``*`` means as stored (None); absent means Explicit VR Little
    Endian, the default of application/octet-stream (PS3.18 Table 8.7.3-5)."""
    ts = r.param("transfer-syntax")
    if ts == "*":
        return None
    return ts or ExplicitVRLittleEndian


def negotiate_frames(accept: str | None, single_frame: bool) -> FrameFormat:
    """Choose the representation of a frames retrieve (PS3.18 Table 8.7.3-4)."""
    for r in parse_accept(accept):
        if r.type == MULTIPART_RELATED:
            part = (r.param("type") or OCTET_STREAM).lower()
            if part in JPEG_TYPES or part == "image/*":
                return FrameFormat("jpeg", JPEGBaseline8Bit, True)
            if part in (OCTET_STREAM, "application/*"):
                return FrameFormat("octet", _octet_syntax(r), True)
            if part == "*/*":
                return FrameFormat("octet", None, True)
        elif r.type in JPEG_TYPES and single_frame:
            return FrameFormat("jpeg", JPEGBaseline8Bit, False)
        elif r.type == OCTET_STREAM and single_frame:
            return FrameFormat("octet", _octet_syntax(r), False)
        elif r.type == "image/*":
            return FrameFormat("jpeg", JPEGBaseline8Bit, True)
        elif r.type in ("*/*", "application/*"):
            return FrameFormat("octet", None, True)
    raise NotAcceptable(
        f"cannot satisfy Accept: {accept}; frames are available as "
        'multipart/related; type="application/octet-stream" (transfer-syntax=* for the stored encoding) '
        'or multipart/related; type="image/jpeg"'
    )


def negotiate_rendered(accept: str | None, explicit: str | None = None) -> str:
    """The image type for a rendered resource: image/jpeg unless the client prefers png or gif.

    ``explicit`` is a type named in the request itself (WADO-URI's contentType)."""
    if explicit:
        wanted = explicit.strip().lower()
        if wanted in JPEG_TYPES:
            return "image/jpeg"
        if wanted in RENDERED_TYPES:
            return wanted
        raise NotAcceptable(f"cannot render as {explicit}; available: {', '.join(RENDERED_TYPES)}")
    for r in parse_accept(accept):
        if r.type in JPEG_TYPES:
            return "image/jpeg"
        if r.type in RENDERED_TYPES:
            return r.type
        if r.type in ("*/*", "image/*"):
            return "image/jpeg"
    raise NotAcceptable(
        f"cannot satisfy Accept: {accept}; rendered images are available as {', '.join(RENDERED_TYPES)}"
    )
