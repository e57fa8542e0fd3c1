"""One streamed pass over a Part-10 object: its dataset without the pixel data, its size and MD5,
and where each frame is (``frame_table``), in bounded memory.

pydicom reads the header from a forward-only reader (``Forward``) and stops before the pixel data;
the pixel data element is then walked item by item (encapsulated) or skipped (native), and what
follows it (trailing padding, signatures) is read by pydicom again. Every byte goes through the MD5
once; nothing but the header and a small window is kept, and pixel data is never decoded. Values
before the pixel data larger than ``defer_bytes`` are skipped too (they are bulk data, which the
index never holds). STOW-RS bodies (bytes), S3 drops (a streamed GET) and the repair command read
instances through this one function, so they make the same index entries.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import warnings
from dataclasses import dataclass
from typing import Protocol

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset

from ..frame_table import EncapsulatedFrames, FrameTable, NativeFrames
from .failures import InvalidInstance, Reason
from .validate import MALFORMED

_DEFLATED = "1.2.840.10008.1.2.1.99"
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_CHUNK = 1 << 20
#: Bytes kept behind the read position (pydicom steps back a few bytes after peeking at a tag).
_WINDOW = 1 << 16
_ITEM, _SEQ_END = 0xFFFEE000, 0xFFFEE0DD
#: Default for ``defer_bytes``.
DEFER_BYTES = 4 << 20


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Forward:
    """A file object over a forward-only stream: ``read`` and forward ``seek`` consume the source
    (each byte hashed once); a backward ``seek`` reaches only the last 64 KiB."""

    def __init__(self, source: Readable) -> None:
        self._source = source
        self._md5 = hashlib.md5()  # noqa: S324 - an ETag-style content check, not security
        self._window = bytearray()  # the last bytes consumed, ending at self._end
        self._end = 0  # bytes consumed from the source
        self._pos = 0
        self.name = "<stream>"

    # file-object protocol (what pydicom uses)
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self._pos + offset if whence == 1 else None
        if target is None:
            raise io.UnsupportedOperation("cannot seek from the end of a stream")
        if target < self._end - len(self._window):
            raise io.UnsupportedOperation(f"cannot seek back to byte {target} of a stream")
        while target > self._end and self._consume(min(_CHUNK, target - self._end)):
            pass
        self._pos = min(target, self._end) if target > self._end else target
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            rest = bytearray(self.read(self._end - self._pos))
            while chunk := self._consume(_CHUNK, keep_all=True):
                rest += chunk
                self._pos += len(chunk)
            return bytes(rest)
        out = bytearray()
        if self._pos < self._end:  # served from the window
            start = len(self._window) - (self._end - self._pos)
            out += self._window[start : start + size]
            self._pos += len(out)
        while len(out) < size:
            got = self._consume(min(max(size - len(out), 0), 1 << 26), keep_all=True)
            if not got:
                break
            out += got
            self._pos += len(got)
        return bytes(out)

    def skip(self, size: int) -> int:
        """Consume ``size`` bytes from the position without keeping them; the number skipped."""
        before = self._pos
        self.seek(self._pos + size)
        return self._pos - before

    def drain(self) -> None:
        while self._consume(_CHUNK):
            pass
        self._pos = self._end

    @property
    def size(self) -> int:
        return self._end

    def hexdigest(self) -> str:
        return self._md5.hexdigest()

    def _consume(self, size: int, keep_all: bool = False) -> bytes:
        """Read up to ``size`` new bytes from the source (less only at its end)."""
        out = bytearray()
        while len(out) < size:
            got = self._source.read(size - len(out))
            if not got:
                break
            out += got
        if out:
            self._md5.update(out)
            self._end += len(out)
            self._window += out[-_WINDOW:]
            del self._window[: max(0, len(self._window) - _WINDOW)]
        if not keep_all:
            return bytes(out[:1])  # a truthy marker: the caller only skips
        return bytes(out)


class Whole(io.BytesIO):
    """``Forward``'s interface over bytes already in memory (a STOW-RS part): reads are
    ``BytesIO``'s own (pydicom reads a header in hundreds of small reads), and the MD5 is taken
    of the bytes in one call."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._data = data
        self.name = "<bytes>"

    def skip(self, size: int) -> int:
        before = self.tell()
        return self.seek(min(before + size, len(self._data))) - before

    def drain(self) -> None:
        self.seek(len(self._data))

    @property
    def size(self) -> int:
        return len(self._data)

    def hexdigest(self) -> str:
        return hashlib.md5(self._data).hexdigest()  # noqa: S324 - an ETag-style content check, not security


@dataclass(frozen=True)
class SkippedValue:
    """A value the stream skipped (the pixel data, a value above ``defer_bytes``): bulk data whose
    offset and length in the object are known."""

    tag: int
    vr: str
    offset: int
    length: int


@dataclass(frozen=True)
class Scanned:
    """A Part-10 object read once: its dataset (no pixel data), size, MD5 and frame table (None
    when frames cannot be located without decoding: deflated, damaged or ambiguous)."""

    dataset: Dataset
    size: int
    md5: str
    frame_table: FrameTable | None
    skipped: tuple[SkippedValue, ...] = ()
    #: Offsets pydicom gives are in the inflated dataset, not in the object.
    deflated: bool = False
    #: The messages of the warnings pydicom gave reading the header (``store.validate`` reads them).
    read_warnings: tuple[str, ...] = ()
    #: The pixel data element the stream walked past: its tag and declared length (0xFFFFFFFF:
    #: encapsulated); None when there is none or it is in ``dataset`` (deflated).
    pixel_element: tuple[int, int] | None = None


def scan(source: Readable | bytes, *, defer_bytes: int = DEFER_BYTES) -> Scanned:
    """Read one Part-10 object from ``source`` (bytes, or a stream read once, front to back)."""
    fp: Forward | Whole = Whole(source) if isinstance(source, bytes) else Forward(source)
    head = fp.read(_WINDOW // 2)
    if len(head) < 132:
        fp.drain()
        raise InvalidInstance(Reason.CANNOT_UNDERSTAND, f"not a DICOM Part-10 file ({fp.size} bytes)")
    fp.seek(0)
    # A deflated dataset is inflated by pydicom in memory anyway: read it whole, pixel data included.
    deflated = re.search(rb"1\.2\.840\.10008\.1\.2\.1\.99(?![0-9.])", head[: _meta_end(head)]) is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = dcmread(fp, stop_before_pixels=not deflated, defer_size=None if deflated else defer_bytes)
        except InvalidDicomError:
            raise InvalidInstance(
                Reason.CANNOT_UNDERSTAND, "not a DICOM Part-10 file (no 'DICM' prefix after the preamble)"
            ) from None
        except io.UnsupportedOperation:
            raise InvalidInstance(Reason.CANNOT_UNDERSTAND, "unreadable DICOM data: a length runs backwards") from None
        except _CORRUPT as exc:
            raise InvalidInstance(Reason.CANNOT_UNDERSTAND, f"unreadable DICOM data: {type(exc).__name__}") from None
    _refuse_truncation(caught)
    tsuid = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if not tsuid:
        raise InvalidInstance(Reason.CANNOT_UNDERSTAND, "the file meta information has no Transfer Syntax UID")
    skipped = _drop_deferred(ds)
    deflated = tsuid == _DEFLATED
    table: FrameTable | None = None
    pixel_element: tuple[int, int] | None = None
    last_end = _end_of_last(ds)
    at = fp.tell()
    if not deflated and fp.read(4):  # the header stopped at a pixel data element
        fp.seek(at)
        implicit, little = ds.original_encoding  # as pydicom read it (a private syntax too)
        # A data set whose encoding is not the declared one is read as it is, pydicom says so:
        # the pixel data element follows the data set's encoding (``store.validate`` corrects the meta).
        for w in caught:
            text = str(w.message)
            if text.startswith("Expected explicit VR, but found implicit VR"):
                implicit = True
            elif text.startswith("Expected implicit VR, but found explicit VR"):
                implicit = False
        table, last_end, pixels, declared = _pixel_data(fp, ds, bool(implicit), little is not False)
        skipped.append(pixels)
        pixel_element = (pixels.tag, declared)
        trailing, more = _trailing(fp, bool(implicit), little is not False, defer_bytes)
        skipped += more
        if trailing is not None:
            for tag in list(trailing.keys()):  # noqa: SIM118 - raw elements, unconverted
                ds[tag] = _raw(trailing, tag)  # type: ignore[assignment]
            last_end = _end_of_last(trailing) or last_end
    fp.drain()
    if not deflated and last_end is not None and last_end != fp.size:
        raise InvalidInstance(
            Reason.CANNOT_UNDERSTAND,
            f"DICOM file is truncated: the data ends at byte {fp.size}, inside the last element",
        )
    read_warnings = tuple(str(w.message) for w in caught)
    return Scanned(ds, fp.size, fp.hexdigest(), table, tuple(skipped), deflated, read_warnings, pixel_element)


def _meta_end(head: bytes) -> int:
    """Where the file meta group ends in ``head`` (from its group length), or the whole ``head``."""
    if head[128:132] == b"DICM" and head[132:136] == b"\x02\x00\x00\x00" and head[136:138] == b"UL":
        return 144 + int.from_bytes(head[140:144], "little")
    return len(head)


def _refuse_truncation(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        text = str(w.message)
        if "End of file" in text or "delimiter" in text.lower():
            raise InvalidInstance(
                Reason.CANNOT_UNDERSTAND, "DICOM file is truncated (an item or sequence is cut short)"
            )


#: What pydicom raises when it converts a corrupt raw element (a bad VR or length).
#: (``store.validate.MALFORMED``: a sequence cut short is an OSError or struct.error, found by the fuzz.)
#: Not TypeError: that is a bug (``test_parse_errors``), which surfaces as itself.
_CORRUPT: tuple[type[Exception], ...] = (*MALFORMED, KeyError, IndexError, OverflowError)
_CORRUPT_OR_MISSING: tuple[type[Exception], ...] = (AttributeError, *_CORRUPT)


def _raw(ds: Dataset, tag: int) -> object:
    try:
        return ds.get_item(tag)
    except _CORRUPT as exc:  # pydicom reads elements lazily: a corrupt VR or length surfaces here
        raise InvalidInstance(Reason.CANNOT_UNDERSTAND, f"unreadable DICOM data: {type(exc).__name__}") from None


def _drop_deferred(ds: Dataset) -> list[SkippedValue]:
    """Remove top-level values too large to read here (bulk data: only its place is indexed)."""
    out = []
    # ``ds._dict``, not ``get_item``: that would read a deferred value (from a file name a stream
    # does not have), which is what is skipped here
    deferred = [
        raw
        for raw in ds._dict.values()
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length not in (0, 0xFFFFFFFF)
    ]
    for raw in deferred:
        vr = str(raw.VR) if raw.VR else _dictionary_vr(int(raw.tag))
        out.append(SkippedValue(int(raw.tag), vr, int(raw.value_tell), int(raw.length)))
        del ds[raw.tag]
    return out


def _dictionary_vr(tag: int) -> str:
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return "UN"
    return vr.split(" or ")[0] if " or " in vr else vr


def _end_of_last(ds: Dataset) -> int | None:
    """Where the last element read ends in the object (checked against its size), or None."""
    tags = list(ds.keys())
    if not tags:
        return None
    last = _raw(ds, tags[-1])
    if not isinstance(last, RawDataElement):
        return None
    where = f"({last.tag.group:04X},{last.tag.element:04X})"
    if last.value is None:
        return int(last.value_tell) + int(last.length) if last.length != 0xFFFFFFFF else None
    if last.length != 0xFFFFFFFF and len(last.value) < last.length:
        raise InvalidInstance(
            Reason.CANNOT_UNDERSTAND,
            f"DICOM file is truncated: element {where} declares {last.length} bytes "
            f"but only {len(last.value)} are present",
        )
    return int(last.value_tell) + len(last.value) + (8 if last.length == 0xFFFFFFFF else 0)


def _truncated(where: str) -> InvalidInstance:
    return InvalidInstance(Reason.CANNOT_UNDERSTAND, f"DICOM file is truncated: {where}")


def _pixel_data(
    fp: Forward | Whole, ds: Dataset, implicit: bool, little: bool
) -> tuple[FrameTable | None, int, SkippedValue, int]:
    """Walk the pixel data element from its tag; (its frame table, where it ends, its value, its
    declared length)."""
    order = "<" if little else ">"
    header = fp.read(8)
    if len(header) < 8:
        raise _truncated("the pixel data element header is cut short")
    group, element = struct.unpack(order + "HH", header[:4])
    tag = (group << 16) | element
    vr = ""
    if implicit:
        (length,) = struct.unpack(order + "I", header[4:8])
    else:
        vr = header[4:6].decode("ascii", "replace")
        more = fp.read(4)
        if len(more) < 4:
            raise _truncated("the pixel data element header is cut short")
        (length,) = struct.unpack(order + "I", more)
    offset = fp.tell()
    if not vr:  # implicit VR: what pydicom would make of it
        vr = "OW" if tag == 0x7FE00010 and length != 0xFFFFFFFF and _bits(ds) > 8 else _dictionary_vr(tag)
        vr = "OB" if tag == 0x7FE00010 and vr not in ("OB", "OW") else vr
    if length == 0xFFFFFFFF:
        table, end = _encapsulated(fp, ds, offset)
        return table, end, SkippedValue(tag, vr, offset, end - 8 - offset), length
    if fp.skip(length) < length:
        raise _truncated(
            f"element ({group:04X},{element:04X}) declares {length} bytes but only {fp.tell() - offset} are present"
        )
    pixels = SkippedValue(tag, vr, offset, length)
    if tag != 0x7FE00010:
        return None, fp.tell(), pixels, length
    return _native(ds, little, vr, offset, length), fp.tell(), pixels, length


def _bits(ds: Dataset) -> int:
    try:
        return int(ds.get("BitsAllocated", 8) or 8)
    except _CORRUPT_OR_MISSING:
        return 8


def _native(ds: Dataset, little: bool, vr: str, offset: int, length: int) -> NativeFrames | None:
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        count = max(1, int(ds.get("NumberOfFrames", 1) or 1))
        ybr_422 = str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422"
    except _CORRUPT_OR_MISSING:
        return None  # the attributes are refused when the record is built
    if ybr_422 and samples == 3:
        samples = 2  # two chroma samples shared by each pair of pixels
    swap = 0
    if not little and bits > 1:
        swap = bits // 8 if bits in (16, 32, 64) else 2 if vr == "OW" else 0
        swap = 0 if swap == 1 else swap
    table = NativeFrames(offset, length, rows * cols * samples * bits, count, swap)
    return table if table.complete() else None


def _encapsulated(fp: Forward | Whole, ds: Dataset, offset: int) -> tuple[FrameTable | None, int]:
    lengths: list[int] = []
    tails: list[bytes] = []
    basic: bytes | None = None
    first_item = 0
    while True:
        header = fp.read(8)
        if len(header) < 8:
            raise _truncated("the encapsulated pixel data ends before its sequence delimiter")
        tag, length = struct.unpack("<II", header)
        tag = ((tag & 0xFFFF) << 16) | (tag >> 16)
        if tag == _SEQ_END:
            break
        if tag != _ITEM or length == 0xFFFFFFFF:
            raise InvalidInstance(
                Reason.CANNOT_UNDERSTAND,
                f"encapsulated pixel data: expected an item at byte {fp.tell() - 8}, "
                f"found ({tag >> 16:04X},{tag & 0xFFFF:04X})",
            )
        if basic is None:
            if length > 64 << 20:
                raise InvalidInstance(
                    Reason.CANNOT_UNDERSTAND, "encapsulated pixel data: the offset table is too large"
                )
            basic = fp.read(length)
            if len(basic) < length:
                raise _truncated("the basic offset table is cut short")
            first_item = fp.tell()
            continue
        skipped = fp.skip(length - 3) if length > 3 else 0
        tail = fp.read(length - skipped)
        if skipped + len(tail) < length:
            raise _truncated(f"fragment {len(lengths) + 1} of the pixel data is cut short")
        lengths.append(length)
        tails.append(tail)
    if not lengths:
        return None, fp.tell()
    starts = _frame_starts(ds, basic or b"", lengths, tails)
    if starts is None:
        return None, fp.tell()
    return EncapsulatedFrames(first_item + 8, tuple(lengths), tuple(starts)), fp.tell()


def _frame_starts(ds: Dataset, basic: bytes, lengths: list[int], tails: list[bytes]) -> list[int] | None:
    """The first fragment of each frame: from the Extended or Basic Offset Table when present,
    else one fragment per frame, or (more fragments than frames) frames ending at a JPEG EOI
    marker, as pydicom's ``generate_fragmented_frames`` finds them. None when they do not agree."""
    try:
        frames = ds.get("NumberOfFrames", 1)
        extended = ds.get("ExtendedOffsetTable")
        raw = bytes(extended.value) if extended is not None and extended.value else b""
    except _CORRUPT_OR_MISSING:
        return None  # the attributes are refused when the record is built
    frames = 1 if frames in (None, "") else frames
    if not isinstance(frames, int):  # several values (found by the fuzz): no frame table
        return None
    count = max(1, frames)
    positions = {p: k for k, p in enumerate(_item_positions(lengths))}
    offsets: list[int] = []
    if raw:
        offsets = list(struct.unpack(f"<{len(raw) // 8}Q", raw[: len(raw) // 8 * 8]))
    elif len(basic) >= 4:
        offsets = list(struct.unpack(f"<{len(basic) // 4}I", basic[: len(basic) // 4 * 4]))
    if offsets:
        if len(offsets) != count or any(o not in positions for o in offsets):
            return None
        return [positions[o] for o in offsets]
    if count == 1:
        return [0]
    if len(lengths) == count:
        return list(range(count))
    if len(lengths) < count:
        return None
    starts, start = [], 0
    for k, tail in enumerate(tails):
        if tail.rstrip(b"\x00").endswith(b"\xff\xd9") or tail.endswith(b"\xff\xd9"):
            starts.append(start)
            start = k + 1
    return starts if len(starts) == count and start == len(lengths) else None


def _item_positions(lengths: list[int]) -> list[int]:
    """Each fragment's item tag position relative to the first fragment's (what offset tables hold)."""
    out, at = [], 0
    for length in lengths:
        out.append(at)
        at += 8 + length
    return out


def _trailing(
    fp: Forward | Whole, implicit: bool, little: bool, defer_bytes: int
) -> tuple[Dataset | None, list[SkippedValue]]:
    """The elements after the pixel data (trailing padding, signatures), or None."""
    at = fp.tell()
    if not fp.read(1):
        return None, []
    fp.seek(at)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = read_dataset(
                fp,  # type: ignore[arg-type]
                implicit,
                little,
                defer_size=defer_bytes,
            )
        except _CORRUPT as exc:
            raise InvalidInstance(
                Reason.CANNOT_UNDERSTAND, f"unreadable DICOM data after the pixel data: {type(exc).__name__}"
            ) from None
    _refuse_truncation(caught)
    return ds, _drop_deferred(ds)
