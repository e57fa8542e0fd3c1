"""The fast metadata builder writes exactly the DICOM JSON that converting every element with pydicom
writes (``dicom_json.metadata_by_pydicom``; the metadata the index stores must not change): the same
keys in the same order, the same values of the same JSON types, byte for byte once dumped, the same
bulk data URIs and bulk elements (path, where the value starts, its bytes), and an error where
pydicom raises one."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomweb_server.formats import dicom_json
from dicomweb_server.records import INSTANCE_KEYWORDS, SERIES_KEYWORDS, STUDY_KEYWORDS, select
from tests.corpus import make_instance

pytestmark = pytest.mark.filterwarnings("ignore")

SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)


def _outcome(build: Any, data: bytes) -> tuple[str, str]:
    """("ok", the dumped JSON) or ("error", "") of ``build`` on a fresh read of ``data``. Which error
    is not compared: pydicom converts every element before it writes any, the fast builder converts
    them one by one, so with two bad elements the first error each meets can differ."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(io.BytesIO(data), force=True)
        try:
            return "ok", json.dumps(build(ds))
        except Exception:  # noqa: BLE001 - the test compares whether each builder raises
            return "error", ""


def _with_bulk(build: Any) -> Any:
    """The metadata and, for each bulk element, its path, where its value may start, and its bytes."""

    def run(ds: Dataset) -> tuple[Any, list[Any]]:
        metadata, bulk = build(ds)
        return metadata, [(b.path, b.candidates, b.value_bytes().hex()) for b in bulk]

    return run


def assert_same(data: bytes) -> str:
    fast = _outcome(_with_bulk(dicom_json.metadata_with_bulk), data)
    reference = _outcome(_with_bulk(dicom_json.metadata_by_pydicom), data)
    assert fast == reference
    return fast[0]


def _written(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", generate_uid())
    out = io.BytesIO()
    little = syntax != ExplicitVRBigEndian
    implicit = syntax == ImplicitVRLittleEndian
    ds.save_as(out, enforce_file_format=True, little_endian=little, implicit_vr=implicit)
    return out.getvalue()


def _base() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    return ds


def _pydicom_files() -> list[str]:
    """Every test file the pydicom wheel carries (none downloaded), DICOMDIR trees included."""
    root = Path(get_testdata_file("CT_small.dcm", download=False) or "").parent
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix not in (".json", ".txt", ".py")
    )


@pytest.mark.parametrize("path", _pydicom_files(), ids=str)
def test_every_pydicom_test_file_gives_the_same_json(path: str) -> None:
    root = Path(get_testdata_file("CT_small.dcm", download=False) or "").parent
    with open(root / path, "rb") as fh:
        assert_same(fh.read())


def test_the_corpus_gives_the_same_json_and_the_same_index_attributes() -> None:
    for source in ("ct", "mr", "mr_implicit", "jpeg", "multiframe"):
        data = make_instance(source, PatientName="Yamada^Tarou=山田^太郎=やまだ^たろう").data
        assert assert_same(data) == "ok"
        ds = dcmread(io.BytesIO(data))
        built = dicom_json.instance_json(ds)
        reference = dcmread(io.BytesIO(data))
        for keywords in (STUDY_KEYWORDS, SERIES_KEYWORDS, INSTANCE_KEYWORDS):
            assert json.dumps(built.select(ds, keywords)) == json.dumps(select(reference, keywords))


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: s.name)
def test_sequences_private_tags_at_numbers_and_empty_values(syntax: str) -> None:
    ds = _base()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.OtherPatientNames = ["DOE^JOHN", "=山田^太郎", "ROE^JANE^^^"]
    ds.ReferringPhysicianName = ""
    ds.PatientID = ""
    ds.AccessionNumber = None
    ds.StudyDescription = "Kopf  \\  mit Leerzeichen "
    ds.ImageComments = "line one\r\nline two \\ backslash  "
    ds.InstitutionName = "Ünïcödé Klinik"
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    ds.StudyDate = "20240131"
    ds.StudyTime = "101010.123456 "
    ds.AcquisitionDateTime = "20240131101010.5+0100"
    ds.PatientAge = "042Y"
    ds.StationAETitle = "  AE TITLE "
    ds.RetrieveURL = "https://example.org/x "
    ds.SliceThickness = " 1.50 "
    ds.PixelSpacing = ["0.5", "+.5"]
    ds.ImagePositionPatient = ["-0", "1e3", "1.5E-2"]
    ds.WindowCenter = "40"
    ds.InstanceNumber = " 7"
    ds.SeriesNumber = "+3"
    ds.ReferencedFrameNumber = ["1", "2", "007"]
    ds.PixelRepresentation = 0
    ds.Rows = 512
    ds.Columns = 512
    ds.add_new(0x00280106, "SS", -5)  # SmallestImagePixelValue
    ds.add_new(0x00189219, "FD", [1.5, -2.25])
    ds.add_new(0x00181310, "US", [0, 256, 256, 0])  # AcquisitionMatrix, VM 4
    ds.add_new(0x00209165, "AT", [0x00100010, 0x7FE00010])  # DimensionIndexPointer
    ds.add_new(0x00280009, "AT", 0x00181063)  # FrameIncrementPointer
    ds.add_new(0x00281101, "US", [256, 0, 16])  # a LUT descriptor
    ds.add_new(0x00091010, "LO", "ACME 1.0")  # private creator
    ds.add_new(0x00091011, "LO", "private text")
    ds.add_new(0x00091012, "OB", b"\x01\x02\x03\x04")
    ds.add_new(0x00091013, "OB", bytes(2000))  # large private binary: bulk data, left out
    ds.add_new(0x00091014, "DS", "3.25")
    ds.add_new(0x00191000, "UN", b"unknown")  # no private creator
    ds.IconImageSequence = Sequence([Dataset()])
    ds.IconImageSequence[0].Rows = 4
    ds.IconImageSequence[0].add_new(0x7FE00010, "OB", bytes(16))
    ds.ReferencedSeriesSequence = Sequence()
    item = Dataset()
    item.SeriesInstanceUID = generate_uid()
    inner = Dataset()
    inner.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    inner.ReferencedSOPInstanceUID = generate_uid()
    inner.add_new(0x00091010, "LO", "ACME 1.0")
    inner.add_new(0x00091020, "OB", bytes(5000))  # bulk data inside a sequence
    item.ReferencedInstanceSequence = Sequence([inner, Dataset()])
    ds.ReferencedSeriesSequence.append(item)
    ds.RequestAttributesSequence = Sequence([Dataset()])
    ds.RequestAttributesSequence[0].add_new(0x00091010, "LO", "ACME 1.0")
    ds.RequestAttributesSequence[0].add_new(0x00091030, "OB", bytes(3000))
    ds.RequestAttributesSequence[0].RequestedProcedureID = "RP-1"
    ds.EncapsulatedDocument = b""
    ds.BitsAllocated = 8
    ds.add_new(0x7FE00010, "OB", bytes(32))
    data = _written(ds, syntax)
    assert assert_same(data) == "ok"
    read = dcmread(io.BytesIO(data))
    built = dicom_json.instance_json(read)
    assert built.metadata["7FE00010"]["BulkDataURI"] == "bulkdata/7FE00010"
    reference = dcmread(io.BytesIO(data))
    for keywords in (STUDY_KEYWORDS, SERIES_KEYWORDS, INSTANCE_KEYWORDS):
        assert json.dumps(built.select(read, keywords)) == json.dumps(select(reference, keywords))
    # the bulk value inside RequestAttributesSequence is inline in the series attributes, as before
    assert "InlineBinary" in json.dumps(built.select(read, SERIES_KEYWORDS))


def test_iso_2022_person_names_go_through_pydicom() -> None:
    path = get_testdata_file("chrH31.dcm", download=False) or get_testdata_file("chrX1.dcm", download=False)
    ds = _base()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.InstitutionName = "山田病院"
    data = _written(ds)
    assert assert_same(data) == "ok"
    fast = json.loads(_outcome(dicom_json.metadata, data)[1])
    name = {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    assert fast["00100010"]["Value"] == [name]
    if path:
        with open(str(path), "rb") as fh:
            assert_same(fh.read())


_LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def _with_raw(vr: str, raw: bytes, *, charset: str = "ISO_IR 192") -> bytes:
    """A Part-10 file (Explicit VR Little Endian) ending in one element of ``vr`` whose value is ``raw``
    exactly as a sender wrote it, valid or not."""
    ds = _base()
    ds.SpecificCharacterSet = charset
    head = (0x0051).to_bytes(2, "little") + (0x0100).to_bytes(2, "little") + vr.encode()
    if vr in _LONG:
        head += b"\x00\x00" + len(raw).to_bytes(4, "little")
    else:
        head += len(raw).to_bytes(2, "little")
    return _written(ds) + head + raw


@pytest.mark.parametrize(
    ("vr", "raw"),
    [
        ("DS", b"1\\\\2 "),  # an empty value among numbers: pydicom refuses it
        ("DS", b"nan "),
        ("DS", b"1,5 "),
        ("DS", b" 12.5\\-3e2 "),
        ("IS", b"1.0 "),
        ("IS", b"12a "),
        ("IS", b"-0\\+7"),
        ("US", b"\x01\x02\x03"),  # a length that is no multiple of 2
        ("FL", b"\x00\x00\x80\x3f\x00\x00\x00\xc0"),
        ("UI", b"1.2.3\x00"),
        ("UI", b"1.2.3\\4.5 "),
        ("CS", b"A\\B\\\x00"),
        ("CS", b"  "),
        ("SH", b"\xff\xfe "),  # not UTF-8
        ("LO", b"\x1b$B;3ED\x1b(B"),  # an ISO 2022 escape
        ("LT", b"a\\b\x00"),
        ("PN", b"^^^^ "),
        ("PN", b"ROE^JANE=^=^"),  # pydicom cannot write this one
        ("PN", b"A^B=\xe5\xb1\xb1\xe7\x94\xb0\\C"),
        ("AT", b"\x10\x00\x10\x00"),
        ("AT", b"\x10\x00"),
        ("OB", b"\x01"),
        ("UN", b"\x00\x01\x02\x03"),
        ("XX", b"1234"),  # an unknown VR
    ],
)
def test_edge_values_give_the_same_json_or_the_same_error(vr: str, raw: bytes) -> None:
    assert_same(_with_raw(vr, raw))


def test_latin_1_text_is_decoded_as_pydicom_decodes_it() -> None:
    assert assert_same(_with_raw("LO", "Müller\\Zoë ".encode("latin_1"), charset="ISO_IR 100")) == "ok"
    assert assert_same(_with_raw("LO", "Müller".encode("latin_1"), charset="ISO_IR 192")) == "ok"


_VRS = ["DS", "IS", "CS", "DA", "TM", "DT", "UI", "SH", "LO", "LT", "ST", "UT", "UC", "AE", "PN", "AS", "UR"]
_text = st.text(alphabet=st.sampled_from(list("0123456789.+-eE \\^=ABCxyzÄ山\x00")), max_size=24)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vr=st.sampled_from(_VRS), text=_text)
def test_random_text_values_give_the_same_json_or_the_same_error(vr: str, text: str) -> None:
    assert_same(_with_raw(vr, text.encode()))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    vr=st.sampled_from([*_VRS, "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "OB", "OW", "AT"]),
    raw=st.binary(max_size=24),
)
def test_random_bytes_give_the_same_json_or_the_same_error(vr: str, raw: bytes) -> None:
    assert_same(_with_raw(vr, raw))


def test_the_fast_builder_leaves_almost_every_element_of_a_ct_slice_to_itself() -> None:
    """A count, not a time: pydicom's conversion (what made ingest slow) runs for the few elements
    the fast builder hands over (person names, sequences), not for the ~250 others."""
    from pydicom.dataelem import RawDataElement

    ds = dcmread(io.BytesIO(make_instance("ct").data))
    total = len(ds._dict)
    dicom_json.instance_json(ds)
    converted = sum(not isinstance(e, RawDataElement) for e in ds._dict.values())
    assert total > 50
    assert converted <= 10, f"{converted} of {total} elements went through pydicom's conversion"


UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")


@pytest.mark.parametrize("path", _pydicom_files(), ids=str)
def test_uid_text_reads_what_pydicom_reads(path: str) -> None:
    from dicomweb_server.uids import is_valid_uid

    root = Path(get_testdata_file("CT_small.dcm", download=False) or "").parent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fast, slow = (dcmread(root / path, force=True) for _ in range(2))
            expected = [str(slow.get(k, "") or "").strip() for k in UID_KEYWORDS]
        except Exception:  # noqa: BLE001 - a file pydicom cannot read: nothing to compare
            return
        got = [dicom_json.uid_text(fast, k) for k in UID_KEYWORDS]
    for keyword, mine, theirs in zip(UID_KEYWORDS, got, expected, strict=True):
        if "\\" in mine:  # multi-valued: pydicom's str() of a list; neither is a valid UID
            assert not is_valid_uid(mine) and not is_valid_uid(theirs), keyword
        else:
            assert mine == theirs, keyword
