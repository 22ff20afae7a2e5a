"""Progressive stages against respective models (the paper's Table 3), its sweeps and variants.

    python benchmarks/progressive.py                               # demo + realshort: paper, warm
    python benchmarks/progressive.py --clips demo --sweep scale       # residual scale 1 .. 1e5
    python benchmarks/progressive.py --clips demo --sweep lr          # residual learning rate
    python benchmarks/progressive.py --variants paper "warm=--warm-start" \
        "qat=--scheme symmetric --bits 6 --qat-epochs 10"             # any encode flags

For each clip: `gnerv encode --respective` (one model per prefix total, each trained the same
epochs as every stage, the paper's setting: 300 epochs for every model) and, per variant,
`gnerv encode --stages N` with the variant's flags; every prefix and every respective model is
then decoded from its files by `gnerv evaluate`, so bpp is file size and PSNR is what a decoder
shows. Variants: `paper` (the paper's stages: cold start, residual lr 2e-4, scale 100) and any
`NAME=FLAGS`; `--sweep scale|lr` adds the paper variant at each value. Epochs per stage and
stage sizes are swept by giving several values: every variant and the respective models are run
at each (the respective models too, so every comparison has equal epochs and equal totals):

    python benchmarks/progressive.py --stage-sizes 0.05M,0.05M --epochs 50 200      # epochs
    python benchmarks/progressive.py --stage-sizes 0.05M,0.05M,0.05M 0.025M,0.05M,0.075M

Prints Table 3 per clip, sizes and epochs (params, MACs/frame, bpp, PSNR, training seconds) and
each prefix's gain over the respective model of its total size; writes
benchmarks/out/progressive.json (rows as they come).
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
from pathlib import Path

from record import gnerv, named_flags, write_record

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
CLIPS = {  # name -> (video, frame range, size)
    "demo": (str(ROOT / "data" / "raw" / "cockatoo.mp4"), "0:32", "90x160"),
    "realshort": (str(ROOT / "data" / "raw" / "realshort.mp4"), "0:32", "90x160"),
    "bunny": (None, "0:", "180x320"),
}
# The paper's figure sweeps the first residual's scale over these (section 4.3).
SWEEPS = {
    "scale": ("--residual-scale", ["1", "10", "100", "1e4", "1e5"]),
    "lr": ("--stage-lrs", ["2e-4", "1e-3", "2e-3", "8e-3"]),  # residual stages' rate
}


def sweep_variants(sweep: str, n_stages: int) -> dict[str, list[str]]:
    """The paper variant at each value of one setting."""
    flag, values = SWEEPS[sweep]
    if flag == "--stage-lrs":  # stage 1 keeps its own rate (auto), residual stages take it
        return {f"lr{v}": [flag, ",".join(["auto"] + [v] * (n_stages - 1))] for v in values}
    return {f"scale{v}": [flag, v] for v in values}


def evaluated(frames: Path, layers: list[Path], out: Path) -> list[dict]:
    gnerv("evaluate", str(frames), "--layers", *map(str, layers), "-o", str(out))
    return json.loads(out.read_text())["points"]


def run_clip(
    clip: str, video: str, work: Path, stage_sizes: str, epochs: int, args, rows: list[dict]
) -> None:
    """Every variant's prefixes and the respective models of one clip, decoded, into rows."""
    _, frame_range, resize = CLIPS[clip]
    frames = work / "frames.npy"
    gnerv("extract", video, "-o", str(frames), "--frames", frame_range, "--resize", resize)
    n = len(stage_sizes.split(","))
    if args.sweep:
        variants = sweep_variants(args.sweep, n)
    else:  # paper: no flags, the package's progressive stages as the paper runs them
        variants = named_flags(args.variants, {"paper": ""}, "variant")
    common = [video, "--frames", frame_range, "--resize", resize, "--quiet"]
    common += ["--stages", str(n), "--stage-sizes", stage_sizes]
    common += ["--stage-epochs", ",".join([str(epochs)] * n), *shlex.split(args.flags)]
    runs = variants if args.no_respective else {"respective": ["--respective"], **variants}
    for name, flags in runs.items():
        out = work / name
        gnerv("encode", *common, "-o", str(out), *flags)
        if name == "respective":
            points = [
                evaluated(frames, [out / f"respective{j}.gnerv"], out / f"m{j}.json")[0]
                for j in range(1, n + 1)
            ]
            for j, p in enumerate(points, start=1):
                p["stage"] = j
        else:
            layers = [out / f"stage{j}.gnerv" for j in range(1, n + 1)]
            points = evaluated(frames, layers, out / "metrics.json")
        for p in points:
            rows.append(
                {
                    "clip": clip,
                    "stage_sizes": stage_sizes,
                    "epochs": epochs,
                    "variant": name,
                    "flags": shlex.join(flags),
                    "stages": p["stage"],
                    "params": p["params"],
                    "macs_per_frame": p["macs_per_frame"],
                    "bpp": p["bpp"],
                    "psnr": p["psnr"],
                    "train_seconds": p.get("encode_seconds"),
                }
            )
            print(
                f"{clip} {stage_sizes} {epochs} ep {name} 1..{p['stage']}: "
                f"{p['psnr']:.2f} dB, {p['bpp']:.4f} bpp",
                flush=True,
            )
        write_record(args.out, epochs=args.epochs, stage_sizes=args.stage_sizes, rows=rows)


def setting(row: dict) -> tuple:
    """What a prefix is compared within: clip, stage sizes, epochs, prefix length."""
    return row["clip"], row["stage_sizes"], row["epochs"], row["stages"]


def table(rows: list[dict]) -> None:
    """Table 3's layout per clip, with each prefix's gain over the respective model."""
    respective = {setting(r): r["psnr"] for r in rows if r["variant"] == "respective"}
    print(
        "\n| clip | stage sizes | epochs | model | params | MACs/frame | bpp | PSNR dB "
        "| vs respective | train s |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        is_respective = r["variant"] == "respective"
        base = respective.get(setting(r))
        gain = "" if is_respective or base is None else f"{r['psnr'] - base:+.2f}"
        model = f"respective {r['stages']}" if is_respective else f"{r['variant']} 1..{r['stages']}"
        seconds = "" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}"
        print(
            f"| {r['clip']} | {r['stage_sizes']} | {r['epochs']} | {model} | {r['params']:,} | "
            f"{r['macs_per_frame'] / 1e6:.1f} M | "
            f"{r['bpp']:.4f} | {r['psnr']:.2f} | {gain} | {seconds} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="+", default=["demo", "realshort"], choices=list(CLIPS))
    p.add_argument("--bunny", help="path of bunny.mkv (data/raw/bunny.mkv)")
    p.add_argument(
        "--stage-sizes",
        nargs="+",
        default=["0.05M,0.05M,0.05M"],
        help="one or more comma lists (the paper: equal sizes)",
    )
    p.add_argument(
        "--epochs", type=int, nargs="+", default=[100], help="of every stage and every model"
    )
    p.add_argument("--variants", nargs="+", default=["paper", "warm=--warm-start"])
    p.add_argument("--sweep", choices=list(SWEEPS), help="the paper variant at each value")
    p.add_argument(
        "--flags", default="", help="encode flags for every run (e.g. --min-channels 12)"
    )
    p.add_argument(
        "--no-respective", action="store_true", help="variants only (respective models known)"
    )
    p.add_argument("--out", default=str(OUT / "progressive.json"))
    args = p.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage_sizes in args.stage_sizes:
            for epochs in args.epochs:
                for clip in args.clips:
                    video = CLIPS[clip][0] or args.bunny
                    if video is None:
                        raise SystemExit("clip bunny: give --bunny PATH (data/raw/bunny.mkv)")
                    work = Path(tmp) / f"{clip}-{stage_sizes}-{epochs}"
                    work.mkdir()
                    run_clip(clip, video, work, stage_sizes, epochs, args, rows)
    table(rows)
    write_record(args.out, epochs=args.epochs, stage_sizes=args.stage_sizes, rows=rows)


if __name__ == "__main__":
    main()
