"""DICOM JSON Model helpers (PS3.18 Annex F) on top of pydicom's own conversion.

pydicom does the encoding (``Dataset.to_json_dict`` with a bulk data handler); this module only
adds what the server needs around it: tag lookup by keyword or number, value extraction for
matching, and metadata without bulk data.
"""

from __future__ import annotations

import base64
import copy
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

#: Binary VRs whose large values are bulk data, not metadata (PS3.18 §8.6.1.3).
BULK_THRESHOLD = 1024
_DROP = "\x00drop"


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


def _drop_bulk(_elem: DataElement) -> str:
    return _DROP


def _strip(obj: DicomJson) -> DicomJson:
    out: DicomJson = {}
    for key, elem in obj.items():
        if elem.get("BulkDataURI") == _DROP:
            continue
        if elem.get("vr") == "SQ" and "Value" in elem:
            elem = {**elem, "Value": [_strip(item) for item in elem["Value"]]}
        out[key] = elem
    return out


# --- the fast builder -------------------------------------------------------------------------------
#
# ``Dataset.to_json_dict`` converts every element into a ``DataElement`` (through the dataset's
# ``__getitem__``, the conversion hooks and the value classes) before it writes JSON; for a typical CT
# slice that is three quarters of the CPU time of ingesting it. ``metadata`` writes the JSON straight
# from the raw element bytes for the common well-formed cases, following pydicom's own value
# converters (``pydicom.values``) rule for rule, and hands every other element to pydicom
# (``DataElement.to_json_dict``): person names, AT, UN, ambiguous or unknown VRs, private tags read
# as Implicit VR, text with ISO 2022 escapes or bytes the character set cannot decode, numbers that
# are not plain decimals, and any pydicom configuration other than the defaults. The unit tests
# compare the two on pydicom's own test files.

_SKIP = frozenset((0x7FE00010, 0x7FE00008, 0x7FE00009))
_BULK_BYTES = (BULK_THRESHOLD // 4) * 3  # pydicom's test: base64 makes a value 4/3 as long
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


def _binary(vr: str, _raw: RawDataElement, value: bytes, _enc: list[str]) -> _Result:
    if len(value) > _BULK_BYTES:
        return None
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
    """DICOM JSON of a dataset without bulk data; remembers which top-level keys lost a bulk value."""

    def __init__(self) -> None:
        self.dropped: set[str] = set()
        self.fast = _defaults()

    def dataset(self, ds: Dataset, top: str | None = None, *, skip: frozenset[int] = frozenset()) -> DicomJson:
        out: DicomJson = {}
        store = ds._dict
        tags = sorted(store, key=int) if top is None else list(store)  # (int: C comparisons, not BaseTag's)
        charset: Any = None
        for tag in tags:
            if tag in skip:
                continue
            key = f"{tag:08X}"
            here = top or key
            raw = store[tag]
            found: DicomJson | None | bool = False
            if isinstance(raw, RawDataElement) and self.fast:
                vr = raw.VR or _vr_of(raw)
                if vr == "SQ":
                    found = self.sequence(ds[tag], here)
                else:
                    convert = _CONVERTERS.get(vr)  # type: ignore[arg-type]
                    value = raw.value
                    if convert is None or value is None:  # None: a deferred read
                        pass
                    elif not value:
                        found = {"vr": vr}
                    else:
                        if charset is None:
                            charset = _encodings(ds)
                        found = convert(vr, raw, value, charset)  # type: ignore[arg-type]
            elif isinstance(raw, DataElement) and raw.VR == "SQ":
                found = self.sequence(raw, here)
            if found is False:
                found = self.element(ds[tag], here)
            if found is None:
                self.dropped.add(here)
                continue
            out[key] = found
        return out

    def sequence(self, elem: DataElement, top: str) -> DicomJson:
        return {"vr": "SQ", "Value": [self.dataset(item, top) for item in elem.value]}

    def element(self, elem: DataElement, top: str) -> DicomJson | None:
        if elem.VR == "SQ":
            return self.sequence(elem, top)
        found = elem.to_json_dict(bulk_data_element_handler=_drop_bulk, bulk_data_threshold=BULK_THRESHOLD)
        return None if found.get("BulkDataURI") == _DROP else found


def _encodings(ds: Dataset) -> list[str]:
    found = ds.original_character_set or ds._character_set
    return [found] if isinstance(found, str) else list(found)


@dataclass(frozen=True)
class InstanceJson:
    """An instance's WADO-RS metadata, and which of its top-level attributes lost bulk data in it."""

    metadata: DicomJson
    dropped: frozenset[str]

    def select(self, ds: Dataset, keywords: tuple[str, ...]) -> DicomJson:
        """What ``records.select(ds, keywords)`` gives (every value inline), from the metadata."""
        out: DicomJson = {}
        for keyword in keywords:
            tag = tag_for_keyword(keyword)
            if tag is None:
                continue
            key = f"{tag:08X}"
            elem = self.metadata.get(key)
            if key in self.dropped:  # a bulk value the metadata left out: pydicom writes it inline
                out[key] = ds[tag].to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=10_000_000)
            elif elem is not None:
                out[key] = copy.deepcopy(elem) if elem.get("vr") == "SQ" else {**elem}
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


def instance_json(ds: Dataset) -> InstanceJson:
    """WADO-RS metadata of an instance (every attribute except pixel data and large binary values),
    written by the fast builder; equal to ``metadata_by_pydicom(ds)``."""
    builder = _Builder()
    body = builder.dataset(ds, skip=_SKIP)
    return InstanceJson(body, frozenset(builder.dropped))


def metadata(ds: Dataset) -> DicomJson:
    """WADO-RS metadata of an instance: every attribute except pixel data and large binary values."""
    return instance_json(ds).metadata


def metadata_by_pydicom(ds: Dataset) -> DicomJson:
    """The same metadata, written by ``Dataset.to_json_dict`` (the reference the fast builder must match)."""
    body = Dataset()
    for elem in ds:
        if elem.tag in _SKIP:
            continue
        body.add(elem)
    return _strip(body.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=_drop_bulk))
