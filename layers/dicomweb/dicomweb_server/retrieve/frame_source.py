"""One stored instance's frames read by byte range, without reading the whole object: its frame
table (recorded at ingest, ``frame_table``), the object's header (the bytes before the Pixel Data
value, read once), and any frame as a single-frame dataset that pydicom's decoders and LUT
functions take as they take a whole instance.

The single-frame dataset of frame *n* is the header's attributes with Number of Frames 1, the
Per-frame Functional Groups Sequence cut to frame *n*'s item, and Pixel Data holding frame *n*
only (native: its stored bytes; encapsulated: its fragments as one fragment). Anything after the
Pixel Data element (trailing padding, a digital signature) is not read.

An instance without a frame table (deflated, damaged, stored before tables were recorded and not
yet read once) has no ``FrameSource``; callers fall back to reading the whole object.
"""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydicom import dcmread
from pydicom.dataset import Dataset

from .. import frame_table
from ..blobs.keys import frames_key, stored_key
from ..frame_table import EncapsulatedFrames, FrameTable, NativeFrames
from ..ports import BlobNotFound, BlobStore, MetadataIndex
from ..records import StoredInstance
from ..store.failures import InvalidInstance

if TYPE_CHECKING:
    from .frames import RangeReader

#: Keywords a single-frame dataset replaces.
_REPLACED = ("NumberOfFrames", "PerFrameFunctionalGroupsSequence", "PixelData")


def pixel_start(table: FrameTable) -> int:
    """Where the first frame's bytes begin: the header (every element before them, the Pixel Data
    element's own header included) is the object's bytes up to here."""
    return table.offset if isinstance(table, NativeFrames) else table.first


class FrameSource:
    """Frames of one instance read through ``read(start, end)`` (bytes [start, end) of the object),
    located by ``table``. Thread-safe: the header is read once, whichever thread asks first."""

    def __init__(self, read: RangeReader, table: FrameTable) -> None:
        self.read = read
        self.table = table
        self._header: Dataset | None = None
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self.table.count

    @property
    def header_bytes(self) -> int:
        return pixel_start(self.table)

    def header(self) -> Dataset:
        """The instance's attributes before Pixel Data (one ranged read, the first time)."""
        with self._lock:
            if self._header is None:
                header = dcmread(io.BytesIO(self.read(0, self.header_bytes)), stop_before_pixels=True)
                for _ in header:  # converted once here, not concurrently by the frames' threads
                    pass
                self._header = header
            return self._header

    def stored(self, number: int, *, little_endian: bool = True) -> bytes:
        """Frame ``number``'s bytes (``frames.read_frame``)."""
        from .frames import read_frame

        return read_frame(self.table, self.read, number, little_endian=little_endian)

    def dataset(self, number: int) -> Dataset:
        """Frame ``number`` (1-based) as a single-frame dataset (see the module docstring)."""
        from pydicom.encaps import encapsulate

        header = self.header()
        ds = Dataset()
        ds.file_meta = header.file_meta
        ds.set_original_encoding(*header.original_encoding)
        for elem in header:
            if elem.keyword not in _REPLACED:
                ds.add(elem)
        if "NumberOfFrames" in header:
            ds.NumberOfFrames = 1
        per_frame = header.get("PerFrameFunctionalGroupsSequence")
        if per_frame is not None and number <= len(per_frame):
            ds.PerFrameFunctionalGroupsSequence = [per_frame[number - 1]]
        payload = self.stored(number, little_endian=False)
        if isinstance(self.table, EncapsulatedFrames):
            ds.PixelData = encapsulate([payload], has_bot=False)
            ds["PixelData"].VR = "OB"
            ds["PixelData"].is_undefined_length = True
        else:
            ds.PixelData = payload
            ds["PixelData"].VR = "OB" if int(header.get("BitsAllocated", 8) or 8) <= 8 else "OW"
        return ds


def stored_table(inst: StoredInstance, blobs: BlobStore) -> FrameTable | None:
    """The instance's frame table as the index records it (inline, or in its sidecar object)."""
    if inst.frames_state == "aside":
        sidecar = frames_key(inst.study_uid, inst.series_uid, inst.sop_uid, inst.md5)
        try:
            return frame_table.decode(blobs.get(sidecar))
        except (BlobNotFound, ValueError, zlib.error, struct.error):  # gone or unreadable: read the object
            return None
    return inst.frame_table


def first_read(
    inst: StoredInstance, blobs: BlobStore, index: MetadataIndex, max_indexed_bytes: int
) -> tuple[FrameTable | None, bytes]:
    """An instance stored before frame tables were: read it whole once, and record its table."""
    data = blobs.get(stored_key(inst))
    try:
        table = _scanned_table(data)
    except InvalidInstance:
        return None, data
    if table is None or len(frame_table.encode(table)) <= max_indexed_bytes:
        # (a table too large for the index waits for `dicomweb repair`, which writes its sidecar)
        index.add_frame_table(inst.study_uid, inst.series_uid, inst.sop_uid, table)
    return table, data


def _scanned_table(data: bytes) -> FrameTable | None:
    from ..store.scan import scan

    return scan(data).frame_table


def table_of(data: bytes) -> FrameTable | None:
    """The frame table of an object at hand (``store.scan``), None when it has none."""
    try:
        return _scanned_table(data)
    except InvalidInstance:
        return None


def ranged_reader(blobs: BlobStore, inst: StoredInstance) -> Callable[[int, int], bytes]:
    key = stored_key(inst)
    return lambda start, end: blobs.get_range(key, start, end - 1) if end > start else b""


def of_instance(inst: StoredInstance, blobs: BlobStore) -> FrameSource | None:
    """The instance's frames by range, when its table is known (no object read here)."""
    table = stored_table(inst, blobs)
    return FrameSource(ranged_reader(blobs, inst), table) if table is not None else None
