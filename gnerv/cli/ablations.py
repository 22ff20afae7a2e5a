"""ablation: the paper's ablations (section 4.3) from fitted models and evaluated layers."""

from __future__ import annotations

import argparse

from gnerv.cli.common import add_render_args
from gnerv.codec.config import MASKS


def cmd_psnr(args: argparse.Namespace) -> None:
    from pathlib import Path

    from gnerv.media.video import load_frames
    from gnerv.runtime.device import select_device
    from gnerv.studies.ablations import model_psnr

    frames, _ = load_frames(args.frames_file)
    psnr = model_psnr(Path(args.model_dir), frames, select_device(args.device), args.mask)
    masked = f", {args.mask.upper()} masked" if args.mask else ""
    print(f"{args.model_dir}: PSNR {psnr:.2f} dB{masked}")


def cmd_time_branch(args: argparse.Namespace) -> None:
    from gnerv.media.video import load_frames
    from gnerv.studies.ablations import time_branch

    frames, _ = load_frames(args.frames_file)
    result = time_branch(frames, args.fits, args.device, args.output)
    for column in result["columns"]:
        print(
            f"C0 {column['c0']}: DS {column['w. DS']:.2f} dB, DS+M {column['w. DS and M']:.2f}, "
            f"mask M {column['w. DS and M, mask M']:.2f}, "
            f"mask DS {column['w. DS and M, mask DS']:.2f}"
        )


def cmd_epochs(args: argparse.Namespace) -> None:
    from gnerv.studies.ablations import epochs

    for point in epochs(args.fits, args.output)["points"]:
        print(f"{point['epochs']} epochs: PSNR {point['psnr']:.2f} dB")


def cmd_progressive(args: argparse.Namespace) -> None:
    from gnerv.studies.ablations import progressive

    for row in progressive(args.pipeline, args.long, args.output)["rows"]:
        print(
            f"{row['pipeline']} stage {row['stage']}: {row['epochs']} epochs, "
            f"{row['params']} params, {row['bpp']:.4f} bpp, PSNR {row['psnr']:.2f} dB"
        )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablation", help="the paper's ablations (section 4.3): tables and plots")
    kinds = p.add_subparsers(dest="ablation", required=True, metavar="ABLATION")
    out_help = "X.json to write; X.md (the table) and X.png (the plot) go beside it"

    q = kinds.add_parser("psnr", help="PSNR of a fitted model, optionally with a branch masked")
    q.add_argument("frames_file", metavar="FRAMES", help="frames .npy from `gnerv extract`")
    q.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `gnerv fit`")
    q.add_argument(
        "--mask", choices=MASKS, help="leave out this time branch (models with time_branch ds+m)"
    )
    add_render_args(q, batch=False)
    q.set_defaults(func=cmd_psnr)

    q = kinds.add_parser("time-branch", help="Table 4: DS-only vs DS+M models, each branch masked")
    q.add_argument("frames_file", metavar="FRAMES", help="frames .npy from `gnerv extract`")
    q.add_argument(
        "--fits",
        nargs="+",
        required=True,
        metavar="DIR",
        help="`gnerv fit` folders: one ds and one ds+m model per C0",
    )
    q.add_argument("-o", "--output", required=True, metavar="X.json", help=out_help)
    add_render_args(q, batch=False)
    q.set_defaults(func=cmd_time_branch)

    q = kinds.add_parser("epochs", help="Fig. 7: PSNR against training epochs")
    q.add_argument(
        "--fits",
        nargs="+",
        required=True,
        metavar="DIR",
        help="`gnerv fit` folders, one per epoch count",
    )
    q.add_argument("-o", "--output", required=True, metavar="X.json", help=out_help)
    q.set_defaults(func=cmd_epochs)

    q = kinds.add_parser("progressive", help="Fig. 8: a progressive pipeline vs one long run")
    q.add_argument(
        "--pipeline", required=True, metavar="METRICS.json", help="`gnerv evaluate` of its layers"
    )
    q.add_argument(
        "--long", required=True, metavar="METRICS.json", help="`gnerv evaluate` of the one model"
    )
    q.add_argument("-o", "--output", required=True, metavar="X.json", help=out_help)
    q.set_defaults(func=cmd_progressive)
