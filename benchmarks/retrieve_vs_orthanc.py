"""WADO-RS and QIDO-RS side by side: the dev server (in-memory storage) against Orthanc with its
DICOMweb plugin, on the same generated study.

Run: ``.venv/bin/python benchmarks/retrieve_vs_orthanc.py [--rounds 3] [--repeat 20] [--slices 120]
[--frames 120] [--no-compressed]``

It installs nothing: Orthanc is used if ``Orthanc`` and the DICOMweb plugin are installed (on Debian
or Ubuntu: ``apt-get install -y orthanc orthanc-dicomweb``), else only the dev server is measured.
The servers are started as in ``ingest_vs_orthanc.py`` (``benchmarks/side_by_side.py``: a temporary
directory, and ``unshare --net`` for Orthanc before 1.12.10, which listens on every interface).

The corpus is generated at run time (nothing on disk but the servers' storage), one study:

* a CT series of ``--slices`` 512×512 16-bit slices (``tests/e2e/data.py`` ``ct_series``; 120:
  63 MB), Explicit VR Little Endian, stored 7 slices per STOW-RS request (under the Lambda's 4.5 MB);
* a multi-frame instance of ``--frames`` 512×512 16-bit frames (the same pixels; 120: 63 MB), native
  Explicit VR Little Endian, in a series of its own;
* the same multi-frame JPEG-LS Lossless compressed (a third series; ``--no-compressed`` leaves it out).

Each multi-frame goes in one STOW-RS request; the dev server is started with a request limit of
``--max-request-mb`` for that (the deployed stack takes such files through upload sessions). Every
server gets the same bytes. Then, in interleaved rounds (one server after the other, the order
alternating from round to round), it measures:

* the whole study (``GET /studies/{uid}``), as stored (``transfer-syntax=*``) and with the default
  ``Accept: multipart/related; type="application/dicom"`` (Explicit VR Little Endian): MB/s = bytes of
  the multipart answer / wall time, read in 1 MiB pieces;
* one CT instance as stored (a different slice each time), one frame (``/frames/60``) and a list of
  10 frames of the native multi-frame as stored, one frame of the JPEG-LS one as stored, the CT
  series' metadata, and two QIDO series searches: the median of ``--repeat`` requests, in ms.

Every answer is checked before its time is kept: status 200, the part count, the bytes of every
part where the stored bytes were asked for (byte-exact Part-10 files and frames), the transfer
syntax of every part otherwise, the number of metadata objects and search results. What does not
match is printed next to the numbers (and a measurement that fails its check is not reported). The
servers' peak RSS (``VmHWM``, reset before each whole-study retrieval) and CPU time during the
whole-study retrievals are read from /proc. All requests go over one keep-alive connection per
server, one at a time.

The machine is shared: numbers are approximate; compare runs of one machine and one hour only.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "dicomweb"), str(ROOT)]

from side_by_side import (  # noqa: E402  (benchmarks/, the script's own folder)
    Target,
    cpu_seconds,
    load_average,
    local_targets,
    measure_locally,
    memory_bytes,
    reset_peak_memory,
    store_all,
)

MB = 1_000_000
STOW_BATCH_BYTES = 4_400_000  # CT slices per request: under the deployed stack's STOW-RS limit
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
DEFAULT = 'multipart/related; type="application/dicom"'
FRAMES_AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
JSON = "application/dicom+json"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


# -- the corpus ----------------------------------------------------------------------------------


@dataclass
class Corpus:
    study: str
    ct_series: str
    ct: list[str]  # SOP Instance UIDs of the slices, in order
    files: dict[str, bytes]  # every instance's Part-10 bytes by SOP Instance UID
    syntaxes: dict[str, str]  # its transfer syntax
    #: series, SOP Instance UID and the frames' stored bytes of each multi-frame ("native", "jpeg-ls")
    multiframes: dict[str, tuple[str, str, list[bytes]]] = field(default_factory=dict)


def make_corpus(slices: int, frames: int, compressed: bool) -> Corpus:
    import numpy as np
    from pydicom.encaps import generate_frames
    from pydicom.uid import JPEGLSLossless, generate_uid

    from tests.corpus import to_part10
    from tests.e2e.data import _base, ct_series

    with tempfile.TemporaryDirectory(prefix="retrieve-bench-") as tmp:
        study, datasets = ct_series(Path(tmp), slices)
        files = {str(ds.SOPInstanceUID): path.read_bytes() for ds, path in zip(datasets, study.files, strict=True)}
    corpus = Corpus(study.study_uid, study.series_uid, list(files), files, dict.fromkeys(files, EXPLICIT_LE))
    pixels = [np.frombuffer(ds.PixelData, dtype=np.uint16).reshape(512, 512) for ds in datasets]
    stack = np.stack([pixels[n % len(pixels)] for n in range(frames)])

    def multiframe(number: int) -> Any:
        sop_class = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word Secondary Capture
        ds = _base(sop_class, study.study_uid, generate_uid(), "OT", "E2E^CT")
        ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
        ds.SeriesNumber = ds.InstanceNumber = number
        ds.NumberOfFrames = frames
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = stack.tobytes()
        return ds

    native = multiframe(2)
    kinds = [("native", native, [stack[n].tobytes() for n in range(frames)])]
    if compressed:
        jls = multiframe(3)
        jls.compress(JPEGLSLossless, stack)
        kinds.append(("jpeg-ls", jls, list(generate_frames(jls.PixelData, number_of_frames=frames))))
    for kind, ds, stored_frames in kinds:
        uid = str(ds.SOPInstanceUID)
        corpus.files[uid], corpus.syntaxes[uid] = to_part10(ds), str(ds.file_meta.TransferSyntaxUID)
        corpus.multiframes[kind] = (str(ds.SeriesInstanceUID), uid, stored_frames)
    return corpus


def stow_bodies(corpus: Corpus) -> list[tuple[bytes, str, int]]:
    """The CT slices in requests under STOW_BATCH_BYTES, each multi-frame in a request of its own."""
    from tests.corpus import stow_body

    batches: list[list[bytes]] = [[]]
    for uid in corpus.ct:
        data = corpus.files[uid]
        if batches[-1] and sum(map(len, batches[-1])) + len(data) + 1000 > STOW_BATCH_BYTES:
            batches.append([])
        batches[-1].append(data)
    batches += [[corpus.files[uid]] for _, uid, _ in corpus.multiframes.values()]
    return [(*stow_body(batch), len(batch)) for batch in batches]


# -- one request ----------------------------------------------------------------------------------


class Client:
    """One keep-alive connection to a server; every answer read in 1 MiB pieces."""

    def __init__(self, target: Target) -> None:
        self.target = target
        url = urlsplit(target.base_url)
        self.prefix = url.path.rstrip("/")
        self.conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=600)

    def reconnect(self) -> None:
        """Close the connection; the next request opens another (Orthanc closes idle ones after 1 s)."""
        self.conn.close()

    def get(self, path: str, accept: str) -> tuple[int, str, bytes, float]:
        """Status, Content-Type, body and wall seconds (request sent to last byte read)."""
        headers = {"Accept": accept, **dict(self.target.headers)}
        start = time.perf_counter()
        try:
            self.conn.request("GET", self.prefix + path, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()  # the server closed the idle connection: once more on a new one
            start = time.perf_counter()
            self.conn.request("GET", self.prefix + path, headers=headers)
            response = self.conn.getresponse()
        pieces = []
        while piece := response.read(1 << 20):
            pieces.append(piece)
        seconds = time.perf_counter() - start
        return response.status, response.getheader("Content-Type", ""), b"".join(pieces), seconds


# -- what an answer must be -----------------------------------------------------------------------


class Mismatch(Exception):
    """An answer that is not what was asked for: its time is not kept."""


def split_multipart(body: bytes, content_type: str, quirks: set[str]) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart answer: strictly (RFC 2046, ``tests.corpus.read_multipart``), else
    leniently, noting how the answer departs from the strict form in ``quirks``."""
    from tests.corpus import read_multipart

    try:
        return read_multipart(body, content_type)
    except ValueError as exc:
        fixed = body.rstrip(b"\r\n") + b"\r\n"
        try:
            parts = read_multipart(fixed, content_type)
        except ValueError:
            raise Mismatch(f"not a multipart answer ({exc}): {content_type!r} {body[:200]!r}") from None
        quirks.add("the multipart body does not end with CRLF after the close delimiter")
        return parts


def check_files(
    parts: list[tuple[dict[str, str], bytes]], corpus: Corpus, uids: list[str], as_stored: bool, quirks: set[str]
) -> None:
    """Every instance of ``uids`` once, in its stored transfer syntax when stored bytes were asked
    for, else in Explicit VR Little Endian; byte for byte where that is the stored syntax."""
    from pydicom import dcmread

    seen: dict[str, bytes] = {}
    for _, data in parts:
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
        seen[str(ds.SOPInstanceUID)] = data
        syntax = str(ds.file_meta.TransferSyntaxUID)
        wanted = corpus.syntaxes.get(str(ds.SOPInstanceUID)) if as_stored else EXPLICIT_LE
        if syntax != wanted:
            raise Mismatch(f"{ds.SOPInstanceUID}: transfer syntax {syntax}, not {wanted}")
    if sorted(seen) != sorted(uids) or len(parts) != len(uids):
        raise Mismatch(f"{len(parts)} parts, {len(set(seen) & set(uids))} of the {len(uids)} instances")
    exact = [uid for uid in uids if as_stored or corpus.syntaxes[uid] == EXPLICIT_LE]  # stored as asked for
    if exact:
        differ = [uid for uid in exact if seen[uid] != corpus.files[uid]]
        if differ:
            sizes = {len(seen[u]) - len(corpus.files[u]) for u in differ}
            quirks.add(f"{len(differ)} of {len(exact)} files not byte-exact (size differences {sorted(sizes)} bytes)")
            if any(len(seen[u]) < len(corpus.files[u]) * 0.99 for u in differ):
                raise Mismatch("files shorter than stored")


def check_frames(parts: list[tuple[dict[str, str], bytes]], wanted: list[bytes], quirks: set[str]) -> None:
    if len(parts) != len(wanted):
        raise Mismatch(f"{len(parts)} frames, not {len(wanted)}")
    for (headers, data), frame in zip(parts, wanted, strict=True):
        if data != frame:
            if data.rstrip(b"\0") == frame.rstrip(b"\0"):
                quirks.add("a frame differs from the stored fragment in its trailing padding only")
            else:
                raise Mismatch(f"a frame of {len(data)} bytes is not the stored {len(frame)} bytes")
        quirks.add(f"frame part type {headers.get('content-type', '?')}")


@dataclass(frozen=True)
class Measure:
    name: str
    unit: str  # "MB/s" or "ms"
    path: str
    accept: str
    check: Any  # (content type, body, quirks) -> None; raises Mismatch


def measures(corpus: Corpus) -> list[Measure]:
    s = corpus.study
    everything = list(corpus.files)

    def study_check(as_stored: bool) -> Any:
        def check(ctype: str, body: bytes, quirks: set[str]) -> None:
            check_files(split_multipart(body, ctype, quirks), corpus, everything, as_stored, quirks)

        return check

    def instance_check(uid: str) -> Any:
        def check(ctype: str, body: bytes, quirks: set[str]) -> None:
            check_files(split_multipart(body, ctype, quirks), corpus, [uid], True, quirks)

        return check

    def frames_check(stored: list[bytes]) -> Any:
        def check(ctype: str, body: bytes, quirks: set[str]) -> None:
            check_frames(split_multipart(body, ctype, quirks), stored, quirks)

        return check

    def json_check(count: int, key: str) -> Any:
        def check(ctype: str, body: bytes, quirks: set[str]) -> None:
            items = json.loads(body)
            if len(items) != count or not all(key in item for item in items):
                raise Mismatch(f"{len(items)} results, not {count} with {key}")

        return check

    out = [
        Measure("whole study, as stored", "MB/s", f"/studies/{s}", AS_STORED, study_check(True)),
        Measure("whole study, default (Explicit VR LE)", "MB/s", f"/studies/{s}", DEFAULT, study_check(False)),
    ]
    # One CT slice: a different one each request (the path names it).
    for n, uid in enumerate(corpus.ct):
        path = f"/studies/{s}/series/{corpus.ct_series}/instances/{uid}"
        out.append(Measure(f"one instance (CT slice, as stored)#{n}", "ms", path, AS_STORED, instance_check(uid)))
    for kind, (series, uid, stored) in corpus.multiframes.items():
        base = f"/studies/{s}/series/{series}/instances/{uid}/frames/"
        middle = len(stored) // 2
        name = f"one frame ({kind} multi-frame, as stored)"
        out.append(Measure(name, "ms", f"{base}{middle}", FRAMES_AS_STORED, frames_check([stored[middle - 1]])))
        if kind == "native":
            numbers = [1 + i * (len(stored) // 10) for i in range(10)]
            want = [stored[n - 1] for n in numbers]
            name = f"10 frames ({kind} multi-frame, as stored)"
            path = base + ",".join(map(str, numbers))
            out.append(Measure(name, "ms", path, FRAMES_AS_STORED, frames_check(want)))
    out += [
        Measure(
            "series metadata (CT series)",
            "ms",
            f"/studies/{s}/series/{corpus.ct_series}/metadata",
            JSON,
            json_check(len(corpus.ct), "00080018"),
        ),
        Measure(
            "QIDO /studies/{uid}/series",
            "ms",
            f"/studies/{s}/series",
            JSON,
            json_check(1 + len(corpus.multiframes), "0020000E"),
        ),
        Measure("QIDO /series?Modality=CT", "ms", "/series?Modality=CT", JSON, json_check(1, "0020000E")),
    ]
    return out


# -- rounds ---------------------------------------------------------------------------------------


def measure_once(client: Client, m: Measure, quirks: set[str]) -> tuple[float, int]:
    """Seconds and bytes of one checked answer."""
    status, ctype, body, seconds = client.get(m.path, m.accept)
    if status != 200:
        raise Mismatch(f"HTTP {status}: {body[:300]!r}")
    m.check(ctype, body, quirks)
    return seconds, len(body)


def run_target(client: Client, all_measures: list[Measure], repeat: int, result: dict[str, Any]) -> None:
    """One round on one server: every measure, its value (MB/s, or the median ms of ``repeat``)."""
    target = client.target
    client.reconnect()
    values = result.setdefault("values", {})
    quirks = result.setdefault("quirks", {})
    failures = result.setdefault("failures", {})
    groups: dict[str, list[Measure]] = {}
    for m in all_measures:
        groups.setdefault(m.name.split("#")[0], []).append(m)
    for name, group in groups.items():
        found: set[str] = set()
        try:
            if group[0].unit == "MB/s":
                if target.pid:
                    reset_peak_memory(target.pid)
                cpu = cpu_seconds(target.pid)
                seconds, size = measure_once(client, group[0], found)
                value = size / MB / seconds
                result.setdefault("study_cpu_s", {}).setdefault(name, []).append(cpu_seconds(target.pid) - cpu)
                if target.pid:
                    peak = result.setdefault("peak_rss_mb", {})
                    peak[name] = max(peak.get(name, 0.0), memory_bytes(target.pid) / MB)
            else:
                size = measure_once(client, group[0], found)[1]  # a warm-up (a first series metadata builds its cache)
                times = [measure_once(client, group[i % len(group)], found)[0] for i in range(repeat)]
                value = statistics.median(times) * 1000
        except Mismatch as exc:
            failures.setdefault(name, str(exc))
            print(f"    {target.name}: {name}: WRONG ANSWER: {exc}")
            continue
        values.setdefault(name, []).append(value)
        result.setdefault("bytes", {})[name] = size
        quirks.setdefault(name, [])
        quirks[name] = sorted(set(quirks[name]) | found)
        print(f"    {target.name:24s} {name:42s} {value:8.1f} {group[0].unit}")


def run_rounds(targets: list[Target], corpus: Corpus, rounds: int, repeat: int) -> dict[str, Any]:
    all_measures = measures(corpus)
    bodies = stow_bodies(corpus)
    out: dict[str, Any] = {"order": [t.name for t in targets], "servers": {}}
    clients = {}
    for target in targets:
        seconds = store_all(target, bodies, clients=1)
        result = out["servers"].setdefault(target.name, {})
        result["stow_s"] = seconds
        if target.pid:
            result["idle_rss_mb"] = memory_bytes(target.pid, "VmRSS") / MB
        print(f"  stored {len(corpus.files)} instances in {target.name} in {seconds:.1f} s")
        clients[target.name] = Client(target)
    out["load"] = [load_average()]
    for r in range(rounds):
        order = targets if r % 2 == 0 else list(reversed(targets))
        print(f"  round {r + 1} (load average {load_average()}):")
        for target in order:
            run_target(clients[target.name], all_measures, repeat, out["servers"][target.name])
        out["load"].append(load_average())
    return out


def local_servers(args: argparse.Namespace) -> dict[str, Any]:
    corpus = make_corpus(args.slices, args.frames, not args.no_compressed)
    total = sum(map(len, corpus.files.values())) / MB
    print(f"one study: {len(corpus.ct)} CT slices + {len(corpus.multiframes)} multi-frame(s), {total:.1f} MB")
    with local_targets([{"max_request_bytes": args.max_request_mb * MB}]) as targets:
        return run_rounds(targets, corpus, args.rounds, args.repeat)


def report(results: dict[str, Any]) -> None:
    names = results["order"]
    servers = results["servers"]
    print(f"\nload average (1, 5, 15 min) before and after each round: {' | '.join(results['load'])}")
    print("\nmedian over rounds:\n")
    print("| measure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    measures_seen: list[str] = []
    for name in names:
        for m in [*servers[name].get("values", {}), *servers[name].get("failures", {})]:
            if m not in measures_seen:
                measures_seen.append(m)
    for m in measures_seen:
        cells = []
        for name in names:
            values = servers[name].get("values", {}).get(m)
            unit = "MB/s" if m.startswith("whole study") else "ms"
            cells.append(f"{statistics.median(values):.1f} {unit}" if values else "wrong answer")
        print(f"| {m} | " + " | ".join(cells) + " |")
    print()
    for name in names:
        s = servers[name]
        print(f"{name}: stored the study in {s['stow_s']:.1f} s; answer sizes:")
        print("  " + "; ".join(f"{m}: {size / MB:.3f} MB" for m, size in s.get("bytes", {}).items()))
        for m, cpu in s.get("study_cpu_s", {}).items():
            if cpu and any(cpu):
                print(f"  server CPU per {m}: {statistics.median(cpu):.2f} s")
        if "idle_rss_mb" in s:
            peaks = ", ".join(f"{m}: {v:.0f} MB" for m, v in s.get("peak_rss_mb", {}).items())
            print(f"  RSS after storing {s['idle_rss_mb']:.0f} MB; peak during {peaks}")
        for m, quirks in s.get("quirks", {}).items():
            for q in quirks:
                print(f"  {m}: {q}")
        for m, failure in s.get("failures", {}).items():
            print(f"  {m}: WRONG ANSWER: {failure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20, help="requests per round for each ms figure")
    parser.add_argument("--slices", type=int, default=120)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--no-compressed", action="store_true", help="leave out the JPEG-LS multi-frame")
    parser.add_argument("--max-request-mb", type=int, default=256, help="the dev server's STOW-RS request limit")
    parser.add_argument("--local-only", type=Path, help=argparse.SUPPRESS)  # the namespaced child
    args = parser.parse_args()
    argv = [
        *("--rounds", str(args.rounds), "--repeat", str(args.repeat)),
        *("--slices", str(args.slices), "--frames", str(args.frames), "--max-request-mb", str(args.max_request_mb)),
        *(["--no-compressed"] if args.no_compressed else []),
    ]
    results = measure_locally(__file__, argv, args.local_only, lambda: local_servers(args))
    if results is not None:
        report(results)


if __name__ == "__main__":
    main()
