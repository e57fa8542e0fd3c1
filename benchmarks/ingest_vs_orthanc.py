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
stack, when asked for, is measured outside it, in rounds of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "dicomweb"), str(ROOT)]

PER_REQUEST = 10
CLIENTS = 4
DICOMWEB_PLUGIN = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",)


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str  # the DICOMweb root (…/studies is appended)
    headers: tuple[tuple[str, str], ...] = ()
    #: The server's process (on this machine), whose CPU time is reported per instance.
    pid: int | None = None


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time so far of a process, its reaped children and its live descendants
    (the dev server's parse workers) (Linux /proc)."""
    if pid is None:
        return 0.0
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except FileNotFoundError:  # it ended meanwhile
            continue
        total += sum(int(v) for v in fields[11:15])
        for task in tasks:
            with contextlib.suppress(FileNotFoundError):
                pending += [int(child) for child in (task / "children").read_text().split()]
    return total / os.sysconf("SC_CLK_TCK")


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


# -- the clients ---------------------------------------------------------------------------------


def store_all(target: Target, bodies: list[tuple[bytes, str, int]]) -> float:
    """Send every body with CLIENTS concurrent keep-alive connections; the wall time in seconds."""
    url = urlsplit(target.base_url)
    path = url.path.rstrip("/") + "/studies"
    pending = list(reversed(bodies))
    lock = threading.Lock()
    errors: list[str] = []

    def client() -> None:
        conn_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = conn_type(url.hostname or "127.0.0.1", url.port, timeout=300)
        while True:
            with lock:
                if not pending or errors:
                    break
                body, ctype, count = pending.pop()
            headers = {"Content-Type": ctype, "Accept": "application/dicom+json", **dict(target.headers)}
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                errors.append(f"{target.name}: HTTP {response.status}: {answer[:300]!r}")
                break
            stored = json.loads(answer).get("00081199", {}).get("Value", [])
            if len(stored) != count:
                errors.append(f"{target.name}: {len(stored)} of {count} instances stored: {answer[:300]!r}")
                break
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(errors[0])
    return elapsed


# -- the servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    parts = urlsplit(url)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
            conn.request("GET", parts.path or "/")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def orthanc_binary() -> str | None:
    binary = shutil.which("Orthanc")
    if binary and any(Path(p).exists() for p in DICOMWEB_PLUGIN):
        return binary
    return None


def orthanc_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    words = out.split()
    try:
        return tuple(int(x) for x in words[1].split("."))
    except (IndexError, ValueError):
        return (0,)


def can_bind_loopback_only(binary: str) -> bool:
    return orthanc_version(binary) >= (1, 12, 10)  # HttpBindAddresses


@contextmanager
def orthanc(binary: str, work: Path) -> Iterator[Target]:
    port = free_port()
    storage = work / "orthanc-storage"
    storage.mkdir(parents=True)
    plugin = next(p for p in DICOMWEB_PLUGIN if Path(p).exists())
    config = {
        "Name": "bench",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": port,
        "HttpBindAddresses": ["127.0.0.1"],  # Orthanc >= 1.12.10; older ones run in a network namespace
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (work / "orthanc.json").write_text(json.dumps(config))
    log = work / "orthanc.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, str(work / "orthanc.json")], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/system", proc, log)
        yield Target("Orthanc", f"http://127.0.0.1:{port}/dicom-web", pid=proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


@contextmanager
def dev_server(work: Path, parse_workers: int | None = None) -> Iterator[Target]:
    """The dev server, parsing STOW-RS instances in one process per core (its default) or in
    ``parse_workers`` processes (0: in the server process, as a Lambda function does)."""
    port = free_port()
    log = work / f"dev-{parse_workers}.log"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'dicomweb'}"}
    cmd = [sys.executable, "-m", "dicomweb_server.web.dev", "--port", str(port)]
    if parse_workers is not None:
        cmd += ["--parse-workers", str(parse_workers)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        wait_for(f"http://127.0.0.1:{port}/studies", proc, log)
        name = "dev server (in-memory)" if parse_workers is None else f"dev server, {parse_workers} parse workers"
        yield Target(name, f"http://127.0.0.1:{port}", pid=proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


# -- rounds --------------------------------------------------------------------------------------


def run_rounds(targets: list[Target], n: int, rounds: int) -> dict[str, list[float]]:
    """instances/s per target and round; the order alternates from round to round."""
    out: dict[str, list[float]] = {}
    for r in range(rounds):
        bodies, total = make_bodies(n)
        order = targets if r % 2 == 0 else list(reversed(targets))
        for target in order:
            cpu = cpu_seconds(target.pid)
            elapsed = store_all(target, bodies)
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
    """Orthanc (if present) and the dev server, interleaved, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        work = Path(tmp)
        binary = orthanc_binary()
        if binary is None:
            print("Orthanc with its DICOMweb plugin is not installed: measuring the dev server alone")
        with dev_server(work) as dev, dev_server(work, 0) as single:
            if binary is None:
                return run_rounds([dev, single], n, rounds)
            with orthanc(binary, work) as orth:
                return run_rounds([orth, dev, single], n, rounds)


def in_namespace(argv: list[str]) -> dict[str, list[float]]:
    """Run ``--local-only`` in a private network namespace and read back its results."""
    out = Path(tempfile.mkstemp(prefix="ingest-bench-", suffix=".json")[1])
    try:
        script = 'ip link set lo up && exec "$@"'
        cmd = ["unshare", "--net", "sh", "-c", script, "sh", sys.executable, __file__, *argv, "--local-only", str(out)]
        subprocess.run(cmd, check=True)
        return dict(json.loads(out.read_text()))
    finally:
        out.unlink(missing_ok=True)


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


def endpoint_target(path: Path) -> Target:
    ep = json.loads(path.read_text())
    headers = (("apikey", ep["api_key"]),) if ep.get("api_key") else ()
    return Target("local stack", ep["base_url"].rstrip("/"), headers)


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
    if args.local_only:
        args.local_only.write_text(json.dumps(local_servers(args.instances, args.rounds)))
        return
    binary = orthanc_binary()
    if binary and not can_bind_loopback_only(binary):
        print(f"Orthanc {'.'.join(map(str, orthanc_version(binary)))} binds every interface: running in unshare --net")
        results = in_namespace(argv)
    else:
        results = local_servers(args.instances, args.rounds)
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
