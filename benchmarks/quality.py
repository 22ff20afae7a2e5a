"""Quality per parameter: decoded PSNR and bpp of training recipes at several sizes and clips.

    python benchmarks/quality.py                                # demo + realshort, 3 sizes
    python benchmarks/quality.py --bunny data/raw/bunny.mkv --clips bunny --sizes 0.095M
    python benchmarks/quality.py --recipes paper default "lr8e-3=--lr 8e-3" --epochs 100

Each point is the real pipeline on the clip: `gnerv extract`, `gnerv fit` with the recipe's
flags, `gnerv compress` (the package's default coding, the same for every recipe) and
`gnerv evaluate` on the decoded
frames, so bpp is the .gnerv file's size. Recipes: `paper` is the paper's training recipe
(`--lr 2e-3 --embedding-std 1`: the reference row), `default` the package's defaults with no
flag, and any `NAME=FLAGS` adds one (FLAGS passed to `gnerv fit` as they are). Clips: `demo`
(cockatoo, 32 frames, 90x160: the demo's), `realshort` (32 frames, 90x160) and `bunny` (all
132 frames at 180x320; give --bunny PATH). Prints a table (and each recipe's gain over `paper`
where it ran); writes benchmarks/out/quality.json. Training seconds are only comparable within
one quiet run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
from pathlib import Path

from record import gnerv, named_flags, write_record

from gnerv.encoder.config import PAPER_LR, RANDN_STD
from gnerv.evaluation.bd import bd_psnr, bd_rate
from gnerv.runtime.errors import GnervError

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
CLIPS = {
    "demo": (str(ROOT / "data" / "raw" / "cockatoo.mp4"), "0:32", "90x160"),
    "realshort": (str(ROOT / "data" / "raw" / "realshort.mp4"), "0:32", "90x160"),
    "bunny": (None, "0:", "180x320"),
}
# paper: the paper's frame recipe (its lr, torch.randn's embedding start); default: no flag
BUILT_IN = {"paper": f"--lr {PAPER_LR:g} --embedding-std {RANDN_STD:g}", "default": ""}


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
    p.add_argument("--bunny", help="path of bunny.mkv (data/raw/bunny.mkv)")
    p.add_argument("--sizes", nargs="+", default=["0.05M", "0.1M", "0.2M"])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--recipes", nargs="+", default=["paper", "default"])
    p.add_argument(
        "--reference",
        default="paper",
        help="recipe the others are measured against: dB at each size, and BD-rate / BD-PSNR "
        "over the sizes per clip",
    )
    p.add_argument("--out", default=str(OUT / "quality.json"))
    p.add_argument(
        "--summarize",
        nargs="+",
        metavar="JSON",
        help="only print the tables of written JSONs (their rows together: one run's sizes "
        "split over several)",
    )
    args = p.parse_args()
    if args.summarize:
        rows = [r for path in args.summarize for r in json.loads(Path(path).read_text())["rows"]]
        summarize(sorted(rows, key=lambda r: (r["clip"], r["params"])), args.reference)
        return
    recipes = named_flags(args.recipes, BUILT_IN, "recipe")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in args.clips:
            video, frame_range, resize = CLIPS[clip]
            video = video or args.bunny
            if video is None:
                raise SystemExit("clip bunny: give --bunny PATH (data/raw/bunny.mkv)")
            frames = Path(tmp) / f"{clip}.npy"
            gnerv("extract", video, "-o", str(frames), "--frames", frame_range, "--resize", resize)
            for size in args.sizes:
                for name, flags in recipes.items():
                    work = Path(tmp) / f"{clip}_{size}_{name}"
                    work.mkdir()
                    row = {"clip": clip, "size": size, "recipe": name, "flags": shlex.join(flags)}
                    row.update(point(frames, work, size, args.epochs, flags))
                    rows.append(row)
                    write_record(args.out, epochs=args.epochs, rows=rows)  # so far
                    print(
                        f"{clip} {size} {name}: {row['psnr']:.2f} dB, {row['bpp']:.4f} bpp, "
                        f"{row['seconds_per_epoch']:.2f} s/epoch",
                        flush=True,
                    )
    bd = summarize(rows, args.reference)
    write_record(args.out, epochs=args.epochs, rows=rows, bd=bd)


def summarize(rows: list[dict], reference: str) -> list[dict]:
    """Print the table (each row's gain over the reference recipe at its size), each recipe's
    mean and worst gain, and the BD figures; sets each row's gain_db; returns the BD rows."""
    ref = {(r["clip"], r["size"]): r["psnr"] for r in rows if r["recipe"] == reference}
    print(f"\n| clip | size | recipe | params | PSNR dB | vs {reference} | bpp | s/epoch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = ref.get((r["clip"], r["size"]))
        r["gain_db"] = None if base is None else r["psnr"] - base
        gain = "" if r["gain_db"] is None else f"{r['gain_db']:+.2f}"
        print(
            f"| {r['clip']} | {r['size']} | {r['recipe']} | {r['params'] / 1e6:.3f}M | "
            f"{r['psnr']:.2f} | {gain} | {r['bpp']:.4f} | {r['seconds_per_epoch']:.2f} |"
        )
    for name in dict.fromkeys(r["recipe"] for r in rows):
        gains = [r["gain_db"] for r in rows if r["recipe"] == name and r["gain_db"] is not None]
        if gains and name != reference:
            print(f"{name}: mean {sum(gains) / len(gains):+.2f} dB, worst {min(gains):+.2f} dB")
    return bd_rows(rows, reference)


def bd_rows(rows: list[dict], reference: str) -> list[dict]:
    """Per clip, each recipe's R-D curve over the sizes against the reference recipe's: what a
    comparison at unequal sizes (e.g. two layouts whose C0 steps differ) comes down to."""
    out = []
    for clip in dict.fromkeys(r["clip"] for r in rows):
        curves: dict[str, tuple[list[float], list[float]]] = {}
        for r in rows:
            if r["clip"] == clip:
                curve = curves.setdefault(r["recipe"], ([], []))
                curve[0].append(r["bpp"])
                curve[1].append(r["psnr"])
        if reference not in curves:
            continue
        for name, (rate, psnr) in curves.items():
            if name == reference:
                continue
            try:
                row = {
                    "clip": clip,
                    "recipe": name,
                    "against": reference,
                    "bd_rate_percent": bd_rate(*curves[reference], rate, psnr),
                    "bd_psnr_db": bd_psnr(*curves[reference], rate, psnr),
                }
            except GnervError as e:  # one size, or curves that do not overlap
                print(f"{clip} {name}: no BD figures against {reference} ({e})")
                continue
            out.append(row)
            print(
                f"{clip} {name} against {reference}: BD-rate {row['bd_rate_percent']:+.1f} %, "
                f"BD-PSNR {row['bd_psnr_db']:+.2f} dB"
            )
    return out


if __name__ == "__main__":
    main()
