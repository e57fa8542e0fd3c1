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


def metadata(ds: Dataset) -> DicomJson:
    """WADO-RS metadata of an instance: every attribute except pixel data and large binary values."""
    body = Dataset()
    for elem in ds:
        if elem.tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):
            continue
        body.add(elem)
    return _strip(body.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=_drop_bulk))
