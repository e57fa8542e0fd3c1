"""QIDO at archive scale: for a fixed query mix, the index items read and store requests per query
at several archive sizes (the project's own index code over the in-memory item store, which runs
the same plans as DynamoDB and reads the same items), and optionally p50/p95 latency through a
deployed stack's API (``--endpoint .local/endpoint.json``, loading its DynamoDB directly through
``DynamoDbIndex``).

Run: ``make bench-qido`` (or ``.venv/bin/python benchmarks/qido_scale.py --sizes 1000 10000 100000``).
Targets (the QIDO issue): items read flat in archive size on every single-key path (within 10 %
from the smallest to the largest size), no Scan anywhere, and p50 latency at 10,000 studies within
1.2 × of that at 1,000.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dicomweb_server.index.core import ItemIndex  # noqa: E402
from dicomweb_server.index.memory import MemoryIndex  # noqa: E402
from dicomweb_server.search import relational  # noqa: E402
from dicomweb_server.search.query import Level, parse_query  # noqa: E402
from tests.archive import StudySpec, record, studies  # noqa: E402

SERIES_PER_STUDY, INSTANCES_PER_SERIES = 2, 5  # 10 instances per study: 100,000 instances at 10,000


def mix(specs: list[StudySpec]) -> dict[str, list[tuple[str, str]]]:
    """The query mix; values taken from the archive so every size has matches."""
    mid = specs[len(specs) // 2]
    return {
        "PatientID=exact": [("PatientID", mid.patient_id)],
        "PatientID=MRN*": [("PatientID", "MRN*")],
        "AccessionNumber=exact": [("AccessionNumber", mid.accession)],
        "AccessionNumber=A1*": [("AccessionNumber", "A1*")],
        "PatientName=SMI*": [("PatientName", "SMI*")],
        "PatientName=müller": [("PatientName", "müller")],
        "PatientName=full": [("PatientName", mid.name)],
        "PatientName=thom, fuzzy": [("PatientName", "thom"), ("fuzzymatching", "true")],
        "ModalitiesInStudy=CT": [("ModalitiesInStudy", "CT")],
        "ModalitiesInStudy=MR,US": [("ModalitiesInStudy", "MR,US")],
        "StudyDate=2010-2015": [("StudyDate", "20100101-20151231")],
        "StudyInstanceUID": [("StudyInstanceUID", mid.study_uid)],
        "all studies": [],
        "unindexed StudyDescription=KNEE*": [("StudyDescription", "KNEE*")],
        "/series Modality=MR": [("Modality", "MR")],
        "/series Modality=CT&StudyDate=2010-2015": [("Modality", "CT"), ("StudyDate", "20100101-20151231")],
    }


class Counting:
    """Counts the item store's requests (each call is one DynamoDB request in the cloud)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.requests = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name in ("get", "batch_get", "query", "transact"):

            def call(*args: Any, **kwargs: Any) -> Any:
                self.requests += 1 if name != "batch_get" else max(1, -(-len(args[0]) // 100))
                return attr(*args, **kwargs)

            return call
        return attr


def load(index: ItemIndex, count: int) -> list[StudySpec]:
    specs = list(studies(count))
    for spec in specs:
        for se in range(SERIES_PER_STUDY):
            for inst in range(INSTANCES_PER_SERIES):
                index.add_instance(record(spec, se, inst))
    return specs


def measure_memory(sizes: list[int], limit: int) -> dict[str, dict[int, dict[str, int]]]:
    out: dict[str, dict[int, dict[str, int]]] = {}
    for size in sizes:
        index = MemoryIndex()
        t = time.perf_counter()
        specs = load(index, size)
        print(f"  loaded {size} studies ({size * SERIES_PER_STUDY * INSTANCES_PER_SERIES} instances) "
              f"in {time.perf_counter() - t:.0f} s", flush=True)  # fmt: skip
        counting = Counting(index.store)
        index.store = counting  # type: ignore[assignment]
        for name, params in mix(specs).items():
            series = name.startswith("/series")
            level = Level.SERIES if series else Level.STUDY
            q = parse_query(params + [("limit", str(limit))], level, relational=series)
            reads, requests = counting.reads, counting.requests
            page = relational.search_series(index, q) if series else index.search_studies(q)
            out.setdefault(name, {})[size] = {
                "rows": len(page.items),
                "items_read": counting.reads - reads,
                "requests": counting.requests - requests,
            }
    return out


def measure_api(endpoint: Path, sizes: list[int], limit: int, runs: int) -> dict[str, dict[int, float]]:
    import boto3
    import requests

    from dicomweb_server.index.dynamodb import DynamoDbIndex

    ep = json.loads(endpoint.read_text())
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=ep["aws_endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    index = DynamoDbIndex(ddb, ep["table"])
    headers = {"apikey": ep["api_key"]} if ep.get("api_key") else {}
    loaded: list[StudySpec] = []
    out: dict[str, dict[int, float]] = {}
    for size in sizes:
        fresh = list(studies(size - len(loaded), first=len(loaded)))
        t = time.perf_counter()
        for spec in fresh:
            index.add_instance(record(spec))  # one instance per study through the stack: the index is what is timed
        loaded += fresh
        print(f"  local stack: {len(loaded)} studies loaded (+{len(fresh)} in {time.perf_counter() - t:.0f} s)")
        for name, params in mix(loaded).items():
            resource = "series" if name.startswith("/series") else "studies"
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                r = requests.get(
                    f"{ep['base_url']}/{resource}", params=params + [("limit", str(limit))], headers=headers, timeout=60
                )
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code in (200, 204), (name, r.status_code, r.text[:200])
            times.sort()
            out.setdefault(name, {})[size] = round(statistics.median(times), 1)
            out[name][-size] = round(times[min(len(times) - 1, int(len(times) * 0.95))], 1)  # p95 under -size
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--limit", type=int, default=25)
    parser.add_argument("--endpoint", type=Path, help="a deployed stack's endpoint.json (make run writes one)")
    parser.add_argument("--api-sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    print(f"QIDO scale, limit={args.limit}: items read / store requests per query (in-memory item store)")
    memory = measure_memory(args.sizes, args.limit)
    sizes = args.sizes
    lines = [
        "| query | " + " | ".join(f"{s:,} studies" for s in sizes) + " | flat? |",
        "|---|" + "---|" * (len(sizes) + 1),
    ]
    failures = []
    for name, by_size in memory.items():
        cells = [f"{by_size[s]['items_read']} / {by_size[s]['requests']} ({by_size[s]['rows']} rows)" for s in sizes]
        first, last = by_size[sizes[0]], by_size[sizes[-1]]
        single_key = not name.startswith(("unindexed", "all")) and first["rows"] == args.limit
        flat = last["items_read"] <= first["items_read"] * 1.1 if single_key else None
        if flat is False:
            failures.append(name)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'-' if flat is None else 'yes' if flat else 'NO'} |")
    print("\n".join(lines))
    result: dict[str, Any] = {"memory": memory, "limit": args.limit}
    if args.endpoint:
        api = measure_api(args.endpoint, args.api_sizes, args.limit, args.runs)
        result["api_ms"] = api
        a, b = args.api_sizes[0], args.api_sizes[-1]
        print(f"\np50 / p95 latency through the local API (ms), {a:,} and {b:,} studies")
        print(f"| query | p50 {a:,} | p50 {b:,} | p95 {b:,} | ratio |\n|---|---|---|---|---|")
        for name, ms in api.items():
            ratio = ms[b] / ms[a] if ms[a] else 0
            print(f"| {name} | {ms[a]} | {ms[b]} | {ms[-b]} | {ratio:.2f} |")
    Path(__file__).with_name("qido_scale.json").write_text(json.dumps(result, indent=1, default=str))
    if failures:
        print(f"\nFAIL: items read grew with the archive on {', '.join(failures)}")
        return 1
    print("\nPASS: items read are flat in archive size on every single-key path; no Scan (the store has none)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
