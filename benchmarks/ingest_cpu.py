"""CPU milliseconds per instance that ingest spends in process, by step (issue 9: target <= 3 ms for
parse + index of a CT_small-sized instance).

Run: ``.venv/bin/python benchmarks/ingest_cpu.py [--instances 300] [--rounds 5] [--profile]``

Each round ingests fresh instances (CT_small and MR_small from pydicom's test files, with new UIDs,
as the tests build them) into the in-memory index and blob store that ``make dev`` uses, and measures
``time.process_time`` of each step on its own: parse (``with_preamble`` + ``parse_part10``), the
metadata JSON (``formats.dicom_json.instance_json``), the whole index record (``build_record``:
UIDs, metadata, study/series/instance attributes, MD5), MD5 alone, the index write (JSON dumps and
zlib of the metadata, the items of ``index.core``) and the whole ``ingest``. It prints the median
over rounds of the per-instance cost, and with ``--reference`` also the metadata as
``Dataset.to_json_dict`` writes it (the old builder). The numbers depend on the machine and its
load; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "dicomweb"), str(ROOT)]

from pydicom import dcmread  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from dicomweb_server.blobs.memory import MemoryBlobStore  # noqa: E402
from dicomweb_server.formats import dicom_json  # noqa: E402
from dicomweb_server.index.memory import MemoryIndex  # noqa: E402
from dicomweb_server.store.ingest import build_record, ingest, parse_part10, with_preamble  # noqa: E402
from tests.corpus import source_dataset, to_part10  # noqa: E402


def corpus(n: int, source: str) -> list[bytes]:
    base = source_dataset(source)
    out = []
    for _ in range(n):
        base.StudyInstanceUID, base.SeriesInstanceUID, base.SOPInstanceUID = (generate_uid() for _ in range(3))
        base.file_meta.MediaStorageSOPInstanceUID = base.SOPInstanceUID
        out.append(to_part10(base))
    return out


def cpu_ms(step: Callable[[Any], object], inputs: list[Any]) -> float:
    start = time.process_time()
    for item in inputs:
        step(item)
    return (time.process_time() - start) * 1000 / len(inputs)


def ingester() -> Callable[[bytes], object]:
    index, blobs = MemoryIndex(), MemoryBlobStore()
    return lambda data: ingest(data, index=index, blobs=blobs)


def measure(source: str, n: int, rounds: int, reference: bool) -> dict[str, float]:
    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    for _ in range(rounds):
        data = corpus(n, source)
        add("parse", cpu_ms(lambda d: parse_part10(with_preamble(d)), data))
        parsed = [(parse_part10(d), d) for d in data]
        add("metadata JSON", cpu_ms(lambda p: dicom_json.instance_json(p[0]), parsed))
        if reference:
            fresh = [dcmread(io.BytesIO(d)) for d in data]
            add("metadata JSON (pydicom per element)", cpu_ms(dicom_json.metadata_by_pydicom, fresh))
        parsed = [(parse_part10(d), d) for d in data]
        add("build_record", cpu_ms(lambda p: build_record(*p), parsed))
        add("  of which MD5", cpu_ms(lambda d: hashlib.md5(d).hexdigest(), data))  # noqa: S324
        records = [build_record(parse_part10(d), d) for d in data]
        index = MemoryIndex()
        add("index write (memory)", cpu_ms(index.add_instance, records))
        add("ingest (parse + index, memory)", cpu_ms(ingester(), corpus(n, source)))
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reference", action="store_true", help="also time Dataset.to_json_dict")
    parser.add_argument("--profile", action="store_true", help="cProfile one round of ingest (CT)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for source, label in (("ct", "CT_small"), ("mr", "MR_small")):
        size = len(corpus(1, source)[0])
        print(f"\n{label} ({size:,} bytes), {args.instances} instances x {args.rounds} rounds, CPU ms per instance:")
        for name, value in measure(source, args.instances, args.rounds, args.reference).items():
            print(f"  {name:34s} {value:6.2f}")
    if args.profile:
        data = corpus(args.instances, "ct")
        step = ingester()
        profile = cProfile.Profile()
        profile.runcall(lambda: [step(d) for d in data])
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
