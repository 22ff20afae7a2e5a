"""Segments as parallel jobs: configs/segments-demo.yaml through Snakemake with one job at a
time (each with every core) against as many jobs as cores (one thread each), timed.

    python benchmarks/segments_parallel.py --out benchmarks/records/segments_parallel.json

Each variant runs in a fresh copy of the repository's tracked files (a temporary folder), so
both start from nothing. The indexes are compared: training sums in an order that depends on
its thread count, so the two variants may code different (equally valid) bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import write_record

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "configs/segments-demo.yaml"
INDEX = "results/cockatoo/segments/segments.json"


def copy_tracked(dest: Path) -> None:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, names.split("\0")):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "out" / "segments_parallel.json"
    )
    args = p.parse_args()
    snakemake = shutil.which("snakemake")
    if snakemake is None:
        print("snakemake is not on PATH: activate the environment (README)", file=sys.stderr)
        return 2
    cores = os.cpu_count() or 1
    variants = {
        "one job at a time": ["--set-threads", f"encode_segment={cores}"],
        f"{cores} jobs side by side": ["--set-threads", "encode_segment=1"],
    }
    rows = []
    for name, flags in variants.items():
        with tempfile.TemporaryDirectory(prefix="gnerv_segpar_") as tmp:
            work = Path(tmp)
            copy_tracked(work)
            t0 = time.perf_counter()
            done = subprocess.run(
                [snakemake, "--cores", str(cores), "--configfile", CONFIG, *flags, "--quiet"],
                cwd=work,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t0
            if done.returncode != 0:
                print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
                return done.returncode
            digest = hashlib.sha256((work / INDEX).read_bytes()).hexdigest()
        rows.append(
            {
                "variant": name,
                "flags": flags,
                "wall_seconds": round(wall, 1),
                "index_sha256": digest,
            }
        )
        print(rows[-1])
    write_record(
        args.out,
        config=CONFIG,
        cores=cores,
        rows=rows,
        same_index=len({r["index_sha256"] for r in rows}) == 1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
