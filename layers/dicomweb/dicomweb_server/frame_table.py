"""Where each frame's bytes are in a stored Part-10 object (recorded at ingest, read by WADO-RS
frames with S3 range reads).

Two kinds:

* ``NativeFrames``: the Pixel Data value's offset and length in the object, and how many bits one
  frame takes (Rows × Columns × SamplesPerPixel × BitsAllocated; YBR_FULL_422 counts 2 samples);
  frame *n* is arithmetic. ``swap`` is the byte-swap unit that turns the stored bytes little
  endian (0 for a little-endian object; 2 or 4 for Explicit VR Big Endian).
* ``EncapsulatedFrames``: the offset of the first fragment's value and every fragment's length
  (fragment *k*'s value starts 8 bytes, one item header, after fragment *k − 1*'s value ends), and
  the first fragment of each frame.

``encode``/``decode`` give the compact binary form the index stores (``docs/data-model.md``):
native tables are 34 bytes; encapsulated ones about 4 bytes per fragment before zlib.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from itertools import accumulate

_NATIVE = struct.Struct("<cQQQQB")
_ENCAP_HEAD = struct.Struct("<cQII")
#: Bytes of an item header (tag + length) in front of every fragment.
ITEM_HEADER = 8


@dataclass(frozen=True)
class NativeFrames:
    offset: int
    length: int
    frame_bits: int
    count: int
    swap: int = 0

    def bit_span(self, number: int) -> tuple[int, int]:
        """Frame ``number``'s (1-based) first bit and bit count inside the Pixel Data value."""
        return (number - 1) * self.frame_bits, self.frame_bits

    def byte_range(self, number: int) -> tuple[int, int]:
        """[start, end) in the object of the bytes that hold frame ``number`` (whole swap units)."""
        first, bits = self.bit_span(number)
        unit = max(1, self.swap)
        start = first // 8 // unit * unit
        end = -(-(first + bits) // 8)
        end = -(-end // unit) * unit
        return self.offset + start, self.offset + min(end, self.length)

    def complete(self) -> bool:
        """The value holds every frame (a shorter value is a damaged object: no table then)."""
        return self.frame_bits > 0 and self.count * self.frame_bits <= self.length * 8


@dataclass(frozen=True)
class EncapsulatedFrames:
    first: int
    lengths: tuple[int, ...]
    starts: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.starts)

    def fragments(self, number: int) -> list[tuple[int, int]]:
        """(offset, length) in the object of each fragment value of frame ``number`` (1-based)."""
        offsets = self._offsets()
        begin = self.starts[number - 1]
        end = self.starts[number] if number < len(self.starts) else len(self.lengths)
        return [(offsets[k], self.lengths[k]) for k in range(begin, end)]

    def byte_range(self, number: int) -> tuple[int, int]:
        """[start, end) in the object covering every fragment of frame ``number``."""
        parts = self.fragments(number)
        return parts[0][0], parts[-1][0] + parts[-1][1]

    def _offsets(self) -> list[int]:
        cached: list[int] | None = self.__dict__.get("_cached")
        if cached is None:
            cached = [self.first + s + ITEM_HEADER * k for k, s in enumerate(accumulate((0, *self.lengths[:-1])))]
            object.__setattr__(self, "_cached", cached)
        return cached


FrameTable = NativeFrames | EncapsulatedFrames


def encode(table: FrameTable) -> bytes:
    if isinstance(table, NativeFrames):
        return _NATIVE.pack(b"N", table.offset, table.length, table.frame_bits, table.count, table.swap)
    identity = table.starts == tuple(range(len(table.lengths)))
    body = struct.pack(f"<{len(table.lengths)}I", *table.lengths)
    if not identity:
        body += struct.pack(f"<{len(table.starts)}I", *table.starts)
    head = _ENCAP_HEAD.pack(b"E", table.first, len(table.lengths), 0 if identity else len(table.starts))
    return head + zlib.compress(body, 6)


def decode(data: bytes) -> FrameTable:
    if data[:1] == b"N":
        _, offset, length, frame_bits, count, swap = _NATIVE.unpack(data[: _NATIVE.size])
        return NativeFrames(offset, length, frame_bits, count, swap)
    if data[:1] != b"E":
        raise ValueError("not a frame table")
    _, first, n_fragments, n_starts = _ENCAP_HEAD.unpack(data[: _ENCAP_HEAD.size])
    body = zlib.decompress(data[_ENCAP_HEAD.size :])
    lengths = struct.unpack_from(f"<{n_fragments}I", body)
    starts = struct.unpack_from(f"<{n_starts}I", body, 4 * n_fragments) if n_starts else tuple(range(n_fragments))
    return EncapsulatedFrames(first, tuple(lengths), tuple(starts))
