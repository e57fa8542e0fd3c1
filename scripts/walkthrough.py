#!/usr/bin/env python3
"""The quick-start walkthrough: both seed documents, request for request, against a running stack.

    make run                      # in one terminal
    .venv/bin/python scripts/walkthrough.py       # in another (or: make walkthrough)

It loads a sample study for ALEX THOMPSON (CT) and one for Joe SIIM (two CT objects) under the
seeds' own UIDs, then performs every request of the seeds, printing each as a curl command with
a summary of the answer, and checks what comes back. Exit status 0 when everything answered as
the seeds expect. Options: --url and --api-key to use another deployment (default:
.local/endpoint.json written by `make run`), --quiet to print only the summary.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import io
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import requests
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parents[1]

# The seeds' own identifiers (shared/seeds): only the host part of their URLs changes.
THOMPSON_STUDY = "1.2.392.200036.9116.2.2.2.1762893313.1029997326.945873"
THOMPSON_SERIES = "1.2.392.200036.9116.2.2.2.1762893313.1029997326.945874"
THOMPSON_SOPS = [
    "1.2.392.200036.9116.2.2.2.1762893313.1029997326.945875",
    "1.2.392.200036.9116.2.2.2.1762893313.1029997326.945876",
]
SIIM_STUDY = "1.3.6.1.4.1.14519.5.2.1.7777.9002.198875685720513246512710453733"
SIIM_SERIES = "1.3.6.1.4.1.14519.5.2.1.7777.9002.207203214132667549392101803048"
SIIM_SOPS = [
    "1.3.6.1.4.1.14519.5.2.1.7777.9002.327873213718058651550666129029",
    "1.3.6.1.4.1.14519.5.2.1.7777.9002.327873213718058651550666129030",
]
PHOTO_STUDY = "2.25.329800735698586629295641978511506172918"
PHOTO_SERIES = "2.25.444800735698586629295641978511506172918"
PHOTO_SOP = "2.25.555800735698586629295641978511506172918"


class WalkthroughFailed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise WalkthroughFailed(message)


def part10(source: str, study: str, series: str, sop: str, number: int, **attrs: Any) -> bytes:
    ds = dcmread(get_testdata_file(source))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.InstanceNumber, ds.SeriesNumber = number, 1
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def multipart(parts: list[tuple[bytes, dict[str, str]]], part_type: str, boundary: str) -> tuple[bytes, str]:
    chunks = []
    for payload, headers in parts:
        chunks.append(f"--{boundary}\r\n".encode())
        chunks += [f"{k}: {v}\r\n".encode() for k, v in headers.items()]
        chunks += [b"\r\n", payload, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/related; type={part_type}; boundary={boundary}"


def parts_of(response: requests.Response) -> list[tuple[dict[str, str], bytes]]:
    ctype = response.headers.get("Content-Type", "")
    check(ctype.startswith("multipart/related"), f"expected a multipart answer, got {ctype}")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + response.content
    )
    return [({k.lower(): str(v) for k, v in p.items()}, p.get_payload(decode=True)) for p in msg.iter_parts()]


class Walk:
    def __init__(self, base_url: str, api_key: str | None, quiet: bool) -> None:
        self.base = base_url.rstrip("/")
        self.api_key = api_key
        self.quiet = quiet
        self.steps = 0

    def say(self, text: str = "") -> None:
        if not self.quiet:
            print(text)

    def request(
        self,
        title: str,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        body_note: str = "",
    ) -> requests.Response:
        self.steps += 1
        headers = dict(headers or {})
        if self.api_key:
            headers = {"apikey": self.api_key, **headers}
        self.say(f"\n== {self.steps}. {title}")
        curl = ["curl", "-s"] + (["-X", method] if method != "GET" else [])
        for k, v in headers.items():
            curl += ["-H", f"{k}: {v}"]
        if body is not None:
            curl += ["--data-binary", f"@{body_note or 'body'}"]
        self.say("$ " + " ".join(shlex.quote(c) for c in curl + [url]))
        r = requests.request(method, url, headers=headers, data=body, timeout=60)
        self.say(f"HTTP {r.status_code} {r.headers.get('Content-Type', '')}")
        return r

    def show_dataset(self, doc: dict[str, Any]) -> None:
        """One line per attribute: tag, keyword, VR and values (the JSON as the seed prints it)."""
        from pydicom.datadict import keyword_for_tag

        for tag, element in doc.items():
            values = [v.get("Alphabetic", v) if isinstance(v, dict) else v for v in element.get("Value", [])]
            self.say(
                f"  {tag} {keyword_for_tag(int(tag, 16)) or '':32} {element.get('vr')}  "
                f"{json.dumps(values, ensure_ascii=False)}"
            )

    def show_parts(self, parts: list[tuple[dict[str, str], bytes]]) -> None:
        for i, (headers, payload) in enumerate(parts, 1):
            extra = ""
            if headers.get("content-type", "").startswith("image/"):
                image = Image.open(io.BytesIO(payload))
                extra = f" -> {image.format} {image.size[0]}x{image.size[1]} {image.mode}"
            elif headers.get("content-type", "").startswith("application/dicom+xml"):
                extra = " -> " + payload[:90].decode(errors="replace").replace("\n", " ") + "..."
            self.say(f"  part {i}: {headers.get('content-type')} ({len(payload)} bytes){extra}")


def load_samples(w: Walk) -> None:
    thompson = dict(
        PatientName="THOMPSON^ALEX",
        PatientID="12345",
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
    siim = dict(
        PatientName="SIIM^JOE",
        PatientID="SIIM-1",
        StudyDate="20180927",
        StudyDescription="Hands-on study",
        AccessionNumber="SIIM0001",
    )
    files = [
        part10("CT_small.dcm", THOMPSON_STUDY, THOMPSON_SERIES, sop, n, **thompson)
        for n, sop in enumerate(THOMPSON_SOPS, 1)
    ]
    files += [part10("CT_small.dcm", SIIM_STUDY, SIIM_SERIES, sop, n, **siim) for n, sop in enumerate(SIIM_SOPS, 1)]
    body, ctype = multipart(
        [(f, {"Content-Type": "application/dicom"}) for f in files], '"application/dicom"', "sample-study-boundary"
    )
    r = w.request(
        "Load the sample studies (STOW-RS, 4 Part-10 instances)",
        "POST",
        f"{w.base}/studies",
        {"Content-Type": ctype, "Accept": "application/dicom+json"},
        body,
        "samples.multipart",
    )
    check(r.status_code == 200, f"loading the samples answered {r.status_code}: {r.text[:300]}")
    w.say(f"  stored {len(r.json()['00081199']['Value'])} instances (storing them again changes nothing)")


def seed_quick_start(w: Walk) -> None:
    r = w.request(
        "QIDO-RS: Karen searches studies by last name",
        "GET",
        f"{w.base}/studies/?00100010=THOMPSON&includefield=00081030",
        {"Accept": "application/json"},
    )
    check(r.status_code == 200, f"search answered {r.status_code}")
    [study] = [s for s in r.json() if s["0020000D"]["Value"] == [THOMPSON_STUDY]]
    w.show_dataset(study)
    for tag in (
        "00080005",
        "00080020",
        "00080030",
        "00080050",
        "00080056",
        "00080061",
        "00080090",
        "00081030",
        "00100010",
        "00100020",
        "00100030",
        "00100040",
        "0020000D",
        "00200010",
        "00201206",
        "00201208",
        "00081190",
    ):
        check(tag in study, f"the study result lacks {tag}")
    check(study["00100010"]["Value"] == [{"Alphabetic": "THOMPSON^ALEX"}], "PatientName")
    check(study["00081190"]["Value"] == [f"{w.base}/studies/{THOMPSON_STUDY}"], "RetrieveURL")

    r = w.request(
        "WADO-RS: the study as JPEG images",
        "GET",
        study["00081190"]["Value"][0],
        {"Accept": "multipart/related; type=image/jpeg"},
    )
    parts = parts_of(r)
    w.show_parts(parts)
    check(
        len(parts) == 2 and all(Image.open(io.BytesIO(p)).size == (128, 128) for _, p in parts),
        "expected one 128x128 JPEG per CT slice",
    )

    photo = Image.new("RGB", (320, 240), (180, 40, 40))
    for x in range(100, 220):
        for y in range(80, 160):
            photo.putpixel((x, y), (240, 200, 60))
    jpeg = io.BytesIO()
    photo.save(jpeg, format="JPEG", quality=90)
    xml = (ROOT / "events" / "stow-photo-metadata.xml").read_bytes()
    body, ctype = multipart(
        [
            (xml, {"Content-Type": "application/dicom+xml"}),
            (jpeg.getvalue(), {"Content-Type": "image/jpeg", "Content-Location": "329800735"}),
        ],
        "application/dicom+xml",
        "MESSAGEBOUNDARY",
    )
    r = w.request(
        "STOW-RS: upload the lesion photo (XML metadata + JPEG)",
        "POST",
        f"{w.base}/studies/{PHOTO_STUDY}",
        {"Content-Type": ctype},
        body,
        "photo.multipart",
    )
    w.say(r.text[:700] + ("..." if len(r.text) > 700 else ""))
    check(
        r.status_code == 200 and r.headers["Content-Type"].startswith("application/dicom+xml"),
        f"the upload answered {r.status_code}: {r.text[:300]}",
    )
    check(f"{w.base}/studies/{PHOTO_STUDY}/series/{PHOTO_SERIES}/instances/{PHOTO_SOP}" in r.text, "RetrieveURL")
    r = w.request(
        "WADO-RS: the uploaded photo's frame",
        "GET",
        f"{w.base}/studies/{PHOTO_STUDY}/series/{PHOTO_SERIES}/instances/{PHOTO_SOP}/frames/1",
        {"Accept": "multipart/related; type=image/jpeg"},
    )
    parts = parts_of(r)
    w.show_parts(parts)
    check(parts[0][1] == jpeg.getvalue(), "the frame is not the uploaded JPEG")

    broken = (ROOT / "events" / "stow-photo-metadata-seed-typos.xml").read_bytes()
    body, ctype = multipart(
        [
            (broken, {"Content-Type": "application/dicom+xml"}),
            (jpeg.getvalue(), {"Content-Type": "image/jpeg", "Content-Location": "329800735"}),
        ],
        "application/dicom+xml",
        "MESSAGEBOUNDARY",
    )
    r = w.request(
        "STOW-RS with the seed's XML exactly as printed (it has typos)",
        "POST",
        f"{w.base}/studies/{PHOTO_STUDY}",
        {"Content-Type": ctype},
        body,
        "seed-typos.multipart",
    )
    w.say(r.text)
    check(r.status_code == 400 and "line" in r.json()["message"], "malformed XML should be a 400 naming the line")


def seed_hands_on(w: Walk) -> None:
    r = w.request("1. Find the patient", "GET", f"{w.base}/studies/?PatientName=SIIM^Joe")
    check(r.status_code == 200 and any(s["0020000D"]["Value"] == [SIIM_STUDY] for s in r.json()), "SIIM^Joe")
    w.say(f"  {len(r.json())} study; PatientName={r.json()[0]['00100010']['Value'][0]}")
    r = w.request("1b. ... or by last name only", "GET", f"{w.base}/studies/?PatientName=SIIM*")
    check(any(s["0020000D"]["Value"] == [SIIM_STUDY] for s in r.json()), "SIIM*")
    w.say(f"  {len(r.json())} study")

    url = f"{w.base}/studies/{SIIM_STUDY}/instances"
    r = w.request("2. The study's structure, as JSON", "GET", url, {"Accept": "application/json"})
    instances = r.json()
    for inst in instances:
        w.say(
            "  "
            + ", ".join(
                f"{k}={inst[t]['Value'][0]}"
                for k, t in (
                    ("SOPInstanceUID", "00080018"),
                    ("Modality", "00080060"),
                    ("SeriesNumber", "00200011"),
                    ("InstanceNumber", "00200013"),
                )
            )
        )
    check(sorted(i["00080018"]["Value"][0] for i in instances) == sorted(SIIM_SOPS), "instances")
    check(all("00081190" in i for i in instances), "RetrieveURL on each instance")
    r = w.request(
        "2b. ... and as DICOM XML parts", "GET", url, {"Accept": 'multipart/related; type="application/dicom+xml"'}
    )
    parts = parts_of(r)
    w.show_parts(parts)
    check(len(parts) == 2 and all(SIIM_SERIES.encode() in p for _, p in parts), "XML parts")

    frame_url = f"{w.base}/studies/{SIIM_STUDY}/series/{SIIM_SERIES}/instances/{SIIM_SOPS[0]}/frames/1"
    r = w.request(
        "3. Let's see some images (frames as JPEG)",
        "GET",
        frame_url,
        {"Accept": "multipart/related; type=image/dicom+jpeg"},
    )
    parts = parts_of(r)
    w.show_parts(parts)
    check(Image.open(io.BytesIO(parts[0][1])).format == "JPEG", "frame JPEG")
    wado_uri = (
        f"{w.base}/wadouri/?requestType=WADO&contentType=image/jpeg&studyUID={SIIM_STUDY}"
        f"&seriesUID={SIIM_SERIES}&objectUID={SIIM_SOPS[0]}"
    )
    for content_type in ("image/jpeg", "image/png"):
        r = w.request(f"3b. WADO-URI as {content_type}", "GET", wado_uri.replace("image/jpeg", content_type))
        image = Image.open(io.BytesIO(r.content))
        w.say(f"  -> {image.format} {image.size[0]}x{image.size[1]}")
        check(r.status_code == 200 and image.size == (128, 128), f"WADO-URI {content_type}")

    r = w.request("4. The entire study in one shot", "GET", f"{w.base}/studies/{SIIM_STUDY}")
    parts = parts_of(r)
    w.show_parts(parts)
    check(
        len(parts) == 2 and all(dcmread(io.BytesIO(p)).StudyInstanceUID == SIIM_STUDY for _, p in parts),
        "two Part-10 objects",
    )

    if w.api_key:
        saved, w.api_key = w.api_key, None
        r = w.request("The apikey header matters: without it", "GET", f"{w.base}/studies")
        w.say(r.text)
        check(r.status_code == 401, "a request without the key should be refused")
        w.api_key = "not-the-key"
        r = w.request("... and with a wrong one", "GET", f"{w.base}/studies")
        w.say(r.text)
        check(r.status_code == 403, "a wrong key should be refused")
        w.api_key = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="DICOMweb base URL (default: .local/endpoint.json)")
    parser.add_argument("--api-key", help="API key (default: .local/endpoint.json)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    url, key = args.url, args.api_key
    if not url:
        path = ROOT / ".local" / "endpoint.json"
        if not path.exists():
            print("no running stack: start one with `make run` (or pass --url)", file=sys.stderr)
            return 2
        endpoint = json.loads(path.read_text())
        url, key = endpoint["base_url"], key or endpoint.get("api_key")
    w = Walk(url, key, args.quiet)
    try:
        load_samples(w)
        w.say("\n######## Seed 1: A DICOMweb Quick Start Guide")
        seed_quick_start(w)
        w.say("\n######## Seed 2: Introduction to DICOM & DICOMweb (hands-on)")
        seed_hands_on(w)
    except (WalkthroughFailed, requests.RequestException, ValueError, KeyError) as exc:
        print(f"\nFAILED at step {w.steps}: {exc}", file=sys.stderr)
        return 1
    print(f"\nwalkthrough: {w.steps} requests, all answered as the seeds expect")
    return 0


if __name__ == "__main__":
    sys.exit(main())
