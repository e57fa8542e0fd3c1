"""Reading the frame header of a JPEG (ITU T.81 §B.2): size, precision, components, sampling and
coding process, which decide the DICOM Image Pixel attributes and transfer syntax of an uploaded
JPEG.

Why not Pillow: the store function must not load Pillow at cold start, and pydicom imports Pillow
at import time whenever it is installed. Walking the marker segments up to the first SOF is all
that is needed, and nothing is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1

#: SOF marker → (coding process, DICOM transfer syntax or None when DICOM has none for it).
_SOF = {
    0xC0: ("baseline", JPEGBaseline8Bit),
    0xC1: ("extended", JPEGExtended12Bit),
    0xC2: ("progressive", None),
    0xC3: ("lossless", JPEGLossless),
    0xC5: ("differential sequential", None),
    0xC6: ("differential progressive", None),
    0xC7: ("differential lossless", None),
    0xC9: ("arithmetic extended", None),
    0xCA: ("arithmetic progressive", None),
    0xCB: ("arithmetic lossless", None),
}


class NotJpeg(ValueError):
    """The bytes are not a JPEG this server can describe."""


@dataclass(frozen=True)
class JpegInfo:
    rows: int
    columns: int
    precision: int
    components: int
    process: str
    transfer_syntax: str | None
    #: True when every component has the same sampling factors (4:4:4).
    full_sampling: bool
    #: Adobe APP14 transform flag: 0 = RGB stored as is, 1 = YCbCr, None = no APP14 segment.
    adobe_transform: int | None


def read_header(data: bytes) -> JpegInfo:
    """The frame header of a JPEG, or ``NotJpeg`` saying what is wrong."""
    if not data.startswith(b"\xff\xd8"):
        raise NotJpeg("it does not start with a JPEG SOI marker (FFD8)")
    pos, adobe = 2, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise NotJpeg(f"expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(segment) != length - 2:
            raise NotJpeg(f"segment at byte {pos} is cut short")
        if marker == 0xEE and segment.startswith(b"Adobe") and len(segment) >= 12:
            adobe = segment[11]
        if marker in _SOF:
            if len(segment) < 6:
                raise NotJpeg("frame header is cut short")
            precision = segment[0]
            rows = int.from_bytes(segment[1:3], "big")
            columns = int.from_bytes(segment[3:5], "big")
            components = segment[5]
            factors = {segment[6 + 3 * i + 1] for i in range(components) if 6 + 3 * i + 1 < len(segment)}
            process, syntax = _SOF[marker]
            if process == "lossless" and _first_predictor(data, pos + 2 + length) == 1:
                syntax = JPEGLosslessSV1
            if rows == 0 or columns == 0:
                raise NotJpeg("the frame header gives no image size")
            return JpegInfo(rows, columns, precision, components, process, syntax, len(factors) <= 1, adobe)
        if marker == 0xD9:
            break
        pos += 2 + length
    raise NotJpeg("no frame header (SOF marker) found")


def _first_predictor(data: bytes, pos: int) -> int | None:
    """The predictor (Ss) of the first scan header after ``pos``, for lossless JPEG."""
    sos = data.find(b"\xff\xda", pos)
    if sos < 0 or sos + 5 > len(data):
        return None
    count = data[sos + 4]
    index = sos + 5 + 2 * count
    return data[index] if index < len(data) else None
