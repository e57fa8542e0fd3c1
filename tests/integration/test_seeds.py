"""Issue 3: every request of the two seed documents (shared/seeds) against the deployed stack,
asserting content, plus the walkthrough script a new user runs."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import requests
from PIL import Image
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.corpus import make_instance, make_study, source_dataset, stow_body, to_part10

from .conftest import ROOT, Endpoint
from .multipart_util import parts_of

XML = 'multipart/related; type="application/dicom+xml"'


def _v(doc: dict, tag: str) -> list:
    return doc.get(tag, {}).get("Value", [])


@pytest.fixture(scope="module")
def alex(endpoint: Endpoint) -> list:
    study = make_study(
        ("ct", "mr"),
        instances_per_series=2,
        PatientName="THOMPSON^ALEX",
        PatientID=f"AT{generate_uid()[-9:]}",
        PatientBirthDate="19670701",
        PatientSex="M",
        StudyDate="20130409",
        StudyTime="131600.0000",
        AccessionNumber="11235813",
        StudyID="11235813",
        StudyDescription="Abdomen CT",
        ReferringPhysicianName="SMITH^KAREN",
        SpecificCharacterSet="ISO_IR 192",
    )
    body, ctype = stow_body(study)
    assert endpoint.post("/studies", body, ctype).status_code == 200
    return study


@pytest.fixture(scope="module")
def joe(endpoint: Endpoint) -> list:
    study = make_study(("ct", "jpeg", "multiframe"), PatientName="SIIM^JOE", PatientID=f"JS{generate_uid()[-9:]}")
    body, ctype = stow_body(study)
    assert endpoint.post("/studies", body, ctype).status_code == 200
    return study


def test_walkthrough_script_replays_both_seeds(endpoint: Endpoint) -> None:
    args = [sys.executable, str(ROOT / "scripts" / "walkthrough.py"), "--quiet", "--url", endpoint.base_url]
    if endpoint.api_key:
        args += ["--api-key", endpoint.api_key]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "all answered as the seeds expect" in done.stdout


def test_search_by_last_name_returns_the_seed_attributes(endpoint: Endpoint, alex: list) -> None:
    r = endpoint.get(
        "/studies/", params={"00100010": "THOMPSON", "includefield": "00081030"}, headers={"Accept": "application/json"}
    )
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    [study] = [s for s in r.json() if _v(s, "0020000D") == [alex[0].study_uid]]
    assert _v(study, "00080005") == ["ISO_IR 192"]
    assert _v(study, "00080020") == ["20130409"] and _v(study, "00080030") == ["131600.0000"]
    assert _v(study, "00080050") == ["11235813"] and _v(study, "00200010") == ["11235813"]
    assert _v(study, "00080056") == ["ONLINE"]
    assert sorted(_v(study, "00080061")) == ["CT", "MR"]
    assert _v(study, "00080090") == [{"Alphabetic": "SMITH^KAREN"}]
    assert _v(study, "00081030") == ["Abdomen CT"]
    assert _v(study, "00100010") == [{"Alphabetic": "THOMPSON^ALEX"}]
    assert _v(study, "00100030") == ["19670701"] and _v(study, "00100040") == ["M"]
    assert _v(study, "00201206") == [2] and _v(study, "00201208") == [4]
    assert _v(study, "00081190") == [f"{endpoint.base_url}/studies/{alex[0].study_uid}"]
    pid = alex[0].dataset().PatientID
    for name in ("thompson", "Thompson^Alex", "THOMP*", "*ALEX*", "thompson^a*"):
        found = endpoint.get("/studies", params={"PatientName": name, "PatientID": pid}).json()
        assert [_v(s, "0020000D") for s in found] == [[alex[0].study_uid]], name
    assert endpoint.get("/studies", params={"PatientName": "ALEX", "PatientID": pid}).status_code == 204


def test_siim_name_searches(endpoint: Endpoint, joe: list) -> None:
    pid = joe[0].dataset().PatientID
    for name in ("SIIM^Joe", "SIIM*", "siim"):
        found = endpoint.get("/studies/", params={"PatientName": name, "PatientID": pid}).json()
        assert [_v(s, "0020000D") for s in found] == [[joe[0].study_uid]], name


def test_study_structure_as_json_and_as_xml(endpoint: Endpoint, joe: list) -> None:
    path = f"/studies/{joe[0].study_uid}/instances"
    for accept in (None, "*/*", "application/json", "application/dicom+json"):
        r = endpoint.get(path, headers={"Accept": accept} if accept else {})
        assert r.status_code == 200 and r.headers["Content-Type"].startswith(
            accept if accept in ("application/json", "application/dicom+json") else "application/dicom+json"
        )
        items = r.json()
        assert {_v(i, "00080018")[0] for i in items} == {i.sop_uid for i in joe}
        for item in items:
            for tag in ("00080018", "00080060", "00081190", "00200011", "00200013"):
                assert _v(item, tag), (tag, item)
    parts = parts_of(endpoint.get(path, headers={"Accept": XML}))
    assert len(parts) == len(joe)
    sops = set()
    for headers, payload in parts:
        assert headers["content-type"].startswith("application/dicom+xml")
        root = __import__("xml.etree.ElementTree", fromlist=["x"]).fromstring(payload)
        values = {a.get("keyword"): [v.text for v in a] for a in root}
        sops.add(values["SOPInstanceUID"][0])
        assert values["StudyInstanceUID"] == [joe[0].study_uid]
        assert values["RetrieveURL"][0].startswith(endpoint.base_url)
    assert sops == {i.sop_uid for i in joe}


def _frame_url(inst) -> str:
    return f"/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}/frames"


@pytest.mark.parametrize(
    "accept",
    [
        "multipart/related; type=image/jpeg",
        'multipart/related; type="image/jpeg"',
        "multipart/related; type=image/dicom+jpeg",
    ],
)
def test_frames_as_jpeg_decode_to_rows_by_columns(endpoint: Endpoint, joe: list, accept: str) -> None:
    for inst in joe:
        ds = inst.dataset()
        [(headers, payload)] = parts_of(endpoint.get(_frame_url(inst) + "/1", headers={"Accept": accept}))
        assert headers["content-type"].startswith("image/jpeg")
        assert "1.2.840.10008.1.2.4.50" in headers["content-type"]
        image = Image.open(io.BytesIO(payload))
        assert image.format == "JPEG" and image.size == (ds.Columns, ds.Rows)
        assert image.mode == ("RGB" if ds.SamplesPerPixel == 3 else "L")


def test_frame_lists_and_stored_bytes(endpoint: Endpoint, joe: list) -> None:
    multi = next(i for i in joe if i.source == "multiframe")
    parts = parts_of(endpoint.get(_frame_url(multi) + "/1,2", headers={"Accept": "multipart/related; type=image/jpeg"}))
    assert len(parts) == 2
    from pydicom.encaps import generate_frames

    ds = multi.dataset()
    stored = list(generate_frames(ds.PixelData, number_of_frames=2))
    parts = parts_of(
        endpoint.get(
            _frame_url(multi) + "/1,2",
            headers={"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'},
        )
    )
    assert [p for _, p in parts] == stored
    assert all(ds.file_meta.TransferSyntaxUID in h["content-type"] for h, _ in parts)
    ct = next(i for i in joe if i.source == "ct")
    [(_, raw)] = parts_of(
        endpoint.get(_frame_url(ct) + "/1", headers={"Accept": "multipart/related; type=application/octet-stream"})
    )
    assert raw == ct.dataset().PixelData


def _wado_uri(endpoint: Endpoint, inst, **params) -> requests.Response:
    """A WADO-URI request for ``inst`` (an Instance or a (study, series, sop) tuple); a parameter given as None
    is left out."""
    study, series, sop = (inst.study_uid, inst.series_uid, inst.sop_uid) if hasattr(inst, "sop_uid") else inst
    query = {"requestType": "WADO", "studyUID": study, "seriesUID": series, "objectUID": sop, **params}
    query = {k: v for k, v in query.items() if v is not None}
    return requests.get(endpoint.wado_uri_url + "/", params=query, headers=endpoint.headers(), timeout=60)


def test_wado_uri_jpeg_png_and_dicom(endpoint: Endpoint, joe: list) -> None:
    for inst in joe:
        ds = inst.dataset()
        for content_type, fmt in (("image/jpeg", "JPEG"), ("image/png", "PNG")):
            r = _wado_uri(endpoint, inst, contentType=content_type)
            assert r.status_code == 200 and r.headers["Content-Type"] == content_type
            image = Image.open(io.BytesIO(r.content))
            assert image.format == fmt and image.size == (ds.Columns, ds.Rows)
            assert image.mode == ("RGB" if ds.SamplesPerPixel == 3 else "L")
        r = _wado_uri(endpoint, inst, contentType="application/dicom")
        assert r.status_code == 200 and r.content == inst.data


def test_wado_uri_windowing_monochrome1_and_frame_number(endpoint: Endpoint) -> None:
    ds = source_dataset("ct")
    mono2 = make_instance("ct")
    ds1 = mono2.dataset()
    ds1.PhotometricInterpretation = "MONOCHROME1"
    ds1.SOPInstanceUID = generate_uid()
    mono1_data = to_part10(ds1)
    multi = make_instance("multiframe")
    body, ctype = stow_body([mono2, mono1_data, multi])
    assert endpoint.post("/studies", body, ctype).status_code == 200

    def png(inst_uids, **params) -> np.ndarray:
        r = _wado_uri(endpoint, inst_uids, contentType="image/png", **params)
        assert r.status_code == 200, r.text
        return np.asarray(Image.open(io.BytesIO(r.content)))

    a = png((mono2.study_uid, mono2.series_uid, mono2.sop_uid)).astype(int)
    b = png((ds1.StudyInstanceUID, ds1.SeriesInstanceUID, ds1.SOPInstanceUID)).astype(int)
    assert np.array_equal(a, 255 - b), "MONOCHROME1 must render inverted"
    # The CT's own pixel range is used when it has no window: full contrast.
    assert a.min() == 0 and a.max() == 255
    narrow = png((mono2.study_uid, mono2.series_uid, mono2.sop_uid), windowCenter="100", windowWidth="10")
    assert (narrow == 0).mean() + (narrow == 255).mean() > 0.9, "a narrow window saturates almost every pixel"
    f1 = png((multi.study_uid, multi.series_uid, multi.sop_uid), frameNumber="1")
    f2 = png((multi.study_uid, multi.series_uid, multi.sop_uid), frameNumber="2")
    assert f1.shape == f2.shape == (ds.Rows if False else 100, 100, 3)
    assert not np.array_equal(f1, f2)


def test_whole_study_as_jpeg_has_one_part_per_frame(endpoint: Endpoint, joe: list) -> None:
    parts = parts_of(
        endpoint.get(f"/studies/{joe[0].study_uid}", headers={"Accept": "multipart/related; type=image/jpeg"})
    )
    expected = sum(int(i.dataset().get("NumberOfFrames", 1) or 1) for i in joe)
    assert len(parts) == expected
    for headers, payload in parts:
        assert headers["content-type"].startswith("image/jpeg")
        assert Image.open(io.BytesIO(payload)).format == "JPEG"


def _photo() -> bytes:
    image = Image.new("RGB", (160, 120), (10, 120, 200))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue()


def _xml(study: str, series: str, sop: str, pixel_ref: str | None = "photo-1") -> bytes:
    pixel = (
        f'<DicomAttribute tag="7FE00010" vr="OB"><BulkData uri="{pixel_ref}"/></DicomAttribute>' if pixel_ref else ""
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM">
 <DicomAttribute tag="00100010" vr="PN"><PersonName number="1"><Alphabetic><FamilyName>THOMPSON</FamilyName>
   <GivenName>ALEX</GivenName></Alphabetic></PersonName></DicomAttribute>
 <DicomAttribute tag="00100020" vr="LO"><Value number="1">PHOTO-{sop[-6:]}</Value></DicomAttribute>
 <DicomAttribute tag="00080060" vr="CS"><Value number="1">XC</Value></DicomAttribute>
 <DicomAttribute tag="0020000D" vr="UI"><Value number="1">{study}</Value></DicomAttribute>
 <DicomAttribute tag="0020000E" vr="UI"><Value number="1">{series}</Value></DicomAttribute>
 <DicomAttribute tag="00080018" vr="UI"><Value number="1">{sop}</Value></DicomAttribute>
 {pixel}
</NativeDicomModel>""".encode()


def _metadata_body(
    meta: bytes, meta_type: str, bulk: bytes, bulk_type: str = "image/jpeg", location: str = "photo-1"
) -> tuple[bytes, str]:
    boundary = "photo-" + generate_uid()[-12:]
    body = (
        f"--{boundary}\r\nContent-Type: {meta_type}\r\n\r\n".encode()
        + meta
        + f"\r\n--{boundary}\r\nContent-Type: {bulk_type}\r\nContent-Location: {location}\r\n\r\n".encode()
        + bulk
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f'multipart/related; type="{meta_type}"; boundary={boundary}'


def test_stow_xml_metadata_with_a_jpeg_builds_a_real_instance(endpoint: Endpoint) -> None:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    jpeg = _photo()
    body, ctype = _metadata_body(_xml(study, series, sop), "application/dicom+xml", jpeg)
    r = endpoint.post(f"/studies/{study}", body, ctype)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/dicom+xml"), r.text
    root = __import__("xml.etree.ElementTree", fromlist=["x"]).fromstring(r.content)
    ns = "{http://dicom.nema.org/PS3.19/models/NativeDICOM}"
    referenced = [a for a in root if a.get("keyword") == "ReferencedSOPSequence"]
    assert referenced, r.text
    texts = [v.text for v in referenced[0].iter(ns + "Value")]
    assert sop in texts and "1.2.840.10008.5.1.4.1.1.7" in texts
    assert f"{endpoint.base_url}/studies/{study}/series/{series}/instances/{sop}" in texts
    found = endpoint.get("/studies", params={"StudyInstanceUID": study}).json()
    assert _v(found[0], "00080061") == ["XC"]
    [(_, frame)] = parts_of(
        endpoint.get(
            f"/studies/{study}/series/{series}/instances/{sop}/frames/1",
            headers={"Accept": "multipart/related; type=image/jpeg"},
        )
    )
    assert frame == jpeg
    as_stored = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    [(_, part10)] = parts_of(endpoint.get(f"/studies/{study}/series/{series}/instances/{sop}", headers=as_stored))
    ds = dcmread(io.BytesIO(part10))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated) == (120, 160, 3, 8)
    assert ds.PhotometricInterpretation.startswith("YBR_FULL")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert ds.pixel_array.shape == (120, 160, 3)


def test_stow_json_metadata_answers_in_json(endpoint: Endpoint) -> None:
    study, sop = generate_uid(), generate_uid()
    meta = json.dumps(
        [
            {
                "0020000D": {"vr": "UI", "Value": [study]},
                "00080018": {"vr": "UI", "Value": [sop]},
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": "SIIM^JOE"}]},
                "7FE00010": {"vr": "OB", "BulkDataURI": "http://client/bulk/7"},
            }
        ]
    ).encode()
    body, ctype = _metadata_body(meta, "application/dicom+json", _photo(), location="http://client/bulk/7")
    r = endpoint.post("/studies", body, ctype)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/dicom+json")
    assert _v(_v(r.json(), "00081199")[0], "00081155") == [sop]
    [inst] = endpoint.get(f"/studies/{study}/instances").json()
    assert _v(inst, "00280010") == [120] and _v(inst, "00280011") == [160]


def test_bad_metadata_uploads_are_4xx_and_store_nothing(endpoint: Endpoint) -> None:
    cases = []
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    broken = _xml(study, series, sop).replace(b"</Value></DicomAttribute>", b"</value></DicomAttribute>", 1)
    cases.append(("malformed XML", _metadata_body(broken, "application/dicom+xml", _photo()), 400, "line"))
    cases.append(
        (
            "missing bulk data",
            _metadata_body(_xml(study, series, sop, "nowhere"), "application/dicom+xml", _photo()),
            409,
            "nowhere",
        )
    )
    cases.append(
        (
            "not a JPEG",
            _metadata_body(_xml(study, series, sop), "application/dicom+xml", b"GIF89a definitely not a jpeg"),
            409,
            "not a JPEG",
        )
    )
    for name, (body, ctype), status, word in cases:
        r = endpoint.post(f"/studies/{study}", body, ctype)
        assert r.status_code == status, (name, r.status_code, r.text)
        text = r.json()["message"] if status == 400 else r.headers.get("Warning", "")
        assert word in text, (name, text)
    assert endpoint.get("/studies", params={"StudyInstanceUID": study}).status_code == 204


def test_wado_uri_and_frame_bad_input(endpoint: Endpoint, joe: list) -> None:
    inst = joe[0]
    r = _wado_uri(endpoint, inst, contentType="application/pdf")
    assert r.status_code == 406 and "contentType" in r.json()["message"]
    r = _wado_uri(endpoint, inst, requestType="WADX")
    assert r.status_code == 400 and "requestType" in r.json()["message"]
    r = _wado_uri(endpoint, inst, seriesUID=None, objectUID=None)
    assert r.status_code == 400 and "seriesUID" in r.json()["message"]
    r = _wado_uri(endpoint, inst, frameNumber="9")
    assert r.status_code == 404 and "frame 9" in r.json()["message"]
    r = endpoint.get(_frame_url(inst) + "/3", headers={"Accept": "multipart/related; type=image/jpeg"})
    assert r.status_code == 404 and "frame 3" in r.json()["message"]
    r = endpoint.get(_frame_url(inst) + "/0")
    assert r.status_code == 400


ROUTES = [
    "/studies",
    "/studies/{s}",
    "/studies/{s}/metadata",
    "/studies/{s}/series",
    "/studies/{s}/instances",
    "/studies/{s}/series/{se}",
    "/studies/{s}/series/{se}/metadata",
    "/studies/{s}/series/{se}/instances",
    "/studies/{s}/series/{se}/instances/{i}",
    "/studies/{s}/series/{se}/instances/{i}/metadata",
    "/studies/{s}/series/{se}/instances/{i}/bulkdata/7FE00010",
    "/studies/{s}/series/{se}/instances/{i}/frames/1",
    "/studies/{s}/series/{se}/instances/{i}/rendered",
    "/studies/{s}/series/{se}/instances/{i}/frames/1/rendered",
    "/wadouri",
]


def test_api_key_is_required_on_every_route(endpoint: Endpoint, joe: list) -> None:
    if not endpoint.api_key:
        pytest.skip("this deployment has no API key")
    inst = joe[0]
    for route in ROUTES:
        url = endpoint.base_url + route.format(s=inst.study_uid, se=inst.series_uid, i=inst.sop_uid)
        missing = requests.get(url, timeout=60)
        wrong = requests.get(url, headers={"apikey": "wrong"}, timeout=60)
        assert missing.status_code == 401 and missing.json()["message"], route
        assert wrong.status_code == 403 and set(wrong.json()) == {"status", "error", "message"}, route
    body, ctype = stow_body([make_instance("mr")])
    assert (
        requests.post(
            endpoint.base_url + "/studies", data=body, headers={"Content-Type": ctype}, timeout=60
        ).status_code
        == 401
    )
    ok = requests.get(
        endpoint.base_url + "/studies",
        params={"StudyInstanceUID": inst.study_uid},
        headers={"x-api-key": endpoint.api_key},
        timeout=60,
    )
    assert ok.status_code == 200 and len(ok.json()) == 1


def test_cors_preflight_on_every_route(endpoint: Endpoint, joe: list) -> None:
    inst = joe[0]
    origin = "https://viewer.example.org"
    for route in ROUTES:
        url = endpoint.base_url + route.format(s=inst.study_uid, se=inst.series_uid, i=inst.sop_uid)
        r = requests.options(
            url,
            timeout=60,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST" if route == "/studies" else "GET",
                "Access-Control-Request-Headers": "accept, authorization, apikey, content-type",
            },
        )
        assert r.status_code == 200, (route, r.status_code, r.text)
        assert r.headers["Access-Control-Allow-Origin"] in ("*", origin)
        allowed = r.headers["Access-Control-Allow-Headers"].lower()
        for header in ("accept", "authorization", "apikey", "content-type"):
            assert header in allowed, (route, header)
    r = endpoint.get("/studies", params={"StudyInstanceUID": inst.study_uid}, headers={"Origin": origin})
    exposed = r.headers["Access-Control-Expose-Headers"].lower()
    assert "content-location" in exposed and "warning" in exposed
