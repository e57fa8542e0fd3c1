"""STOW-RS throughput side by side: the dev server (in-memory storage) against Orthanc with its
DICOMweb plugin, and optionally the local (or any deployed) stack.

Run: ``.venv/bin/python benchmarks/ingest_vs_orthanc.py [--instances 2000] [--rounds 3]
[--endpoint .local/endpoint.json [--import-tool]]``

It installs nothing: Orthanc is used if ``Orthanc`` and the DICOMweb plugin are installed (on Debian
or Ubuntu: ``apt-get install -y orthanc orthanc-dicomweb``), else only the other servers are measured.
Every round sends the same freshly generated instances to each server (CT_small and MR_small from
pydicom's test files, half each, with new Study/Series/SOP Instance UIDs; 20 instances a series, 5
series a study), 10 instances per STOW-RS request, from 4 concurrent clients, one server after the
other in alternating order (interleaved rounds). It reports instances/s and MB/s per server (median
over rounds) and checks every answer is a 200 that names every instance. The dev server is measured
twice: parsing in its pool of processes (its default, one per core) and in its one process (as a
Lambda function parses). With ``--import-tool`` the same kind of corpus is also written as files
and sent by ``dicomweb import`` into the stack ``--endpoint`` names.

Orthanc runs from a temporary directory with its own storage and configuration, with its DICOM
(C-STORE) server disabled. Orthanc before 1.12.10 cannot choose the address its HTTP server binds to
(it listens on every interface), so on such versions the Orthanc and dev-server runs happen in a
private network namespace (``unshare --net``: only a loopback interface exists there). The local
stack, when asked for, is measured outside it, in rounds of its own. (The servers and the namespace
are ``benchmarks/side_by_side.py``, shared with ``retrieve_vs_orthanc.py``.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "dicomweb"), str(ROOT)]

from side_by_side import (  # noqa: E402  (benchmarks/, the script's own folder)
    Target,
    cpu_seconds,
    endpoint_target,
    local_targets,
    measure_locally,
    store_all,
)

PER_REQUEST = 10
CLIENTS = 4


# -- the corpus ----------------------------------------------------------------------------------


def make_bodies(n: int) -> tuple[list[tuple[bytes, str, int]], int]:
    """STOW-RS bodies of PER_REQUEST instances each: (body, content type, instance count), total bytes."""
    from tests.corpus import stow_body

    instances = make_instances(n)
    bodies = []
    for start in range(0, n, PER_REQUEST):
        chunk = instances[start : start + PER_REQUEST]
        body, ctype = stow_body(chunk)
        bodies.append((body, ctype, len(chunk)))
    return bodies, sum(len(d) for d in instances)


def make_instances(n: int) -> list[bytes]:
    """``n`` Part-10 instances, CT_small and MR_small in turn, 20 a series, 5 series a study."""
    from pydicom.uid import generate_uid

    from tests.corpus import source_dataset, to_part10

    sources = {name: source_dataset(name) for name in ("ct", "mr")}
    instances: list[bytes] = []
    study = series = ""
    for i in range(n):
        if i % 100 == 0:
            study = generate_uid()
        if i % 20 == 0:
            series = generate_uid()
        ds = sources["ct" if i % 2 == 0 else "mr"]
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, generate_uid()
        ds.InstanceNumber = i % 20 + 1
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        instances.append(to_part10(ds))
    return instances


# -- rounds --------------------------------------------------------------------------------------


def run_rounds(targets: list[Target], n: int, rounds: int) -> dict[str, list[float]]:
    """instances/s per target and round; the order alternates from round to round."""
    out: dict[str, list[float]] = {}
    for r in range(rounds):
        bodies, total = make_bodies(n)
        order = targets if r % 2 == 0 else list(reversed(targets))
        for target in order:
            cpu = cpu_seconds(target.pid)
            elapsed = store_all(target, bodies, CLIENTS)
            cpu_ms = (cpu_seconds(target.pid) - cpu) * 1000 / n
            out.setdefault(target.name, []).append(n / elapsed)
            out.setdefault(f"{target.name} MB/s", []).append(total / elapsed / 1e6)
            out.setdefault(f"{target.name} CPU ms", []).append(cpu_ms)
            print(
                f"  round {r + 1}: {target.name:30s} {n / elapsed:7.1f} instances/s  {total / elapsed / 1e6:5.1f} MB/s"
                + (f"  server CPU {cpu_ms:.2f} ms/instance" if target.pid else "")
            )
    return out


def local_servers(n: int, rounds: int) -> dict[str, list[float]]:
    """Orthanc (if present) and the dev server with and without its parse workers, interleaved."""
    with local_targets([{}, {"parse_workers": 0}]) as targets:
        return run_rounds(targets, n, rounds)


def import_tool_rounds(endpoint: Path, n: int, rounds: int) -> dict[str, list[float]]:
    """``dicomweb import`` of ``n`` new instances written as files, into the deployed stack
    ``endpoint`` names (its default 4 requests in flight): instances/s and MB/s per round."""
    name = "import tool -> local stack"
    out: dict[str, list[float]] = {name: [], f"{name} MB/s": [], f"{name} CPU ms": []}
    for r in range(rounds):
        instances = make_instances(n)
        with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
            for i, data in enumerate(instances):
                (Path(tmp) / f"{i:05d}.dcm").write_bytes(data)
            argv = ["import", tmp, "--endpoint-file", str(endpoint), "--quiet", "--no-resume"]
            code = f"import sys; from dicomweb_server.cli import main; sys.exit(main({argv!r}))"
            env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'dicomweb'}"}
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
            elapsed = time.perf_counter() - start
        total = sum(len(d) for d in instances)
        out[name].append(n / elapsed)
        out[f"{name} MB/s"].append(total / elapsed / 1e6)
        out[f"{name} CPU ms"].append(0.0)
        print(f"  round {r + 1}: {name:30s} {n / elapsed:7.1f} instances/s  {total / elapsed / 1e6:5.1f} MB/s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--endpoint", type=Path, help="a deployed stack's endpoint.json (make run writes one)")
    parser.add_argument(
        "--import-tool", action="store_true", help="with --endpoint: also time `dicomweb import` of the corpus as files"
    )
    parser.add_argument("--local-only", type=Path, help=argparse.SUPPRESS)  # the namespaced child
    args = parser.parse_args()
    argv = ["--instances", str(args.instances), "--rounds", str(args.rounds)]
    print(f"{args.instances} instances (CT_small/MR_small), {PER_REQUEST} per request, {CLIENTS} clients")
    results = measure_locally(__file__, argv, args.local_only, lambda: local_servers(args.instances, args.rounds))
    if results is None:
        return
    if args.endpoint:
        results.update(run_rounds([endpoint_target(args.endpoint)], args.instances, args.rounds))
        if args.import_tool:
            results.update(import_tool_rounds(args.endpoint, args.instances, args.rounds))
    print("\nmedian over rounds:")
    for name, values in results.items():
        if not name.endswith(("MB/s", "CPU ms")):
            rate, mbs = statistics.median(values), statistics.median(results[f"{name} MB/s"])
            cpu = statistics.median(results[f"{name} CPU ms"])
            server = f"  server CPU {cpu:.2f} ms/instance" if cpu else ""
            print(f"  {name:30s} {rate:7.1f} instances/s  {mbs:5.1f} MB/s{server}")


if __name__ == "__main__":
    main()
