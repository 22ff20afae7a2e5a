"""Training and decoding on a busy machine: slowdown beside 1 and 2 busy processes, against idle.

    python benchmarks/bench_load.py                     # demo clip, 180x240, ~0.1M, 30 epochs
    python benchmarks/bench_load.py --hogs 0 1 --repeats 3

Each measurement runs the real commands in a child process: `gnerv fit` (wall time of the
training, from fit.json) and `gnerv evaluate` (decode frames/s of batch rendering, from
metrics.json), first on an idle machine, then beside N processes that spin on a core each.
Thread settings run side by side in the same session: `package` (what the computing commands
set up where the user has not: gnerv/runtime/threads.py), `plain` (libgomp's default spin, as
when nothing is set) and the variants named in VARIANTS. Prints a table and writes
benchmarks/out/load.json (or --out); figures are medians.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import write_record

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
GNERV = [str(Path(sys.executable).parent / "gnerv")]  # the environment's command
THREAD_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
VARIANTS = {
    "package": {},
    "plain": {"GOMP_SPINCOUNT": "300000"},  # libgomp's default when nothing is set
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin1k": {"GOMP_SPINCOUNT": "1000"},
    "spin10k": {"GOMP_SPINCOUNT": "10000"},
    "spin30k": {"GOMP_SPINCOUNT": "30000"},
    "spin100k": {"GOMP_SPINCOUNT": "100000"},
}


def spin() -> None:  # a busy process: one core's worth of load
    while True:
        pass


def run(cmd: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")


def measure(work: Path, frames: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    """One fit and one evaluate of its layer: training seconds and decode frames/s."""
    out = work / "fit"
    run(
        [
            *GNERV,
            "fit",
            str(frames),
            "-o",
            str(out),
            "--size",
            args.size,
            "--epochs",
            str(args.epochs),
            "--device",
            "cpu",
            "--quiet",
        ],
        env,
    )
    train_s = json.loads((out / "fit.json").read_text())["train_seconds"]
    layer = work / "layer.gnerv"
    run([*GNERV, "compress", str(out), "-o", str(layer), "--frames-file", str(frames)], env)
    metrics = work / "metrics.json"
    run(
        [
            *GNERV,
            "evaluate",
            str(frames),
            "--layers",
            str(layer),
            "-o",
            str(metrics),
            "--device",
            "cpu",
            "--batch",
            str(args.batch),
        ],
        env,
    )
    fps = json.loads(metrics.read_text())["points"][0]["decode_fps"]
    return {"train_seconds": train_s, "decode_fps": fps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", default=str(ROOT / "data" / "raw" / "cockatoo.mp4"))
    p.add_argument("--resize", default="180x240")
    p.add_argument("--frames", default="0:32")
    p.add_argument("--size", default="0.1M")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=8, help="decode batch")
    p.add_argument("--hogs", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=["package", "plain"], choices=list(VARIANTS))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default=str(OUT / "load.json"))
    args = p.parse_args()

    rows: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames = work / "frames.npy"
        run(
            [
                *GNERV,
                "extract",
                args.video,
                "-o",
                str(frames),
                "--frames",
                args.frames,
                "--resize",
                args.resize,
            ],
            dict(os.environ),
        )
        for _ in range(args.repeats):
            for hogs in args.hogs:
                procs = [mp.Process(target=spin, daemon=True) for _ in range(hogs)]
                for proc in procs:
                    proc.start()
                try:
                    for variant in args.variants:  # side by side under the same load
                        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
                        env.update(VARIANTS[variant])
                        t0 = time.perf_counter()
                        row = measure(work, frames, args, env)
                        row["wall_seconds"] = time.perf_counter() - t0
                        rows.setdefault((variant, hogs), []).append(row)
                        print(f"{variant:8s} hogs={hogs}: {row}", flush=True)
                finally:
                    for proc in procs:
                        proc.kill()
                        proc.join()

    def median(variant: str, hogs: int, key: str) -> float:
        return statistics.median(r[key] for r in rows[(variant, hogs)])

    table = []
    for variant in args.variants:
        for hogs in args.hogs:
            train = median(variant, hogs, "train_seconds")
            fps = median(variant, hogs, "decode_fps")
            entry = {"variant": variant, "hogs": hogs, "train_seconds": train, "decode_fps": fps}
            if 0 in args.hogs:
                entry["train_slowdown"] = train / median(variant, 0, "train_seconds")
                entry["decode_slowdown"] = median(variant, 0, "decode_fps") / fps
            table.append(entry)
    print("\n| threads | busy procs | train s | slowdown | decode fps | slowdown |")
    print("|---|---|---|---|---|---|")
    for e in table:
        print(
            f"| {e['variant']} | {e['hogs']} | {e['train_seconds']:.1f} | "
            f"{e.get('train_slowdown', float('nan')):.2f}x | {e['decode_fps']:.1f} | "
            f"{e.get('decode_slowdown', float('nan')):.2f}x |"
        )
    write_record(
        args.out,
        settings=vars(args),
        table=table,
        runs={f"{v}/{h}": r for (v, h), r in rows.items()},
    )


if __name__ == "__main__":
    main()
