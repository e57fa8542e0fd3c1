#!/usr/bin/env python3
"""Soak on loopback: N concurrent clients mix STOW-RS, QIDO-RS and WADO-RS against the local stack
for T minutes, then every acknowledged instance is checked.

    python benchmarks/soak.py                       # a fresh embedded stack (persist=False), 8 clients, 5 minutes
    python benchmarks/soak.py --minutes 2 --clients 4
    python benchmarks/soak.py --endpoint .local/endpoint.json   # a stack `make run` started (no memory sampling)

Each client loops until the deadline (and at most ``--max-ops`` times): STOW of a small batch of
generated instances (512×512 16-bit CT, 256×256 MR; a new study or more instances of one it
stored), QIDO (by PatientID, a PatientName wildcard, a StudyDate range, series and instances of a
study, a relational instance search by SOPInstanceUID) and WADO (an instance's stored bytes checked
by MD5, metadata, a frame). Any unexpected status or exception is an error.

At the end: each study is searched and its NumberOfStudyRelatedInstances and instance list must be
exactly what was stored; a sample of instances is retrieved and compared byte for byte. Memory:
ministack and its Lambda worker subprocesses are sampled through /proc (VmRSS) every few seconds;
the report gives each process's first, max and last RSS and the whole tree's. Latency: p50/p99 per
operation kind. A table is printed and a JSON written (``--out``). Exit status 1 on any error or
wrong count. Loopback only: the embedded stack binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from tests.corpus import make_instance, read_multipart, stow_body  # noqa: E402

INSTANCE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
TIMEOUT = 120
#: Every how many acknowledged instances one is kept in memory for the final byte-for-byte check.
KEEP_EVERY = 10


@dataclass
class Stored:
    study: str
    series: str
    sop: str
    md5: str
    data: bytes | None  # kept for the byte-exact sample only


@dataclass
class Ledger:
    """What the clients were told was stored (acknowledged by a 200), and what went wrong."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    instances: dict[str, Stored] = field(default_factory=dict)
    studies: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    patient_of: dict[str, str] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[dict[str, Any]] = field(default_factory=list)

    def record(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)

    def error(self, kind: str, detail: str) -> None:
        with self.lock:
            self.errors.append({"kind": kind, "detail": detail[:300], "at": time.time()})


class Client:
    def __init__(self, n: int, base_url: str, api_key: str | None, ledger: Ledger, seed: int) -> None:
        self.n, self.base, self.ledger = n, base_url, ledger
        self.rng = random.Random(seed)
        self.session = requests.Session()
        if api_key:
            self.session.headers["apikey"] = api_key
        self.patient = f"SOAK-{n}"
        self.mine: list[tuple[str, list[str]]] = []  # (study, its series)
        self.dates: dict[str, str] = {}
        pixels = np.random.default_rng(seed).integers(0, 4096, size=(512, 512), dtype=np.uint16)
        self.ct_pixels = pixels.tobytes()
        self.mr_pixels = pixels[:256, :256].copy().tobytes()

    # -- one HTTP call, timed, with the statuses it may answer ------------------------------------
    def call(self, kind: str, method: str, path: str, ok: tuple[int, ...], **kwargs: Any) -> requests.Response | None:
        t0 = time.perf_counter()
        try:
            r = self.session.request(method, self.base + path, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            self.ledger.error(kind, f"{method} {path}: {type(exc).__name__}: {exc}")
            return None
        self.ledger.record(kind, time.perf_counter() - t0)
        if r.status_code not in ok:
            self.ledger.error(kind, f"{method} {path}: {r.status_code} {r.text[:200]}")
            return None
        return r

    # -- operations -------------------------------------------------------------------------------
    def stow(self) -> None:
        study = series = None
        date = f"2024{self.rng.randint(1, 12):02d}{self.rng.randint(1, 28):02d}"
        if self.mine and self.rng.random() < 0.5:  # more instances in a study already stored
            study, series_list = self.rng.choice(self.mine)
            series = self.rng.choice(series_list) if self.rng.random() < 0.5 else None
            date = self.dates[study]  # a study keeps its date
        batch = []
        study_uid = study or f"2.25.{secrets.randbits(100)}"
        series_uid = series or f"2.25.{secrets.randbits(100)}"
        for _ in range(self.rng.randint(1, 3)):
            if self.rng.random() < 0.6:
                inst = make_instance(
                    "ct",
                    study_uid=study_uid,
                    series_uid=series_uid,
                    Rows=512,
                    Columns=512,
                    PixelData=self.ct_pixels,
                    PatientID=self.patient,
                    PatientName=f"SOAK^CLIENT{self.n}",
                    StudyDate=date,
                )
            else:
                inst = make_instance(
                    "mr",
                    study_uid=study_uid,
                    series_uid=series_uid,
                    Rows=256,
                    Columns=256,
                    PixelData=self.mr_pixels,
                    PatientID=self.patient,
                    PatientName=f"SOAK^CLIENT{self.n}",
                    StudyDate=date,
                )
            batch.append(inst)
        body, ctype = stow_body(batch)
        r = self.call("stow", "POST", "/studies", (200,), data=body, headers={"Content-Type": ctype})
        if r is None:
            return
        with self.ledger.lock:
            for inst in batch:
                keep = inst.data if len(self.ledger.instances) % KEEP_EVERY == 0 else None
                self.ledger.instances[inst.sop_uid] = Stored(
                    inst.study_uid, inst.series_uid, inst.sop_uid, inst.md5, keep
                )
                self.ledger.studies[inst.study_uid].add(inst.sop_uid)
                self.ledger.patient_of[inst.study_uid] = self.patient
        if study is None:
            self.mine.append((study_uid, [series_uid]))
            self.dates[study_uid] = date
        elif series is None:
            next(s for s in self.mine if s[0] == study)[1].append(series_uid)

    def _some_instance(self) -> Stored | None:
        if not self.mine:
            return None
        study, _ = self.rng.choice(self.mine)
        with self.ledger.lock:
            sops = sorted(self.ledger.studies[study])
            return self.ledger.instances[self.rng.choice(sops)] if sops else None

    def qido(self) -> None:
        inst = self._some_instance()
        kinds = ["qido-patient", "qido-name", "qido-date"]
        if inst is not None:
            kinds += ["qido-series", "qido-instances", "qido-relational"]
        kind = self.rng.choice(kinds)
        if kind == "qido-patient":
            r = self.call(kind, "GET", "/studies", (200, 204), params={"PatientID": self.patient, "limit": 50})
            if r is not None and self.mine and r.status_code == 204:
                self.ledger.error(kind, f"PatientID={self.patient} found nothing, {len(self.mine)} studies stored")
        elif kind == "qido-name":
            self.call(kind, "GET", "/studies", (200, 204), params={"PatientName": "SOAK^*", "limit": 20})
        elif kind == "qido-date":
            self.call(kind, "GET", "/studies", (200, 204), params={"StudyDate": "20240301-20240615", "limit": 20})
        elif inst is not None and kind == "qido-series":
            self.call(kind, "GET", f"/studies/{inst.study}/series", (200,))
        elif inst is not None and kind == "qido-instances":
            r = self.call(kind, "GET", f"/studies/{inst.study}/series/{inst.series}/instances", (200,))
            if r is not None and inst.sop not in {i["00080018"]["Value"][0] for i in r.json()}:
                self.ledger.error(kind, f"instance {inst.sop} missing from its series' instances")
        elif inst is not None:
            r = self.call(kind, "GET", "/instances", (200,), params={"SOPInstanceUID": inst.sop})
            if r is not None and len(r.json()) != 1:
                self.ledger.error(kind, f"SOPInstanceUID={inst.sop} matched {len(r.json())} instances")

    def wado(self) -> None:
        inst = self._some_instance()
        if inst is None:
            return self.stow()
        path = f"/studies/{inst.study}/series/{inst.series}/instances/{inst.sop}"
        kind = self.rng.choice(["wado-instance", "wado-metadata", "wado-frame"])
        if kind == "wado-instance":
            r = self.call(kind, "GET", path, (200,), headers={"Accept": INSTANCE_ACCEPT})
            if r is not None:
                ((_, data),) = read_multipart(r.content, r.headers["content-type"])
                if hashlib.md5(data).hexdigest() != inst.md5:  # noqa: S324
                    self.ledger.error(kind, f"{inst.sop}: retrieved bytes differ from those stored")
        elif kind == "wado-metadata":
            r = self.call(kind, "GET", path + "/metadata", (200,))
            if r is not None and r.json()[0]["00080018"]["Value"] != [inst.sop]:
                self.ledger.error(kind, f"{inst.sop}: metadata of another instance")
        else:
            r = self.call(kind, "GET", path + "/frames/1", (200,), headers={"Accept": FRAME_ACCEPT})
            if r is not None:
                ((_, frame),) = read_multipart(r.content, r.headers["content-type"])
                if len(frame) not in (512 * 512 * 2, 256 * 256 * 2):
                    self.ledger.error(kind, f"{inst.sop}: frame of {len(frame)} bytes")
        return None

    def run(self, deadline: float, max_ops: int) -> int:
        ops = 0
        while time.monotonic() < deadline and ops < max_ops:
            choice = self.rng.random()
            if choice < 0.25 or not self.mine:
                self.stow()
            elif choice < 0.6:
                self.qido()
            else:
                self.wado()
            ops += 1
        return ops


# -- memory of the stack's processes (/proc) ------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out[ppid].append(int(entry))
    return out


def _tree(root: int) -> list[int]:
    children, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _name(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in args if a)
    return text[-80:]


class MemorySampler(threading.Thread):
    def __init__(self, root: int, every: float) -> None:
        super().__init__(daemon=True)
        self.root, self.every = root, every
        self.stop_event = threading.Event()
        self.per_pid: dict[int, dict[str, Any]] = {}
        self.totals: list[tuple[float, int]] = []
        self.t0 = time.monotonic()

    def sample(self) -> None:
        total = 0
        now = time.monotonic() - self.t0
        for pid in _tree(self.root):
            rss = _rss_kib(pid)
            if rss is None:
                continue
            total += rss
            seen = self.per_pid.setdefault(pid, {"name": _name(pid), "samples": []})
            seen["samples"].append((now, rss))
        self.totals.append((now, total))

    def run(self) -> None:
        while not self.stop_event.wait(self.every):
            self.sample()

    @staticmethod
    def _summary(samples: list[tuple[float, int]]) -> dict[str, Any]:
        """First, max and last RSS (KiB), and the growth from the end of the first quarter of the
        samples (cold start and first requests done) to the last."""
        values = [kib for _, kib in samples]
        warm = values[len(values) // 4]
        return {"first": values[0], "warm": warm, "max": max(values), "last": values[-1], "growth": values[-1] - warm}

    def report(self) -> dict[str, Any]:
        return {
            "samples": len(self.totals),
            "every_s": self.every,
            "tree_kib": self._summary(self.totals) if self.totals else {},
            "processes": [
                {
                    "pid": pid,
                    "name": info["name"],
                    "seconds": round(info["samples"][-1][0] - info["samples"][0][0]),
                    **self._summary(info["samples"]),
                }
                for pid, info in sorted(self.per_pid.items())
            ],
            "tree_timeline": [[round(t, 1), kib] for t, kib in self.totals[:: max(1, len(self.totals) // 60)]],
        }


# -- the final check --------------------------------------------------------------------------------------


def verify(base: str, api_key: str | None, ledger: Ledger, sample: int, rng: random.Random) -> dict[str, Any]:
    session = requests.Session()
    if api_key:
        session.headers["apikey"] = api_key
    wrong: list[str] = []
    for study, sops in sorted(ledger.studies.items()):
        params = {"StudyInstanceUID": study, "includefield": "NumberOfStudyRelatedInstances"}
        r = session.get(f"{base}/studies", params=params, timeout=TIMEOUT)
        if r.status_code != 200:
            wrong.append(f"study {study}: search answered {r.status_code}")
            continue
        count = r.json()[0].get("00201208", {}).get("Value", [None])[0]
        if count != len(sops):
            wrong.append(f"study {study}: NumberOfStudyRelatedInstances {count}, {len(sops)} stored")
        r = session.get(f"{base}/studies/{study}/instances", params={"limit": 1000}, timeout=TIMEOUT)
        found = {i["00080018"]["Value"][0] for i in r.json()} if r.status_code == 200 else set()
        if found != sops:
            wrong.append(f"study {study}: {len(found)} instances found, {len(sops)} stored ({r.status_code})")
    kept = sorted(sop for sop, inst in ledger.instances.items() if inst.data is not None)
    chosen = rng.sample(kept, min(sample, len(kept)))
    exact = 0
    for sop in chosen:
        inst = ledger.instances[sop]
        r = session.get(
            f"{base}/studies/{inst.study}/series/{inst.series}/instances/{sop}",
            headers={"Accept": INSTANCE_ACCEPT},
            timeout=TIMEOUT,
        )
        if r.status_code == 200 and read_multipart(r.content, r.headers["content-type"])[0][1] == inst.data:
            exact += 1
        else:
            wrong.append(f"instance {sop}: not retrieved byte-exact ({r.status_code})")
    return {
        "studies": len(ledger.studies),
        "instances": len(ledger.instances),
        "byte_exact_sample": f"{exact}/{len(chosen)}",
        "wrong": wrong,
    }


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--max-ops", type=int, default=100_000, help="per client: a bound on the loop")
    parser.add_argument("--endpoint", type=Path, help="an endpoint.json of a running stack (default: start one)")
    parser.add_argument("--sample", type=int, default=30, help="instances retrieved byte for byte at the end")
    parser.add_argument("--memory-every", type=float, default=3.0, help="seconds between RSS samples")
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "soak.json")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".local" / "soak-cloud")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    cloud = None
    if args.endpoint:
        ep = json.loads(args.endpoint.read_text())
        base, api_key = ep["base_url"], ep.get("api_key")
    else:
        import localcloud

        print(f"starting a fresh local stack in {args.workdir} (persist=False) ...", flush=True)
        cloud = localcloud.start_cloud(args.workdir, persist=False, api_key=secrets.token_urlsafe(16))
        base, api_key = cloud.base_url, cloud.api_key
    ledger = Ledger()
    sampler = MemorySampler(cloud.process.pid, args.memory_every) if cloud else None
    try:
        if sampler:
            sampler.sample()
            sampler.start()
        print(f"soak: {args.clients} clients for {args.minutes} min against {base}", flush=True)
        deadline = time.monotonic() + args.minutes * 60
        clients = [Client(n, base, api_key, ledger, args.seed * 1000 + n) for n in range(args.clients)]
        counts = [0] * len(clients)

        def work(i: int) -> None:
            try:
                counts[i] = clients[i].run(deadline, args.max_ops)
            except Exception as exc:  # a bug in the soak itself must not pass as a quiet client
                ledger.error("client", f"client {i} stopped: {type(exc).__name__}: {exc}")
                raise

        t0 = time.monotonic()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        print(f"checking {len(ledger.studies)} studies, {len(ledger.instances)} instances ...", flush=True)
        final = verify(base, api_key, ledger, args.sample, random.Random(args.seed))
        if sampler:
            sampler.stop_event.set()
            sampler.join()
            sampler.sample()
    finally:
        if cloud is not None:
            cloud.stop()
    latency = {
        kind: {
            "n": len(v),
            "p50_ms": round(_percentile(v, 50) * 1000, 1),
            "p99_ms": round(_percentile(v, 99) * 1000, 1),
        }
        for kind, v in sorted(ledger.latencies.items())
    }
    result = {
        "clients": args.clients,
        "minutes": round(elapsed / 60, 2),
        "operations": sum(counts),
        "errors": ledger.errors,
        "final": final,
        "latency": latency,
        "memory": sampler.report() if sampler else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{'operation':<18}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}")
    for kind, row in latency.items():
        print(f"{kind:<18}{row['n']:>7}{row['p50_ms']:>10}{row['p99_ms']:>10}")
    print(f"\n{sum(counts)} operations in {elapsed:.0f} s; errors: {len(ledger.errors)}")
    print(
        f"final: {final['studies']} studies, {final['instances']} instances, byte-exact sample "
        f"{final['byte_exact_sample']}, wrong: {len(final['wrong'])}"
    )
    for line in (final["wrong"] + [e["detail"] for e in ledger.errors])[:20]:
        print("  " + line)
    if sampler:
        mem = result["memory"]
        tree = mem["tree_kib"]
        print(
            f"\nmemory (RSS MiB), {mem['samples']} samples every {mem['every_s']} s; growth = last - warm, warm = "
            "after the first quarter of a process's samples"
        )
        print("".join(f"{h:>8}" for h in ("pid", "first", "warm", "max", "last", "growth", "secs")) + "  process")
        rows = [{"pid": "tree", "name": "ministack and all its subprocesses", "seconds": "", **tree}, *mem["processes"]]
        for p in rows:
            mib = [f"{p[k] / 1024:.0f}" for k in ("first", "warm", "max", "last", "growth")]
            print("".join(f"{v:>8}" for v in [p["pid"], *mib, p["seconds"]]) + f"  {p['name'][-60:]}")
    print(f"\nwritten: {args.out}")
    return 1 if ledger.errors or final["wrong"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
