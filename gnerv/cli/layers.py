"""residual, evaluate, baselines, report: the progressive stages and their evaluation."""

from __future__ import annotations

import argparse

from gnerv.cli.common import (
    add_extract_args,
    add_params_args,
    add_render_args,
    check_suffix,
    parse_list,
    resolve_settings,
    segment_reader,
)
from gnerv.encoder.config import DEFAULT_RESIDUAL_SCALE
from gnerv.runtime.errors import GnervError

JSON_SUFFIX = (".json",)


def cmd_residual(args: argparse.Namespace) -> None:
    from gnerv.encoder.progressive import compute_residual
    from gnerv.media.video import load_frames

    check_suffix(args.output, (".npy",))
    scale = resolve_settings(args, "residual").get("residual_scale", DEFAULT_RESIDUAL_SCALE)
    frames, _ = load_frames(args.frames_file)
    meta = compute_residual(frames, args.layers, scale, args.output, args.device, args.batch)
    print(
        f"{args.output}: residual target of stage {meta['stage']['index']} "
        f"(x{meta['residual_scale']:g}) after {len(args.layers)} layer(s)"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from gnerv.evaluation.evaluate import evaluate_layers
    from gnerv.media.video import load_frames
    from gnerv.runtime.atomic import write_json

    check_suffix(args.output, JSON_SUFFIX)
    if args.segments is not None:
        from gnerv.codec.segments import read_index
        from gnerv.evaluation.evaluate import evaluate_segments

        coded = read_index(args.segments).n_frames
        n, read_part = segment_reader(args, args.frames_file, progress=False)
        if coded != n:
            raise GnervError(
                f"{args.segments}: codes {coded} frames, but --frames/--stride pick {n} of "
                f"{args.frames_file}: give the ones its encode was given"
            )
        result = evaluate_segments(
            args.segments, read_part, args.device, args.batch, args.label, args.precision
        )
    else:
        if args.frames or args.resize or args.stride != 1:
            raise GnervError(
                "--frames/--stride/--resize pick frames of a video for --segments; "
                f"{args.frames_file} is evaluated as extracted: drop them"
            )
        frames, _ = load_frames(args.frames_file)
        result = evaluate_layers(
            frames, args.layers, args.device, args.batch, args.label, args.precision
        )
    write_json(args.output, result)
    for p in result["points"]:
        ms = f", MS-SSIM {p['ms_ssim']:.4f}" if p["ms_ssim"] is not None else ""
        print(
            f"{p['label']} stage {p['stage']}: {p['bpp']:.4f} bpp, PSNR {p['psnr']:.2f} dB{ms}, "
            f"{p['params']} params, decode {p['decode_fps']:.1f} frames/s"
        )


def cmd_baselines(args: argparse.Namespace) -> None:
    from gnerv.evaluation.baselines import run_baselines
    from gnerv.media.video import DEFAULT_FPS, load_frames
    from gnerv.runtime.atomic import write_json

    check_suffix(args.output, JSON_SUFFIX)
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
    from gnerv.evaluation.report import make_report
    from gnerv.media.video import DEFAULT_FPS, load_frames

    frames, meta = load_frames(args.frames_file)
    summary = make_report(
        args.metrics,
        args.baselines,
        frames,
        float(meta.get("fps") or DEFAULT_FPS),
        args.output,
        args.device,
        params_files=args.params_files,
    )
    top = summary["top"]
    print(f"{args.output}: report written; top layer {top['bpp']:.4f} bpp, {top['psnr']:.2f} dB")
    for row in summary["bd"]:
        rate, gain = row["bd_rate_percent"], row["bd_psnr_db"]
        text = f"BD-rate of {row['curve']} vs {row['reference']}: "
        text += f"{rate:+.1f} %" if rate is not None else "n/a"
        text += f" (BD-PSNR {gain:+.2f} dB)" if gain is not None else " (BD-PSNR n/a)"
        print(text + (f" [{row['note']}]" if "note" in row else ""))


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--scale",
        dest="residual_scale",
        type=float,
        default=argparse.SUPPRESS,
        help=f"residual scale (default {DEFAULT_RESIDUAL_SCALE:g}, the paper's)",
    )
    p.add_argument("-o", "--output", required=True, metavar="RESIDUAL.npy", help="file to write")
    add_params_args(p, "residual")
    add_render_args(p)
    p.set_defaults(func=cmd_residual)

    p = sub.add_parser("evaluate", help="bpp, PSNR, MS-SSIM, params, speed of every layer prefix")
    p.add_argument(
        "frames_file",
        metavar="FRAMES",
        help="frames .npy from `gnerv extract`; with --segments, the source video (read one "
        "segment at a time, with the --frames/--stride/--resize its encode was given)",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--layers", nargs="+", metavar="L.gnerv", help="the layers, base first")
    what.add_argument(
        "--segments",
        metavar="DIR",
        help="a segmented video (`gnerv encode --segment-frames`): every prefix of stages over "
        "the whole video, and each segment's figures",
    )
    p.add_argument("-o", "--output", required=True, metavar="METRICS.json", help="file to write")
    p.add_argument("--label", default="gnerv", help="curve name in plots and tables")
    add_extract_args(p)
    add_render_args(p, precision=True)
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
    p.add_argument(
        "--params",
        dest="params_files",
        nargs="+",
        metavar="FILE",
        help="the parameter files the run used, base first (listed in the summary, not read)",
    )
    add_render_args(p, batch=False)
    p.set_defaults(func=cmd_report)
