"""compress, encode, decode, info: the codec's own commands around the .gnerv file."""

from __future__ import annotations

import argparse

from gnerv.cli.common import (
    DEFAULT_SIZE,
    add_bits_arg,
    add_extract_args,
    add_model_args,
    add_params_args,
    add_render_args,
    add_train_args,
    check_suffix,
    frame_indices,
    model_config,
    parse_list,
    print_figures,
    read_frames_from_args,
    resolve_settings,
    resume_mode,
    train_config,
)
from gnerv.progressive import DEFAULT_RESIDUAL_SCALE
from gnerv.quantize import DEFAULT_BITS

GNERV_SUFFIX = (".gnerv",)


def cmd_compress(args: argparse.Namespace) -> None:
    from gnerv.encode import compress_checkpoint
    from gnerv.video import load_frames

    check_suffix(args.output, GNERV_SUFFIX)
    bits = resolve_settings(args, "compress").get("bits", DEFAULT_BITS)
    frames = load_frames(args.frames_file)[0] if args.frames_file else None
    fig = compress_checkpoint(
        args.model_dir, args.output, bits, frames, device=args.device, batch_size=args.batch
    )
    print_figures(fig)


def cmd_encode(args: argparse.Namespace) -> None:
    from gnerv.encode import default_workdir, encode_single
    from gnerv.model import describe

    if args.stages != 1 or args.respective:
        return cmd_encode_layers(args)
    check_suffix(args.output, GNERV_SUFFIX)
    settings = resolve_settings(args, "fit")
    bits = settings.get("bits", DEFAULT_BITS)
    frames, meta = read_frames_from_args(args, args.video, progress=not args.quiet)
    n, h, w, _ = frames.shape
    model_cfg = model_config(settings, h, w, residual=False, n_frames=n)
    print(describe(model_cfg))
    fig = encode_single(
        frames,
        meta,
        model_cfg,
        train_config(settings, args, residual=False),
        args.output,
        bits=bits,
        workdir=args.workdir or default_workdir(args.output),
        resume=resume_mode(args),
        progress=not args.quiet,
    )
    print(
        f"fit: PSNR {fig['fit_psnr']:.2f} dB after {fig['epochs']} epochs "
        f"({fig['train_seconds']:.0f} s of training, state in {fig['workdir']})"
    )
    print_figures(fig)


def cmd_encode_layers(args: argparse.Namespace) -> None:
    """encode --stages N: OUT_DIR/stage1.gnerv ... stageN.gnerv (or respective<j>.gnerv)."""
    from gnerv.model import parse_param_count
    from gnerv.progressive import encode_progressive, encode_respective, stage_specs

    settings = resolve_settings(args, "fit")
    sizes = parse_list(args.stage_sizes, str, "--stage-sizes") if args.stage_sizes else None
    specs = stage_specs(
        args.stages,
        sizes=[parse_param_count(s) for s in sizes] if sizes else None,
        epochs=parse_list(args.stage_epochs, int, "--stage-epochs") if args.stage_epochs else None,
        residual_scales=parse_list(args.residual_scale, float, "--residual-scale"),
        base_size=None
        if "c0" in settings
        else parse_param_count(settings.get("size", DEFAULT_SIZE)),
        base_c0=settings.get("c0"),
        base_lr=settings.get("lr"),
        base_alpha=settings.get("loss_alpha"),
    )
    frames, meta = read_frames_from_args(args, args.video, progress=not args.quiet)
    n, h, w, _ = frames.shape
    run = encode_respective if args.respective else encode_progressive
    figures = run(
        frames,
        meta,
        specs,
        model_config(settings, h, w, residual=False, n_frames=n),
        train_config(settings, args, residual=False),
        args.output,
        bits=settings.get("bits", DEFAULT_BITS),
        resume=resume_mode(args),
        progress=not args.quiet,
    )
    for fig in figures:
        print(f"stage {fig['stage']}: {fig['params']} params, fit PSNR {fig['fit_psnr']:.2f} dB")
        print_figures(fig)


def cmd_decode(args: argparse.Namespace) -> None:
    from gnerv.decode import decode_layers, load_layers
    from gnerv.video import WRITE_SUFFIXES, write_video

    check_suffix(args.output, WRITE_SUFFIXES)
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="quantize + entropy code a fitted model into a .gnerv")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `gnerv fit`")
    p.add_argument("-o", "--output", required=True, metavar="FILE.gnerv", help="file to write")
    add_bits_arg(p)
    p.add_argument(
        "--frames-file",
        metavar="FRAMES",
        help="the frames the model was fitted to (.npy): prints PSNR before/after quantization",
    )
    add_params_args(p, "compress")
    add_render_args(p)
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
        default=f"{DEFAULT_RESIDUAL_SCALE:g}",
        metavar="S[,S...]",
        help="residual scale of stages 2+ (one value, or one per stage; default %(default)s)",
    )
    g.add_argument(
        "--respective",
        action="store_true",
        help="instead: separate models sized like the progressive prefixes (paper Table 3)",
    )
    add_bits_arg(p)
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
    add_render_args(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", help="what a .gnerv holds: video, stage, model, sizes, bpp")
    p.add_argument("file", metavar="FILE.gnerv")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)
