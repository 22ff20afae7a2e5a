"""Quality per parameter: decoded PSNR and bpp of training recipes at several sizes and clips.

    python benchmarks/quality.py                                # demo + realshort, 3 sizes
    python benchmarks/quality.py --bunny ../shared/data/bunny.mkv --clips bunny --sizes 0.095M
    python benchmarks/quality.py --recipes paper default "lr8e-3=--lr 8e-3" --epochs 100

Each point is the real pipeline on the clip: `gnerv extract`, `gnerv fit` with the recipe's
flags, `gnerv compress` (8-bit, the paper's quantizer) and `gnerv evaluate` on the decoded
frames, so bpp is the .gnerv file's size. Recipes: `paper` is the paper's training recipe
(`--lr 2e-3`: the reference row), `default` the package's defaults with no flag, and any
`NAME=FLAGS` adds one (FLAGS passed to `gnerv fit` as they are). Clips: `demo` (cockatoo,
32 frames, 90x160: the demo's), `realshort` (32 frames, 90x160) and `bunny` (all 132 frames at
180x320; give --bunny PATH). Prints a table (and each recipe's gain over `paper` where it ran);
writes benchmarks/out/quality.json. Training seconds are only comparable within one quiet run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from record import write_record

from gnerv.train import PAPER_LR

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
GNERV = str(Path(sys.executable).parent / "gnerv")
CLIPS = {
    "demo": (str(ROOT / "data" / "raw" / "cockatoo.mp4"), "0:32", "90x160"),
    "realshort": (str(ROOT / "data" / "raw" / "realshort.mp4"), "0:32", "90x160"),
    "bunny": (None, "0:", "180x320"),
}
BUILT_IN = {"paper": f"--lr {PAPER_LR:g}", "default": ""}  # paper: its frame recipe


def gnerv(*args: str) -> None:
    done = subprocess.run([GNERV, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"gnerv {shlex.join(args)} failed:\n{done.stderr[-2000:]}")


def parse_recipes(items: list[str]) -> dict[str, list[str]]:
    recipes = {}
    for item in items:
        name, sep, flags = item.partition("=")
        if not sep:
            if name not in BUILT_IN:
                raise SystemExit(f"recipe {name!r}: use paper, default or NAME=FLAGS")
            flags = BUILT_IN[name]
        recipes[name] = shlex.split(flags)
    return recipes


def point(frames: Path, work: Path, size: str, epochs: int, flags: list[str]) -> dict:
    """Fit, compress and evaluate one model; the decoded figures."""
    model = work / "model"
    layer = work / "layer.gnerv"
    metrics = work / "metrics.json"
    gnerv(
        "fit",
        str(frames),
        "-o",
        str(model),
        "--size",
        size,
        "--epochs",
        str(epochs),
        "--quiet",
        *flags,
    )
    fit = json.loads((model / "fit.json").read_text())
    gnerv("compress", str(model), "-o", str(layer), "--frames-file", str(frames))
    gnerv("evaluate", str(frames), "--layers", str(layer), "-o", str(metrics))
    top = json.loads(metrics.read_text())["points"][0]
    return {
        "psnr": top["psnr"],
        "bpp": top["bpp"],
        "params": top["params"],
        "train_seconds": fit["train_seconds"],
        "seconds_per_epoch": fit["train_seconds"] / epochs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="+", default=["demo", "realshort"], choices=list(CLIPS))
    p.add_argument("--bunny", help="path of bunny.mkv (../shared/data/bunny.mkv)")
    p.add_argument("--sizes", nargs="+", default=["0.05M", "0.1M", "0.2M"])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--recipes", nargs="+", default=["paper", "default"])
    p.add_argument("--out", default=str(OUT / "quality.json"))
    args = p.parse_args()
    recipes = parse_recipes(args.recipes)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in args.clips:
            video, frame_range, resize = CLIPS[clip]
            video = video or args.bunny
            if video is None:
                raise SystemExit("clip bunny: give --bunny PATH (../shared/data/bunny.mkv)")
            frames = Path(tmp) / f"{clip}.npy"
            gnerv("extract", video, "-o", str(frames), "--frames", frame_range, "--resize", resize)
            for size in args.sizes:
                for name, flags in recipes.items():
                    work = Path(tmp) / f"{clip}_{size}_{name}"
                    work.mkdir()
                    row = {"clip": clip, "size": size, "recipe": name, "flags": shlex.join(flags)}
                    row.update(point(frames, work, size, args.epochs, flags))
                    rows.append(row)
                    print(
                        f"{clip} {size} {name}: {row['psnr']:.2f} dB, {row['bpp']:.4f} bpp, "
                        f"{row['seconds_per_epoch']:.2f} s/epoch",
                        flush=True,
                    )
    paper = {(r["clip"], r["size"]): r["psnr"] for r in rows if r["recipe"] == "paper"}
    print("\n| clip | size | recipe | PSNR dB | vs paper | bpp | s/epoch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ref = paper.get((r["clip"], r["size"]))
        r["gain_db"] = None if ref is None else r["psnr"] - ref
        gain = "" if r["gain_db"] is None else f"{r['gain_db']:+.2f}"
        print(
            f"| {r['clip']} | {r['size']} | {r['recipe']} | {r['psnr']:.2f} | {gain} | "
            f"{r['bpp']:.4f} | {r['seconds_per_epoch']:.2f} |"
        )
    for name in recipes:
        gains = [r["gain_db"] for r in rows if r["recipe"] == name and r["gain_db"] is not None]
        if gains and name != "paper":
            print(f"{name}: mean {sum(gains) / len(gains):+.2f} dB, worst {min(gains):+.2f} dB")
    write_record(args.out, epochs=args.epochs, rows=rows)


if __name__ == "__main__":
    main()
