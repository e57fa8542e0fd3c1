"""DICOM XML (PS3.19 Native DICOM Model): golden documents, the seed's sloppy spellings, errors, and a
round-trip property through the JSON model."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomweb_server.errors import BadRequest
from dicomweb_server.formats import dicom_xml

GOLDEN = {
    "00080020": {"vr": "DA", "Value": ["20130409"]},
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "THOMPSON^ALEX"}]},
    "00201208": {"vr": "IS", "Value": [942]},
    "00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3"]}}]},
    "7FE00010": {"vr": "OB", "BulkDataURI": "http://host/bulk/1"},
}


def test_golden_document() -> None:
    xml = dicom_xml.to_xml(GOLDEN).decode()
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel')
    assert '<DicomAttribute tag="00100010" vr="PN" keyword="PatientName"><PersonName number="1">' in xml
    assert "<Alphabetic><FamilyName>THOMPSON</FamilyName><GivenName>ALEX</GivenName></Alphabetic>" in xml
    assert '<Item number="1"><DicomAttribute tag="00081155" vr="UI" keyword="ReferencedSOPInstanceUID">' in xml
    assert '<BulkData uri="http://host/bulk/1" />' in xml or '<BulkData uri="http://host/bulk/1"/>' in xml
    assert dicom_xml.from_xml(xml.encode()) == GOLDEN


def test_the_seed_spellings_are_understood() -> None:
    doc = b"""<NativeDicomModel>
      <DicomAttribute Tag="00100010" VR="PN" Keyword="PatientName"><PersonName number="1"><SingleByte>
        <FamilyName>SMITH</FamilyName> <GivenName>KAREN</GivenName></SingleByte></PersonName></DicomAttribute>
      <DicomAttribute Tag="00080020" VR="DT"><Value number="1">20130409</Value></DicomAttribute>
      <DicomAttribute keyword="StudyDescription"><Value number="1">Abdomen CT</Value></DicomAttribute>
    </NativeDicomModel>"""
    parsed = dicom_xml.from_xml(doc)
    assert parsed["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "SMITH^KAREN"}]}
    assert parsed["00080020"] == {"vr": "DA", "Value": ["20130409"]}  # the dictionary VR wins
    assert parsed["00081030"] == {"vr": "LO", "Value": ["Abdomen CT"]}


@pytest.mark.parametrize(
    "doc, words",
    [
        (
            b"<NativeDicomModel><DicomAttribute tag='00080020'><Value>1</value></DicomAttribute></NativeDicomModel>",
            "line 1",
        ),
        (b"<Other/>", "<NativeDicomModel>"),
        (b"<NativeDicomModel><DicomAttribute vr='LO'/></NativeDicomModel>", "tag"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><NativeDicomModel>&a;</NativeDicomModel>', "refused"),
        (
            b"<NativeDicomModel><DicomAttribute tag='00201208' vr='IS'><Value number='1'>x</Value>"
            b"</DicomAttribute></NativeDicomModel>",
            "not a valid IS",
        ),
    ],
)
def test_bad_documents_are_400(doc: bytes, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        dicom_xml.from_xml(doc)


_text = (
    st.text(alphabet=string.ascii_letters + string.digits + " .-_", min_size=1, max_size=20).map(str.strip).filter(bool)
)
_name = st.lists(st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=8), min_size=1, max_size=3).map("^".join)
_element = st.one_of(
    st.builds(lambda v: {"vr": "LO", "Value": v}, st.lists(_text, min_size=1, max_size=3)),
    st.builds(lambda v: {"vr": "PN", "Value": [{"Alphabetic": v}]}, _name),
    st.builds(lambda v: {"vr": "US", "Value": v}, st.lists(st.integers(0, 65535), min_size=1, max_size=3)),
    st.builds(lambda v: {"vr": "FD", "Value": [v]}, st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3))),
)
_private_tags = st.integers(0x0009_0010, 0x0009_00FF).map(lambda t: f"{t:08X}")


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_private_tags, _element, min_size=1, max_size=6))
def test_round_trip_through_xml(attrs: dict) -> None:
    assert dicom_xml.from_xml(dicom_xml.to_xml(attrs)) == attrs
