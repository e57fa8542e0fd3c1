"""DICOM JSON Model helpers (PS3.18 Annex F) on top of pydicom's own conversion.

pydicom does the encoding (``Dataset.to_json_dict`` with a bulk data handler); this module only
adds what the server needs around it: tag lookup by keyword or number, value extraction for
matching, and metadata without bulk data.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
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

    def __init__(self, path: str, element: DataElement | RawDataElement, candidates: tuple[int, ...] = ()) -> None:
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


# --- the fast builder -------------------------------------------------------------------------------
#
# ``_convert`` (the reference, ``metadata_by_pydicom``) converts every element into a ``DataElement``
# (through the dataset's ``__getitem__``, the conversion hooks and the value classes) before it writes
# JSON; for a typical CT slice that is three quarters of the CPU time of ingesting it. The builder
# below writes the same JSON straight from the raw element bytes for the common well-formed cases,
# following pydicom's own value converters (``pydicom.values``) rule for rule, and hands every other
# element to pydicom (``DataElement.to_json_dict``, as ``_convert`` does): person names, AT, UN,
# ambiguous or unknown VRs, private tags read as Implicit VR, text with ISO 2022 escapes or bytes the
# character set cannot decode, numbers that are not plain decimals, and any pydicom configuration
# other than the defaults. Bulk data (``is_bulk``) becomes a ``BulkDataURI`` and a ``BulkElement``
# as in ``_convert``. The unit tests compare the two on pydicom's own test files.

_PIXEL = frozenset(PIXEL_TAGS)
_STRUCT = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
_BINARY = frozenset(("OB", "OD", "OF", "OL", "OV", "OW"))
_DS = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_IS = re.compile(r"\s*[+-]?\d+\s*")
#: LUT descriptors: pydicom adjusts their first value when read as SS.
_LUT_DESCRIPTORS = frozenset((0x00281101, 0x00281102, 0x00281103, 0x00283002))


def _defaults() -> bool:
    """pydicom is configured as the fast builder assumes (its converters' defaults)."""
    return not (
        pydicom_config.datetime_conversion
        or pydicom_config.use_DS_numpy
        or pydicom_config.use_IS_numpy
        or pydicom_config.use_DS_decimal
        or not hooks_are_default()
    )


def hooks_are_default() -> bool:
    from pydicom import hooks as pydicom_hooks

    return bool(
        pydicom_hooks.hooks.raw_element_vr is pydicom_hooks.raw_element_vr
        and pydicom_hooks.hooks.raw_element_value is pydicom_hooks.raw_element_value
    )


def _strings(vr: str, items: list[str]) -> DicomJson:
    """``{"vr": vr, "Value": items}`` as pydicom writes it: no Value for a single empty value."""
    if len(items) == 1 and not items[0]:
        return {"vr": vr}
    return {"vr": vr, "Value": items}


#: A converter takes (VR, raw element, its non-empty bytes, the character set's Python encodings)
#: and gives the element's JSON, None for a bulk value left out, or False to leave it to pydicom.
_Result = DicomJson | None | bool
_Converter = Callable[[str, RawDataElement, bytes, list[str]], _Result]


def _numbers(code: str, kind: type) -> _Converter:
    size = struct.calcsize("=" + code)

    def convert(vr: str, raw: RawDataElement, value: bytes, _enc: list[str]) -> _Result:
        if len(value) % size or raw.tag in _LUT_DESCRIPTORS:
            return False
        numbers = struct.unpack(f"{'<' if raw.is_little_endian else '>'}{len(value) // size}{code}", value)
        return {"vr": vr, "Value": [kind(n) for n in numbers]}

    return convert


def _binary(vr: str, _raw: RawDataElement, value: bytes, _enc: list[str]) -> _Result:  # not bulk data
    return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}


def _decoded(value: bytes, encodings: list[str]) -> str | None:
    """pydicom's ``decode_bytes`` when it takes its shortcut (no ISO 2022 escape); None otherwise."""
    if b"\x1b" in value:
        return None
    try:
        return value.decode(encodings[0])
    except (UnicodeError, LookupError):
        return None


def _text(vr: str, _raw: RawDataElement, value: bytes, encodings: list[str]) -> _Result:  # convert_text
    text = _decoded(value, encodings)
    if text is None:
        return False
    return _strings(vr, [v.rstrip("\0 ") for v in text.split("\\")])


def _single_text(vr: str, _raw: RawDataElement, value: bytes, encodings: list[str]) -> _Result:
    text = _decoded(value, encodings)  # convert_single_string
    if text is None:
        return False
    return _strings(vr, [text.rstrip("\0 ")])


# The VRs below are decoded with pydicom's default_encoding (ISO 8859-1) whatever the character set.


def _split(vr: str, _raw: RawDataElement, value: bytes, _enc: list[str]) -> _Result:  # convert_string
    return _strings(vr, value.decode("latin_1").rstrip(" \x00").split("\\"))


def _ui(vr: str, _raw: RawDataElement, value: bytes, _enc: list[str]) -> _Result:  # the UID class strips
    return _strings(vr, [v.strip() for v in value.decode("latin_1").rstrip("\0 ").split("\\")])


def _ae(vr: str, _raw: RawDataElement, value: bytes, _enc: list[str]) -> _Result:
    return _strings(vr, [v.strip() for v in value.decode("latin_1").split("\\")])


def _ur(vr: str, _raw: RawDataElement, value: bytes, _enc: list[str]) -> _Result:
    return _strings(vr, [value.decode("latin_1").rstrip()])


def _ds(vr: str, _raw: RawDataElement, value: bytes, _enc: list[str]) -> _Result:
    items = value.decode("latin_1").strip().rstrip(" \x00").split("\\")
    if not all(_DS.fullmatch(v) for v in items):
        return False  # empty values, NaN, commas...: pydicom decides (or raises)
    return {"vr": vr, "Value": [float(v) for v in items]}


def _is(vr: str, _raw: RawDataElement, value: bytes, _enc: list[str]) -> _Result:
    items = value.decode("latin_1").rstrip(" \x00").split("\\")
    if not all(_IS.fullmatch(v) for v in items):
        return False
    return {"vr": vr, "Value": [int(v) for v in items]}


_CONVERTERS: dict[str, _Converter] = {
    **{vr: _numbers(code, float if vr in ("FL", "FD") else int) for vr, code in _STRUCT.items()},
    **dict.fromkeys(_BINARY, _binary),
    **dict.fromkeys(("SH", "LO", "UC"), _text),
    **dict.fromkeys(("ST", "LT", "UT"), _single_text),
    **dict.fromkeys(("AS", "CS", "DA", "DT", "TM"), _split),
    "UI": _ui,
    "AE": _ae,
    "UR": _ur,
    "DS": _ds,
    "IS": _is,
}  # not here, so left to pydicom: PN, AT, UN, SQ (recursed into), ambiguous and unknown VRs


def _vr_of(raw: RawDataElement) -> str | None:
    """The VR pydicom would give a raw element read as Implicit VR, when the dictionary says it."""
    if raw.tag >> 16 & 1:  # private: pydicom asks its private dictionary
        return None
    try:
        return str(dictionary_VR(raw.tag))
    except KeyError:
        return None


class _Builder:
    """DICOM JSON with bulk data URIs (``_convert``'s), the bulk elements in document order, and
    which top-level keys hold a bulk data URI somewhere."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.bulk: list[BulkElement] = []
        self.bulk_keys: set[str] = set()
        self.fast = _defaults()

    def dataset(
        self, ds: Dataset, parents: tuple[tuple[int, int], ...], bases: frozenset[int], top: str | None
    ) -> DicomJson:
        out: DicomJson = {}
        store = ds._dict
        charset: Any = None
        for tag in sorted(store, key=int):  # the order ``for elem in ds`` gives (int: C comparisons)
            key = f"{tag:08X}"
            here = top or key
            raw = store[tag]
            found: DicomJson | bool = False
            if isinstance(raw, RawDataElement) and self.fast:
                vr = raw.VR or _vr_of(raw)
                if vr == "SQ":
                    found = self.sequence(ds[tag], parents, bases, here)
                else:
                    convert = _CONVERTERS.get(vr)  # type: ignore[arg-type]
                    value = raw.value
                    if convert is None or value is None:  # None: a deferred read
                        pass
                    elif tag in _PIXEL or (vr in BULK_VRS and len(value) > self.threshold):
                        found = self.bulk_uri(str(vr), raw, raw.value_tell, parents, bases, here)
                    elif not value:
                        found = {"vr": vr}
                    else:
                        if charset is None:
                            charset = _encodings(ds)
                        found = convert(vr, raw, value, charset)  # type: ignore[arg-type,assignment]
            elif isinstance(raw, DataElement) and raw.VR == "SQ":
                found = self.sequence(raw, parents, bases, here)
            if found is False:
                found = self.element(ds[tag], parents, bases, here)
            out[key] = found
        return out

    def sequence(
        self, elem: DataElement, parents: tuple[tuple[int, int], ...], bases: frozenset[int], top: str
    ) -> DicomJson:
        inner = _where(elem, bases)
        items = [self.dataset(item, (*parents, (int(elem.tag), i)), inner, top) for i, item in enumerate(elem.value)]
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}

    def bulk_uri(
        self,
        vr: str,
        elem: DataElement | RawDataElement,
        tell: int | None,
        parents: tuple[tuple[int, int], ...],
        bases: frozenset[int],
        top: str,
    ) -> DicomJson:
        path = tag_path(parents, int(elem.tag))
        where = frozenset() if tell is None else frozenset({tell, *(base + tell for base in bases)})
        self.bulk.append(BulkElement(path, elem, tuple(sorted(where))))
        self.bulk_keys.add(top)
        return {"vr": vr, "BulkDataURI": BULK_PREFIX + path}

    def element(
        self, elem: DataElement, parents: tuple[tuple[int, int], ...], bases: frozenset[int], top: str
    ) -> DicomJson:
        if elem.VR == "SQ":
            return self.sequence(elem, parents, bases, top)
        if is_bulk(elem, self.threshold):
            return self.bulk_uri(str(elem.VR), elem, elem.file_tell, parents, bases, top)
        found: DicomJson = elem.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=self.threshold)
        return found


def _encodings(ds: Dataset) -> list[str]:
    found = ds.original_character_set or ds._character_set
    return [found] if isinstance(found, str) else list(found)


@dataclass(frozen=True)
class InstanceJson:
    """An instance's WADO-RS metadata (bulk data as URIs), its bulk elements, and which top-level
    attributes hold bulk data."""

    metadata: DicomJson
    bulk: list[BulkElement]
    bulk_keys: frozenset[str]

    def select(self, ds: Dataset, keywords: tuple[str, ...]) -> DicomJson:
        """What ``records.select(ds, keywords)`` gives (every value inline), from the metadata."""
        out: DicomJson = {}
        for keyword in keywords:
            tag = tag_for_keyword(keyword)
            if tag is None:
                continue
            key = f"{tag:08X}"
            elem = self.metadata.get(key)
            if elem is None:
                continue
            if key in self.bulk_keys or elem.get("vr") == "SQ":
                # bulk data inline, and an empty sequence with its empty Value, as pydicom writes them
                out[key] = ds[tag].to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=10_000_000)
            else:
                out[key] = {**elem}
        return out


def uid_text(ds: Dataset, keyword: str) -> str:
    """``str(ds.get(keyword, "") or "").strip()`` for a UI attribute, read from the raw bytes when it
    can be, without pydicom's conversion (a multi-valued one: its values joined by backslashes, which
    is no valid UID either)."""
    tag = tag_for_keyword(keyword)
    raw = ds._dict.get(tag) if tag is not None else None  # type: ignore[call-overload]
    if raw is None:
        return ""
    if isinstance(raw, RawDataElement) and raw.value is not None and (raw.VR or _vr_of(raw)) == "UI" and _defaults():
        return "\\".join(v.strip() for v in raw.value.decode("latin_1").rstrip("\0 ").split("\\"))
    return str(ds.get(keyword, "") or "").strip()


def instance_json(ds: Dataset, threshold: int = BULK_THRESHOLD) -> InstanceJson:
    """WADO-RS metadata of an instance with bulk data URIs, written by the fast builder: equal to
    ``metadata_by_pydicom(ds, threshold)``, bulk elements and all."""
    builder = _Builder(threshold)
    body = builder.dataset(ds, (), frozenset(), None)
    return InstanceJson(body, builder.bulk, frozenset(builder.bulk_keys))


def metadata_with_bulk(ds: Dataset, threshold: int = BULK_THRESHOLD) -> tuple[DicomJson, list[BulkElement]]:
    """WADO-RS metadata of an instance (PS3.18 §10.4.1.1.2): every attribute, bulk data as a
    ``BulkDataURI`` relative to the instance (``bulkdata/{tag path}``, made absolute when sent),
    smaller binary values as ``InlineBinary``; and the bulk elements found, in document order."""
    built = instance_json(ds, threshold)
    return built.metadata, built.bulk


def metadata_by_pydicom(ds: Dataset, threshold: int = BULK_THRESHOLD) -> tuple[DicomJson, list[BulkElement]]:
    """The same, every element converted by pydicom (the reference the fast builder must match)."""
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
