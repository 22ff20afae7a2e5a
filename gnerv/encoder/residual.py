"""Residual targets for progressive stages (paper 3.2, eq. 4 and 5).

Stage 1 fits the video V. Stage j >= 2 fits s_j * R_j, where R_j = V - (V^_1 + sum_{k<j} R^_k) is
what the *decoded* earlier stages leave: the encoder's target is exactly what the decoder will
have, quantization error included. R_j is kept in float32 (it is signed and small; clipping it to
uint8 would lose it) and in [0, 1] pixel units before scaling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gnerv.runtime.atomic import atomic_output, read_json, write_json
from gnerv.runtime.errors import GnervError

RESIDUAL_KIND = "gnerv-residual"


def check_scale(scale: float) -> float:
    if not np.isfinite(scale) or scale <= 0:
        raise GnervError(f"residual scale {scale} must be a positive number (paper: 100)")
    return float(scale)


def residual_target(frames: np.ndarray, reconstruction: np.ndarray, scale: float) -> np.ndarray:
    """scale * (frames / 255 - reconstruction): float32 (N, H, W, 3).

    frames: uint8 (N, H, W, 3); reconstruction: the unclipped float sum of the decoded earlier
    stages, (N, H, W, 3) in [0, 1] units."""
    scale = check_scale(scale)
    if frames.shape != reconstruction.shape:
        raise GnervError(
            f"frames {frames.shape} and decoded stages {reconstruction.shape} differ in shape: "
            "the layers were made from another video or frame range"
        )
    return (scale * (frames.astype(np.float32) / 255.0 - reconstruction)).astype(np.float32)


def save_residual(path: str | Path, residual: np.ndarray, meta: dict) -> None:
    """Write the residual (.npy, float32) and its sidecar (.json) atomically."""
    path = Path(path)
    if path.suffix != ".npy":
        raise GnervError(f"{path}: a residual is written as .npy")
    with atomic_output(path) as tmp:
        np.save(tmp, np.ascontiguousarray(residual, dtype=np.float32))
    sidecar = {**meta, "kind": RESIDUAL_KIND, "shape": list(residual.shape)}
    write_json(path.with_suffix(".json"), sidecar)


def is_residual_file(path: str | Path) -> bool:
    sidecar = Path(path).with_suffix(".json")
    if Path(path).suffix != ".npy" or not sidecar.exists():
        return False
    try:
        meta = read_json(sidecar)
    except GnervError:
        return False
    return isinstance(meta, dict) and meta.get("kind") == RESIDUAL_KIND


def load_residual(path: str | Path) -> tuple[np.ndarray, dict]:
    """Read a residual written by save_residual: float32 (N, H, W, 3) and its meta."""
    path = Path(path)
    meta = read_json(path.with_suffix(".json"), "the sidecar that `gnerv residual` writes")
    try:
        residual = np.load(path, allow_pickle=False)
    except FileNotFoundError as e:
        raise GnervError(f"{e.filename}: not found; write it with `gnerv residual`")
    except (OSError, ValueError) as e:
        raise GnervError(f"{path}: not a readable residual ({e}); write it again")
    if (
        not isinstance(meta, dict)
        or meta.get("kind") != RESIDUAL_KIND
        or residual.dtype != np.float32
        or residual.ndim != 4
        or residual.shape[-1] != 3
        or list(residual.shape) != meta.get("shape")
    ):
        raise GnervError(f"{path}: not a residual written by `gnerv residual`; write it again")
    check_scale(meta.get("residual_scale", 0))
    return residual, meta
