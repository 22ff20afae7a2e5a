"""The paper's ablations (Table 4, Fig. 7, Fig. 8) on the demo clip, as one record.

    python benchmarks/ablations.py                  # runs `snakemake ablations`, then records
    python benchmarks/ablations.py --no-run         # records what results/ already holds

Runs `snakemake ablations --cores all --forceall` with the committed params.yaml (so every
ablation model is trained again with the checked-out code and the committed defaults), then
gathers each video's results/<video>/ablations/{time_branch,epochs,progressive}.json, the
params.yaml sections the models took (model, train, stage 1, ablations) and the run's wall time
into
benchmarks/records/ablations_demo.json, which docs/ablations.md's tables are rendered from.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from record import write_record

ROOT = Path(__file__).resolve().parent.parent
ABLATIONS = ("time_branch", "epochs", "progressive")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-run", action="store_true", help="only gather the results already there")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "records" / "ablations_demo.json"))
    args = p.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    seconds = None
    if not args.no_run:
        start = time.perf_counter()
        snakemake = str(Path(sys.executable).parent / "snakemake")
        cmd = [snakemake, "ablations", "--cores", "all", "--forceall", "--quiet"]
        done = subprocess.run(cmd, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"snakemake ablations failed (exit {done.returncode})")
        seconds = time.perf_counter() - start
    videos = {}
    for video in params["videos"]:
        folder = ROOT / "results" / video / "ablations"
        missing = [a for a in ABLATIONS if not (folder / f"{a}.json").exists()]
        if missing:
            raise SystemExit(f"{folder}: no {', '.join(missing)}.json; run without --no-run")
        videos[video] = {a: json.loads((folder / f"{a}.json").read_text()) for a in ABLATIONS}
    write_record(
        args.out,
        run_seconds=seconds,
        settings={
            "extract": params["extract"],
            "model": params["model"],
            "train": params["train"],
            "stage1": params["stages"][0],
            "ablations": params["ablations"],
        },
        videos=videos,
    )


if __name__ == "__main__":
    main()
