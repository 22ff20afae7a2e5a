"""`gnerv` command line: argument parsing and one-line error messages, nothing else.

Expected mistakes raise GnervError; main() prints `gnerv: error: <message>` and exits with 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gnerv.errors import GnervError

EXIT_USER_ERROR = 2


# --------------------------------------------------------------------------------------------
# Shared option groups (fit and encode take the same ones)
# --------------------------------------------------------------------------------------------


def add_extract_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("frames")
    g.add_argument("--frames", metavar="A:B", help="half-open frame range, e.g. 0:32 (default all)")
    g.add_argument("--stride", type=int, default=1, help="keep every S-th frame (default 1)")
    g.add_argument("--resize", metavar="HxW", help="resize to height x width with the area filter")


def add_model_args(p: argparse.ArgumentParser, default_size: str | None = "0.5M") -> None:
    g = p.add_argument_group("model")
    size = g.add_mutually_exclusive_group()
    size.add_argument(
        "--size",
        default=default_size,
        help="target parameter count, e.g. 0.5M or 300k (picks C0); default %(default)s",
    )
    size.add_argument("--c0", type=int, help="embedding channels C0 (instead of --size)")
    g.add_argument(
        "--upscale-factors",
        metavar="5,2,2,2,2",
        help="Conv-Up upscale factors (default: from gcd(H, W), paper values at 720p/1080p)",
    )
    g.add_argument("--min-channels", type=int, default=30, help="channel floor (paper: 30)")
    g.add_argument("--pe-base", type=float, default=1.25, help="positional-encoding base b")
    g.add_argument("--pe-levels", type=int, default=20, help="positional-encoding levels l")
    g.add_argument("--ds-hidden", type=int, default=40, help="shared DS linear width")
    g.add_argument("--kernel-size", type=int, default=3, help="conv kernel size")


def add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=300, help="epochs (paper: 300)")
    g.add_argument("--batch", type=int, default=4, help="batch size (paper: 4)")
    g.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate (default 2e-3 for frames, 2e-4 for residuals)",
    )
    g.add_argument("--warmup", type=float, default=0.2, help="warm-up share of steps (0.2)")
    g.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="loss a*D + (1-a)*(1-SSIM): a (default 0.7 frames, 1.0 residuals)",
    )
    g.add_argument("--distortion", choices=["l1", "mse"], default="l1", help="D in the loss")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints")
    g.add_argument("--device", default="auto", help="auto (GPU when present) | cpu | cuda[:N]")
    g.add_argument("--no-amp", action="store_true", help="no bf16 autocast on GPU")
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_factors(text: str | None) -> tuple[int, ...]:
    if not text or text == "auto":
        return ()
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(","))
    except ValueError:
        raise GnervError(f"--upscale-factors '{text}' is not a comma list of integers like 5,2,2")


def model_config_from_args(args: argparse.Namespace, height: int, width: int, residual: bool):
    from gnerv.model import GNeRVConfig, c0_for_size, parse_param_count

    common = dict(
        height=height,
        width=width,
        upscale_factors=parse_factors(args.upscale_factors),
        min_channels=args.min_channels,
        pe_base=args.pe_base,
        pe_levels=args.pe_levels,
        ds_hidden=args.ds_hidden,
        kernel_size=args.kernel_size,
        residual=residual,
    )
    c0 = args.c0 if args.c0 is not None else c0_for_size(parse_param_count(args.size), **common)
    return GNeRVConfig(c0=c0, **common)


def train_config_from_args(args: argparse.Namespace, residual: bool):
    from gnerv.train import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr if args.lr is not None else (2e-4 if residual else 2e-3),
        warmup_fraction=args.warmup,
        loss_alpha=args.alpha if args.alpha is not None else (1.0 if residual else 0.7),
        distortion=args.distortion,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        amp=not args.no_amp,
    )


def read_frames_from_args(args: argparse.Namespace, video: str, progress: bool = True):
    from gnerv.video import parse_range, parse_size, read_video

    return read_video(
        video,
        frame_range=parse_range(args.frames) if args.frames else None,
        stride=args.stride,
        resize=parse_size(args.resize) if args.resize else None,
        progress=progress,
    )


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def cmd_extract(args: argparse.Namespace) -> None:
    from gnerv.video import save_frames

    frames, meta = read_frames_from_args(args, args.video)
    save_frames(args.output, frames, meta)
    n, h, w, _ = frames.shape
    print(f"{args.output}: {n} frames of {h}x{w} (HxW) at {meta['fps']:g} fps")


def cmd_fit(args: argparse.Namespace) -> None:
    from gnerv.model import describe
    from gnerv.train import fit
    from gnerv.video import load_frames

    frames, meta = load_frames(args.frames_file)
    _, h, w, _ = frames.shape
    model_cfg = model_config_from_args(args, h, w, residual=False)
    print(describe(model_cfg), file=sys.stderr)
    result = fit(
        frames,
        model_cfg,
        train_config_from_args(args, residual=False),
        args.output,
        resume=args.resume,
        video_meta=meta,
        progress=not args.quiet,
    )
    print(
        f"PSNR {result.psnr:.2f} dB after {result.epochs} epochs "
        f"({result.train_seconds:.0f} s of training) -> {args.output}"
    )


def cmd_render(args: argparse.Namespace) -> None:
    import torch

    from gnerv.device import select_device
    from gnerv.model import render, to_uint8
    from gnerv.train import CHECKPOINT_NAME, model_from_checkpoint
    from gnerv.video import write_video

    ckpt_path = Path(args.model_dir) / CHECKPOINT_NAME
    if not ckpt_path.exists():
        raise GnervError(f"{ckpt_path} not found: give a MODEL_DIR written by `gnerv fit`")
    model, ckpt = model_from_checkpoint(ckpt_path)
    n = int(ckpt["settings"]["target_shape"][0])
    indices = frame_indices(args.frames, n, str(ckpt_path))
    model.to(select_device(args.device)).eval()
    frames = to_uint8(render(model, torch.tensor(indices), n, args.batch)).cpu().numpy()
    write_video(args.output, frames, float(ckpt.get("video", {}).get("fps", 25.0)))
    print(f"{args.output}: {len(frames)} frames")


def frame_indices(spec: str | None, n_frames: int, what: str) -> list[int]:
    """'A:B' (half-open, B may be omitted) -> indices, checked against the video's length."""
    if not spec:
        return list(range(n_frames))
    from gnerv.video import parse_range

    a, b = parse_range(spec)
    b = n_frames if b < 0 else b
    if not (0 <= a < b <= n_frames):
        raise GnervError(
            f"--frames {spec} is outside {what}, which has {n_frames} frames (0:{n_frames})"
        )
    return list(range(a, b))


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnerv", description="GNeRV neural video codec: fit, code and decode videos."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("extract", help="decode a video into a frames file (.npy + .json)")
    p.add_argument("video", help="any video ffmpeg reads (mp4, mkv, avi, mov, y4m)")
    p.add_argument("-o", "--output", required=True, help="frames file to write (.npy)")
    add_extract_args(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("fit", help="train a GNeRV model on a frames file (or a video)")
    p.add_argument("frames_file", metavar="FRAMES", help="frames .npy from `gnerv extract`")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="output folder")
    add_model_args(p)
    add_train_args(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("render", help="render a trained model to mp4, mkv (lossless) or npy")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `gnerv fit`")
    p.add_argument("-o", "--output", required=True, help="out.mp4 | out.mkv | out.npy")
    p.add_argument("--frames", metavar="A:B", help="render only these frames")
    p.add_argument("--batch", type=int, default=8, help="frames per forward pass")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.set_defaults(func=cmd_render)

    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


# Later modules add their commands here (encode/decode/info, progressive, evaluation).
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except GnervError as e:
        print(f"gnerv {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (MemoryError, RuntimeError) as e:
        text = str(e).lower()
        if (
            not isinstance(e, MemoryError)
            and "out of memory" not in text
            and "can't allocate" not in text
        ):
            raise
        print(
            f"gnerv {args.command}: error: ran out of memory ({text.splitlines()[0][:120]}): "
            "use a smaller --size/--c0, --batch or --resize",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"gnerv {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
