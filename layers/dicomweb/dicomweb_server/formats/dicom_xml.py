"""DICOM XML: the Native DICOM Model (PS3.19 §A.1) to and from the DICOM JSON Model (PS3.18 §F).

Both directions go through the JSON model, so pydicom's ``Dataset.from_json`` / ``to_json_dict``
stay the one place where values become DICOM. Untrusted XML is parsed with defusedxml (no entity
expansion, no external entities). The reader is lenient where real clients are sloppy: attribute
names in any case (``Tag``/``tag``), no namespace, ``SingleByte`` for ``Alphabetic``, a missing VR
taken from the data dictionary.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from defusedxml import ElementTree as SafeET
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from ..errors import BadRequest

NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
DicomJson = dict[str, Any]
_PN_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_PN_GROUPS = {
    "alphabetic": "Alphabetic",
    "singlebyte": "Alphabetic",
    "ideographic": "Ideographic",
    "multibyte": "Ideographic",
    "phonetic": "Phonetic",
}
_INTS = {"IS", "SL", "SS", "UL", "US", "SV", "UV", "AT"}
_FLOATS = {"DS", "FL", "FD"}


# -- writing ------------------------------------------------------------------------------------


def _person_name(parent: ET.Element, number: int, value: Any) -> None:
    pn = ET.SubElement(parent, "PersonName", number=str(number))
    if value is None:  # an empty name among several: an empty PersonName, not the text "None"
        return
    groups = value if isinstance(value, dict) else {"Alphabetic": str(value)}
    for group in ("Alphabetic", "Ideographic", "Phonetic"):
        text = groups.get(group)
        if not text:
            continue
        node = ET.SubElement(pn, group)
        for name, component in zip(_PN_COMPONENTS, str(text).split("^"), strict=False):
            if component:
                ET.SubElement(node, name).text = component


def _attributes(parent: ET.Element, attrs: DicomJson) -> None:
    for key in sorted(attrs):
        element = attrs[key]
        vr = element.get("vr", "UN")
        node = ET.SubElement(parent, "DicomAttribute", {"tag": key.upper(), "vr": vr})
        keyword = keyword_for_tag(int(key, 16))
        if keyword:
            node.set("keyword", keyword)
        if "BulkDataURI" in element:
            ET.SubElement(node, "BulkData", uri=element["BulkDataURI"])
        elif "InlineBinary" in element:
            ET.SubElement(node, "InlineBinary").text = element["InlineBinary"]
        for i, value in enumerate(element.get("Value") or [], start=1):
            if vr == "SQ":
                item = ET.SubElement(node, "Item", number=str(i))
                _attributes(item, value or {})
            elif vr == "PN":
                _person_name(node, i, value)
            else:
                ET.SubElement(node, "Value", number=str(i)).text = "" if value is None else str(value)


def to_xml(attrs: DicomJson) -> bytes:
    """A ``NativeDicomModel`` document (UTF-8, with declaration) for one dataset in the JSON model."""
    root = ET.Element("NativeDicomModel", xmlns=NAMESPACE)
    root.set("xml:space", "preserve")
    _attributes(root, attrs)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


# -- reading ------------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _attr(node: ET.Element, name: str) -> str | None:
    for key, value in node.attrib.items():
        if _local(key).lower() == name.lower():
            return value
    return None


def _children(node: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in node if _local(c.tag).lower() == name.lower()]


def _number(value: str, vr: str, where: str) -> Any:
    text = value.strip()
    try:
        if vr in _INTS and vr != "AT":
            return int(text)
        if vr in _FLOATS:
            return float(text)
    except ValueError:
        raise BadRequest(f"{where}: {text!r} is not a valid {vr} value") from None
    return text


def _numbered(nodes: list[ET.Element], where: str) -> list[ET.Element]:
    """Value, PersonName or Item children in the order of their ``number`` attribute (from 1)."""
    numbers = []
    for n in nodes:
        text = (_attr(n, "number") or "0").strip()
        if not (text.isascii() and text.isdigit()):
            raise BadRequest(f"{where}: <{_local(n.tag)} number={text[:20]!r}> is not a whole number")
        numbers.append(int(text))
    return [n for _, n in sorted(zip(numbers, nodes, strict=True), key=lambda pair: pair[0])]


def _element(node: ET.Element, path: str) -> tuple[str, DicomJson]:
    tag = _attr(node, "tag")
    keyword = _attr(node, "keyword")
    if tag is None and keyword:
        found = tag_for_keyword(keyword)
        tag = f"{found:08X}" if found is not None else None
    if tag is None or len(tag) != 8 or any(c not in "0123456789abcdefABCDEF" for c in tag):
        raise BadRequest(f"{path}: DicomAttribute without a valid tag (got {tag!r})")
    tag = tag.upper()
    vr = _attr(node, "vr")
    if not vr:
        try:
            vr = str(dictionary_VR(int(tag, 16))).split(" ")[0]
        except KeyError:
            raise BadRequest(f"{path}: attribute {tag} has no vr and is not in the data dictionary") from None
    vr = vr.upper()
    if int(tag[:4], 16) % 2 == 0:  # a standard attribute: its dictionary VR wins over a wrong one
        try:
            known = str(dictionary_VR(int(tag, 16)))
        except KeyError:
            known = ""
        if known and " " not in known and known != vr:
            vr = known
    where = f"{path} {tag} ({keyword or keyword_for_tag(int(tag, 16)) or 'private'})"
    out: DicomJson = {"vr": vr}
    bulk = _children(node, "BulkData")
    inline = _children(node, "InlineBinary")
    if bulk:
        uri = _attr(bulk[0], "uri") or _attr(bulk[0], "uuid")
        if not uri:
            raise BadRequest(f"{where}: BulkData without a uri")
        out["BulkDataURI"] = uri
        return tag, out
    if inline:
        out["InlineBinary"] = "".join((inline[0].text or "").split())
        return tag, out
    values: list[Any] = []
    if vr == "SQ":
        for item in _numbered(_children(node, "Item"), where):
            values.append(_dataset(item, f"{where} item {_attr(item, 'number')}"))
    elif vr == "PN":
        for pn in _numbered(_children(node, "PersonName"), where):
            groups: dict[str, str] = {}
            for group in pn:
                name = _PN_GROUPS.get(_local(group.tag).lower())
                if not name:
                    continue
                parts = {_local(c.tag): (c.text or "").strip() for c in group}
                text = "^".join(parts.get(c, "") for c in _PN_COMPONENTS).rstrip("^")
                if text:
                    groups[name] = text
            values.append(groups or None)
    else:
        for value in _numbered(_children(node, "Value"), where):
            text = value.text or ""
            values.append(_number(text, vr, where) if vr in _INTS | _FLOATS else text)
    if values:
        out["Value"] = values
    return tag, out


def _dataset(node: ET.Element, path: str) -> DicomJson:
    attrs: DicomJson = {}
    for child in node:
        if _local(child.tag) != "DicomAttribute":
            continue
        tag, element = _element(child, path)
        attrs[tag] = element
    return attrs


def from_xml(data: bytes, *, what: str = "XML") -> DicomJson:
    """Parse a ``NativeDicomModel`` document into the JSON model, or raise ``BadRequest`` saying where it
    is broken."""
    try:
        root = SafeET.fromstring(data)
    except ET.ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        reason = str(exc).split(":")[0]
        raise BadRequest(f"{what} is not well-formed XML: {reason} at line {line}, column {column}") from None
    except Exception as exc:  # defusedxml refuses entities and DTDs
        raise BadRequest(f"{what} was refused: {type(exc).__name__} (DTDs and entities are not allowed)") from None
    if _local(root.tag) != "NativeDicomModel":
        raise BadRequest(f"{what}: the root element is <{_local(root.tag)}>, expected <NativeDicomModel>")
    return _dataset(root, what)


def to_xml_multipart_parts(datasets: list[DicomJson]) -> list[tuple[bytes, dict[str, str]]]:
    """One ``application/dicom+xml`` part per dataset (for multipart/related responses)."""
    return [(to_xml(attrs), {"Content-Type": "application/dicom+xml; charset=utf-8"}) for attrs in datasets]
