"""WADO-RS bulk data (PS3.18 §8.7.3.3.2 and §10.4): the value of one bulk data element, as a
metadata answer's ``BulkDataURI`` names it (``{instance}/bulkdata/{tag path}``), whole or a byte
range of it (RFC 9110 §14). The Pixel Data value can also be asked for in another representation
(``pixel_format``): decoded to native bytes, or as compressed frames.

Where ingest recorded the value's offset in the object (``InstanceRecord.bulk``), only those bytes
are read (one ranged GetObject); otherwise (a deflated file, an instance indexed before offsets
were recorded) the object is read and parsed.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom import dcmread
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..blobs.keys import stored_key
from ..errors import NotAcceptable, NotFound, RangeNotSatisfiable
from ..formats import dicom_json, multipart
from ..formats.media import MULTIPART_RELATED, OCTET_STREAM, MediaType
from ..ports import BlobStore
from ..records import StoredInstance
from ..store.ingest import parse_part10
from .frames import SYNTAXES_OF
from .negotiation import FRAME_DEFAULT_SYNTAX, FrameFormat, negotiate_frames
from .size_policy import FRAME_ALLOWANCE, PART_FRAMING, Size, decoded_frame_bytes, least_pixels

if TYPE_CHECKING:
    from .streams import Body


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` (inclusive) of a value of ``length`` bytes."""

    start: int
    end: int
    length: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.length}"


_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str | None, length: int) -> ByteRange | None:
    """The range a ``Range`` header asks for (RFC 9110 §14.1.2), or None for the whole value.

    A header that is malformed, in another unit, or asks for several ranges is ignored (the whole
    value is sent, as §14.2 allows); a well-formed range of which no byte exists is a 416.
    """
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        return None
    found = _SPEC.match(spec)
    if found is None or (not found.group(1) and not found.group(2)):
        return None
    first, last = found.group(1), found.group(2)
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or length == 0:
            raise RangeNotSatisfiable(
                f"the range {spec.strip()} selects no byte of the {length}-byte value", length=length
            )
        return ByteRange(max(length - suffix, 0), length - 1, length)
    start = int(first)
    end = int(last) if last else length - 1
    if last and end < start:
        return None  # invalid: ignored
    if start >= length:
        raise RangeNotSatisfiable(
            f"the range {spec.strip()} starts at or after the end of the {length}-byte value", length=length
        )
    return ByteRange(start, min(end, length - 1), length)


def etag(inst: StoredInstance, path: str) -> str:
    """A strong entity tag of one value: the stored object's MD5 names its bytes."""
    return '"' + hashlib.sha256(f"{inst.md5}\n{path}".encode()).hexdigest()[:32] + '"'


@dataclass(frozen=True)
class Located:
    """Where a value is: an offset in the object (-1: only a parse finds it) and its length, or
    the value itself when the object had to be read to find it."""

    offset: int
    length: int
    value: bytes | None = None


def locate(inst: StoredInstance, path: str, blobs: BlobStore, threshold: int) -> Located:
    """Find the bulk data element ``path`` of ``inst`` (``BadRequest`` for a malformed path,
    ``NotFound`` when the instance has no such bulk data element)."""
    parents, tag = dicom_json.parse_tag_path(path)
    missing = NotFound(f"instance {inst.sop_uid} has no bulk data element {path}")
    if inst.bulk is not None:
        entry = inst.bulk.get(path)
        if entry is None:
            raise missing
        if entry[0] >= 0:
            return Located(entry[0], entry[1])
    ds = parse_part10(blobs.get(stored_key(inst)))
    elem = dicom_json.find_element(ds, parents, tag)
    if elem is None or (inst.bulk is None and not dicom_json.is_bulk(elem, threshold)):
        raise missing
    value = elem.value if isinstance(elem.value, bytes) else b""
    return Located(-1, len(value), value)


def read(inst: StoredInstance, where: Located, blobs: BlobStore, wanted: ByteRange | None) -> bytes:
    """The value's bytes (``wanted`` of them): a ranged read where the offset is known."""
    if where.value is not None:
        return where.value if wanted is None else where.value[wanted.start : wanted.end + 1]
    if where.length == 0:
        return b""
    start, end = (wanted.start, wanted.end) if wanted else (0, where.length - 1)
    return blobs.get_range(stored_key(inst), where.offset + start, where.offset + end)


#: Bytes of a stored value one ranged GetObject reads while a value is streamed.
READ_CHUNK = 8 << 20


def stored_body(
    inst: StoredInstance,
    where: Located,
    blobs: BlobStore,
    wanted: ByteRange | None,
    *,
    multipart_answer: bool,
    chunk: int | None = None,
) -> Body:
    """The value's bytes (``wanted`` of them) as an answer body of known length, plain or as the
    one part of a ``multipart/related`` answer (with its ``Content-Range`` when a range), read
    from the object ``chunk`` bytes at a time when it is produced: a value of any size is sent in
    bounded memory, and the size policy decides before any read."""
    from .streams import Body, closing, part_header

    start, end = (wanted.start, wanted.end) if wanted else (0, where.length - 1)
    length = end - start + 1
    step = chunk or READ_CHUNK

    def value() -> Iterator[bytes]:
        if where.value is not None or length <= 0:
            yield read(inst, where, blobs, wanted)
            return
        key = stored_key(inst)
        for at in range(start, end + 1, step):
            yield blobs.get_range(key, where.offset + at, where.offset + min(at + step, end + 1) - 1)

    if not multipart_answer:
        return Body(value(), OCTET_STREAM, max(length, 0))
    boundary = multipart.new_boundary()
    headers = {"Content-Type": OCTET_STREAM}
    if wanted:
        headers["Content-Range"] = wanted.content_range
    head, tail = part_header(boundary, headers), b"\r\n" + closing(boundary)

    def chunks() -> Iterator[bytes]:
        yield head
        yield from value()
        yield tail

    content_type = str(MediaType(MULTIPART_RELATED, {"type": OCTET_STREAM, "boundary": boundary}))
    return Body(chunks(), content_type, len(head) + max(length, 0) + len(tail))


# -- the Pixel Data value in a negotiated representation (PS3.18 §8.7.3.5, Tables 8.7.3-3 to -5) -----

#: The tag path of Pixel Data at the top level of an instance.
PIXEL_DATA = "7FE00010"
#: Stored syntaxes whose Pixel Data value is already native little-endian bytes.
_NATIVE_LITTLE_ENDIAN = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)


def pixel_format(accept: str | None, inst: StoredInstance) -> FrameFormat | None:
    """The representation of ``inst``'s Pixel Data that Accept asks for, or None for the value's
    stored bytes (``transfer-syntax=*``, the stored syntax named, or the default
    ``application/octet-stream`` of native little-endian pixel data), to which Range applies.

    Otherwise: ``application/octet-stream`` in Explicit VR Little Endian (the default, PS3.18 Table
    8.7.3-5): compressed pixel data decoded, big-endian swapped; or a compressed media type
    (image/jpeg, image/jls, image/jp2) with a transfer syntax, one part per frame: the stored
    frames when stored in that syntax, else JPEG-LS or JPEG 2000 lossless made from them. A 406
    names what the value is available as when none of Accept can be produced."""
    from .transcode import Pixels, producible

    stored = inst.transfer_syntax_uid
    several = inst.number_of_frames > 1
    try:
        fmt = negotiate_frames(accept, single_frame=True)
    except NotAcceptable:
        raise _not_available(accept, inst) from None
    if fmt.kind == "octet":
        if fmt.transfer_syntax in (None, stored):
            return None
        if fmt.transfer_syntax == ExplicitVRLittleEndian:
            return None if stored in _NATIVE_LITTLE_ENDIAN else fmt
        raise _not_available(accept, inst)
    if fmt.kind == "png" or (several and not fmt.multipart):
        raise _not_available(accept, inst)
    target = fmt.transfer_syntax or (stored if stored in SYNTAXES_OF[fmt.kind] else FRAME_DEFAULT_SYNTAX[fmt.kind])
    if target == stored:
        return FrameFormat(fmt.kind, stored, fmt.multipart)
    lossless = fmt.kind in ("jls", "jp2") and target == FRAME_DEFAULT_SYNTAX[fmt.kind]
    if lossless and target in producible(stored, Pixels.from_attrs(inst.attrs)):
        return FrameFormat(fmt.kind, target, fmt.multipart)
    raise _not_available(accept, inst)


def _not_available(accept: str | None, inst: StoredInstance) -> NotAcceptable:
    from .transcode import Pixels, producible, syntax_name

    stored = inst.transfer_syntax_uid
    offers = [f"application/octet-stream (transfer-syntax={ExplicitVRLittleEndian}, or * for as stored)"]
    possible = producible(stored, Pixels.from_attrs(inst.attrs))
    for kind, media in (("jpeg", "image/jpeg"), ("jls", "image/jls"), ("jp2", "image/jp2")):
        syntaxes: list[str] = [ts for ts in SYNTAXES_OF[kind] if ts == stored]
        if not syntaxes and FRAME_DEFAULT_SYNTAX[kind] in possible and kind != "jpeg":
            syntaxes = [FRAME_DEFAULT_SYNTAX[kind]]
        if syntaxes:
            offers.append(f"{media} (transfer-syntax={syntaxes[0]})")
    many = " as multipart/related, one part per frame," if inst.number_of_frames > 1 else ""
    return NotAcceptable(
        f"cannot satisfy Accept: {accept}; the pixel data of instance {inst.sop_uid} (stored as "
        f"{syntax_name(stored)}) is available{many} as {', '.join(offers)}"
    )


def pixel_size(inst: StoredInstance, fmt: FrameFormat) -> Size:
    """What a converted Pixel Data answer takes at most: every frame decoded (a bound for encoded
    frames, checked as they are produced); decoded, at the least its decoded pixels."""
    frames = max(inst.number_of_frames, 1)
    per_frame = decoded_frame_bytes(inst) + (FRAME_ALLOWANCE + PART_FRAMING if fmt.kind != "octet" else 0)
    least = least_pixels(inst) if fmt.kind == "octet" else 0
    return Size(per_frame * frames + PART_FRAMING, exact=False, least=least)


def pixel_body(
    inst: StoredInstance,
    blobs: BlobStore,
    fmt: FrameFormat,
    location: str,
    *,
    workers: int,
    boundary: str | None = None,
) -> Body:
    """The Pixel Data value in ``fmt`` (``pixel_format``), produced frame by frame: from single-frame
    datasets of the object's header and each frame's range where the frame table is known, else
    from the object read whole. ``application/octet-stream`` is one value (one part, or the body);
    image types are one part per frame."""
    from .frame_source import of_instance
    from .frames import frame_representation, streamed_frames
    from .streams import Body, closing, ordered, part_header

    numbers = list(range(1, max(inst.number_of_frames, 1) + 1))
    source = of_instance(inst, blobs) if len(numbers) > 1 else None
    if source is None:
        ds = dcmread(io.BytesIO(blobs.get(stored_key(inst))))
        if "PixelData" not in ds:
            raise NotFound(f"instance {inst.sop_uid} has no pixel data")

        def produce(n: int) -> tuple[bytes, MediaType]:
            return frame_representation(ds, n, fmt)

        workers = 1
    else:
        found = source

        def produce(n: int) -> tuple[bytes, MediaType]:
            return frame_representation(found.dataset(n), 1, fmt)

    if fmt.kind != "octet":
        return streamed_frames(numbers, fmt, location, produce, workers=workers, boundary=boundary)
    label = MediaType(OCTET_STREAM, {"transfer-syntax": ExplicitVRLittleEndian})
    frames = (payload for payload, _ in ordered(numbers, produce, workers))
    if not fmt.multipart:
        return Body(frames, str(label))
    boundary = boundary or multipart.new_boundary()

    def chunks() -> Iterator[bytes]:
        yield part_header(boundary, {"Content-Type": str(label)})
        yield from frames
        yield b"\r\n"
        yield closing(boundary)

    params = {"type": OCTET_STREAM, "transfer-syntax": ExplicitVRLittleEndian, "boundary": boundary}
    return Body(chunks(), str(MediaType(MULTIPART_RELATED, params)))
