"""Content negotiation for every retrieve resource (PS3.18 §8.7.3.5, Tables 8.7.3-2 to 8.7.3-5):
which representation of instances, metadata, frames or a rendered image the Accept header asks for.

``image/dicom+jpeg`` (seen in the wild, not in the standard) is served as ``image/jpeg``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

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
    """How the client wants instances: multipart or a single ``application/dicom`` body, and the
    transfer syntaxes it accepts, best first (None = as stored, ``transfer-syntax=*``)."""

    multipart: bool
    transfer_syntaxes: tuple[str | None, ...] = (ExplicitVRLittleEndian,)
    #: Every frame of every image instance as a JPEG part instead of Part-10 objects.
    jpeg_frames: bool = False

    @property
    def transfer_syntax(self) -> str | None:
        """The preferred transfer syntax (None = as stored)."""
        return self.transfer_syntaxes[0] if self.transfer_syntaxes else None


#: Accept-range types that cover the multipart/related DICOM representation and the single one.
_MULTIPART_COVERS = ("*/*", "multipart/*", MULTIPART_RELATED)
_SINGLE_COVERS = ("*/*", "application/*", DICOM)
_AS_STORED = "*"


@dataclass(frozen=True)
class _Offer:
    """One representation a resource can be given in: its media type, the part type of a multipart
    body, the transfer syntax (``*`` = as stored), and whether that is the media type's default."""

    type: str
    part: str | None
    transfer_syntax: str
    default: bool = False


def _type_level(range_type: str, concrete: str) -> int:
    """How specifically an Accept media range names ``concrete``: 3 exactly, 2 ``type/*``, 1 ``*/*``,
    0 not at all."""
    if range_type == concrete:
        return 3
    if range_type == "*/*":
        return 1
    if range_type.endswith("/*"):
        return 2 if concrete.split("/", 1)[0] == range_type[:-2] else 0
    return 0


def _match(r: MediaType, offer: _Offer, default_part: str = DICOM) -> tuple[int, int] | None:
    """(type level, parameters matched) when the range ``r`` covers ``offer``; None when it does not.

    On an exact media type a missing ``transfer-syntax`` means that type's default (PS3.18 Table
    8.7.3-5) and a missing ``type`` means application/dicom; a wildcard covers every syntax."""
    level = _type_level(r.type, offer.type)
    if not level:
        return None
    matched = 0
    if offer.part is not None and level == 3:
        if not _type_level((r.param("type") or default_part).lower(), offer.part):
            return None
        matched += 1 if r.param("type") else 0
    ts = r.param("transfer-syntax")
    if ts is not None:
        if ts != offer.transfer_syntax:
            return None
        matched += 1
    elif level == 3 and not offer.default:
        return None
    return (level, matched)


def _ranked(accept: str | None, offers: list[_Offer], default_part: str = DICOM) -> list[_Offer]:
    """``offers`` the client accepts, best first (RFC 9110 §12.5.1: each offer takes the quality of
    the most specific range that covers it, q=0 excludes; equal qualities keep the order of the
    ranges in the header, then the server's order)."""
    ranges = parse_accept(accept, keep_refusals=True)
    scored: list[tuple[float, int, int, _Offer]] = []
    for position, offer in enumerate(offers):
        best: tuple[tuple[int, int], int] | None = None
        for index, r in enumerate(ranges):
            m = _match(r, offer, default_part)
            if m is not None and (best is None or m > best[0]):
                best = (m, index)
        if best is not None and ranges[best[1]].q > 0:
            scored.append((-ranges[best[1]].q, best[1], position, offer))
    return [offer for *_, offer in sorted(scored, key=lambda s: s[:3])]


def _named_syntaxes(accept: str | None) -> list[str]:
    """Transfer syntaxes the Accept header names, in order (``*`` included)."""
    names = []
    for r in parse_accept(accept):
        ts = r.param("transfer-syntax")
        if ts and ts not in names:
            names.append(ts)
    return names


def negotiate_instances(accept: str | None, *, single_allowed: bool) -> InstanceFormat:
    """Choose the representation of a retrieve of instances (PS3.18 §8.7.3.5.2, Table 8.7.3-2):
    ``multipart/related; type="application/dicom"`` in Explicit VR Little Endian unless the client
    names a transfer syntax, ``*`` for as stored; a single instance also as ``application/dicom``;
    every frame as ``image/jpeg`` parts on request."""
    from .transcode import OFFERED

    # the server's order among equals: the default, then as stored, then the other syntaxes it makes
    syntaxes = [OFFERED[0], _AS_STORED, *OFFERED[1:], *_named_syntaxes(accept)]
    unique = list(dict.fromkeys(syntaxes))
    offers = [_Offer(MULTIPART_RELATED, DICOM, ts, ts == ExplicitVRLittleEndian) for ts in unique]
    offers.append(_Offer(MULTIPART_RELATED, "image/jpeg", JPEGBaseline8Bit, True))
    if single_allowed:
        offers += [_Offer(DICOM, None, ts, ts == ExplicitVRLittleEndian) for ts in unique]
    ranked = _ranked(accept, offers)
    # image/dicom+jpeg and other spellings of JPEG parts
    for r in parse_accept(accept):
        if r.type == MULTIPART_RELATED and (r.param("type") or "").lower() in JPEG_TYPES - {"image/jpeg"}:
            ranked.append(_Offer(MULTIPART_RELATED, "image/jpeg", JPEGBaseline8Bit))
    if not ranked:
        offered = (
            'multipart/related; type="application/dicom" (transfer-syntax '
            + ", ".join(OFFERED)
            + ' or * for as stored), multipart/related; type="image/jpeg"'
            + (", application/dicom" if single_allowed else "")
        )
        raise NotAcceptable(f"cannot satisfy Accept: {accept}; this resource is available as {offered}")
    best = ranked[0]
    if best.part == "image/jpeg":
        return InstanceFormat(True, (JPEGBaseline8Bit,), jpeg_frames=True)
    same = [o for o in ranked if o.type == best.type and o.part == best.part]
    return InstanceFormat(
        best.type == MULTIPART_RELATED,
        tuple(None if o.transfer_syntax == _AS_STORED else o.transfer_syntax for o in same),
    )


def negotiate_metadata(accept: str | None) -> str:
    return negotiate_dicom_model(accept, "metadata")


@dataclass(frozen=True)
class FrameFormat:
    """What a frames request wants: ``kind`` (``octet`` pixel bytes, ``jpeg``, ``jls``, ``jp2`` or
    ``png``), the transfer syntax (None = as stored, ``*``), and whether the body is multipart."""

    kind: str
    transfer_syntax: str | None
    multipart: bool

    @property
    def media_type(self) -> str:
        return FRAME_MEDIA[self.kind]


#: Frame media types (PS3.18 Table 8.7.3-4) by kind, and the default transfer syntax of each
#: (Table 8.7.3-5; image/jpeg defaults to JPEG Baseline here, the one JPEG process this server can
#: make from any frame; image/png has no transfer syntax).
FRAME_MEDIA = {
    "octet": OCTET_STREAM,
    "jpeg": "image/jpeg",
    "jls": "image/jls",
    "jp2": "image/jp2",
    "png": "image/png",
}
FRAME_DEFAULT_SYNTAX = {
    "octet": ExplicitVRLittleEndian,
    "jpeg": JPEGBaseline8Bit,
    "jls": JPEGLSLossless,
    "jp2": JPEG2000Lossless,
    "png": "",
}
#: Other syntaxes a frame media type can carry (passed through when the frame is stored so).
FRAME_OTHER_SYNTAXES = {
    "octet": (_AS_STORED,),
    "jpeg": (JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, _AS_STORED),
    "jls": (JPEGLSNearLossless, _AS_STORED),
    "jp2": (JPEG2000, _AS_STORED),
    "png": (),
}


def negotiate_frames(accept: str | None, single_frame: bool) -> FrameFormat:
    """Choose the representation of a frames retrieve (PS3.18 §8.7.3.5.3, Table 8.7.3-4):
    multipart/related parts of application/octet-stream (Explicit VR Little Endian unless the client
    names a syntax; ``*`` for as stored), image/jpeg, image/jls, image/jp2 or image/png; one frame
    also as a single body of those types. ``image/dicom+jpeg`` and other JPEG spellings are JPEG."""
    offers: list[_Offer] = []
    # application/octet-stream with a named syntax: the frame's own (checked against the instance)
    named = {"octet": tuple(_named_syntaxes(accept))}
    for multipart in (True, False):
        if not multipart and not single_frame:
            continue
        for kind, media in FRAME_MEDIA.items():
            syntaxes = (FRAME_DEFAULT_SYNTAX[kind], *FRAME_OTHER_SYNTAXES[kind], *named.get(kind, ()))
            for ts in dict.fromkeys(syntaxes):
                if multipart:
                    offers.append(_Offer(MULTIPART_RELATED, media, ts, ts == FRAME_DEFAULT_SYNTAX[kind]))
                else:
                    offers.append(_Offer(media, None, ts, ts == FRAME_DEFAULT_SYNTAX[kind]))
    ranked = _ranked(_jpeg_spelled(accept), offers, default_part=OCTET_STREAM)
    if not ranked:
        raise NotAcceptable(
            f"cannot satisfy Accept: {accept}; frames are available as multipart/related with "
            f"type={', '.join(FRAME_MEDIA.values())} (application/octet-stream: transfer-syntax="
            f"{ExplicitVRLittleEndian} or * for the stored encoding), or one frame as a single body of these types"
        )
    best = ranked[0]
    media = best.part if best.part is not None else best.type
    kind = next(k for k, m in FRAME_MEDIA.items() if m == media)
    syntax = None if best.transfer_syntax == _AS_STORED else best.transfer_syntax or None
    return FrameFormat(kind, syntax, best.type == MULTIPART_RELATED)


def _jpeg_spelled(accept: str | None) -> str | None:
    """Accept with other spellings of JPEG (image/dicom+jpeg, image/jpg, ...) read as image/jpeg."""
    if accept is None:
        return None
    ranges = []
    for r in parse_accept(accept, keep_refusals=True):
        params = dict(r.params)
        if (params.get("type") or "").lower() in JPEG_TYPES:
            params["type"] = "image/jpeg"
        ranges.append(MediaType("image/jpeg" if r.type in JPEG_TYPES else r.type, params, r.q))
    return ", ".join(f"{m}; q={m.q}" for m in ranges)


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
