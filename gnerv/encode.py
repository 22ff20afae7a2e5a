"""Encoding: a fitted checkpoint -> ``.gnerv``, and video frames -> ``.gnerv`` (the encoder side;
:mod:`gnerv.decode` is the decoder's).

:func:`compress_checkpoint` quantizes and entropy codes a model written by ``gnerv fit``;
:func:`encode_single` fits, then compresses, in one go (one base layer). Both write the file
atomically at the very end, and report the figures the CLI prints. The post-quantization PSNR is
measured on what :mod:`gnerv.decode` decodes from the file's own bytes, so it is exactly the
decoder's.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from gnerv.bitstream import (
    GnervFile,
    base_stage,
    compress_model,
    file_info,
    unpack,
    video_facts,
    write_gnerv,
)
from gnerv.decode import DEFAULT_BATCH, decode_layers
from gnerv.device import select_device
from gnerv.errors import GnervError
from gnerv.metrics import mean_psnr
from gnerv.model import GNeRVConfig, for_inference, render, to_uint8
from gnerv.quantize import DEFAULT_BITS
from gnerv.train import CHECKPOINT_NAME, TrainConfig, fit, model_from_checkpoint
from gnerv.video import DEFAULT_FPS, video_fingerprint


def default_workdir(output: str | os.PathLike) -> Path:
    """Where ``encode`` keeps its training state: ``<stem>.work`` beside the output."""
    output = Path(output)
    return output.with_name(f"{output.stem}.work")


def compress_checkpoint(
    model_dir: str | os.PathLike,
    output: str | os.PathLike,
    bits: int = DEFAULT_BITS,
    frames: np.ndarray | None = None,
    stage: dict | None = None,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH,
) -> dict:
    """Quantize + entropy code ``model_dir``'s checkpoint into ``output`` (a base layer unless
    ``stage`` is given). With the source ``frames`` (uint8 N,H,W,3), the PSNR before and after
    quantization is measured (base layers only). Returns the figures; writes nothing on error."""
    ckpt_path = Path(model_dir) / CHECKPOINT_NAME
    if not ckpt_path.is_file():
        raise GnervError(f"{ckpt_path} not found: give a MODEL_DIR written by `gnerv fit`")
    model, ckpt = model_from_checkpoint(ckpt_path)
    try:
        n, height, width, _ = (int(v) for v in ckpt["settings"]["target_shape"])
    except (KeyError, TypeError, ValueError):
        raise GnervError(f"{ckpt_path}: checkpoint does not record its target's shape")
    meta = ckpt.get("video") or {}
    video_id = meta.get("video_id")
    if frames is not None:
        if frames.shape != (n, height, width, 3):
            raise GnervError(
                f"frames of shape {frames.shape} are not the {n}x{height}x{width} video the "
                f"model in {model_dir} was fitted to"
            )
        fingerprint = video_fingerprint(frames)
        if video_id is not None and video_id != fingerprint:
            raise GnervError(
                f"the frames given are not the video the model in {model_dir} was fitted to "
                "(fingerprints differ)"
            )
        video_id = fingerprint
    if stage is None and meta.get("stage"):  # a residual stage: `gnerv residual` named its place
        stage = meta["stage"]
    if stage is None:
        if model.cfg.residual:
            raise GnervError(
                f"{ckpt_path} holds a residual-stage model: code it as a layer of its chain"
            )
        if video_id is None:
            raise GnervError(
                f"{ckpt_path} records no video fingerprint (fitted by an older gnerv): pass the "
                "frames it was fitted to (--frames-file)"
            )
        stage = base_stage(video_id)
    elif video_id is not None and stage.get("video_id") != video_id:
        raise GnervError(
            f"the stage given is for another video than the model in {model_dir} was fitted to"
        )
    video = video_facts(n, height, width, float(meta.get("fps") or DEFAULT_FPS))
    data = compress_model(model, bits, video, stage)
    coded = unpack(data, str(output))
    figures = summary(coded)
    if frames is not None and coded.index == 1:
        dev = select_device(device)
        for_inference(model, dev)
        indices = list(range(n))
        before = to_uint8(render(model, torch.tensor(indices), n, batch_size)).cpu().numpy()
        after = decode_layers([coded], indices, dev, batch_size)
        figures["psnr_float"] = mean_psnr(frames, before)
        figures["psnr_quantized"] = mean_psnr(frames, after)
    write_gnerv(output, data)
    return figures


def summary(f: GnervFile) -> dict:
    """The figures of a coded layer that the CLI prints."""
    info = file_info(f)
    return {
        "file": f.name,
        "bytes": info["sizes"]["total"],
        "bpp": info["bpp"],
        "params": info["params"],
        "bits": f.bits,
        "sizes": info["sizes"],
        "sha256": f.sha256,
    }


def encode_single(
    frames: np.ndarray,
    meta: dict,
    model_cfg: GNeRVConfig,
    train_cfg: TrainConfig,
    output: str | os.PathLike,
    bits: int = DEFAULT_BITS,
    workdir: str | os.PathLike | None = None,
    resume: bool | str = False,  # True, or "auto" (see gnerv.train.fit)
    progress: bool = True,
    batch_size: int = DEFAULT_BATCH,
) -> dict:
    """Fit one GNeRV to ``frames`` in ``workdir`` (resumable), then code it into ``output``.

    Returns the figures of :func:`compress_checkpoint` plus the fit's own PSNR and time.
    """
    workdir = Path(workdir) if workdir is not None else default_workdir(output)
    meta = {**meta, "video_id": video_fingerprint(frames)}
    result = fit(
        frames, model_cfg, train_cfg, workdir, resume=resume, video_meta=meta, progress=progress
    )
    figures = compress_checkpoint(
        workdir, output, bits, frames=frames, device=train_cfg.device, batch_size=batch_size
    )
    figures.update(
        fit_psnr=result.psnr,
        train_seconds=result.train_seconds,
        epochs=result.epochs,
        workdir=str(workdir),
    )
    return figures
