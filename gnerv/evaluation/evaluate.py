"""Per-prefix figures of a layered encoding: cumulative bpp, PSNR / SSIM / MS-SSIM, params, MACs,
and decode speed, measured on what the decoder produces from the files themselves.

decode_fps is batch rendering of every frame with the models already rebuilt (no I/O);
load_seconds is the one-off entropy decoding and model rebuild from the files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from gnerv.codec.config import DEFAULT_BATCH, DEFAULT_PRECISION, count_params, macs_per_frame
from gnerv.codec.decode import check_precision, decode_layers, load_layers, prepare_layers
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
