"""compress, encode, decode, info: the codec's own commands around the .gnerv file."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace

from gnerv.cli.common import (
    DEFAULT_SIZE,
    add_bits_arg,
    add_extract_args,
    add_model_args,
    add_params_args,
    add_rate_args,
    add_render_args,
    add_train_args,
    check_suffix,
    compress_config,
    frame_indices,
    model_config,
    parse_list,
    print_figures,
    read_frames_from_args,
    resolve_settings,
    resume_mode,
    segment_reader,
    train_config,
)
from gnerv.codec.limits import DEFAULT_LIMITS, LIMIT_FLAGS, SIZE_LIMITS, DecodeLimits
from gnerv.encoder.config import AUTO_LR, DEFAULT_RESIDUAL_SCALE
from gnerv.pipeline.params import (
    AUTO_SEGMENT_FRAMES,
    AUTO_SEGMENTS,
    NO_SEGMENTS,
    WHOLE_CLIP_FRAMES,
    segment_length,
)
from gnerv.runtime.atomic import check_writable
from gnerv.runtime.errors import GnervError
from gnerv.runtime.sizes import parse_bytes

GNERV_SUFFIX = (".gnerv",)
TARGET_STAGES = 4  # the stage limit of --target-psnr / --target-bpp without --stages


def coding_inputs(args: argparse.Namespace, cfg) -> tuple[str | None, str | None]:
    """The frames file and residual target for compress/finetune: as given, else (when the
    coding needs them) the file the model folder records it was fitted to."""
    frames_file, target_file = args.frames_file, args.target_file
    if cfg.needs_frames and not (frames_file or target_file):
        from gnerv.encoder.source import recorded_source

        path, residual = recorded_source(args.model_dir)
        if residual:
            target_file = str(path)
        else:
            frames_file = str(path)
    return frames_file, target_file


def cmd_compress(args: argparse.Namespace) -> None:
    from gnerv.encoder.config import TrainConfig
    from gnerv.encoder.encode import compress_checkpoint, default_finetune_dir, prepare_model
    from gnerv.media.video import load_frames

    check_suffix(args.output, GNERV_SUFFIX)
    cfg = compress_config(resolve_settings(args, "compress"))
    finetune_dir = args.finetune_dir or default_finetune_dir(args.output)
    check_writable(args.output)  # before any fine-tune: refuse an output it could not write
    if cfg.fine_tunes:
        check_writable(finetune_dir, folder=True)
    frames_file, target_file = coding_inputs(args, cfg)
    frames = load_frames(frames_file)[0] if frames_file else None
    model_dir, bits, extra = prepare_model(
        args.model_dir,
        frames,
        cfg,
        finetune_dir,
        TrainConfig(device=args.device),
        residual_target=target_file,
    )
    fig = compress_checkpoint(
        model_dir,
        args.output,
        bits,
        frames,
        device=args.device,
        batch_size=args.batch,
        scheme=cfg.scheme,
        recipe=cfg.recipe,
    )
    print_figures({**fig, **extra})


def cmd_finetune(args: argparse.Namespace) -> None:
    from gnerv.encoder.config import TrainConfig
    from gnerv.encoder.encode import prepare_model
    from gnerv.media.video import load_frames

    cfg = compress_config(resolve_settings(args, "compress"))
    if not cfg.fine_tunes:
        raise GnervError(
            "there is nothing to fine-tune (qat_epochs 0, or the paper's min/max coding): give "
            "--qat-epochs N; gnerv compress codes the fitted model as is"
        )
    check_writable(args.output, folder=True)
    frames_file, target_file = coding_inputs(args, cfg)
    frames = load_frames(frames_file)[0] if frames_file else None
    _, bits, extra = prepare_model(
        args.model_dir,
        frames,
        cfg,
        args.output,
        TrainConfig(device=args.device),
        progress=not args.quiet,
        residual_target=target_file,
    )
    depths = sorted(set(bits.values())) if isinstance(bits, dict) else [bits]
    print(
        f"fine-tuned {extra['finetune_epochs']} epochs at {'/'.join(map(str, depths))} bits "
        f"({extra['finetune_seconds']:.0f} s of training) -> {args.output}"
    )


def cmd_encode(args: argparse.Namespace) -> None:
    from gnerv.codec.config import describe
    from gnerv.encoder.encode import default_workdir, encode_single

    segment_frames = chosen_segment_frames(args)
    if segment_frames is not None:
        args.segment_frames = segment_frames
        return cmd_encode_segments(args)
    if args.segment is not None:
        raise GnervError("--segment I picks one of the segments --segment-frames N cuts: give both")
    layered = (args.stages or 1) != 1 or args.stage_sizes or args.respective
    if layered or target_of(args) is not None:
        return cmd_encode_layers(args)
    if args.warm_start:
        raise GnervError("--warm-start applies to progressive stages: give --stages N >= 2")
    check_suffix(args.output, GNERV_SUFFIX)
    workdir = args.workdir or default_workdir(args.output)
    check_writable(args.output)
    check_writable(workdir, folder=True)
    settings = resolve_settings(args, "encode")
    compress = compress_config(settings)  # before the video is read
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
        workdir=workdir,
        resume=resume_mode(args),
        progress=not args.quiet,
        compress=compress,
    )
    print(
        f"fit: PSNR {fig['fit_psnr']:.2f} dB after {fig['epochs']} epochs "
        f"({fig['train_seconds']:.0f} s of training, state in {fig['workdir']})"
    )
    print_figures(fig)


def target_of(args: argparse.Namespace):
    """The --target-psnr / --target-bpp of `encode`, or None."""
    from gnerv.encoder.target import Target

    if args.target_psnr is None and args.target_bpp is None:
        return None
    if args.respective:
        raise GnervError("--target-psnr/--target-bpp add progressive stages: drop --respective")
    return Target(psnr=args.target_psnr, bpp=args.target_bpp)


def parse_lrs(text: str) -> list[float | str]:
    """--stage-lrs: one learning rate per stage, a number or auto."""
    words = parse_list(text, str, "--stage-lrs")
    return [AUTO_LR if w == AUTO_LR else parse_list(w, float, "--stage-lrs")[0] for w in words]


def stage_count(args: argparse.Namespace) -> int:
    """How many stages `encode` trains: --stages, else one per --stage-sizes entry, else 1."""
    if args.stages:
        return args.stages
    return len(parse_list(args.stage_sizes, str, "--stage-sizes")) if args.stage_sizes else 1


def encode_specs(
    args: argparse.Namespace, settings: dict, n_stages: int, share: float = 1.0
) -> list:
    """The stages `encode` trains, each sized `share` of what the flags and settings say (a
    segment's share of the video's budget; C0 given directly is kept)."""
    from gnerv.encoder.progressive import stage_specs
    from gnerv.runtime.sizes import parse_param_count

    def scaled(size: str | int) -> int:
        return max(1, round(parse_param_count(size) * share))

    sizes = parse_list(args.stage_sizes, str, "--stage-sizes") if args.stage_sizes else None
    return stage_specs(
        n_stages,
        sizes=[scaled(s) for s in sizes] if sizes else None,
        epochs=parse_list(args.stage_epochs, int, "--stage-epochs") if args.stage_epochs else None,
        lrs=parse_lrs(args.stage_lrs) if args.stage_lrs else None,
        residual_scales=parse_list(args.residual_scale, float, "--residual-scale"),
        base_size=None if "c0" in settings else scaled(settings.get("size", DEFAULT_SIZE)),
        base_c0=settings.get("c0"),
        base_lr=settings.get("lr"),
        base_alpha=settings.get("loss_alpha"),
    )


def segment_frames_type(text: str) -> int | str:
    """--segment-frames: a length of 1 or more, auto or none."""
    if text in (AUTO_SEGMENTS, NO_SEGMENTS):
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"--segment-frames {text}: give a length of 1 or more, auto or none"
        )
    return value


def chosen_segment_frames(args: argparse.Namespace) -> int | None:
    """The segment length `encode` codes with (None: one network). auto looks at the clip's
    length (the --frames range, within the video's, estimated from its duration) and cuts a
    long clip, which needs a folder to write to."""
    if args.segment_frames != AUTO_SEGMENTS:
        return segment_length(args.segment_frames, 0)
    from pathlib import Path

    from gnerv.media.video import parse_range, probe_video

    first, end = parse_range(args.frames) if args.frames else (0, -1)
    total = probe_video(args.video)["n_frames"]
    if end == -1 or 0 < total < end:  # a range past the clip's end is read to the end
        end = total
    n = len(range(first, end, args.stride))
    chosen = segment_length(AUTO_SEGMENTS, n)
    if chosen is None:
        return None
    if Path(args.output).suffix in GNERV_SUFFIX:
        raise GnervError(
            f"{args.video}: {n} frames are more than the {WHOLE_CLIP_FRAMES} one network codes "
            f"by default: give a folder (-o DIR) to code segments of {chosen}, or "
            "--segment-frames none for one network"
        )
    print(
        f"note: {n} frames, more than {WHOLE_CLIP_FRAMES}: coded as segments of {chosen} "
        "(--segment-frames N for another length, none for one network)",
        file=sys.stderr,
    )
    return chosen


def cmd_encode_segments(args: argparse.Namespace) -> None:
    """encode --segment-frames N: OUT_DIR/segments.json and OUT_DIR/segNNN/stage<j>.gnerv, each
    segment a progressive video of its own sized by its share of the frames."""
    from pathlib import Path

    from gnerv.encoder.progressive import encode_progressive
    from gnerv.encoder.segments import encode_segment_at, encode_segments

    if target_of(args) is not None or args.respective:
        raise GnervError(
            "--segment-frames codes each segment with the same stages: drop "
            + ("--respective" if args.respective else "--target-psnr/--target-bpp")
        )
    if args.segment is not None and args.segment < 0:
        raise GnervError(f"--segment {args.segment}: segments count from 0")
    check_writable(args.output, folder=True)
    settings = resolve_settings(args, "encode")
    compress = compress_config(settings)  # before the video is read
    n_stages = stage_count(args)
    encode_specs(args, settings, n_stages)  # the flags checked before the video is read
    # One segment in memory at a time: the clip's frames are counted first, then each
    # segment's frames are read from the video as it comes.
    n, read_part = segment_reader(args, args.video, progress=not args.quiet)

    def encode_segment(part, seg_meta: dict, folder: Path, i: int) -> list[Path]:
        h, w = part.shape[1:3]
        share = len(part) / n
        specs = encode_specs(args, settings, n_stages, share)
        seg_settings = dict(settings)
        if "c0" not in seg_settings:
            seg_settings["size"] = specs[0].size
        figures = encode_progressive(
            part,
            seg_meta,
            specs,
            model_config(seg_settings, h, w, residual=False, n_frames=len(part)),
            train_config(settings, args, residual=False),
            folder,
            resume=resume_mode(args),
            progress=not args.quiet,
            compress=compress,
            **({"warm_start": True} if args.warm_start else {}),
        )
        for fig in figures:
            print(f"  stage {fig['stage']}: {fig['params']} params, {fig['bytes']} bytes")
        return [Path(fig["file"]) for fig in figures]

    def announce(i: int, start: int, length: int) -> None:
        print(f"segment {i}: frames {start}:{start + length}")

    recipe = settings.get("recipe")
    if args.segment is not None:  # one segment: a job of its own; `gnerv gather` indexes them
        seg = encode_segment_at(
            args.segment, read_part, n, args.segment_frames, args.output, encode_segment, recipe
        )
        print(f"{args.output}: segment {args.segment} (frames {seg.start}:{seg.stop}) encoded")
        return
    video = encode_segments(
        read_part, n, args.segment_frames, args.output, encode_segment, recipe, announce
    )
    print_segmented(video)


def print_segmented(video) -> None:
    """The one-line summary of a segmented video: segments, bytes, bpp."""
    from gnerv.codec.segments import describe_segments

    v, total = video.video, sum(r["bytes"] for r in describe_segments(video))
    print(
        f"{video.folder}: {len(video.segments)} segments, {total} bytes, "
        f"{8 * total / (v['n_frames'] * v['height'] * v['width']):.4f} bpp"
    )


def cmd_gather(args: argparse.Namespace) -> None:
    from gnerv.encoder.segments import gather_segments

    print_segmented(gather_segments(args.folder))


def cmd_encode_layers(args: argparse.Namespace) -> None:
    """encode --stages N: OUT_DIR/stage1.gnerv ... stageN.gnerv (or respective<j>.gnerv); with
    a target, stages are added until it is met or N is reached."""
    from gnerv.encoder.progressive import encode_progressive, encode_respective

    target = target_of(args)
    if args.warm_start and args.respective:
        raise GnervError("--warm-start starts each stage from the one before: drop --respective")
    check_writable(args.output, folder=True)
    settings = resolve_settings(args, "encode")
    compress = compress_config(settings)  # before the video is read
    n_stages = stage_count(args)
    if target is not None and args.stages is None and not args.stage_sizes:
        n_stages = TARGET_STAGES
        print(
            f"note: {target.describe()} without --stages: up to {TARGET_STAGES} stages of the "
            "base's size each (--stages N for another limit)",
            file=sys.stderr,
        )
    specs = encode_specs(args, settings, n_stages)
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
        resume=resume_mode(args),
        progress=not args.quiet,
        compress=compress,
        **({"target": target} if target is not None else {}),
        **({"warm_start": True} if args.warm_start else {}),
    )
    for fig in figures:
        print(f"stage {fig['stage']}: {fig['params']} params, fit PSNR {fig['fit_psnr']:.2f} dB")
        print_figures(fig)
        if "prefix_psnr" in fig:
            print(
                f"  stages 1..{fig['stage']} decoded: {fig['prefix_psnr']:.2f} dB, "
                f"{fig['prefix_bpp']:.4f} bpp"
            )
    if target is not None:
        outcome = figures[-1]["target"]
        if not outcome["met"]:
            raise GnervError(
                f"target {target.describe()} not met: {outcome['message']} "
                f"({len(figures)} layer(s) kept in {args.output})"
            )
        print(f"target {target.describe()} met: {outcome['message']}")


def decode_limits(args: argparse.Namespace) -> DecodeLimits:
    """The decode limits: the defaults, raised by the --max-* flags given."""
    given = {name: getattr(args, name) for name in LIMIT_FLAGS if getattr(args, name) is not None}
    return replace(DEFAULT_LIMITS, **given)


def write_batches(output: str, batches, fps: float, height: int, width: int, n: int) -> None:
    """Write decoded uint8 batches to `output` while the next batch renders (a second thread
    writes; at most one batch waits): memory stays flat in the number of frames."""
    from concurrent.futures import ThreadPoolExecutor

    from gnerv.media.video import open_video_writer

    video = open_video_writer(output, fps, height, width, n)
    with video as out, ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        for frames in batches:
            if pending is not None:
                pending.result()  # a failed write stops the decode here
            pending = writer.submit(out.write, frames)
        if pending is not None:
            pending.result()


def cmd_decode_segments(args: argparse.Namespace) -> None:
    """decode OUT_DIR (a segmented video): the segments the frame range touches, in order."""
    from gnerv.codec.decode import check_precision, iter_decoded
    from gnerv.codec.segments import iter_segmented, read_index
    from gnerv.runtime.device import select_device

    if len(args.files) != 1:
        raise GnervError(
            f"{args.files[0]}: a segmented video is decoded from its folder alone; give only it"
        )
    video = read_index(args.files[0])
    indices = frame_indices(args.frames, video.n_frames, args.files[0])
    device = select_device(args.device)
    check_precision(args.precision, device)
    opened: list[int] = []

    def decode(files, local):
        return iter_decoded(files, local, device, args.batch, precision=args.precision)

    batches = iter_segmented(
        video, indices, decode, decode_limits(args), args.batch, on_segment=opened.append
    )
    v = video.video
    write_batches(args.output, batches, v["fps"], v["height"], v["width"], len(indices))
    print(
        f"{args.output}: {len(indices)} frames from {len(opened)} of "
        f"{len(video.segments)} segment(s)"
    )


def cmd_decode(args: argparse.Namespace) -> None:
    from gnerv.codec.bitstream import read_gnerv
    from gnerv.codec.decode import check_chain, check_precision, iter_decoded
    from gnerv.codec.limits import check_decode_cost
    from gnerv.codec.segments import is_segmented
    from gnerv.media.video import WRITE_SUFFIXES
    from gnerv.runtime.device import select_device

    check_suffix(args.output, WRITE_SUFFIXES)
    if any(is_segmented(path) for path in args.files):
        return cmd_decode_segments(args)
    files = [read_gnerv(path, limits=decode_limits(args)) for path in args.files]
    check_chain(files)
    for f in files:  # before the output is opened (the decoder checks again)
        check_decode_cost(f, args.batch)
    indices = frame_indices(args.frames, files[0].n_frames, files[0].name)
    device = select_device(args.device)
    check_precision(args.precision, device)  # before the output is opened
    cfg = files[0].model_config
    batches = iter_decoded(files, indices, device, args.batch, precision=args.precision)
    write_batches(args.output, batches, files[0].fps, cfg.height, cfg.width, len(indices))
    lossy = (
        ", precision bf16 (lossy: not the exact frames the encoder assumed)"
        if args.precision == "bf16"
        else ""
    )
    print(f"{args.output}: {len(indices)} frames from {len(files)} layer(s){lossy}")


def cmd_info(args: argparse.Namespace) -> None:
    import json

    from gnerv.codec.bitstream import file_info, read_gnerv
    from gnerv.codec.config import DEFAULT_BATCH
    from gnerv.codec.segments import describe_segments, is_segmented, read_index

    if is_segmented(args.file):
        video = read_index(args.file)
        rows = describe_segments(video)
        if args.json:
            print(
                json.dumps(
                    {"video": video.video, "encoder": video.encoder, "segments": rows}, indent=2
                )
            )
            return
        v, total = video.video, sum(r["bytes"] for r in rows)
        print(
            f"{args.file}: segmented video ({video.encoder}), {len(rows)} segments, "
            f"{v['n_frames']} frames of {v['height']}x{v['width']} (HxW) at {v['fps']:g} fps, "
            f"{total} bytes, {8 * total / (v['n_frames'] * v['height'] * v['width']):.4f} bpp"
        )
        for r in rows:
            print(
                f"  segment {r['segment']}: frames {r['frames']}, {r['layers']} layer(s), "
                f"{r['bytes']} bytes"
            )
        return
    info = file_info(read_gnerv(args.file, decode=False), DEFAULT_BATCH)
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
    print(
        f"{info['file']}: .gnerv format {info['format']}, render {info['render']} "
        f"({info['encoder']}), {layer}"
    )
    print(f"  sha256 {info['sha256']}, video {st['video_id'][:16]}")
    print(f"  recipe: {info['recipe'] or 'not recorded (the encoder field names none)'}")
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
    c = info["decode_cost"]
    print(
        f"  decode: {c['total_macs'] / 1e12:.4g} TMACs for all frames, estimated peak memory "
        f"{c['peak_memory'] / 2**30:.3g} GiB at batch {c['batch']}, output "
        f"{c['output_bytes'] / 2**30:.3g} GiB (frames x H x W x 3)"
    )
    width = max(len(t["name"]) for t in info["tensors"])
    print(f"  {'tensor':<{width}}  {'shape':<16} bits mode  {'bytes':>8} {'payload':>8}")
    for t in info["tensors"]:
        shape = "x".join(str(s) for s in t["shape"])
        print(
            f"  {t['name']:<{width}}  {shape:<16} {t['bits']:>4} {t['mode']:<5} "
            f"{t['bytes']:>8} {t['payload_bytes']:>8}"
        )


def size_arg(text: str) -> int:
    """--max-memory / --max-output: 4G, 500M, 1.5T or bytes."""
    try:
        return parse_bytes(text)
    except GnervError as e:
        raise argparse.ArgumentTypeError(str(e))


def number_arg(text: str) -> float:
    """A positive number: 2e12, 64, 0.5."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number like 2e12")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


# What each --max-* flag bounds (its default is DEFAULT_LIMITS').
LIMIT_HELP = {
    "max_params": "parameters of a layer's model",
    "max_macs_per_frame": "MACs to render one frame (per frame, not in total)",
    "max_memory": "estimated peak memory (weights and activations) at --batch",
    "max_output_bytes": "decoded video size, frames x H x W x 3 bytes",
    "max_params_per_byte": "parameters per byte of the file",
    "max_frames_per_byte": "frames per byte of the file",
    "max_pixels_per_byte": "pixels of one frame (H x W) per byte of the file",
    "max_macs_per_byte": "MACs of decoding all frames per byte of the file",
}


def add_limit_args(p: argparse.ArgumentParser) -> None:
    """The --max-* flags that raise the decode limits, for a trusted file beyond them."""
    g = p.add_argument_group(
        "decode limits",
        "a .gnerv file is untrusted: decoding refuses one beyond these before any work; "
        "raise a limit only for a file you trust (docs/bitstream.md, Decode limits)",
    )
    for name, flag in LIMIT_FLAGS.items():
        default = getattr(DEFAULT_LIMITS, name)
        if name in SIZE_LIMITS:
            kind, metavar, shown = size_arg, "SIZE", f"{default >> 30}G"
        else:
            kind, metavar, shown = number_arg, "N", f"{default:g}".replace("e+", "e")
        help_text = f"{LIMIT_HELP[name]} (default {shown})"
        g.add_argument(flag, dest=name, type=kind, metavar=metavar, help=help_text)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="quantize + entropy code a fitted model into a .gnerv")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `gnerv fit`")
    p.add_argument("-o", "--output", required=True, metavar="FILE.gnerv", help="file to write")
    add_bits_arg(p)
    add_rate_args(p)
    p.add_argument(
        "--frames-file",
        metavar="FRAMES",
        help="the frames the model was fitted to (.npy): prints PSNR before/after quantization "
        "(default: the frames file `gnerv fit` recorded, when the fine-tune or --bits auto "
        "needs them)",
    )
    p.add_argument(
        "--target-file",
        metavar="RESIDUAL",
        help="a residual stage's own target (the residual.npy `gnerv residual` wrote for it): "
        "what its fine-tune fits; read only then (default: the one `gnerv fit` recorded)",
    )
    p.add_argument(
        "--finetune-dir",
        metavar="DIR",
        help="the fine-tune's state, kept for resuming (default: <stem>.finetune beside the "
        "output)",
    )
    add_params_args(p, "compress")
    add_render_args(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser(
        "finetune",
        help="quantization-aware fine-tune of a fitted model (the training step of compress)",
        description="Fine-tune a fitted model with the quantizer in the loop (after --bits auto's "
        "allocation and --prune), as `gnerv compress` would, and stop: `gnerv compress MODEL_DIR "
        "--finetune-dir OUT_DIR` with the same settings then codes the result without training.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `gnerv fit`")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT_DIR", help="the fine-tune's folder"
    )
    add_bits_arg(p)
    add_rate_args(p)
    p.add_argument(
        "--frames-file",
        metavar="FRAMES",
        help="the frames the model was fitted to (.npy; default: the one `gnerv fit` recorded)",
    )
    p.add_argument(
        "--target-file",
        metavar="RESIDUAL",
        help="a residual stage's own target (the residual.npy `gnerv residual` wrote for it; "
        "default: the one `gnerv fit` recorded)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_params_args(p, "compress")
    add_render_args(p, batch=False)
    p.set_defaults(func=cmd_finetune)

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
    g.add_argument(
        "--stages",
        type=int,
        default=None,
        help="number of progressive stages, each of --size unless --stage-sizes gives them "
        f"(default 1; with a target: up to {TARGET_STAGES})",
    )
    g.add_argument("--stage-sizes", metavar="0.1M,0.05M,...", help="params of each stage")
    g.add_argument("--stage-epochs", metavar="300,100,...", help="epochs of each stage")
    g.add_argument(
        "--stage-lrs",
        metavar="auto,8e-3,...",
        help="peak learning rate of each stage, a number or auto (default: --lr for stage 1, "
        "auto for residual stages; the paper's: 2e-3,2e-4,...)",
    )
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
    g.add_argument(
        "--warm-start",
        action="store_true",
        help="beyond the paper: stage j >= 2 starts from stage j-1's weights (head zeroed); "
        "needs equal stage sizes",
    )
    aim = g.add_mutually_exclusive_group()
    aim.add_argument(
        "--target-psnr",
        type=float,
        metavar="DB",
        help="stop adding stages once the decoded prefix reaches DB (--stages is the limit)",
    )
    aim.add_argument(
        "--target-bpp",
        type=float,
        metavar="BPP",
        help="add stages while the prefix's files stay within BPP (--stages is the limit)",
    )
    g = p.add_argument_group("segments")
    g.add_argument(
        "--segment-frames",
        type=segment_frames_type,
        default=AUTO_SEGMENTS,
        metavar="N|auto|none",
        help="cut the video into segments of N consecutive frames, each coded on its own "
        "with its share of the size (-o is then a folder with segments.json); a range "
        f"decodes from its segments alone. auto (default): one network up to "
        f"{WHOLE_CLIP_FRAMES} frames, segments of {AUTO_SEGMENT_FRAMES} beyond; none: one "
        "network, however long",
    )
    g.add_argument(
        "--segment",
        type=int,
        metavar="I",
        help="encode only segment I (from 0), as a job of its own; `gnerv gather OUT_DIR` "
        "writes the index once every segment is encoded",
    )
    add_bits_arg(p)
    add_rate_args(p)
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="training state, kept for --resume (default: <stem>.work beside the output)",
    )
    add_extract_args(p)
    add_model_args(p)
    add_train_args(p)
    add_params_args(p, "encode")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser(
        "gather", help="index a segmented video whose segments were encoded one by one"
    )
    p.add_argument("folder", metavar="OUT_DIR", help="the folder given to encode --segment I")
    p.set_defaults(func=cmd_gather)

    p = sub.add_parser("decode", help="decode .gnerv layers (base first) to mp4, mkv or npy")
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE.gnerv",
        help="base layer, then layers 2, ...; or the folder of a segmented video",
    )
    p.add_argument("-o", "--output", required=True, help="out.mp4 | out.mkv (lossless) | out.npy")
    p.add_argument("--frames", metavar="A:B", help="decode only these frames (half-open)")
    add_render_args(p, precision=True)
    add_limit_args(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", help="what a .gnerv holds: video, stage, model, sizes, bpp")
    p.add_argument("file", metavar="FILE.gnerv", help="a layer, or a segmented video's folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)
