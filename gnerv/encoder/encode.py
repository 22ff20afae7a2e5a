"""Encoding: a fitted checkpoint -> ``.gnerv``, and video frames -> ``.gnerv`` (the encoder side;
:mod:`gnerv.codec.decode` is the decoder's).

:func:`compress_checkpoint` quantizes and entropy codes a model written by ``gnerv fit``;
:func:`encode_single` fits, then compresses, in one go (one base layer). Both write the file
atomically at the very end, and report the figures the CLI prints. The post-quantization PSNR is
measured on what :mod:`gnerv.codec.decode` decodes from the file's own bytes, so it is exactly the
decoder's.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnerv.codec.bitstream import (
    GnervFile,
    base_stage,
    compress_model,
    encoder_name,
    file_info,
    unpack,
    video_facts,
    write_gnerv,
)
from gnerv.codec.config import (
    DEFAULT_BATCH,
    DEFAULT_BITS,
    DEFAULT_SCHEME,
    GNeRVConfig,
)
from gnerv.codec.decode import decode_layers
from gnerv.codec.model import for_inference, render, to_uint8
from gnerv.encoder.allocate import allocate_bits
from gnerv.encoder.config import (
    MSE_LOSS,
    CompressConfig,
    TrainConfig,
    paper_coding,
)
from gnerv.encoder.qat import finetune
from gnerv.encoder.source import file_sha256
from gnerv.encoder.train import CHECKPOINT_NAME, fit, model_from_checkpoint
from gnerv.evaluation.metrics import mean_psnr
from gnerv.media.video import DEFAULT_FPS, video_fingerprint
from gnerv.pipeline.results import FINETUNE_SUMMARY_NAME, FIT_SUMMARY_NAME
from gnerv.runtime.atomic import write_json
from gnerv.runtime.device import select_device
from gnerv.runtime.errors import GnervError


def default_workdir(output: str | os.PathLike) -> Path:
    """Where ``encode`` keeps its training state: ``<stem>.work`` beside the output."""
    output = Path(output)
    return output.with_name(f"{output.stem}.work")


def default_finetune_dir(output: str | os.PathLike) -> Path:
    """Where ``compress`` keeps its fine-tune's state: ``<stem>.finetune`` beside the output."""
    output = Path(output)
    return output.with_name(f"{output.stem}.finetune")


def compress_checkpoint(
    model_dir: str | os.PathLike,
    output: str | os.PathLike,
    bits: int | dict[str, int] = DEFAULT_BITS,
    frames: np.ndarray | None = None,
    stage: dict | None = None,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH,
    scheme: str = DEFAULT_SCHEME,
    recipe: str | None = None,
) -> dict:
    """Quantize + entropy code ``model_dir``'s checkpoint into ``output`` (a base layer unless
    ``stage`` is given) with ``scheme`` at ``bits`` (one depth, or one per tensor; ``recipe``:
    the recipe named in the header). With the
    source ``frames`` (uint8 N,H,W,3), the PSNR before and after quantization is measured (base
    layers only). Returns the figures; writes nothing on error."""
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
        video_id = check_frames(model_dir, ckpt, frames)
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
    data = compress_model(model, bits, video, stage, encoder_name(recipe), scheme)
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


def check_frames(model_dir: str | os.PathLike, ckpt: dict, frames: np.ndarray) -> str:
    """Refuse frames other than the video the checkpoint `ckpt` (of model_dir) was fitted to;
    returns their fingerprint."""
    n, height, width = (int(v) for v in ckpt["settings"]["target_shape"][:3])
    if frames.shape != (n, height, width, 3):
        raise GnervError(
            f"frames of shape {frames.shape} are not the {n}x{height}x{width} video the "
            f"model in {model_dir} was fitted to"
        )
    fingerprint = video_fingerprint(frames)
    video_id = (ckpt.get("video") or {}).get("video_id")
    if video_id is not None and video_id != fingerprint:
        raise GnervError(
            f"the frames given are not the video the model in {model_dir} was fitted to "
            "(fingerprints differ)"
        )
    return fingerprint


def prepare_model(
    model_dir: str | os.PathLike,
    frames: np.ndarray | None,
    cfg: CompressConfig,
    finetune_dir: str | os.PathLike,
    train_cfg: TrainConfig | None = None,
    resume: bool | str = "auto",
    progress: bool = True,
    residual_target: str | os.PathLike | None = None,
) -> tuple[Path, int | dict[str, int], dict]:
    """The steps between fit and coding that ``cfg`` asks for: a bit allocation (``bits``
    auto, measured on the fitted model), then the quantization-aware fine-tune (with pruning)
    into ``finetune_dir``. A residual stage's fine-tune fits its own target, the residual file
    ``residual_target`` (read only then), as its fit did. Returns the model folder to code, the
    bits to code it with, and figures (allocation, fine-tune time)."""
    cfg.validate()
    figures: dict = {}
    if not cfg.needs_frames:
        return Path(model_dir), int(cfg.bits), figures
    if model_from_checkpoint(Path(model_dir) / CHECKPOINT_NAME)[0].cfg.residual:
        if cfg.bits == "auto":
            raise GnervError(
                f"{model_dir} holds a residual stage: --bits auto measures PSNR on the frames, "
                "so code it with a fixed --bits (its fine-tune works: --qat-epochs)"
            )
        if residual_target is None:
            raise GnervError(
                f"{model_dir} holds a residual stage: its fine-tune fits the stage's own target; "
                "pass --target-file (the residual.npy `gnerv residual` wrote for it)"
            )
        from gnerv.encoder.residual import load_residual

        frames = load_residual(residual_target)[0]
    if frames is None:
        raise GnervError("a fine-tune or --bits auto needs the frames the model was fitted to")
    if residual_target is None:  # the frames: checked before any training on them
        check_frames(model_dir, model_from_checkpoint(Path(model_dir) / CHECKPOINT_NAME)[1], frames)
    bits: int | dict[str, int]
    fit_epochs, fit_lr, fit_loss = fitted_schedule(model_dir)
    qat_epochs = cfg.finetune_epochs(fit_epochs)
    record_path = Path(finetune_dir) / FINETUNE_SUMMARY_NAME
    key, record = None, None
    if qat_epochs:  # only a fine-tune leaves a record (hashing the checkpoint costs a read)
        key = {
            "compress": asdict(cfg),
            "source_sha256": file_sha256(Path(model_dir) / CHECKPOINT_NAME),
        }
        record = _read_record(record_path)
    if record is not None and record.get("key") == key and cfg.bits == "auto":
        bits = record["bits"]  # this very allocation was measured before (gnerv finetune)
        figures["allocation"] = record.get("allocation")
    elif cfg.bits == "auto":
        model, _ = model_from_checkpoint(Path(model_dir) / CHECKPOINT_NAME)
        alloc = allocate_bits(model, frames, cfg.scheme, cfg.target_psnr_drop, cfg.max_bytes)
        bits = alloc.bits
        figures["allocation"] = {
            "bits": alloc.bits,
            "psnr": alloc.psnr,
            "psnr_float": alloc.psnr_float,
            "steps": alloc.steps,
        }
    else:
        bits = int(cfg.bits)
    if not qat_epochs:
        return Path(model_dir), bits, figures
    base = train_cfg or TrainConfig()
    qat_lr = cfg.finetune_lr(fit_lr)
    # fp32: the fine-tune trains through the quantizer's grid, which the decoder computes with
    # in fp32 (bf16 would round the grid's values it trains on)
    qat_cfg = replace(base, epochs=qat_epochs, lr=qat_lr, warmup_fraction=0.0, precision="fp32")
    if cfg.qat_loss == "mse":  # what PSNR measures, in place of the fit's loss
        qat_cfg = replace(qat_cfg, **MSE_LOSS)
    else:  # the fit's own loss, as its fit.json records it
        qat_cfg = replace(qat_cfg, **fit_loss)
    result = finetune(
        frames, model_dir, finetune_dir, qat_cfg, bits, cfg.prune, resume, progress, cfg.rate_lambda
    )
    figures.update(finetune_seconds=result.train_seconds, finetune_epochs=qat_epochs)
    # Written last: the sign (for the workflow's finetune rule) that the fine-tune is complete,
    # and the allocation it trained at, which a later `gnerv compress` then need not measure.
    write_json(record_path, {"key": key, "bits": bits, **figures})
    return Path(finetune_dir), bits, figures


def fitted_schedule(model_dir: str | os.PathLike) -> tuple[int, float, dict[str, Any]]:
    """The epochs, peak learning rate and loss (loss_alpha, distortion) of the fit in
    ``model_dir``, as its fit.json records them."""
    path = Path(model_dir) / FIT_SUMMARY_NAME
    try:
        record = json.loads(path.read_text())
        train = record["train"]
        loss = {"loss_alpha": float(train["loss_alpha"]), "distortion": str(train["distortion"])}
        return int(record["epochs"]), float(train["lr"]), loss
    except OSError:
        raise GnervError(f"{path} not found: give a MODEL_DIR written by `gnerv fit`")
    except (ValueError, KeyError, TypeError):
        raise GnervError(
            f"{path} does not record the fit's epochs, lr and loss: fit the model again"
        )


def _read_record(path: Path) -> dict | None:
    """A fine-tune's summary, or None when there is none (or it is unreadable: measured again)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def summary(f: GnervFile) -> dict:
    """The figures of a coded layer that the CLI prints."""
    info = file_info(f)
    return {
        "file": f.name,
        "bytes": info["sizes"]["total"],
        "bpp": info["bpp"],
        "params": info["params"],
        "bits": f.bits,
        "scheme": f.scheme,
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
    resume: bool | str = False,  # True, or "auto" (see gnerv.encoder.train.fit)
    progress: bool = True,
    batch_size: int = DEFAULT_BATCH,
    compress: CompressConfig | None = None,
) -> dict:
    """Fit one GNeRV to ``frames`` in ``workdir`` (resumable), then code it into ``output``
    (with ``compress``, which replaces ``bits``: fine-tune, allocation, scheme; the fine-tune
    runs in ``workdir/finetune``).

    Returns the figures of :func:`compress_checkpoint` plus the fit's own PSNR and time.
    """
    compress = compress or paper_coding(bits)
    compress.validate()
    workdir = Path(workdir) if workdir is not None else default_workdir(output)
    meta = {**meta, "video_id": video_fingerprint(frames)}
    result = fit(
        frames, model_cfg, train_cfg, workdir, resume=resume, video_meta=meta, progress=progress
    )
    model_dir, coded_bits, extra = prepare_model(
        workdir, frames, compress, workdir / "finetune", train_cfg, resume or "auto", progress
    )
    figures = compress_checkpoint(
        model_dir,
        output,
        coded_bits,
        frames=frames,
        device=train_cfg.device,
        batch_size=batch_size,
        scheme=compress.scheme,
        recipe=compress.recipe,
    )
    figures.update(extra)
    figures.update(
        fit_psnr=result.psnr,
        train_seconds=result.train_seconds,
        epochs=result.epochs,
        workdir=str(workdir),
    )
    return figures
