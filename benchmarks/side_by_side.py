"""What the benchmarks against Orthanc share: starting Orthanc (with its DICOMweb plugin) and the dev
server from a temporary directory, the private network namespace Orthanc before 1.12.10 needs, a
deployed stack's endpoint file, and a server process's CPU time and memory (Linux /proc).

Orthanc runs with its own storage and configuration, with its DICOM (C-STORE) server disabled.
Orthanc before 1.12.10 cannot choose the address its HTTP server binds to (it listens on every
interface), so on such versions the Orthanc and dev-server runs happen in a private network namespace
(``unshare --net``: only a loopback interface exists there); see :func:`in_namespace`.

Run as a script, it is the dev server with a larger STOW-RS request limit (see :func:`dev_server`).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
DICOMWEB_PLUGIN = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",)


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str  # the DICOMweb root (…/studies is appended)
    headers: tuple[tuple[str, str], ...] = ()
    #: The server's process (on this machine), whose CPU time and memory can be read.
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


def memory_bytes(pid: int, field: str = "VmHWM") -> int:
    """A memory figure of ``/proc/<pid>/status`` in bytes: ``VmRSS`` now, ``VmHWM`` the peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak_memory(pid: int) -> None:
    """Set the process's peak RSS (``VmHWM``) back to its current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the clients ---------------------------------------------------------------------------------


def store_all(target: Target, bodies: list[tuple[bytes, str, int]], clients: int = 4) -> float:
    """STOW-RS every (body, content type, instance count) with ``clients`` concurrent keep-alive
    connections, checking each answer is a 200 naming every instance; the wall time in seconds."""
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

    threads = [threading.Thread(target=client) for _ in range(clients)]
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
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
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


def needs_namespace() -> bool:
    """Orthanc is installed and would listen on every interface."""
    binary = orthanc_binary()
    if binary and not can_bind_loopback_only(binary):
        print(f"Orthanc {'.'.join(map(str, orthanc_version(binary)))} binds every interface: running in unshare --net")
        return True
    return False


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
def dev_server(work: Path, parse_workers: int | None = None, max_request_bytes: int | None = None) -> Iterator[Target]:
    """``python -m dicomweb_server.web.dev`` (in-memory storage), parsing STOW-RS instances in one
    process per core (its default) or in ``parse_workers`` processes (0: in the server process, as a
    Lambda function does). With ``max_request_bytes`` this module instead serves the same app, parsing
    in its one process, with that STOW-RS request limit (the dev server keeps the Lambda's 4.5 MB), so
    that a large multi-frame instance can be stored in one request as in Orthanc."""
    port = free_port()
    log = work / f"dev-{port}.log"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'dicomweb'}"}
    if max_request_bytes is None:
        cmd = [sys.executable, "-m", "dicomweb_server.web.dev", "--port", str(port)]
        if parse_workers is not None:
            cmd += ["--parse-workers", str(parse_workers)]
    else:
        cmd = [sys.executable, __file__, "--port", str(port), "--max-request-bytes", str(max_request_bytes)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        wait_for(f"http://127.0.0.1:{port}/studies", proc, log)
        name = "dev server (in-memory)" if parse_workers is None else f"dev server, {parse_workers} parse workers"
        yield Target(name, f"http://127.0.0.1:{port}", pid=proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


@contextmanager
def local_targets(dev_servers: Sequence[dict[str, Any]] = ({},)) -> Iterator[list[Target]]:
    """Orthanc (if installed) and a dev server for each of ``dev_servers`` (:func:`dev_server`'s
    keyword arguments), in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ExitStack() as servers:
        work = Path(tmp)
        devs = [servers.enter_context(dev_server(work, **kwargs)) for kwargs in dev_servers]
        binary = orthanc_binary()
        if binary is None:
            print("Orthanc with its DICOMweb plugin is not installed: measuring the dev server alone")
            yield devs
        else:
            yield [servers.enter_context(orthanc(binary, work)), *devs]


def measure_locally(script: str, argv: list[str], local_only: Path | None, measure: Callable[[], Any]) -> Any:
    """``measure()`` (JSON-able results) where Orthanc may run: here, or in a private network
    namespace when Orthanc would listen on every interface (the script run again with ``argv
    --local-only OUT``). The namespaced child itself writes its results to ``local_only`` and
    returns None."""
    if local_only:
        local_only.write_text(json.dumps(measure()))
        return None
    return in_namespace(script, argv) if needs_namespace() else measure()


def in_namespace(script: str, argv: list[str]) -> Any:
    """Run ``script argv --local-only OUT`` in a private network namespace; what it wrote to OUT (JSON)."""
    out = Path(tempfile.mkstemp(prefix="bench-", suffix=".json")[1])
    try:
        shell = 'ip link set lo up && exec "$@"'
        cmd = ["unshare", "--net", "sh", "-c", shell, "sh", sys.executable, script, *argv, "--local-only", str(out)]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def endpoint_target(path: Path) -> Target:
    ep = json.loads(path.read_text())
    headers = (("apikey", ep["api_key"]),) if ep.get("api_key") else ()
    return Target("local stack", ep["base_url"].rstrip("/"), headers)


def _serve_dev() -> None:
    """The app ``web/dev.py`` serves (in memory, streaming), with another STOW-RS request limit."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-request-bytes", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    from dicomweb_server.blobs.memory import MemoryBlobStore
    from dicomweb_server.index.memory import MemoryIndex
    from dicomweb_server.settings import Settings
    from dicomweb_server.web.app import create_app
    from dicomweb_server.web.dev import DEV_STREAM_LIMIT

    settings = Settings(
        bucket_name="dicomweb-dev",
        table_name="dicomweb-dev",
        stream_response_bytes=DEV_STREAM_LIMIT,
        max_request_bytes=args.max_request_bytes,
    )
    app = create_app(settings, index=MemoryIndex(), blobs=MemoryBlobStore())
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    _serve_dev()
