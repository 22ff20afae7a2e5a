"""The demo as a user runs it, recorded: `snakemake --cores all` on the committed params.yaml,
timed, and its figures (summary.json's R-D rows and BD-rates, each rule's seconds and peak
memory from Snakemake's benchmark files) written to a record.

    python benchmarks/demo.py --out benchmarks/records/demo.json --rd-plot docs/img/demo_rd.png \
        --frames-figure docs/img/demo_frames.png    # the run's frames.png kept too
    python benchmarks/demo.py --out benchmarks/records/demo.json --rd-plot docs/img/demo_rd.png \
        --replot                                    # the plot from the record, nothing run

It runs in a fresh copy of the repository's tracked files (a temporary folder, removed
afterwards), so the time is the whole pipeline's from nothing and the checkout's own results/
stay as they are. Run it with the environment's `gnerv` and `snakemake` on PATH.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import write_record

ROOT = Path(__file__).resolve().parent.parent
VIDEO = "cockatoo"  # the committed sample clip (params.yaml's data section)


def rule_costs(folder: Path) -> list[dict]:
    """Each job's wall seconds and peak RSS (MB) from Snakemake's benchmark files."""
    rows = []
    for tsv in sorted(folder.glob("*.tsv")):
        with tsv.open() as f:
            first = next(csv.DictReader(f, delimiter="\t"))
        rows.append({"job": tsv.stem, "seconds": float(first["s"]), "max_rss_mb": first["max_rss"]})
    return rows


def plot_rd_figure(record: dict, path: Path) -> None:
    """The record's R-D curves (GNeRV's stages and each baseline) as docs/results.md shows them."""
    from gnerv.evaluation.plots import plot_rd

    curves: dict[str, tuple[list[float], list[float]]] = {}
    for row in record["rows"]:
        name = "GNeRV" if row["curve"] == "gnerv" else row["curve"]
        rate, quality = curves.setdefault(name, ([], []))
        rate.append(row["bpp"])
        quality.append(row["psnr"])
    v = record["video"]
    title = f"{VIDEO}, {v['n_frames']} frames at {v['height']}x{v['width']}: decoded files"
    plot_rd(curves, path, title=f"{title} ({record['date']})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "demo.json")
    p.add_argument("--rd-plot", type=Path, help="also draw the record's R-D curves here (PNG)")
    p.add_argument("--replot", action="store_true", help="only draw --rd-plot from --out")
    p.add_argument(
        "--frames-figure",
        type=Path,
        help="keep the run's frames.png (original / GNeRV / x265, one frame) here",
    )
    args = p.parse_args()
    if args.replot:
        if args.rd_plot is None:
            p.error("--replot draws --rd-plot: give it")
        plot_rd_figure(json.loads(args.out.read_text()), args.rd_plot)
        return 0
    snakemake = shutil.which("snakemake")
    if snakemake is None:
        print("snakemake is not on PATH: activate the environment (README)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gnerv_demo_") as tmp:
        work = Path(tmp)
        tracked = (
            subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
            .stdout.decode()
            .split("\0")
        )
        for name in filter(None, tracked):
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, work / name)
        t0 = time.perf_counter()
        done = subprocess.run([snakemake, "--cores", "all", "--quiet"], cwd=work, check=False)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            print(f"snakemake exited {done.returncode}: no record written", file=sys.stderr)
            return done.returncode
        results = work / "results" / VIDEO
        summary = json.loads((results / "eval" / "summary.json").read_text())
        jobs = rule_costs(results / "benchmarks")
        if args.frames_figure:
            args.frames_figure.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(results / "eval" / "frames.png", args.frames_figure)
    write_record(
        args.out,
        pipeline="snakemake --cores all",
        wall_seconds=round(wall, 1),
        video=summary["video"],
        rows=summary["rows"],
        bd=summary["bd"],
        jobs=jobs,
    )
    if args.rd_plot:
        plot_rd_figure(json.loads(args.out.read_text()), args.rd_plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
