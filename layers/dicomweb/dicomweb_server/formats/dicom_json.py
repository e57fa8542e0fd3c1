"""DICOM JSON Model helpers (PS3.18 Annex F) on top of pydicom's own conversion.

pydicom does the encoding (``Dataset.to_json_dict`` with a bulk data handler); this module only
adds what the server needs around it: tag lookup by keyword or number, value extraction for
matching, and metadata without bulk data.
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from ..errors import BadRequest

DicomJson = dict[str, Any]

#: Binary values above this many bytes are bulk data, not metadata (PS3.18 §8.6.1.3); a setting
#: (``Settings.bulk_data_threshold``), this is its default.
BULK_THRESHOLD = 1024
#: Pixel data of every kind is bulk data whatever its size.
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
#: VRs whose values above the threshold are bulk data.
BULK_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
#: Where a stored metadata document's bulk data URIs start: the instance URL is put in front of
#: it when the metadata is sent (``absolute_bulk_uris``).
BULK_PREFIX = "bulkdata/"


def tag_key(name: str) -> str:
    """The 8-hex-digit JSON key for a keyword (``PatientName``) or tag (``00100010``, ``0010,0010``)."""
    cleaned = name.strip().replace(",", "").replace("(", "").replace(")", "")
    if len(cleaned) == 8 and all(c in "0123456789abcdefABCDEF" for c in cleaned):
        return cleaned.upper()
    tag = tag_for_keyword(cleaned)
    if tag is None:
        raise BadRequest(f"{name!r} is neither a DICOM keyword nor an 8-digit hexadecimal tag")
    return f"{tag:08X}"


def keyword_of(key: str) -> str:
    return str(keyword_for_tag(int(key, 16)) or key)


def values(attrs: DicomJson, key: str) -> list[Any]:
    element = attrs.get(key)
    if not element:
        return []
    return list(element.get("Value") or [])


def first(attrs: DicomJson, key: str, default: Any = None) -> Any:
    found = values(attrs, key)
    return found[0] if found else default


def text_values(attrs: DicomJson, key: str) -> list[str]:
    """String forms of an attribute's values; person names as their Alphabetic group."""
    out: list[str] = []
    for value in values(attrs, key):
        if isinstance(value, dict):
            out.append(str(value.get("Alphabetic", "")))
        else:
            out.append(str(value))
    return out


def pn_groups(attrs: DicomJson, key: str) -> list[str]:
    """Every non-empty component group (Alphabetic, Ideographic, Phonetic) of a person name's values,
    so ``山田*`` finds ``Yamada^Tarou=山田^太郎`` as ``Yamada*`` does."""
    out: list[str] = []
    for value in values(attrs, key):
        if isinstance(value, dict):
            out += [str(value[g]) for g in ("Alphabetic", "Ideographic", "Phonetic") if value.get(g)]
        elif value:
            out.append(str(value))
    return out


def element(vr: str, *vals: Any) -> DicomJson:
    return {"vr": vr, "Value": list(vals)} if vals else {"vr": vr}


def is_bulk(elem: DataElement, threshold: int) -> bool:
    """Whether ``elem`` is bulk data: any pixel data, or a binary value above ``threshold`` bytes."""
    if elem.tag in PIXEL_TAGS:
        return True
    if elem.VR not in BULK_VRS or elem.value is None:
        return False
    return len(elem.value) > threshold


def tag_path(parents: tuple[tuple[int, int], ...], tag: int) -> str:
    """The bulk data tag path of an element: ``7FE00010``, or in a sequence item
    ``00081140.0.00091010`` (sequence tag, item index from 0, element tag; nested as deep as needed)."""
    return ".".join([*(f"{t:08X}.{i}" for t, i in parents), f"{tag:08X}"])


def parse_tag_path(text: str) -> tuple[tuple[tuple[int, int], ...], int]:
    """The inverse of ``tag_path``; a ``BadRequest`` naming what is wrong with a malformed one."""
    parts = text.split(".")
    if len(parts) % 2 != 1 or len(parts) > 41:
        raise BadRequest(f"bulk data path {text[:80]!r} is not TAG or SEQUENCE.ITEM.TAG (tags as 8 hex digits)")
    tags: list[int] = []
    for n, part in enumerate(parts):
        if n % 2 == 0:
            if len(part) != 8 or any(c not in "0123456789abcdefABCDEF" for c in part):
                raise BadRequest(f"bulk data path {text[:80]!r}: {part[:20]!r} is not a tag of 8 hex digits")
            tags.append(int(part, 16))
        elif not part.isdigit() or len(part) > 6:
            raise BadRequest(f"bulk data path {text[:80]!r}: {part[:20]!r} is not an item number (from 0)")
    items = [int(parts[n]) for n in range(1, len(parts), 2)]
    return tuple(zip(tags[:-1], items, strict=True)), tags[-1]


def find_element(ds: Dataset, parents: tuple[tuple[int, int], ...], tag: int) -> DataElement | None:
    """The element a tag path names in ``ds``, or None."""
    current = ds
    for seq_tag, item in parents:
        if seq_tag not in current:
            return None
        seq = current[seq_tag]
        if seq.VR != "SQ" or item >= len(seq.value):
            return None
        current = seq.value[item]
    found = current.get(tag)
    return found if isinstance(found, DataElement) else None


def _convert(
    ds: Dataset,
    threshold: int,
    parents: tuple[tuple[int, int], ...],
    bases: frozenset[int],
    bulk: list[BulkElement],
) -> DicomJson:
    out: DicomJson = {}
    for elem in ds:
        key = f"{elem.tag:08X}"
        if elem.VR == "SQ":
            inner = _where(elem, bases)
            items = [
                _convert(item, threshold, (*parents, (int(elem.tag), i)), inner, bulk)
                for i, item in enumerate(elem.value)
            ]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        elif is_bulk(elem, threshold):
            path = tag_path(parents, int(elem.tag))
            bulk.append(BulkElement(path, elem, tuple(sorted(_where(elem, bases)))))
            out[key] = {"vr": str(elem.VR), "BulkDataURI": BULK_PREFIX + path}
        else:
            out[key] = elem.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=threshold)
    return out


def _where(elem: DataElement, bases: frozenset[int]) -> frozenset[int]:
    """Where in the file ``elem``'s value may start. pydicom gives the offset from the start of the
    file for top-level elements and inside undefined-length sequences, and from the start of the
    enclosing sequence's value inside defined-length ones, so both are candidates (the caller checks
    them against the bytes)."""
    tell = elem.file_tell
    if tell is None:
        return frozenset()
    return frozenset({tell, *(base + tell for base in bases)})


class BulkElement:
    """A bulk data element found while converting: its tag path, the element, and where its value
    may start in the Part-10 bytes it was read from (``value_offset`` picks the right one)."""

    __slots__ = ("candidates", "element", "path")

    def __init__(self, path: str, element: DataElement, candidates: tuple[int, ...] = ()) -> None:
        self.path = path
        self.element = element
        self.candidates = candidates

    def value_bytes(self) -> bytes:
        value = self.element.value
        return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else b""

    def value_offset(self, data: bytes) -> int | None:
        """The offset of this element's value in ``data`` (checked byte for byte), or None (a
        deflated file, or a value pydicom changed while reading)."""
        value = self.value_bytes()
        view = memoryview(data)
        for start in self.candidates:
            if value and view[start : start + len(value)] == value:
                return start
        return None


def metadata_with_bulk(ds: Dataset, threshold: int = BULK_THRESHOLD) -> tuple[DicomJson, list[BulkElement]]:
    """WADO-RS metadata of an instance (PS3.18 §10.4.1.1.2): every attribute, bulk data as a
    ``BulkDataURI`` relative to the instance (``bulkdata/{tag path}``, made absolute when sent),
    smaller binary values as ``InlineBinary``; and the bulk elements found, in document order."""
    bulk: list[BulkElement] = []
    return _convert(ds, threshold, (), frozenset(), bulk), bulk


def metadata(ds: Dataset, threshold: int = BULK_THRESHOLD) -> DicomJson:
    """WADO-RS metadata of an instance, bulk data as relative ``BulkDataURI`` (``metadata_with_bulk``)."""
    return metadata_with_bulk(ds, threshold)[0]


def absolute_bulk_uris(attrs: DicomJson, instance_url: str) -> DicomJson:
    """A copy of stored metadata whose relative bulk data URIs start with ``instance_url``."""
    out: DicomJson = {}
    for key, elem in attrs.items():
        uri = elem.get("BulkDataURI")
        if isinstance(uri, str) and uri.startswith(BULK_PREFIX):
            elem = {**elem, "BulkDataURI": f"{instance_url}/{uri}"}
        elif elem.get("vr") == "SQ" and elem.get("Value"):
            elem = {**elem, "Value": [absolute_bulk_uris(item, instance_url) for item in elem["Value"]]}
        out[key] = elem
    return out
