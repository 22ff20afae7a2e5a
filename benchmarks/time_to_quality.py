"""Time to quality: how long a fit takes to reach a given quality and what quality a given time
buys, one training path against others, side by side in one run.

    python benchmarks/time_to_quality.py                      # demo, realshort, bunny; 100 epochs
    python benchmarks/time_to_quality.py --clips demo realshort --rounds 3
    python benchmarks/time_to_quality.py --paths fp32 defaults "bf16=--precision bf16"
    python benchmarks/time_to_quality.py --paths fp32 "spin=GOMP_SPINCOUNT=10000 --precision fp32"

Paths: a path is what differs between the fits, written as a shell line without the command,
`NAME=[VAR=VALUE ...] [FLAGS]`: environment variables first, then `gnerv fit` flags. Built in:
`fp32` = `--precision fp32` (the fp32 training step; the package's thread setting) and
`defaults` = nothing (the package's defaults: `--precision auto`, which trains in bf16 on CUDA
GPUs and CPUs with AMX and in fp32 elsewhere). Every path starts from this environment without
OMP_WAIT_POLICY and GOMP_SPINCOUNT, then gets its own variables. The first path of --paths is the
reference the others are measured against.

Clips: `demo` (cockatoo frames 0:32 at 90x160, 0.1M), `realshort` (frames 0:32 at 90x160, 0.1M)
and `bunny` (all frames at 180x320, 0.095M, --min-channels 12; --bunny gives its path). Each is
extracted once (`gnerv extract`); then --rounds rounds each run every path in turn (alternating,
so the machine's drift falls on all of them): `gnerv fit --device cpu --quiet` (fit.json: the
training seconds and the per-epoch history with training PSNR and elapsed training seconds),
`gnerv compress` (8-bit, the paper's quantizer) and `gnerv evaluate` (the decoded file's PSNR,
fp32 decode).

Figures per clip and path, medians over the rounds (ratios: medians of each round's ratio):

  train s          fit.json's train_seconds (the epochs only: no checkpoints, no final PSNR)
  decoded PSNR     of the compressed file, decoded: comparable across paths
  time to quality  the first epoch whose training PSNR reaches the reference path's final
                   training PSNR in the same round, and the training seconds by its end
                   (none where a path never gets there)
  PSNR in the reference's time   the training PSNR of the last epoch done within the
                   reference's training seconds

A training PSNR is fit.json history's train_psnr: of the outputs along each epoch, in the path's
own precision, not of a separate render. Prints a Markdown table; writes the JSON record
(benchmarks/out/time_to_quality.json, rewritten after every fit).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from record import GNERV, named_flags, write_record

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
# The variables of the thread setting (gnerv.runtime.threads): no path inherits them.
THREAD_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
BUILT_IN = {"fp32": "--precision fp32", "defaults": ""}
ENV_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


@dataclass(frozen=True)
class Clip:
    video: str | None  # None: --bunny
    frames: str
    resize: str
    size: str
    flags: tuple[str, ...] = ()


CLIPS = {
    "demo": Clip(str(ROOT / "data" / "raw" / "cockatoo.mp4"), "0:32", "90x160", "0.1M"),
    "realshort": Clip(str(ROOT / "data" / "raw" / "realshort.mp4"), "0:32", "90x160", "0.1M"),
    "bunny": Clip(None, "0:", "180x320", "0.095M", ("--min-channels", "12")),
}


@dataclass
class FitPath:
    """One way of fitting: environment variables and `gnerv fit` flags."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    def spec(self) -> str:
        return " ".join([*(f"{k}={v}" for k, v in self.env.items()), *self.flags])


def parse_paths(items: list[str]) -> dict[str, FitPath]:
    """`NAME` (built in) or `NAME=[VAR=VALUE ...] [FLAGS]` as name -> FitPath."""
    paths = {}
    for name, words in named_flags(items, BUILT_IN, "path").items():
        path = FitPath(name)
        while words and ENV_WORD.fullmatch(words[0]):
            var, _, value = words.pop(0).partition("=")
            path.env[var] = value
        path.flags = words
        paths[name] = path
    return paths


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in THREAD_VARS}


def run(args: list[str], env: dict[str, str]) -> None:
    """One `gnerv` command in `env`; its error tail ends the benchmark."""
    done = subprocess.run([GNERV, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"gnerv {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def measure(frames: Path, work: Path, clip: Clip, epochs: int, path: FitPath) -> dict:
    """Fit with `path`, compress, evaluate: the fit's figures and history, the decoded PSNR."""
    model, layer, metrics = work / "model", work / "layer.gnerv", work / "metrics.json"
    env = base_env() | path.env
    fit_args = ["fit", str(frames), "-o", str(model), "--size", clip.size]
    fit_args += ["--epochs", str(epochs), "--device", "cpu", "--quiet", *clip.flags, *path.flags]
    t0 = time.perf_counter()
    run(fit_args, env)
    wall = time.perf_counter() - t0
    fit = json.loads((model / "fit.json").read_text())
    # the paper's coding: 8-bit min/max, nothing fine-tuned, so that only the training differs
    cmd = ["compress", str(model), "-o", str(layer), "--frames-file", str(frames), "--scheme"]
    cmd += ["minmax", "--bits", "8"]
    run([*cmd, "--device", "cpu"], base_env())
    cmd = ["evaluate", str(frames), "--layers", str(layer), "-o", str(metrics)]
    run([*cmd, "--device", "cpu"], base_env())
    top = json.loads(metrics.read_text())["points"][0]
    history = fit["history"]
    if any("elapsed_seconds" not in r for r in history):
        raise SystemExit(f"{model / 'fit.json'}: its history has no elapsed_seconds (older gnerv)")
    return {
        "precision": fit.get("precision"),
        "train_seconds": fit["train_seconds"],
        "fit_wall_seconds": wall,
        "float_psnr": fit["psnr"],
        "decoded_psnr": top["psnr"],
        "bpp": top["bpp"],
        "params": fit["params"],
        "final_train_psnr": history[-1]["train_psnr"],
        "history": [{k: r[k] for k in ("epoch", "train_psnr", "elapsed_seconds")} for r in history],
    }


def time_to(history: list[dict], psnr: float) -> tuple[int | None, float | None]:
    """(epoch, elapsed training seconds) of the first epoch whose training PSNR reaches psnr."""
    for r in history:
        if r["train_psnr"] >= psnr:
            return r["epoch"], r["elapsed_seconds"]
    return None, None


def psnr_within(history: list[dict], seconds: float) -> float | None:
    """The training PSNR of the last epoch done within `seconds` of training."""
    done = [r for r in history if r["elapsed_seconds"] <= seconds]
    return done[-1]["train_psnr"] if done else None


def against(run_: dict, ref: dict) -> dict:
    """A run's time to quality and PSNR in the time of `ref` (the reference path's run in the
    same round), and its ratios to `ref`."""
    ref_epoch, ref_seconds = time_to(ref["history"], ref["final_train_psnr"])
    epoch, seconds = time_to(run_["history"], ref["final_train_psnr"])
    return {
        "quality_target_train_psnr": ref["final_train_psnr"],
        "time_to_quality_epoch": epoch,
        "time_to_quality_seconds": seconds,
        "train_psnr_in_reference_time": psnr_within(run_["history"], ref["train_seconds"]),
        "train_seconds_ratio": run_["train_seconds"] / ref["train_seconds"],
        "time_to_quality_ratio": None if seconds is None else seconds / ref_seconds,
        "decoded_psnr_gain_db": run_["decoded_psnr"] - ref["decoded_psnr"],
    }


def median(values: list) -> float | None:
    """Median of the values that are not None (None when there are none)."""
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def summarize(runs: list[dict], clips: list[str], paths: list[str]) -> list[dict]:
    """Per clip and path: the medians over rounds of each figure."""
    keys = (
        "train_seconds",
        "decoded_psnr",
        "final_train_psnr",
        "quality_target_train_psnr",
        "time_to_quality_epoch",
        "time_to_quality_seconds",
        "train_psnr_in_reference_time",
        "train_seconds_ratio",
        "time_to_quality_ratio",
        "decoded_psnr_gain_db",
    )
    table = []
    for clip in clips:
        for name in paths:
            mine = [r for r in runs if r["clip"] == clip and r["path"] == name]
            if not mine:
                continue
            row = {"clip": clip, "path": name, "rounds": len(mine)}
            row["precision"] = "/".join(sorted({str(r["precision"]) for r in mine}))
            row.update({k: median([r.get(k) for r in mine]) for k in keys})
            row["reached"] = sum(r.get("time_to_quality_seconds") is not None for r in mine)
            table.append(row)
    return table


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def print_table(table: list[dict], reference: str) -> None:
    print(
        f"\n| clip | path | precision | train s | x {reference} | decoded PSNR dB | "
        f"vs {reference} dB | time to {reference}'s quality: epoch, s | x {reference} | "
        f"train PSNR in {reference}'s time dB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        reached = "" if r["reached"] == r["rounds"] else f" ({r['reached']}/{r['rounds']})"
        ttq = (
            "not reached"
            if r["time_to_quality_seconds"] is None
            else f"{r['time_to_quality_epoch']:.0f}, {r['time_to_quality_seconds']:.1f}{reached}"
        )
        print(
            f"| {r['clip']} | {r['path']} | {r['precision']} | {r['train_seconds']:.1f} | "
            f"{fmt(r['train_seconds_ratio'], '.2f', 'x')} | {r['decoded_psnr']:.2f} | "
            f"{fmt(r['decoded_psnr_gain_db'], '+.2f')} | {ttq} | "
            f"{fmt(r['time_to_quality_ratio'], '.2f', 'x')} | "
            f"{fmt(r['train_psnr_in_reference_time'], '.2f')} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--rounds", type=int, default=1, help="fits per path and clip, alternating")
    p.add_argument(
        "--paths",
        nargs="+",
        default=["fp32", "defaults"],
        help="built-in fp32, defaults, or NAME=[VAR=VALUE ...] [FLAGS]; the first is the reference",
    )
    p.add_argument("--bunny", default=str(ROOT / "data" / "raw" / "bunny.mkv"))
    p.add_argument("--out", default=str(OUT / "time_to_quality.json"))
    args = p.parse_args()
    paths = parse_paths(args.paths)
    reference = next(iter(paths))
    if "bunny" in args.clips and not Path(args.bunny).is_file():
        raise SystemExit(f"clip bunny: {args.bunny} not found; give --bunny PATH")

    runs: list[dict] = []

    def record(**more) -> None:
        write_record(
            args.out,
            settings=vars(args),
            reference=reference,
            paths={n: {"env": q.env, "flags": q.flags} for n, q in paths.items()},
            runs=runs,
            **more,
        )

    with tempfile.TemporaryDirectory() as tmp:
        for clip_name in args.clips:
            clip = CLIPS[clip_name]
            frames = Path(tmp) / f"{clip_name}.npy"
            video = clip.video or args.bunny
            extract = ["extract", video, "-o", str(frames), "--frames", clip.frames]
            run([*extract, "--resize", clip.resize], base_env())
            for round_ in range(args.rounds):
                done: dict[str, dict] = {}
                for name, path in paths.items():
                    work = Path(tmp) / f"{clip_name}_{round_}_{name}"
                    row = {"clip": clip_name, "round": round_, "path": name, "spec": path.spec()}
                    row.update(measure(frames, work, clip, args.epochs, path))
                    row.update(against(row, done.get(reference, row)))
                    done[name] = row
                    runs.append(row)
                    record()  # so far
                    print(
                        f"{clip_name} round {round_ + 1} {name} ({row['precision']}): "
                        f"{row['train_seconds']:.1f} s, decoded {row['decoded_psnr']:.2f} dB, "
                        f"training {row['final_train_psnr']:.2f} dB",
                        flush=True,
                    )
    table = summarize(runs, args.clips, list(paths))
    print_table(table, reference)
    record(table=table)


if __name__ == "__main__":
    main()
