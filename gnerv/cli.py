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
    g.add_argument(
        "--eager", action="store_true", help="plain path: NCHW tensors, no compile (for comparison)"
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the model (opt-in)")
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    g.add_argument(
        "--auto-resume",
        action="store_true",
        help="continue from the checkpoint if it matches these settings and data, else start over",
    )
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
        channels_last=not args.eager,
        compile=args.compile and not args.eager,
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
    from gnerv.bitstream import video_fingerprint
    from gnerv.model import describe
    from gnerv.residual import is_residual_file, load_residual
    from gnerv.train import fit
    from gnerv.video import load_frames

    residual = is_residual_file(args.frames_file)
    if residual:  # a stage j >= 2 target written by `gnerv residual`
        target, meta = load_residual(args.frames_file)
        scale = float(meta["residual_scale"])
    else:
        target, meta = load_frames(args.frames_file)
        meta, scale = {**meta, "video_id": video_fingerprint(target)}, 1.0
    _, h, w, _ = target.shape
    model_cfg = model_config_from_args(args, h, w, residual=residual)
    print(describe(model_cfg))
    result = fit(
        target,
        model_cfg,
        train_config_from_args(args, residual=residual),
        args.output,
        resume="auto" if args.auto_resume else args.resume,
        target_scale=scale,
        video_meta=meta,
        progress=not args.quiet,
    )
    what = "PSNR of the layers so far plus this residual" if residual else "PSNR"
    print(
        f"{what} {result.psnr:.2f} dB after {result.epochs} epochs "
        f"({result.train_seconds:.0f} s of training) -> {args.output}"
    )


def cmd_render(args: argparse.Namespace) -> None:
    import torch

    from gnerv.device import select_device
    from gnerv.model import for_inference, render, to_uint8
    from gnerv.train import CHECKPOINT_NAME, model_from_checkpoint
    from gnerv.video import write_video

    ckpt_path = Path(args.model_dir) / CHECKPOINT_NAME
    if not ckpt_path.exists():
        raise GnervError(f"{ckpt_path} not found: give a MODEL_DIR written by `gnerv fit`")
    model, ckpt = model_from_checkpoint(ckpt_path)
    if model.cfg.residual:
        raise GnervError(
            f"{ckpt_path} holds a residual stage: compress it and `gnerv decode` its layer chain"
        )
    n = int(ckpt["settings"]["target_shape"][0])
    indices = frame_indices(args.frames, n, str(ckpt_path))
    for_inference(model, select_device(args.device))
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


def _print_figures(fig: dict) -> None:
    """The lines compress and encode print: PSNRs (when measured), size and bpp."""
    if "psnr_quantized" in fig:
        print(
            f"PSNR {fig['psnr_float']:.2f} dB before quantization, "
            f"{fig['psnr_quantized']:.2f} dB after ({fig['bits']} bits, as decoded)"
        )
    print(
        f"{fig['file']}: {fig['bytes']} bytes, {fig['bpp']:.4f} bpp "
        f"({fig['params']} params at {fig['bits']} bits)"
    )


def cmd_compress(args: argparse.Namespace) -> None:
    from gnerv.codec import compress_checkpoint
    from gnerv.video import load_frames

    _check_suffix(args.output, (".gnerv",))
    frames = load_frames(args.frames_file)[0] if args.frames_file else None
    fig = compress_checkpoint(
        args.model_dir, args.output, args.bits, frames, device=args.device, batch_size=args.batch
    )
    _print_figures(fig)


def cmd_encode(args: argparse.Namespace) -> None:
    from gnerv.codec import default_workdir, encode_single
    from gnerv.model import describe

    if args.stages != 1 or args.respective:
        return cmd_encode_layers(args)
    _check_suffix(args.output, (".gnerv",))
    frames, meta = read_frames_from_args(args, args.video, progress=not args.quiet)
    _, h, w, _ = frames.shape
    model_cfg = model_config_from_args(args, h, w, residual=False)
    print(describe(model_cfg))
    workdir = args.workdir or default_workdir(args.output)
    fig = encode_single(
        frames,
        meta,
        model_cfg,
        train_config_from_args(args, residual=False),
        args.output,
        bits=args.bits,
        workdir=workdir,
        resume="auto" if args.auto_resume else args.resume,
        progress=not args.quiet,
    )
    print(
        f"fit: PSNR {fig['fit_psnr']:.2f} dB after {fig['epochs']} epochs "
        f"({fig['train_seconds']:.0f} s of training, state in {fig['workdir']})"
    )
    _print_figures(fig)


def cmd_decode(args: argparse.Namespace) -> None:
    from gnerv.decode import decode_layers, load_layers
    from gnerv.video import WRITE_SUFFIXES, write_video

    _check_suffix(args.output, WRITE_SUFFIXES)
    if args.batch < 1:
        raise GnervError(f"--batch {args.batch} must be >= 1")
    files = load_layers(args.files)
    indices = frame_indices(args.frames, files[0].n_frames, files[0].name)
    frames = decode_layers(files, indices, args.device, args.batch)
    write_video(args.output, frames, files[0].fps)
    print(f"{args.output}: {len(frames)} frames from {len(files)} layer(s)")


def cmd_info(args: argparse.Namespace) -> None:
    import json

    from gnerv.bitstream import file_info, read_gnerv

    info = file_info(read_gnerv(args.file, decode=False))
    if args.json:
        print(json.dumps(info, indent=2))
        return
    v, st, sz = info["video"], info["stage"], info["sizes"]
    layer = (
        "base layer (stage 1)"
        if st["index"] == 1
        else f"layer {st['index']}, refines {st['parent_sha256'][:8]}, "
        f"residual scale {st['residual_scale']:g}"
    )
    print(f"{info['file']}: .gnerv format {info['format']} ({info['encoder']}), {layer}")
    print(f"  sha256 {info['sha256']}, video {st['video_id'][:16]}")
    print(
        f"  video: {v['n_frames']} frames of {v['height']}x{v['width']} (HxW) at {v['fps']:g} fps"
    )
    m = info["model"]
    print(
        f"  model: {info['params']} params, {info['macs_per_frame'] / 1e9:.4f} GMACs/frame, "
        f"c0 {m['c0']}, upscale {m['upscale_factors']}, residual {str(m['residual']).lower()}"
    )
    print(
        f"  size: {sz['total']} bytes = header {sz['header']} + tables {sz['table']} "
        f"(min/max {sz['minmax']}, entropy {sz['entropy_tables']}) + payload {sz['payload']}; "
        f"{info['bpp']:.4f} bpp at {info['bits']} bits"
    )
    width = max(len(t["name"]) for t in info["tensors"])
    print(f"  {'tensor':<{width}}  {'shape':<16} bits mode  {'bytes':>8} {'payload':>8}")
    for t in info["tensors"]:
        shape = "x".join(str(s) for s in t["shape"])
        print(
            f"  {t['name']:<{width}}  {shape:<16} {t['bits']:>4} {t['mode']:<5} "
            f"{t['bytes']:>8} {t['payload_bytes']:>8}"
        )


def _check_suffix(path: str, suffixes: Sequence[str]) -> None:
    """Refuse an output name early, before any work is done."""
    if Path(path).suffix.lower() not in suffixes:
        raise GnervError(f"{path}: output must end in {' or '.join(suffixes)}")


def register_codec_commands(sub: argparse._SubParsersAction) -> None:
    """compress, encode, decode, info."""
    p = sub.add_parser("compress", help="quantize + entropy code a fitted model into a .gnerv")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `gnerv fit`")
    p.add_argument("-o", "--output", required=True, metavar="FILE.gnerv", help="file to write")
    p.add_argument("--bits", type=int, default=8, help="quantization bits (2..16, default 8)")
    p.add_argument(
        "--frames-file",
        metavar="FRAMES",
        help="the frames the model was fitted to (.npy): prints PSNR before/after quantization",
    )
    p.add_argument("--batch", type=int, default=8, help="frames per forward pass (PSNR)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (PSNR)")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("encode", help="video -> .gnerv in one go (extract, fit, compress)")
    p.add_argument("video", help="any video ffmpeg reads (mp4, mkv, avi, mov, y4m)")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE.gnerv|OUT_DIR",
        help="file to write; with --stages N > 1 a folder for stage1.gnerv ... stageN.gnerv",
    )
    g = p.add_argument_group("progressive stages")
    g.add_argument("--stages", type=int, default=1, help="number of progressive stages (1)")
    g.add_argument("--stage-sizes", metavar="0.1M,0.05M,...", help="params of each stage")
    g.add_argument("--stage-epochs", metavar="300,100,...", help="epochs of each stage")
    g.add_argument(
        "--residual-scale",
        default="100",
        metavar="S[,S...]",
        help="residual scale of stages 2+ (one value, or one per stage; paper: 100)",
    )
    g.add_argument(
        "--respective",
        action="store_true",
        help="instead: separate models sized like the progressive prefixes (paper Table 3)",
    )
    p.add_argument("--bits", type=int, default=8, help="quantization bits (2..16, default 8)")
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="training state, kept for --resume (default: <stem>.work beside the output)",
    )
    add_extract_args(p)
    add_model_args(p)
    add_train_args(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="decode .gnerv layers (base first) to mp4, mkv or npy")
    p.add_argument("files", nargs="+", metavar="FILE.gnerv", help="base layer, then layers 2, ...")
    p.add_argument("-o", "--output", required=True, help="out.mp4 | out.mkv (lossless) | out.npy")
    p.add_argument("--frames", metavar="A:B", help="decode only these frames (half-open)")
    p.add_argument("--batch", type=int, default=8, help="frames per forward pass")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", help="what a .gnerv holds: video, stage, model, sizes, bpp")
    p.add_argument("file", metavar="FILE.gnerv")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)


# --------------------------------------------------------------------------------------------
# Progressive stages and evaluation
# --------------------------------------------------------------------------------------------


def parse_list(text: str, kind: type, what: str) -> list:
    try:
        return [kind(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise GnervError(f"{what} '{text}' is not a comma list of {kind.__name__} values")


def cmd_residual(args: argparse.Namespace) -> None:
    from gnerv.progressive import compute_residual
    from gnerv.video import load_frames

    _check_suffix(args.output, (".npy",))
    frames, _ = load_frames(args.frames_file)
    meta = compute_residual(frames, args.layers, args.scale, args.output, args.device, args.batch)
    print(
        f"{args.output}: residual target of stage {meta['stage']['index']} "
        f"(x{meta['residual_scale']:g}) after {len(args.layers)} layer(s)"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from gnerv.atomic import write_json
    from gnerv.evaluate import evaluate_layers
    from gnerv.video import load_frames

    _check_suffix(args.output, (".json",))
    frames, _ = load_frames(args.frames_file)
    result = evaluate_layers(frames, args.layers, args.device, args.batch, args.label)
    write_json(args.output, result)
    for p in result["points"]:
        ms = f", MS-SSIM {p['ms_ssim']:.4f}" if p["ms_ssim"] is not None else ""
        print(
            f"{p['label']} stage {p['stage']}: {p['bpp']:.4f} bpp, PSNR {p['psnr']:.2f} dB{ms}, "
            f"{p['params']} params, decode {p['decode_fps']:.1f} frames/s"
        )


def cmd_baselines(args: argparse.Namespace) -> None:
    from gnerv.atomic import write_json
    from gnerv.baselines import run_baselines
    from gnerv.video import DEFAULT_FPS, load_frames

    _check_suffix(args.output, (".json",))
    frames, meta = load_frames(args.frames_file)
    codecs = parse_list(args.codecs, str, "--codecs")
    crfs = parse_list(args.crf, int, "--crf")
    points = run_baselines(
        frames,
        float(meta.get("fps") or DEFAULT_FPS),
        codecs,
        crfs,
        args.preset,
        progress=not args.quiet,
    )
    write_json(args.output, points)
    for p in points:
        print(f"{p['codec']} crf {p['crf']}: {p['bpp']:.4f} bpp, PSNR {p['psnr']:.2f} dB")


def cmd_report(args: argparse.Namespace) -> None:
    from gnerv.report import make_report
    from gnerv.video import DEFAULT_FPS, load_frames

    frames, meta = load_frames(args.frames_file)
    summary = make_report(
        args.metrics,
        args.baselines,
        frames,
        float(meta.get("fps") or DEFAULT_FPS),
        args.output,
        args.device,
    )
    top = summary["top"]
    print(f"{args.output}: report written; top layer {top['bpp']:.4f} bpp, {top['psnr']:.2f} dB")
    for row in summary["bd"]:
        rate, gain = row["bd_rate_percent"], row["bd_psnr_db"]
        text = f"BD-rate of {row['curve']} vs {row['reference']}: "
        text += f"{rate:+.1f} %" if rate is not None else "n/a"
        text += f" (BD-PSNR {gain:+.2f} dB)" if gain is not None else " (BD-PSNR n/a)"
        print(text + (f" [{row['note']}]" if "note" in row else ""))


def stage_specs_from_args(args: argparse.Namespace) -> list:
    """--stages N with per-stage --stage-sizes / --stage-epochs / --residual-scale lists."""
    from gnerv.model import parse_param_count
    from gnerv.progressive import StageSpec

    if args.stages < 1:
        raise GnervError(f"--stages {args.stages}: give at least 1 stage")
    sizes = parse_list(args.stage_sizes, str, "--stage-sizes") if args.stage_sizes else None
    epochs = parse_list(args.stage_epochs, int, "--stage-epochs") if args.stage_epochs else None
    scales = parse_list(args.residual_scale, float, "--residual-scale")
    for name, values in (("--stage-sizes", sizes), ("--stage-epochs", epochs)):
        if values is not None and len(values) != args.stages:
            raise GnervError(f"{name} lists {len(values)} values for --stages {args.stages}")
    if len(scales) not in (1, max(args.stages - 1, 1)):
        raise GnervError(
            f"--residual-scale lists {len(scales)} values: give one, or one per stage after the "
            f"first ({args.stages - 1})"
        )
    specs = []
    for j in range(args.stages):
        size = sizes[j] if sizes else (args.size if j == 0 else None)
        specs.append(
            StageSpec(
                size=parse_param_count(size) if size and args.c0 is None else None,
                c0=args.c0 if args.c0 is not None and not sizes else None,
                epochs=epochs[j] if epochs else args.epochs,
                lr=args.lr if j == 0 else None,
                alpha=args.alpha if j == 0 else None,
                residual_scale=scales[min(max(j - 1, 0), len(scales) - 1)],
            )
        )
    if specs[1:] and specs[1].size is None and specs[1].c0 is None:
        raise GnervError("--stages > 1 needs --stage-sizes (one size per stage)")
    return specs


def cmd_encode_layers(args: argparse.Namespace) -> None:
    """encode --stages N: OUT_DIR/stage1.gnerv ... stageN.gnerv (or respective<j>.gnerv)."""
    from gnerv.progressive import encode_progressive, encode_respective

    specs = stage_specs_from_args(args)
    frames, meta = read_frames_from_args(args, args.video, progress=not args.quiet)
    _, h, w, _ = frames.shape
    base_model = model_config_from_args(args, h, w, residual=False)
    run = encode_respective if args.respective else encode_progressive
    figures = run(
        frames,
        meta,
        specs,
        base_model,
        train_config_from_args(args, residual=False),
        args.output,
        bits=args.bits,
        resume="auto" if args.auto_resume else args.resume,
        progress=not args.quiet,
    )
    for fig in figures:
        print(f"stage {fig['stage']}: {fig['params']} params, fit PSNR {fig['fit_psnr']:.2f} dB")
        _print_figures(fig)


def register_progressive_commands(sub: argparse._SubParsersAction) -> None:
    """residual, evaluate, baselines, report."""
    p = sub.add_parser(
        "residual", help="scaled residual the given layers leave (next stage's target)"
    )
    p.add_argument("frames_file", metavar="FRAMES", help="frames .npy from `gnerv extract`")
    p.add_argument(
        "--layers",
        nargs="+",
        required=True,
        metavar="L.gnerv",
        help="the layers so far, base first",
    )
    p.add_argument("--scale", type=float, default=100.0, help="residual scale (paper: 100)")
    p.add_argument("-o", "--output", required=True, metavar="RESIDUAL.npy", help="file to write")
    p.add_argument("--batch", type=int, default=8, help="frames per forward pass")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.set_defaults(func=cmd_residual)

    p = sub.add_parser("evaluate", help="bpp, PSNR, MS-SSIM, params, speed of every layer prefix")
    p.add_argument("frames_file", metavar="FRAMES", help="frames .npy from `gnerv extract`")
    p.add_argument(
        "--layers", nargs="+", required=True, metavar="L.gnerv", help="the layers, base first"
    )
    p.add_argument("-o", "--output", required=True, metavar="METRICS.json", help="file to write")
    p.add_argument("--label", default="gnerv", help="curve name in plots and tables")
    p.add_argument("--batch", type=int, default=8, help="frames per forward pass")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("baselines", help="x264 / x265 R-D points on the same frames")
    p.add_argument("frames_file", metavar="FRAMES", help="frames .npy from `gnerv extract`")
    p.add_argument("--codecs", default="x264,x265", help="comma list: x264, x265")
    p.add_argument("--crf", default="23,28,33,38", help="comma list of CRF values")
    p.add_argument("--preset", default="medium", help="x264/x265 preset (paper: medium)")
    p.add_argument("-o", "--output", required=True, metavar="BASELINES.json", help="file to write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_baselines)

    p = sub.add_parser("report", help="R-D plot, per-frame PSNR, frames, BD-rate, summary table")
    p.add_argument(
        "--metrics",
        nargs="+",
        required=True,
        metavar="METRICS.json",
        help="from `gnerv evaluate` (several: several curves, e.g. respective)",
    )
    p.add_argument("--baselines", metavar="BASELINES.json", help="from `gnerv baselines`")
    p.add_argument("--frames-file", required=True, metavar="FRAMES", help="the source frames")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write into")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.set_defaults(func=cmd_report)


def cmd_track(args: argparse.Namespace) -> None:
    from gnerv.tracking import DEFAULT_EXPERIMENT, default_tracking_uri, load_params, track_pipeline

    params = load_params(args.params)
    experiment = args.experiment or params.get("mlflow", {}).get("experiment", DEFAULT_EXPERIMENT)
    uri = args.tracking_uri or default_tracking_uri()
    run_id = track_pipeline(args.video, Path(args.results), params, experiment, uri)
    print(f"MLflow run {run_id} (experiment {experiment!r}) holds {args.video}'s pipeline")


def register_track_command(sub: argparse._SubParsersAction) -> None:
    """track (MLflow): the workflow's last step."""
    p = sub.add_parser("track", help="log a finished pipeline (one video) to MLflow")
    p.add_argument("--video", required=True, metavar="NAME", help="the video's name in params")
    p.add_argument("--results", required=True, metavar="DIR", help="its folder, results/NAME")
    p.add_argument(
        "--params",
        required=True,
        nargs="+",
        metavar="PARAMS.yaml",
        help="workflow parameters (params.yaml, then any --configfile merged into it)",
    )
    p.add_argument("--experiment", help="MLflow experiment (default: mlflow.experiment)")
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here",
    )
    p.set_defaults(func=cmd_track)


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

    p = sub.add_parser("fit", help="train a GNeRV model on frames (or on a residual)")
    p.add_argument(
        "frames_file",
        metavar="FRAMES",
        help="frames .npy from `gnerv extract`, or residual .npy from `gnerv residual`",
    )
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


# Command groups beyond extract/fit/render: codec, progressive + evaluation, tracking.
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    register_codec_commands,
    register_progressive_commands,
    register_track_command,
]


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
    except BrokenPipeError:  # `gnerv info x.gnerv | head`: the reader left, nothing to say
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"gnerv {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
