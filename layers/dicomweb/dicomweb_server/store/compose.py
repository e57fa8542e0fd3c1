"""STOW-RS with metadata and bulk data (PS3.18 §10.5.1.2.2-3): build Part-10 instances from
``application/dicom+xml`` or ``application/dicom+json`` metadata parts and the bulk data parts
they reference by ``Content-Location`` (or ``cid:`` Content-ID).

Pixel data sent as ``image/jpeg`` becomes encapsulated JPEG in the transfer syntax of its coding
process (Baseline, Extended, Lossless); the image pixel attributes are taken from the JPEG's own
frame header (``jpeg.read_header``). A missing SOP Class becomes
Secondary Capture. Each resulting instance then goes through the same ``ingest`` path as a
Part-10 upload.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from ..errors import BadRequest
from ..formats import dicom_xml, jpeg
from ..formats.media import DICOM_JSON, DICOM_XML, JPEG_TYPES, OCTET_STREAM
from ..formats.multipart import Part
from .ingest import InvalidInstance, Reason

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_BULK_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
_PIXEL_DATA = "7FE00010"


@dataclass(frozen=True)
class Composed:
    """One instance built from metadata: its Part-10 bytes, or why it could not be built."""

    data: bytes | None
    failure: InvalidInstance | None = None


def _metadata_datasets(part: Part, part_type: str, index: int) -> list[dict[str, Any]]:
    what = f"metadata part {index + 1}"
    if part_type == DICOM_XML:
        return [dicom_xml.from_xml(part.body, what=what)]
    try:
        doc = json.loads(part.body)
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    items = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(i, dict) for i in items):
        raise BadRequest(f"{what}: expected a JSON array of DICOM JSON datasets")
    return items


def _bulk_index(parts: list[Part]) -> dict[str, Part]:
    found: dict[str, Part] = {}
    for part in parts:
        if part.content_location:
            found[part.content_location.strip()] = part
        if part.content_id:
            found["cid:" + part.content_id.strip().strip("<>")] = part
    return found


def _lookup(uri: str, bulk: dict[str, Part]) -> Part | None:
    uri = uri.strip()
    if uri in bulk:
        return bulk[uri]
    for location, part in bulk.items():  # relative vs absolute spellings of the same location
        if uri.endswith("/" + location.lstrip("/")) or location.endswith("/" + uri.lstrip("/")):
            return part
    return None


def _jpeg_pixels(ds: Dataset, data: bytes, where: str) -> str:
    """Fill the Image Pixel module from a JPEG's frame header and encapsulate it; returns the
    transfer syntax."""
    from pydicom.encaps import encapsulate

    try:
        info = jpeg.read_header(data)
    except jpeg.NotJpeg as exc:
        raise InvalidInstance(
            Reason.CANNOT_UNDERSTAND, f"{where} is labelled image/jpeg but is not a JPEG: {exc}"
        ) from None
    if info.transfer_syntax is None:
        raise InvalidInstance(
            Reason.TRANSFER_SYNTAX_NOT_SUPPORTED,
            f"{where}: a {info.process} JPEG has no DICOM transfer syntax; send a baseline JPEG",
        )
    if info.components not in (1, 3):
        raise InvalidInstance(
            Reason.CANNOT_UNDERSTAND, f"{where}: a JPEG with {info.components} components is not supported (use 1 or 3)"
        )
    ds.Rows, ds.Columns = info.rows, info.columns
    ds.SamplesPerPixel = info.components
    if info.components == 3:
        if info.adobe_transform == 0 or info.process == "lossless":
            ds.PhotometricInterpretation = "RGB"
        else:
            ds.PhotometricInterpretation = "YBR_FULL" if info.full_sampling else "YBR_FULL_422"
        ds.PlanarConfiguration = 0
    else:
        ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8 if info.precision <= 8 else 16
    ds.BitsStored = info.precision
    ds.HighBit = info.precision - 1
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00" if info.process == "lossless" else "01"
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return info.transfer_syntax


def _check_element(tag: str, element: Any, where: str) -> None:
    """A DICOM JSON element is an object; a bulk data reference in it is a string (PS3.18 §F.2)."""
    if not isinstance(element, dict):
        raise InvalidInstance(Reason.CANNOT_UNDERSTAND, f"{where}: attribute {tag} is not a DICOM JSON element object")
    uri = element.get("BulkDataURI")
    if uri is not None and not isinstance(uri, str):
        raise InvalidInstance(Reason.CANNOT_UNDERSTAND, f"{where}: attribute {tag} has a BulkDataURI that is not text")


def _check_vrs(model: dict[str, Any], where: str) -> None:
    """A standard attribute sent with another VR than the dictionary's (SOPInstanceUID as PN) cannot
    be one of this instance's values; UN (value not interpreted) and ambiguous VRs are left alone."""
    for tag, element in model.items():
        if len(tag) != 8 or not all(c in "0123456789abcdefABCDEF" for c in tag) or int(tag[:4], 16) % 2:
            continue
        try:
            known = str(dictionary_VR(int(tag, 16)))
        except KeyError:
            continue
        vr = element.get("vr")
        if " " not in known and vr not in (known, "UN"):
            name = keyword_for_tag(int(tag, 16)) or tag
            raise InvalidInstance(Reason.CANNOT_UNDERSTAND, f"{where}: {name} ({tag}) has VR {vr!r}; it is {known}")


def _resolve_bulk(model: dict[str, Any], bulk: dict[str, Part], where: str) -> None:
    """Replace BulkDataURI references (anywhere but PixelData) with inline values from the parts."""
    for tag, element in model.items():
        if tag == _PIXEL_DATA:
            continue
        _check_element(tag, element, where)
        if element.get("vr") == "SQ":
            for item in element.get("Value") or []:
                if not isinstance(item, dict):
                    raise InvalidInstance(
                        Reason.CANNOT_UNDERSTAND, f"{where}: an item of sequence {tag} is not an object"
                    )
                _resolve_bulk(item, bulk, where)
            continue
        uri = element.get("BulkDataURI")
        if uri is None:
            continue
        part = _lookup(uri, bulk)
        if part is None:
            raise InvalidInstance(
                Reason.CANNOT_UNDERSTAND,
                f"{where}: attribute {tag} refers to bulk data {uri!r}, which is not a part of the request",
            )
        del element["BulkDataURI"]
        element["InlineBinary"] = base64.b64encode(part.body).decode("ascii")


def _build(
    model: dict[str, Any], bulk: dict[str, Part], study_uid: str | None, where: str, only_instance: bool
) -> bytes:
    pixel = model.pop(_PIXEL_DATA, None)
    pixel_part: Part | None = None
    if pixel is not None:
        _check_element(_PIXEL_DATA, pixel, where)
        uri = pixel.get("BulkDataURI")
        if uri is None and pixel.get("vr") in _BULK_VRS and pixel.get("Value"):
            uri = str(pixel["Value"][0])  # a bare reference where a BulkData element belongs
        if uri is not None:
            pixel_part = _lookup(uri, bulk)
            if pixel_part is None:
                raise InvalidInstance(
                    Reason.CANNOT_UNDERSTAND,
                    f"{where}: PixelData refers to bulk data {uri!r}, which is not a part of the request",
                )
        elif "InlineBinary" in pixel:
            model[_PIXEL_DATA] = pixel
    elif only_instance and len(bulk) == 1:  # one image sent without a reference to it
        pixel_part = next(iter(bulk.values()))
    _resolve_bulk(model, bulk, where)
    _check_vrs(model, where)
    try:
        ds = Dataset.from_json(model)
    except Exception as exc:
        raise InvalidInstance(
            Reason.CANNOT_UNDERSTAND, f"{where}: the metadata cannot be converted ({exc})"[:300]
        ) from None
    if study_uid is not None and "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = study_uid
    ds.SOPClassUID = str(ds.get("SOPClassUID") or SECONDARY_CAPTURE)
    ds.SOPInstanceUID = str(ds.get("SOPInstanceUID") or generate_uid())
    ds.SeriesInstanceUID = str(ds.get("SeriesInstanceUID") or generate_uid())
    if "Modality" not in ds:
        modalities = ds.get("ModalitiesInStudy")
        ds.Modality = modalities if isinstance(modalities, str) and modalities else "OT"
    if ds.SOPClassUID == SECONDARY_CAPTURE and "ConversionType" not in ds:
        ds.ConversionType = "WSD"
    transfer_syntax: str = ExplicitVRLittleEndian
    if pixel_part is not None:
        ptype = pixel_part.content_type.type if pixel_part.content_type else OCTET_STREAM
        if ptype in JPEG_TYPES:
            transfer_syntax = _jpeg_pixels(ds, pixel_part.body, f"{where}: bulk data part {pixel_part.index + 1}")
        elif ptype == OCTET_STREAM:
            ds.PixelData = pixel_part.body
            transfer_syntax = (
                pixel_part.content_type.param("transfer-syntax") if pixel_part.content_type else None
            ) or ExplicitVRLittleEndian
            if transfer_syntax != ExplicitVRLittleEndian:
                raise InvalidInstance(
                    Reason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                    f"{where}: octet-stream pixel data must be {ExplicitVRLittleEndian}",
                )
        else:
            raise InvalidInstance(
                Reason.TRANSFER_SYNTAX_NOT_SUPPORTED,
                f"{where}: pixel data as {ptype} is not supported (use image/jpeg or application/octet-stream)",
            )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    out = io.BytesIO()
    try:
        ds.save_as(out, enforce_file_format=True)
    except Exception as exc:
        raise InvalidInstance(
            Reason.CANNOT_UNDERSTAND,
            f"{where}: cannot be written as DICOM ({type(exc).__name__})",
            ds.SOPClassUID,
            ds.SOPInstanceUID,
        ) from None
    return out.getvalue()


def compose(parts: list[Part], part_type: str, study_uid: str | None) -> Iterator[Composed]:
    """Part-10 instances built from the metadata parts of a STOW-RS request, in order."""
    if part_type not in (DICOM_JSON, DICOM_XML):
        raise BadRequest(f"not a metadata STOW-RS request: {part_type}")
    metadata_parts = [p for p in parts if (p.content_type.type if p.content_type else part_type) == part_type]
    if not metadata_parts:
        raise BadRequest(f"the request has no {part_type} metadata part")
    bulk = _bulk_index([p for p in parts if p not in metadata_parts])
    models = []
    for i, part in enumerate(metadata_parts):
        for model in _metadata_datasets(part, part_type, i):
            models.append((model, f"metadata part {i + 1}"))
    for model, where in models:
        try:
            yield Composed(_build(model, bulk, study_uid, where, only_instance=len(models) == 1))
        except InvalidInstance as exc:
            yield Composed(None, exc)
