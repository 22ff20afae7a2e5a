"""extract, fit, render: frames in, a fitted model out, and the model's frames back."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gnerv.cli.common import (
    add_extract_args,
    add_model_args,
    add_params_args,
    add_render_args,
    add_train_args,
    check_suffix,
    frame_indices,
    model_config,
    read_frames_from_args,
    resolve_settings,
    resume_mode,
    train_config,
)
from gnerv.runtime.atomic import check_writable
from gnerv.runtime.errors import GnervError


def cmd_extract(args: argparse.Namespace) -> None:
    from gnerv.media.video import save_frames

    frames, meta = read_frames_from_args(args, args.video)
    save_frames(args.output, frames, meta)
    n, h, w, _ = frames.shape
    print(f"{args.output}: {n} frames of {h}x{w} (HxW) at {meta['fps']:g} fps")


def cmd_fit(args: argparse.Namespace) -> None:
    from gnerv.codec.config import describe
    from gnerv.encoder.residual import is_residual_file, load_residual
    from gnerv.encoder.train import fit
    from gnerv.media.video import load_frames, video_fingerprint

    check_writable(args.output, folder=True)
    settings = resolve_settings(args, "fit")
    residual = is_residual_file(args.frames_file)
    if residual:  # a stage j >= 2 target written by `gnerv residual`
        target, meta = load_residual(args.frames_file)
        scale = float(meta["residual_scale"])
    else:
        target, meta = load_frames(args.frames_file)
        meta, scale = {**meta, "video_id": video_fingerprint(target)}, 1.0
    n, h, w, _ = target.shape
    model_cfg = model_config(settings, h, w, residual=residual, n_frames=n)
    train_cfg = train_config(settings, args, residual=residual)
    print(describe(model_cfg))
    tracker = fit_tracker(args)
    try:
        result = fit(
            target,
            model_cfg,
            train_cfg,
            args.output,
            resume=resume_mode(args),
            target_scale=scale,
            video_meta=meta,
            progress=not args.quiet,
            on_epoch=tracker.epoch if tracker else None,
        )
    except BaseException as e:
        if tracker:
            tracker.fail("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    from gnerv.encoder.source import record_source

    record_source(args.output, args.frames_file, residual)
    if tracker:
        from gnerv.encoder.train import SUMMARY_NAME
        from gnerv.runtime.atomic import read_json

        tracker.finish(read_json(Path(args.output) / SUMMARY_NAME, "a fit summary"))
    what = "PSNR of the layers so far plus this residual" if residual else "PSNR"
    print(
        f"{what} {result.psnr:.2f} dB after {result.epochs} epochs "
        f"({result.train_seconds:.0f} s of training) -> {args.output}"
    )


def fit_tracker(args: argparse.Namespace) -> Any:
    """The live MLflow run of `fit --track VIDEO` (gnerv.pipeline.tracking.FitTracker), else
    None."""
    if not args.track:
        return None
    from gnerv.pipeline.params import load_params
    from gnerv.pipeline.tracking import FitTracker

    params = load_params(args.params) if args.params else {}
    return FitTracker(args.track, args.stage, params, args.output, args.experiment)


def cmd_render(args: argparse.Namespace) -> None:
    import torch

    from gnerv.codec.model import for_inference, render, to_uint8
    from gnerv.encoder.train import CHECKPOINT_NAME, model_from_checkpoint
    from gnerv.media.video import DEFAULT_FPS, WRITE_SUFFIXES, open_video_writer
    from gnerv.runtime.device import select_device

    check_suffix(args.output, WRITE_SUFFIXES)
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
    fps = float(ckpt.get("video", {}).get("fps", DEFAULT_FPS))
    h, w = model.cfg.height, model.cfg.width
    # Batch by batch (the batches render() would use): memory stays flat in the frame count.
    with open_video_writer(args.output, fps, h, w, len(indices)) as out:
        for i in range(0, len(indices), args.batch):
            batch = torch.tensor(indices[i : i + args.batch])
            out.write(to_uint8(render(model, batch, n, args.batch)).cpu().numpy())
    print(f"{args.output}: {len(indices)} frames")


def register(sub: argparse._SubParsersAction) -> None:
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
    add_params_args(p, "fit")
    add_model_args(p)
    add_train_args(p)
    g = p.add_argument_group("live tracking (MLflow)")
    g.add_argument(
        "--track",
        metavar="VIDEO",
        help="log each epoch into an MLflow run of VIDEO's pipeline (stage --stage) while "
        "training; the store is $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the "
        "repository root",
    )
    g.add_argument("--experiment", help="MLflow experiment (default: mlflow.experiment, gnerv)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("render", help="render a trained model to mp4, mkv (lossless) or npy")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `gnerv fit`")
    p.add_argument("-o", "--output", required=True, help="out.mp4 | out.mkv | out.npy")
    p.add_argument("--frames", metavar="A:B", help="render only these frames")
    add_render_args(p)
    p.set_defaults(func=cmd_render)
