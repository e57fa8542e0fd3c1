"""Transcode time of one 512×512 16-bit CT slice (Implicit VR Little Endian, generated here) to each
transfer syntax the retrieve function offers, through ``retrieve.transcode.transcode``, the function
every instance retrieve calls. Also an 8-bit RGB photo (the only source JPEG Baseline takes) and the
way back (each compressed CT decoded to Explicit VR Little Endian).

    .venv/bin/python benchmarks/transcode.py [--runs 7]

Prints the median and minimum wall time of ``--runs`` runs after one warm-up, and the output size.
Single-threaded, CPU-bound: numbers depend on the machine and on how loaded it is.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "dicomweb"))
sys.path.insert(0, str(ROOT))

from dicomweb_server.retrieve.transcode import OFFERED, transcode  # noqa: E402
from tests import synthetic  # noqa: E402


def timed(runs: int, data: bytes, source: str, target: str) -> tuple[float, float, int]:
    out = transcode(data, source, target, "bench")  # warm-up: codecs load on first use
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = transcode(data, source, target, "bench")
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, min(times) * 1000, len(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    ct, _ = synthetic.ct_implicit()
    rgb, _ = synthetic.rgb8()
    implicit, explicit = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
    rows = []
    for target in OFFERED:
        if target != "1.2.840.10008.1.2.4.50":
            rows.append(("CT 512² 16-bit", "Implicit VR LE", target, *timed(args.runs, ct, implicit, target)))
    for target in OFFERED[1:]:
        rows.append(("RGB 512² 8-bit", "Explicit VR LE", target, *timed(args.runs, rgb, explicit, target)))
    for source in OFFERED[1:5]:
        encoded = transcode(ct, implicit, source, "bench")
        rows.append(("CT 512² 16-bit", source, explicit, *timed(args.runs, encoded, source, explicit)))
    print(f"{'image':<16} {'from':<24} {'to':<24} {'median ms':>10} {'min ms':>8} {'bytes':>9}")
    for image, source, target, median, best, size in rows:
        print(f"{image:<16} {source:<24} {target:<24} {median:>10.1f} {best:>8.1f} {size:>9}")
    print(f"(input: CT {len(ct)} bytes, RGB {len(rgb)} bytes; {args.runs} runs each)")


if __name__ == "__main__":
    main()
