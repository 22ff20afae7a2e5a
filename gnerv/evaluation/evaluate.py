"""Per-prefix figures of a layered encoding: cumulative bpp, PSNR / SSIM / MS-SSIM, params, MACs,
and decode speed, measured on what the decoder produces from the files themselves.

decode_fps is batch rendering of every frame with the models already rebuilt (no I/O);
load_seconds is the one-off entropy decoding and model rebuild from the files."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gnerv.codec.config import DEFAULT_BATCH, DEFAULT_PRECISION, count_params, macs_per_frame
from gnerv.codec.decode import check_precision, decode_layers, load_layers, prepare_layers
from gnerv.codec.segments import INDEX_NAME, read_index, read_segment
from gnerv.evaluation.metrics import evaluate
from gnerv.runtime.atomic import read_json
from gnerv.runtime.device import select_device
from gnerv.runtime.errors import GnervError


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fit_seconds(layer_path: str | os.PathLike) -> float | None:
    """Training time of a layer, from the fit.json that `gnerv fit` left beside it (if any)."""
    p = Path(layer_path)
    for candidate in (p.parent / "fit.json", p.with_suffix(".work") / "fit.json"):
        try:
            return float(read_json(candidate)["train_seconds"])
        except (GnervError, ValueError, KeyError, TypeError):
            continue
    return None


def evaluate_layers(
    frames: np.ndarray,
    layer_paths: list[str | os.PathLike],
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH,
    label: str = "gnerv",
    precision: str = DEFAULT_PRECISION,
) -> dict:
    """Decode every prefix (1, 1+2, ...) of `layer_paths` and measure it against `frames`
    (precision: the decoder's, gnerv.codec.decode.PRECISIONS)."""
    files = load_layers(layer_paths)
    n, height, width, _ = frames.shape
    base = files[0]
    if (n, height, width) != (base.n_frames, base.model_config.height, base.model_config.width):
        raise GnervError(
            f"frames {n}x{height}x{width} are not the video of {base.name} "
            f"({base.n_frames}x{base.model_config.height}x{base.model_config.width})"
        )
    dev = select_device(device)
    check_precision(precision, dev)
    points = []
    total_bytes = total_params = total_macs = 0
    for j, f in enumerate(files, start=1):
        total_bytes += Path(layer_paths[j - 1]).stat().st_size
        total_params += count_params(f.model_config)
        total_macs += macs_per_frame(f.model_config)
        t0 = time.perf_counter()
        models = prepare_layers(files[:j], dev)  # entropy decoding + model rebuild
        load_seconds = time.perf_counter() - t0
        decode_layers(files[:j], [0], dev, batch_size, models, precision)  # warm-up
        _sync(dev)
        t0 = time.perf_counter()
        decoded = decode_layers(files[:j], list(range(n)), dev, batch_size, models, precision)
        _sync(dev)
        seconds = time.perf_counter() - t0  # batch rendering only, no I/O
        m = evaluate(frames, decoded)
        points.append(
            {
                "label": label,
                "stage": j,
                "precision": precision,
                "layers": [str(p) for p in layer_paths[:j]],
                "bytes": total_bytes,
                "bpp": 8 * total_bytes / (n * height * width),
                "params": total_params,
                "macs_per_frame": total_macs,
                "encode_seconds": fit_seconds(layer_paths[j - 1]),
                "load_seconds": load_seconds,
                "decode_seconds": seconds,
                "decode_fps": n / seconds,
                **m,
            }
        )
    return {
        "video": {"n_frames": n, "height": height, "width": width, "fps": base.fps},
        "device": str(dev),
        "points": points,
    }


def evaluate_segments(
    folder: str | os.PathLike,
    read_part: Callable[[int, int], tuple[np.ndarray, dict]],
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH,
    label: str = "gnerv",
    precision: str = DEFAULT_PRECISION,
) -> dict:
    """The figures of evaluate_layers for a segmented video (gnerv.codec.segments), per prefix
    of stages over the whole video, plus each segment's own. One segment at a time: its source
    frames from `read_part(start, length)` (uint8 (length, H, W, 3), meta), its layers decoded
    prefix by prefix. The whole video's bytes are every segment's layers of the prefix plus the
    index (what a receiver needs to decode it); its PSNR, SSIM and MS-SSIM are means over all
    frames."""
    video = read_index(folder)
    n, height, width = (video.video[k] for k in ("n_frames", "height", "width"))
    dev = select_device(device)
    check_precision(precision, dev)
    stages = min(len(seg.layers) for seg in video.segments)
    index_bytes = (Path(folder) / INDEX_NAME).stat().st_size
    totals = [
        {
            "bytes": index_bytes,
            "params": 0,
            "seconds": 0.0,
            "psnr": 0.0,
            "frames": [],
            "ssim": 0.0,
            "ms": [],
        }
        for _ in range(stages)
    ]
    segments = []
    for i, seg in enumerate(video.segments):
        files = read_segment(video, i)
        frames, _ = read_part(seg.start, seg.n_frames)
        if frames.shape != (seg.n_frames, height, width, 3):
            raise GnervError(
                f"segment {i}: the source gives {frames.shape[0]} frames of "
                f"{frames.shape[1]}x{frames.shape[2]}, the index {seg.n_frames} of "
                f"{height}x{width}: give the video and --frames/--stride/--resize of the encode"
            )
        models = prepare_layers(files, dev)
        local = list(range(seg.n_frames))
        points = []
        size = 0
        for j in range(1, stages + 1):
            size += (video.folder / seg.layers[j - 1][0]).stat().st_size
            _sync(dev)
            t0 = time.perf_counter()
            decoded = decode_layers(files[:j], local, dev, batch_size, models[:j], precision)
            _sync(dev)
            seconds = time.perf_counter() - t0
            m = evaluate(frames, decoded)
            params = sum(count_params(f.model_config) for f in files[:j])
            total = totals[j - 1]
            total["bytes"] += size
            total["params"] += params
            total["seconds"] += seconds
            total["psnr"] += m["psnr"] * seg.n_frames
            total["frames"] += m["psnr_per_frame"]
            total["ssim"] += m["ssim"] * seg.n_frames
            if m["ms_ssim"] is not None:
                total["ms"].append(m["ms_ssim"] * seg.n_frames)
            points.append(
                {
                    "stage": j,
                    "bytes": size,
                    "bpp": 8 * size / (seg.n_frames * height * width),
                    "params": params,
                    "psnr": m["psnr"],
                    "ssim": m["ssim"],
                    "ms_ssim": m["ms_ssim"],
                }
            )
        segments.append(
            {"segment": i, "start": seg.start, "n_frames": seg.n_frames, "points": points}
        )
    points = []
    for j, total in enumerate(totals, start=1):
        points.append(
            {
                "label": label,
                "stage": j,
                "precision": precision,
                "segments": len(video.segments),
                "bytes": total["bytes"],
                "bpp": 8 * total["bytes"] / (n * height * width),
                "params": total["params"],
                "decode_seconds": total["seconds"],
                "decode_fps": n / total["seconds"],
                "psnr": total["psnr"] / n,
                "psnr_per_frame": total["frames"],
                "ssim": total["ssim"] / n,
                "ms_ssim": sum(total["ms"]) / n
                if len(total["ms"]) == len(video.segments)
                else None,
            }
        )
    return {
        "video": {"n_frames": n, "height": height, "width": width, "fps": video.video["fps"]},
        "device": str(dev),
        "segmented": str(folder),
        "points": points,
        "segments": segments,
    }
