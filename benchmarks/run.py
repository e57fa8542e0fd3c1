"""Benchmarks for the issue's targets: cold-start imports and AWS calls per DICOMweb operation.

Run: ``.venv/bin/python benchmarks/run.py`` (``make bench``). Prints PASS/FAIL per target and a
markdown summary, writes ``benchmarks/results.json``, and exits 1 if a target fails.

1. Cold start: ``import app`` of each ``functions/<name>`` in a fresh interpreter, two ways:
   *packaged* hides every installed distribution the function's Lambda package would not carry
   (the layer's and the function's requirements, plus boto3 from the runtime), *venv* uses the
   development venv as it is. Targets are checked on *packaged*; *venv* is shown for reference.
2. AWS calls: the Starlette app on the real S3 / DynamoDB adapters over moto, every botocore call
   counted with ``before-call`` / ``after-call`` hooks on the two clients.
3. Rough in-process latency (moto) and peak traced memory of a study retrieve.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results.json")
FUNCTIONS = ("search", "retrieve", "store", "indexer")
HEAVY = ("numpy", "PIL", "pylibjpeg", "pydicom", "boto3", "starlette", "mangum")
#: What the Lambda Python runtime itself provides (boto3 and its dependencies).
RUNTIME = ("boto3",)
BUCKET, TABLE = "bench-bucket", "bench-index"

SEARCH_IMPORT_MS = 400
NO_PIXELS_AT_COLD_START = ("search", "store")
PIXEL_MODULES = ("numpy", "PIL")
MAX_STOW_S3_PUTS = 1
MAX_STOW_DDB_WRITES = 3
S3_PUTS = ("PutObject", "CopyObject", "UploadPart")
DDB_WRITES = ("PutItem", "UpdateItem", "TransactWriteItems", "BatchWriteItem", "DeleteItem")
DDB_READS = ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems")


# -- 1. cold start -------------------------------------------------------------------------------

# Runs as ``python -P -c CHILD <function dir> <json list of hidden top-level modules>``: -P keeps
# the working directory off sys.path, so only the function's directory is added.
CHILD = r"""
import json, sys, time
fn_dir, hidden = sys.argv[1], frozenset(json.loads(sys.argv[2]))
network = []
sys.addaudithook(lambda ev, args: network.append([ev, repr(args)[:120]])
                 if ev in ("socket.connect", "socket.getaddrinfo") else None)
if hidden:
    class NotShipped:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in hidden:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, NotShipped())
sys.path.insert(0, fn_dir)
t0 = time.perf_counter()
import app
ms = (time.perf_counter() - t0) * 1000
import resource
print(json.dumps({"ms": ms, "top_level": sorted({m.partition(".")[0] for m in sys.modules}),
                  "web_modules": sorted(m for m in sys.modules if m.startswith("dicomweb_server.web")),
                  "network": network, "handler": callable(getattr(app, "handler", None)),
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(_norm(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0]))
    return names


def _closure(roots: list[str]) -> set[str]:
    """The distributions ``roots`` pull in (extras not followed), by normalized name."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_norm(req.name))
    return seen


def hidden_modules(function: str) -> list[str]:
    """Top-level modules installed in this venv that the function's Lambda package does not carry."""
    shipped = _closure(
        [
            *RUNTIME,
            *_requirement_names(ROOT / "layers/dicomweb/requirements.txt"),
            *_requirement_names(ROOT / "functions" / function / "requirements.txt"),
        ]
    )
    shipped.add("serverless-dicomweb")  # the layer's own code
    return sorted(
        top
        for top, dists in metadata.packages_distributions().items()
        if not top.startswith("_") and not any(_norm(d) in shipped for d in dists)
    )


def child_env() -> dict[str, str]:
    """A Lambda-like environment; the endpoint is a closed port, so any request at import would fail."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": "/tmp",
        "BUCKET_NAME": BUCKET,
        "TABLE_NAME": TABLE,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "dicomweb",
        "POWERTOOLS_METRICS_NAMESPACE": "DicomWeb",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


def _import_once(function: str, hidden: list[str], extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-P", *extra, "-c", CHILD, str(ROOT / "functions" / function), json.dumps(hidden)]
    return subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=60, check=False)


def cold_starts(runs: int) -> dict[str, dict[str, Any]]:
    views: dict[str, dict[str, list[str]]] = {
        "packaged": {f: hidden_modules(f) for f in FUNCTIONS},
        "venv": {f: [] for f in FUNCTIONS},
    }
    samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for i in range(runs + 1):  # round-robin spreads machine noise; run 0 warms the caches and is dropped
        for view, hidden_by_fn in views.items():
            for fn in FUNCTIONS:
                proc = _import_once(fn, hidden_by_fn[fn])
                if proc.returncode != 0:
                    raise SystemExit(f"import app failed for {fn} ({view}):\n{proc.stderr[-3000:]}")
                if i:
                    samples.setdefault((view, fn), []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out: dict[str, dict[str, Any]] = {}
    for (view, fn), got in samples.items():
        times = [s["ms"] for s in got]
        out.setdefault(view, {})[fn] = {
            "median_ms": round(statistics.median(times), 1),
            "min_ms": round(min(times), 1),
            "runs": len(times),
            "heavy": [m for m in HEAVY if m in got[0]["top_level"]],
            "web_modules": got[0]["web_modules"],
            "network_at_import": sorted({tuple(e) for s in got for e in s["network"]}),
            "handler_built": all(s["handler"] for s in got),
            "maxrss_mb": round(statistics.median(s["maxrss_mb"] for s in got), 1),
            "hidden": views[view][fn],
        }
    return out


@dataclass(frozen=True)
class ImportRow:
    name: str
    depth: int
    self_ms: float
    cumulative_ms: float
    parent: str


def import_tree(function: str, hidden: list[str]) -> list[ImportRow]:
    """``python -X importtime`` of the function, each module with the module that imported it."""
    proc = _import_once(function, hidden, ("-X", "importtime"))
    parsed = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)$", line)
        if m:
            parsed.append((m.group(4), len(m.group(3)), int(m.group(1)) / 1000, int(m.group(2)) / 1000))
    parents = [""] * len(parsed)
    pending: list[int] = []  # children are printed before their parent
    for i, (_, depth, _, _) in enumerate(parsed):
        while pending and parsed[pending[-1]][1] > depth:
            parents[pending.pop()] = parsed[i][0]
        pending.append(i)
    return [ImportRow(*row, parent=parents[i]) for i, row in enumerate(parsed)]


def import_chain(rows: list[ImportRow], module: str) -> list[str]:
    """``app -> ... -> module``: who first imports ``module``."""
    by_name = {r.name: r for r in rows}
    chain, row = [], by_name.get(module)
    while row is not None:
        chain.append(row.name)
        row = by_name.get(row.parent)
    return chain[::-1]


def import_cost_ms(rows: list[ImportRow], package: str) -> float:
    """Cumulative import time of ``package`` and its submodules, wherever they are imported from."""

    def inside(name: str) -> bool:
        return name == package or name.startswith(package + ".")

    return round(sum(r.cumulative_ms for r in rows if inside(r.name) and not inside(r.parent)), 1)


def slowest_imports(rows: list[ImportRow], top: int = 6) -> list[tuple[str, float]]:
    """Installed top-level packages by cumulative import time (ms)."""
    installed = metadata.packages_distributions()
    tops = {r.name.partition(".")[0] for r in rows} & set(installed)
    return sorted(((t, import_cost_ms(rows, t)) for t in tops), key=lambda kv: -kv[1])[:top]


# -- 2. AWS calls --------------------------------------------------------------------------------


@dataclass
class Window:
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    transact_items: int = 0
    batch_write_items: int = 0
    items_read: int = 0

    def n(self, service: str, ops: tuple[str, ...] | None = None) -> int:
        return sum(c for (s, op), c in self.calls.items() if s == service and (ops is None or op in ops))

    def summary(self, service: str) -> str:
        return ", ".join(f"{op} {c}" for (s, op), c in sorted(self.calls.items()) if s == service) or "-"

    def as_dict(self) -> dict[str, Any]:
        return {
            "s3": {op: c for (s, op), c in sorted(self.calls.items()) if s == "s3"},
            "dynamodb": {op: c for (s, op), c in sorted(self.calls.items()) if s == "dynamodb"},
            "s3_puts": self.n("s3", S3_PUTS),
            "ddb_write_requests": self.n("dynamodb", DDB_WRITES),
            "ddb_items_in_transactions": self.transact_items,
            "ddb_items_in_batch_writes": self.batch_write_items,
            "ddb_items_read": self.items_read,
            "scans": self.n("dynamodb", ("Scan",)),
            "queries": self.n("dynamodb", ("Query",)),
        }


class CallCounter:
    """Counts botocore calls by (service, operation) with event hooks on the given clients."""

    def __init__(self, *clients: Any) -> None:
        self.current: Window | None = None
        for client in clients:
            client.meta.events.register("before-call.*.*", self._before)
            client.meta.events.register("before-parameter-build.dynamodb.*", self._params)
            client.meta.events.register("after-call.*.*", self._after)

    def _before(self, event_name: str, **_: Any) -> None:
        if self.current is not None:
            _event, service, op = event_name.split(".", 2)
            self.current.calls[(service, op)] += 1

    def _params(self, event_name: str, params: dict[str, Any] | None = None, **_: Any) -> None:
        """The API parameters (``before-call`` only sees the serialized request)."""
        if self.current is None:
            return
        op = event_name.rsplit(".", 1)[-1]
        if op == "TransactWriteItems":
            self.current.transact_items += len((params or {}).get("TransactItems", []))
        elif op == "BatchWriteItem":
            self.current.batch_write_items += sum(len(v) for v in (params or {}).get("RequestItems", {}).values())

    def _after(self, event_name: str, parsed: dict[str, Any] | None = None, **_: Any) -> None:
        if self.current is None or not parsed:
            return
        op = event_name.rsplit(".", 1)[-1]
        if op in ("Query", "Scan"):
            self.current.items_read += int(parsed.get("Count", 0))
        elif op == "GetItem":
            self.current.items_read += int("Item" in parsed)
        elif op == "BatchGetItem":
            self.current.items_read += sum(len(v) for v in parsed.get("Responses", {}).values())

    @contextmanager
    def window(self) -> Iterator[Window]:
        self.current = Window()
        try:
            yield self.current
        finally:
            self.current = None


def make_instance(study: str, series: str, sop: str, *, patient_id: str, name: str, date: str) -> bytes:
    """pydicom's CT_small.dcm with new UIDs and patient / study attributes."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.uid import UID

    ds = dcmread(str(get_testdata_file("CT_small.dcm")))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
    ds.PatientID, ds.PatientName, ds.StudyDate = patient_id, name, date
    ds.AccessionNumber = "A" + sop[-8:]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@dataclass
class Study:
    uid: str
    series: str
    sops: list[str]
    patient_id: str


def new_study(n: int, *, patient_id: str, name: str, date: str) -> tuple[Study, list[bytes]]:
    from pydicom.uid import generate_uid

    study = Study(generate_uid(), generate_uid(), [generate_uid() for _ in range(n)], patient_id)
    return study, [
        make_instance(study.uid, study.series, s, patient_id=patient_id, name=name, date=date) for s in study.sops
    ]


def stow_body(instances: list[bytes]) -> tuple[bytes, str]:
    from dicomweb_server.formats import multipart

    return multipart.encode([(d, {"Content-Type": "application/dicom"}) for d in instances], "application/dicom")


class Bench:
    """The app on moto-backed adapters, with a call counter on the two clients."""

    def __init__(self) -> None:
        import boto3

        with warnings.catch_warnings():  # "install httpx2": irrelevant here
            warnings.simplefilter("ignore")
            from starlette.testclient import TestClient

        from dicomweb_server.blobs.s3 import S3BlobStore
        from dicomweb_server.index.dynamodb import DynamoDbIndex
        from dicomweb_server.settings import Settings
        from dicomweb_server.web.app import create_app

        session = boto3.session.Session(region_name="us-east-1")
        setup_s3, setup_ddb = session.client("s3"), session.client("dynamodb")
        setup_s3.create_bucket(Bucket=BUCKET)
        setup_ddb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
        )
        self.s3, ddb = session.client("s3"), session.client("dynamodb")
        self.counter = CallCounter(self.s3, ddb)
        self.settings = Settings(bucket_name=BUCKET, table_name=TABLE)
        self.index, self.blobs = DynamoDbIndex(ddb, TABLE), S3BlobStore(self.s3, BUCKET)
        self.client = TestClient(create_app(self.settings, index=self.index, blobs=self.blobs))

    def get(self, path: str, accept: str = "application/dicom+json", **params: str) -> Any:
        r = self.client.get(path, params=params, headers={"Accept": accept})
        if r.status_code != 200:
            raise SystemExit(f"GET {path} {params} -> {r.status_code}: {r.text[:500]}")
        return r

    def stow(self, instances: list[bytes]) -> None:
        body, ctype = stow_body(instances)
        r = self.client.post(
            "/studies", content=body, headers={"Content-Type": ctype, "Accept": "application/dicom+json"}
        )
        if r.status_code != 200:
            raise SystemExit(f"STOW -> {r.status_code}: {r.text[:500]}")

    def measure(self, label: str, op: Any, per: int = 1) -> dict[str, Any]:
        with self.counter.window() as w:
            result = op()
        row = {"operation": label, "instances": per, **w.as_dict(), "_window": w}
        if isinstance(result, list):
            row["results"] = len(result)
        return row


@contextmanager
def moto_without_rollback_copies() -> Iterator[None]:
    """Seeding only: moto's TransactWriteItems deep-copies the whole table once per item (to roll
    back on failure), which makes each write O(table size). Seeding writes never fail, so skip it."""
    import copy

    from moto.dynamodb import models

    if getattr(models, "copy", None) is not copy or not hasattr(models, "Table"):
        yield  # moto changed: stay slow and correct
        return
    table_type: type = models.Table

    class _NoTableCopy:
        @staticmethod
        def deepcopy(obj: Any, *args: Any) -> Any:
            return obj if isinstance(obj, table_type) else copy.deepcopy(obj, *args)

    setattr(models, "copy", _NoTableCopy)  # noqa: B010
    try:
        yield
    finally:
        setattr(models, "copy", copy)  # noqa: B010


SURNAMES = ("SMITH", "JONES", "BROWN", "TAYLOR", "WILSON", "DAVIES", "EVANS", "THOMAS", "JOHNSON", "ROBERTS")


def aws_calls() -> dict[str, Any]:
    from moto import mock_aws

    from dicomweb_server.store.drop import index_dropped
    from dicomweb_server.store.ingest import ingest

    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    with mock_aws():
        b = Bench()
        rows: list[dict[str, Any]] = []
        study, (first, second) = new_study(2, patient_id="BENCH-1", name="SMITH^JOHN", date="20240102")
        rows.append(b.measure("STOW 1 instance, new study", lambda: b.stow([first])))
        rows.append(b.measure("STOW 1 instance, same study", lambda: b.stow([second])))
        trio, trio_data = new_study(3, patient_id="BENCH-3", name="JONES^ANN", date="20240103")
        rows.append(b.measure("STOW 3 instances (1 request), new study", lambda: b.stow(trio_data), per=3))
        s, se, sop = study.uid, study.series, study.sops[0]
        qido = [
            ("QIDO /studies?PatientID", "/studies", {"PatientID": "BENCH-1"}, True),
            ("QIDO /studies?PatientName=SMI*", "/studies", {"PatientName": "SMI*"}, True),
            ("QIDO /studies?StudyDate=range", "/studies", {"StudyDate": "20240101-20240131"}, True),
            ("QIDO /studies (no key)", "/studies", {}, False),
            ("QIDO /studies/{s}/series", f"/studies/{s}/series", {}, True),
            ("QIDO /studies/{s}/series/{se}/instances", f"/studies/{s}/series/{se}/instances", {}, True),
        ]
        for label, path, params, keyed in qido:
            row = b.measure(label, lambda p=path, q=params: b.get(p, **q).json())
            rows.append({**row, "keyed": keyed})
        rows.append(
            b.measure(
                "WADO instance",
                lambda: b.get(
                    f"/studies/{s}/series/{se}/instances/{sop}", 'multipart/related; type="application/dicom"'
                ),
            )
        )
        rows.append(b.measure("WADO series metadata", lambda: b.get(f"/studies/{s}/series/{se}/metadata").json()))
        drop, (drop_data,) = new_study(1, patient_id="BENCH-D", name="EVANS^DROP", date="20240104")
        b.s3.put_object(Bucket=BUCKET, Key="incoming/bench.dcm", Body=drop_data)
        rows.append(
            b.measure(
                "S3 drop: index 1 file",
                lambda: index_dropped("incoming/bench.dcm", index=b.index, blobs=b.blobs),
            )
        )

        phases["operations"] = time.perf_counter() - t0
        latency = round_trips(b, 20)
        memory = retrieve_memory(b, trio)
        phases["latency_memory"] = time.perf_counter() - t0 - phases["operations"]

        # Scale: 200 more studies (20 patients x 10, names over 10 surnames, dates over 2023).
        with moto_without_rollback_copies():
            for i in range(200):
                _, (data,) = new_study(
                    1,
                    patient_id=f"P{i % 20:03d}",
                    name=f"{SURNAMES[i % 10]}^N{i}",
                    date=f"2023{1 + i % 12:02d}{1 + i % 28:02d}",
                )
                ingest(data, index=b.index, blobs=b.blobs)
        total = len(b.get("/studies", limit="1000").json())
        scale = []
        for label, params, expected in (
            ("PatientID", {"PatientID": "P007"}, 10),
            ("PatientName=SMI*", {"PatientName": "SMI*"}, 21),
            ("StudyDate=2023-03", {"StudyDate": "20230301-20230331"}, 17),
            ("no key", {}, b.settings.qido_default_limit),
        ):
            row = b.measure(f"QIDO {label}, {total} studies", lambda q=params: b.get("/studies", **q).json())
            if row["results"] != expected:
                raise SystemExit(f"QIDO {params} found {row['results']} studies, expected {expected}")
            scale.append({**row, "keyed": bool(params)})
        phases["scale"] = time.perf_counter() - t0 - phases["operations"] - phases["latency_memory"]
    for row in rows + scale:
        row.pop("_window")
    return {
        "operations": rows,
        "scale": scale,
        "latency_ms": latency,
        "memory": memory,
        "seconds": {k: round(v, 1) for k, v in phases.items()},
    }


def round_trips(b: Bench, n: int) -> dict[str, float]:
    (
        """STOW of one instance (new study), QIDO by its PatientID, WADO of the instance: wall ms.

    Run while the table is small: moto's TransactWriteItems cost grows with the table."""
        ""
    )
    times: dict[str, list[float]] = {"stow": [], "qido": [], "wado": [], "round_trip": []}
    for i in range(n):
        st, (data,) = new_study(1, patient_id=f"RT{i}", name=f"ROUND^TRIP{i}", date="20240105")
        t0 = time.perf_counter()
        b.stow([data])
        t1 = time.perf_counter()
        found = b.get("/studies", PatientID=f"RT{i}").json()
        t2 = time.perf_counter()
        b.get(
            f"/studies/{st.uid}/series/{st.series}/instances/{st.sops[0]}",
            'multipart/related; type="application/dicom"',
        )
        t3 = time.perf_counter()
        assert len(found) == 1, found
        for key, dt in (("stow", t1 - t0), ("qido", t2 - t1), ("wado", t3 - t2), ("round_trip", t3 - t0)):
            times[key].append(dt * 1000)
    return {k: round(statistics.median(v), 1) for k, v in times.items()}


def retrieve_memory(b: Bench, study: Study) -> dict[str, float]:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        body = b.get(f"/studies/{study.uid}", 'multipart/related; type="application/dicom"').content
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return {
        "instances": len(study.sops),
        "response_kb": round(len(body) / 1024, 1),
        "peak_traced_kb": round(peak / 1024, 1),
    }


# -- 3. targets and report -------------------------------------------------------------------------


def check_targets(cold: dict[str, dict[str, Any]], calls: dict[str, Any]) -> list[dict[str, Any]]:
    packaged = cold["packaged"]
    targets = [
        {
            "target": f"search imports in < {SEARCH_IMPORT_MS} ms (packaged, median)",
            "measured": f"{packaged['search']['median_ms']} ms",
            "ok": packaged["search"]["median_ms"] < SEARCH_IMPORT_MS,
        }
    ]
    for fn in NO_PIXELS_AT_COLD_START:
        loaded = [m for m in PIXEL_MODULES if m in packaged[fn]["heavy"]]
        targets.append(
            {
                "target": f"{fn}: no numpy / Pillow at cold start (packaged)",
                "measured": ", ".join(loaded) or "none",
                "ok": not loaded,
                "function": fn,
                "modules": loaded,
            }
        )
    web = [m for m in ("starlette", "mangum") if m in packaged["indexer"]["heavy"]] + packaged["indexer"]["web_modules"]
    targets.append(
        {
            "target": "indexer: no Starlette, Mangum or route module at cold start (packaged)",
            "measured": ", ".join(web) or "none",
            "ok": not web,
        }
    )
    talked = {
        f"{view}/{fn}": r["network_at_import"]
        for view in ("packaged", "venv")
        for fn, r in cold[view].items()
        if r["network_at_import"] or not r["handler_built"]
    }
    targets.append(
        {
            "target": "no network call at import (endpoint on a closed port)",
            "measured": "none" if not talked else json.dumps(talked)[:200],
            "ok": not talked,
        }
    )
    for row in calls["operations"]:
        if row["operation"].startswith("STOW"):
            per = row["instances"]
            puts, writes = row["s3_puts"] / per, row["ddb_write_requests"] / per
            targets.append(
                {
                    "target": f"{row['operation']}: <= {MAX_STOW_S3_PUTS} S3 PUT and "
                    f"<= {MAX_STOW_DDB_WRITES} DynamoDB writes per instance",
                    "measured": f"{puts:.3g} PUT, {writes:.3g} write requests "
                    f"({row['ddb_items_in_transactions'] / per:.3g} items) per instance",
                    "ok": puts <= MAX_STOW_S3_PUTS and writes <= MAX_STOW_DDB_WRITES,
                }
            )
    for row in [r for r in calls["operations"] + calls["scale"] if r["operation"].startswith("QIDO")]:
        if row["keyed"]:
            targets.append(
                {
                    "target": f"{row['operation']}: Query, never Scan",
                    "measured": f"{row['queries']} Query, {row['scans']} Scan",
                    "ok": row["queries"] >= 1 and row["scans"] == 0,
                }
            )
    return targets


def explain_failures(targets: list[dict[str, Any]], cold: dict[str, dict[str, Any]]) -> None:
    """Attach ``python -X importtime`` evidence to failed import targets."""
    for t in targets:
        if t["ok"]:
            continue
        fn = t.get("function", "search")
        if t.get("modules"):
            rows = import_tree(fn, cold["packaged"][fn]["hidden"])
            t["why"] = {
                m: f"{import_cost_ms(rows, m)} ms, imported by " + " -> ".join(import_chain(rows, m))
                for m in t["modules"]
            }
        elif t["target"].startswith("search imports"):
            rows = import_tree(fn, cold["packaged"][fn]["hidden"])
            t["why"] = {"slowest imports (ms, cumulative)": slowest_imports(rows)}


def markdown(cold: dict[str, dict[str, Any]], calls: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    out = [
        "### Cold start: `import app` in a fresh interpreter (ms, median / min of "
        f"{cold['packaged']['search']['runs']})",
        "",
        "| function | packaged | venv | heavy modules (packaged) | web modules | venv also imports | max RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for fn in FUNCTIONS:
        p, v = cold["packaged"][fn], cold["venv"][fn]
        extra = ", ".join(m for m in v["heavy"] if m not in p["heavy"]) or "-"
        out.append(
            f"| {fn} | {p['median_ms']:.0f} / {p['min_ms']:.0f} | {v['median_ms']:.0f} / {v['min_ms']:.0f} "
            f"| {', '.join(p['heavy'])} | {len(p['web_modules'])} | {extra} | {p['maxrss_mb']:.0f} |"
        )
    biggest = ", ".join(f"{k} {v:.0f}" for k, v in cold["search_import_breakdown_ms"].items())
    out += [
        "",
        f"Where search's cold start goes (packaged, one `-X importtime` run, ms; packages are cumulative "
        f"and nest, so they overlap): {biggest}.",
        "",
        "### AWS calls per operation (moto; botocore before-call / after-call hooks)",
        "",
        "| operation | S3 | DynamoDB | DDB write req. (items) | DDB items read |",
        "|---|---|---|---|---|",
    ]
    for row in calls["operations"] + calls["scale"]:
        s3 = ", ".join(f"{k} {v}" for k, v in row["s3"].items()) or "-"
        ddb = ", ".join(f"{k} {v}" for k, v in row["dynamodb"].items()) or "-"
        items = row["ddb_items_in_transactions"] + row["ddb_items_in_batch_writes"]
        writes = f"{row['ddb_write_requests']} ({items})" if row["ddb_write_requests"] else "0"
        out.append(f"| {row['operation']} | {s3} | {ddb} | {writes} | {row['ddb_items_read']} |")
    lat, mem = calls["latency_ms"], calls["memory"]
    out += [
        "",
        f"In-process latency over moto (median of 20): STOW {lat['stow']} ms, QIDO {lat['qido']} ms, "
        f"WADO {lat['wado']} ms, round trip {lat['round_trip']} ms. Peak traced memory retrieving a "
        f"{mem['instances']}-instance study ({mem['response_kb']} KB response): {mem['peak_traced_kb']} KB.",
        "",
        "### Targets",
        "",
        "| target | measured | result |",
        "|---|---|---|",
    ]
    out += [f"| {t['target']} | {t['measured']} | {'PASS' if t['ok'] else 'FAIL'} |" for t in targets]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="cold-start samples per function and view")
    args = parser.parse_args()
    started = time.perf_counter()
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)

    cold = cold_starts(args.runs)
    rows = import_tree("search", cold["packaged"]["search"]["hidden"])
    cold["search_import_breakdown_ms"] = {
        "app module body (boto3 clients, app)": next((r.self_ms for r in rows if r.name == "app"), 0.0),
        **dict(slowest_imports(rows)),
    }
    cold_seconds = time.perf_counter() - started
    calls = aws_calls()
    calls["seconds"]["cold_start"] = round(cold_seconds, 1)
    targets = check_targets(cold, calls)
    explain_failures(targets, cold)

    for t in targets:
        print(f"{'PASS' if t['ok'] else 'FAIL'}  {t['target']}: {t['measured']}")
        for k, v in t.get("why", {}).items():
            print(f"      {k}: {v}")
    print()
    print(markdown(cold, calls, targets))
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                },
                "cold_start": cold,
                "aws_calls": calls,
                "targets": targets,
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    print(f"\nresults: {RESULTS.relative_to(ROOT)} ({time.perf_counter() - started:.0f} s)")
    return 0 if all(t["ok"] for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
