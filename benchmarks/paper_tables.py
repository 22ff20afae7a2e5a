"""The paper's Table 1 (model size -> PSNR) and Table 3 (respective vs progressive) layouts.

    # Table 1: a ladder of sizes on one video (paper: Bunny 1280x720, 0.5M / 3M / 12M, 300 epochs)
    python benchmarks/paper_tables.py table1 --sizes 0.05M,0.1M,0.2M --epochs 300 --lr 5e-3
    python benchmarks/paper_tables.py table1 --video data/raw/bunny.mkv --frames 0:132 \
        --resize 720x1280 --sizes 0.5M,3M,12M --epochs 300          # paper scale (GPU)

    # Table 3: three progressive stages against three separately trained models of the same totals
    python benchmarks/paper_tables.py table3 --stage-sizes 0.1M,0.1M,0.1M --stage-epochs 300,150,150

Every figure is measured on the decoded .gnerv files (8-bit weights, entropy coded). Prints a
Markdown table and writes JSON to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from record import write_record

from gnerv.codec.config import GNeRVConfig
from gnerv.encoder.config import PAPER_LR, TrainConfig
from gnerv.encoder.encode import encode_single
from gnerv.encoder.progressive import (
    StageSpec,
    encode_progressive,
    encode_respective,
    stage_model_config,
)
from gnerv.evaluation.evaluate import evaluate_layers
from gnerv.evaluation.plots import markdown_table
from gnerv.media.video import read_video
from gnerv.runtime.sizes import parse_param_count

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
COLUMNS = ["model", "params", "macs_per_frame", "bpp", "psnr", "ms_ssim", "encode_seconds"]


def load(args: argparse.Namespace):
    a, b = (int(x) for x in args.frames.split(":"))
    h, w = (int(x) for x in args.resize.split("x"))
    frames, meta = read_video(args.video, frame_range=(a, b), resize=(h, w), progress=False)
    return frames, meta, GNeRVConfig(h, w, c0=1, min_channels=args.min_channels)


def row(label: str, point: dict) -> dict:
    return {"model": label, **{k: point.get(k) for k in COLUMNS if k != "model"}}


def table1(args: argparse.Namespace, out_dir: Path) -> list[dict]:
    frames, meta, base = load(args)
    rows = []
    for size in args.sizes.split(","):
        cfg = stage_model_config(StageSpec(size=parse_param_count(size)), base, 1)
        path = out_dir / f"size_{size}.gnerv"
        tcfg = TrainConfig(epochs=args.epochs, lr=args.lr, device=args.device)
        encode_single(
            frames,
            meta,
            cfg,
            tcfg,
            path,
            workdir=out_dir / f"size_{size}.work",
            resume="auto",
            progress=not args.quiet,
        )
        point = evaluate_layers(frames, [path], args.device)["points"][0]
        rows.append(row(f"GNeRV {size}", point))
    return rows


def table3(args: argparse.Namespace, out_dir: Path) -> list[dict]:
    frames, meta, base = load(args)
    sizes = args.stage_sizes.split(",")
    epochs = [int(e) for e in args.stage_epochs.split(",")]
    stages = [
        StageSpec(
            size=parse_param_count(s),
            epochs=e,
            lr=args.lr if j == 0 else args.residual_lr,
            residual_scale=args.residual_scale,
        )
        for j, (s, e) in enumerate(zip(sizes, epochs, strict=True))
    ]
    train = TrainConfig(device=args.device)
    rows = []
    prog = encode_progressive(
        frames,
        meta,
        stages,
        base,
        train,
        out_dir / "progressive",
        resume="auto",
        progress=not args.quiet,
    )
    layers = [out_dir / "progressive" / f"stage{j}.gnerv" for j in range(1, len(stages) + 1)]
    points = evaluate_layers(frames, layers, args.device)["points"]
    elapsed = 0.0
    for j, (p, fig) in enumerate(zip(points, prog, strict=True), start=1):
        elapsed += fig["train_seconds"]
        rows.append({**row(f"progressive 1..{j}", p), "encode_seconds": elapsed})
    resp = encode_respective(
        frames,
        meta,
        stages,
        base,
        train,
        out_dir / "respective",
        resume="auto",
        progress=not args.quiet,
    )
    for j, fig in enumerate(resp, start=1):
        p = evaluate_layers(frames, [out_dir / "respective" / f"respective{j}.gnerv"], args.device)[
            "points"
        ][0]
        rows.append({**row(f"respective {j}", p), "encode_seconds": fig["train_seconds"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", choices=["table1", "table3"])
    ap.add_argument("--video", default=str(ROOT / "data" / "raw" / "cockatoo.mp4"))
    ap.add_argument("--frames", default="0:32")
    ap.add_argument("--resize", default="90x160", help="HxW")
    ap.add_argument("--min-channels", type=int, default=30)
    ap.add_argument("--sizes", default="0.05M,0.1M,0.2M", help="table1: the size ladder")
    ap.add_argument("--epochs", type=int, default=300, help="table1: epochs per model")
    ap.add_argument("--lr", type=float, default=PAPER_LR, help="lr of frame models (the paper's)")
    ap.add_argument("--stage-sizes", default="0.1M,0.1M,0.1M", help="table3: per-stage params")
    ap.add_argument("--stage-epochs", default="300,150,150", help="table3: per-stage epochs")
    ap.add_argument("--residual-lr", type=float, default=2e-4, help="table3 (paper: 2e-4)")
    ap.add_argument("--residual-scale", type=float, default=100.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="work folder (default benchmarks/out/<table>)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    out_dir = Path(args.out or OUT / args.table)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rows = table1(args, out_dir) if args.table == "table1" else table3(args, out_dir)
    print(markdown_table(rows, COLUMNS))
    write_record(
        out_dir / f"{args.table}.json",
        table=args.table,
        args=vars(args),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        wall_seconds=time.time() - t0,
        rows=rows,
    )


if __name__ == "__main__":
    main()
