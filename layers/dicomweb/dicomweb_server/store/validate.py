"""What STOW-RS checks in an instance before it is stored (PS3.18 §10.5, PS3.4 Annex B.2.3), called
from the parse step (``ingest.parse``), so STOW-RS, the S3 drop and the upload path check alike.

- The SOP Class UID is present; a UID the standard defines for something other than storage (a
  transfer syntax, a Query/Retrieve or Storage Commitment SOP class...) is refused with 0x0122
  (SOP class not supported). An unknown UID (a private SOP class) is accepted.
- The required UIDs (SOP Class, SOP Instance, Study Instance, Series Instance) are present and
  well formed (``ingest.build_record``: refused with 0xA900).
- The file meta information agrees with the data set. MediaStorageSOPClassUID and
  MediaStorageSOPInstanceUID missing or different from the data set's SOPClassUID and
  SOPInstanceUID are set from the data set; a Transfer Syntax UID that says Explicit VR Little
  Endian for a data set encoded in Implicit VR Little Endian (or the reverse) is set to the one the
  data set uses. These instances are stored with WarningReason 0xB000 (coercion of data elements)
  naming what was changed, and the stored file is the corrected one (the data set's bytes are kept,
  only the file meta group is written again). Any other disagreement between the transfer syntax and
  the encoding (a compressed transfer syntax over an Implicit VR data set, encapsulated pixel data
  under an uncompressed transfer syntax or native pixel data under a compressed one) cannot be
  repaired without guessing and is refused with 0xC000 (cannot understand).
- An image SOP class (one whose name says "Image Storage") without Pixel Data, Rows or Columns is
  stored with WarningReason 0xB007 (data set does not match SOP class), naming what is missing.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from enum import IntEnum

from pydicom._uid_dict import UID_dictionary
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..formats import dicom_json
from ..uids import is_valid_uid

#: What pydicom raises reading malformed Part-10 bytes, as mutating and cutting real files shows
#: (``tests/unit/test_parse_errors.py``): no DICM prefix (InvalidDicomError), an unknown VR
#: (NotImplementedError), a value or length that does not parse (ValueError, BytesLengthException,
#: struct.error), data that ends inside an element or item (OSError "No tag to read", EOFError).
#: Anything else is a bug and surfaces as one (a 500), not as a refused instance.
MALFORMED: tuple[type[Exception], ...] = (
    InvalidDicomError,
    NotImplementedError,
    ValueError,
    BytesLengthException,
    struct.error,
    OSError,
    EOFError,
)
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float Pixel Data
_UNDEFINED = 0xFFFFFFFF
_DEFLATED = "1.2.840.10008.1.2.1.99"


class WarningReason(IntEnum):
    """WarningReason codes of a stored instance (PS3.18 Table 10.5.3-2, PS3.4 Annex B.2.3)."""

    COERCION_OF_DATA_ELEMENTS = 0xB000
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xB007


@dataclass(frozen=True)
class Warned:
    reason: WarningReason
    message: str


class Refused(Exception):
    """The instance cannot be stored as it is; ``reason`` is its FailureReason."""

    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Checked:
    """The Part-10 bytes to store (corrected when the file meta was) and the warnings for the answer.
    ``data`` is None when the object was checked without its bytes at hand (a streamed read) and
    needs no correction; ``coerced`` says the file meta was corrected (``ds.file_meta`` is the
    corrected one: ``rewrite_file_meta`` writes it into the object's bytes)."""

    data: bytes | None
    warnings: tuple[Warned, ...] = ()
    coerced: bool = False


def is_storage_sop_class(uid: str) -> bool:
    """False for a UID the standard defines as something other than a Storage SOP Class."""
    entry = UID_dictionary.get(uid)
    if entry is None:
        return True  # a private (or newer than pydicom's dictionary) SOP class
    name, kind = entry[0], entry[1]
    return kind == "SOP Class" and "Storage" in name and not name.startswith("Storage Commitment")


def _element_uid(ds: Dataset, keyword: str) -> str:
    try:
        return dicom_json.uid_text(ds, keyword)
    except MALFORMED:
        return ""  # refused by ingest.build_record


def check(
    ds: Dataset,
    data: bytes | None,
    read_warnings: list[str] | tuple[str, ...],
    *,
    pixel_element: tuple[int, int] | None = None,
) -> Checked:
    """Check ``ds`` (read from ``data``); ``read_warnings`` are the messages pydicom gave reading it.
    A data set read without its pixel data (``store.scan``) names the pixel data element it
    walked past in ``pixel_element`` (tag, declared length); ``data`` may then be None (the
    object is a stream): a corrected file meta group is left for the caller to write
    (``Checked.coerced``).

    Raises
    ------
    Refused
        With 0x0122 or 0xC000, as the module docstring says (a missing or malformed required UID
        is left to ``ingest.build_record``, which refuses it with 0xA900).
    """
    sop_class, sop_uid = _element_uid(ds, "SOPClassUID"), _element_uid(ds, "SOPInstanceUID")
    if not (is_valid_uid(sop_class) and is_valid_uid(sop_uid)):
        return Checked(data)  # ingest.build_record refuses it (0xA900), saying which UID is wrong
    if not is_storage_sop_class(sop_class):
        name = UID_dictionary[sop_class][0]
        raise Refused(0x0122, f"SOPClassUID {sop_class} is {name}, not a Storage SOP Class")
    warnings: list[Warned] = []
    coerced = _coerce_file_meta(ds, sop_class, sop_uid, list(read_warnings))
    if coerced:
        if data is not None:
            data = rewrite_file_meta(data, ds)
        warnings.append(
            Warned(
                WarningReason.COERCION_OF_DATA_ELEMENTS,
                "coercion of data elements: " + "; ".join(coerced),
            )
        )
    _check_pixel_encoding(ds, pixel_element)
    missing = _missing_image_attributes(ds, sop_class, pixel_element)
    if missing:
        warnings.append(
            Warned(
                WarningReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                f"data set does not match SOP class: {UID_dictionary[sop_class][0]} without {', '.join(missing)}",
            )
        )
    return Checked(data, tuple(warnings), bool(coerced))


def _coerce_file_meta(ds: Dataset, sop_class: str, sop_uid: str, read_warnings: list[str]) -> list[str]:
    """Make the file meta agree with the data set; what was changed, for the Warning."""
    meta = ds.file_meta
    changed: list[str] = []
    for meta_keyword, value, data_keyword in (
        ("MediaStorageSOPClassUID", sop_class, "SOPClassUID"),
        ("MediaStorageSOPInstanceUID", sop_uid, "SOPInstanceUID"),
    ):
        found = str(meta.get(meta_keyword, "") or "").strip()
        if found != value:
            setattr(meta, meta_keyword, value)
            was = f"was {found}" if found else "was missing"
            changed.append(f"{meta_keyword} set to the data set's {data_keyword} ({was})")
    declared = UID(str(meta.TransferSyntaxUID))
    actual_implicit = _read_as_implicit(ds, declared, read_warnings)
    if actual_implicit is not None and actual_implicit != declared.is_implicit_VR:
        if declared not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            raise Refused(
                0xC000,
                f"the Transfer Syntax UID is {declared} ({declared.name}) but the data set is encoded in "
                f"{'Implicit' if actual_implicit else 'Explicit'} VR",
            )
        actual = ImplicitVRLittleEndian if actual_implicit else ExplicitVRLittleEndian
        meta.TransferSyntaxUID = actual
        changed.append(f"TransferSyntaxUID set to {actual} ({actual.name}), the data set's encoding (was {declared})")
    return changed


def _read_as_implicit(ds: Dataset, declared: UID, read_warnings: list[str]) -> bool | None:
    """Whether pydicom found the data set in Implicit VR, when that differs from what was declared
    (it says so in a warning and reads it as it is); None when it agrees or cannot say."""
    if not declared.is_transfer_syntax or declared == _DEFLATED:
        return None
    for text in read_warnings:
        if text.startswith("Expected explicit VR, but found implicit VR"):
            return True
        if text.startswith("Expected implicit VR, but found explicit VR"):
            return False
    return None


def rewrite_file_meta(data: bytes, ds: Dataset) -> bytes:
    """``data`` with its file meta group written again from ``ds.file_meta``; the data set's bytes unchanged."""
    header, start = corrected_header(data, ds)
    return header + data[start:]


def corrected_header(head: bytes, ds: Dataset) -> tuple[bytes, int]:
    """The preamble, ``DICM`` and the file meta group written again from ``ds.file_meta``, and
    where the data set starts in the original object, of which ``head`` is the beginning (at
    least its preamble and file meta group): the corrected object is the header followed by the
    original's bytes from there on, so a large object is corrected as a stream."""
    fp = io.BytesIO(head)
    preamble = read_preamble(fp, False) or bytes(128)
    _read_file_meta_info(fp)  # leaves fp at the first data set element
    start = fp.tell()
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False  # the file meta group's encoding (PS3.10 §7.1)
    out.write(preamble + b"DICM")
    write_file_meta_info(out, ds.file_meta, enforce_standard=True)
    return out.getvalue(), start


def _check_pixel_encoding(ds: Dataset, pixel_element: tuple[int, int] | None = None) -> None:
    """Encapsulated pixel data goes with a compressed transfer syntax, native pixel data with an
    uncompressed one."""
    raw = ds._dict.get(Tag(0x7FE00010))
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    streamed = pixel_element is not None and pixel_element[0] == 0x7FE00010
    if (raw is None and not streamed) or not ts.is_transfer_syntax or ts == _DEFLATED:
        return
    if streamed and pixel_element is not None:
        length: int | None = pixel_element[1]
    else:
        length = raw.length if isinstance(raw, RawDataElement) else None
    if length is None or length == 0:
        return
    encapsulated = length == _UNDEFINED
    if encapsulated and not ts.is_compressed:
        raise Refused(0xC000, f"Pixel Data is encapsulated but the Transfer Syntax UID is {ts} ({ts.name})")
    if not encapsulated and ts.is_compressed:
        raise Refused(0xC000, f"Pixel Data is not encapsulated but the Transfer Syntax UID is {ts} ({ts.name})")


def _missing_image_attributes(ds: Dataset, sop_class: str, pixel_element: tuple[int, int] | None = None) -> list[str]:
    entry = UID_dictionary.get(sop_class)
    if entry is None or "Image Storage" not in entry[0]:
        return []
    present = pixel_element is not None or any(Tag(tag) in ds._dict for tag in _PIXEL_TAGS)
    missing = [] if present else ["PixelData"]
    return missing + [k for k in ("Rows", "Columns") if k not in ds]
