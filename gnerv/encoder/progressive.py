"""The progressive pipeline (paper 3.2): stage 1 fits the video, stage j fits what stages < j left.

One `.gnerv` per stage; a prefix of the layers decodes to a lower bitrate. Residual targets are
computed from the *decoded* earlier layers (see gnerv.encoder.residual), so quantization error is
part of
what the next stage learns. The `respective` mode trains separate single-stage models whose sizes
match the progressive totals, for the paper's Table 3 comparison.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gnerv.codec.bitstream import next_stage
from gnerv.codec.config import DEFAULT_BATCH, DEFAULT_BITS, GNeRVConfig, c0_for_size, count_params
from gnerv.codec.decode import decode_float, decode_layers, load_layers
from gnerv.codec.model import GNeRV
from gnerv.encoder.config import (
    DEFAULT_RESIDUAL_SCALE,
    CompressConfig,
    TrainConfig,
    paper_coding,
    recipe_settings,
)
from gnerv.encoder.encode import compress_checkpoint, encode_single, prepare_model
from gnerv.encoder.residual import check_scale, residual_target, save_residual
from gnerv.encoder.target import Target, decide
from gnerv.encoder.train import fit, model_from_checkpoint
from gnerv.evaluation.metrics import mean_psnr
from gnerv.media.video import video_fingerprint
from gnerv.pipeline.results import CHECKPOINT_NAME
from gnerv.runtime.errors import GnervError


@dataclass(frozen=True)
class StageSpec:
    """One progressive stage: its size (params or C0), epochs and, for j >= 2, residual scale.

    Settings left None take the stage's defaults: the base TrainConfig's for stage 1, its
    recipe's residual settings (gnerv.encoder.config.stage_defaults) after it."""

    size: int | None = None  # target parameter count
    c0: int | None = None  # or C0 directly
    epochs: int | None = None  # default: the base TrainConfig's
    lr: float | None = None
    alpha: float | None = None
    residual_scale: float = DEFAULT_RESIDUAL_SCALE

    def check(self, index: int) -> None:
        if self.c0 is None and self.size is None:
            raise GnervError(f"stage {index} has no size: give its params (size) or c0")
        if (self.c0 is not None and self.c0 < 1) or (self.size is not None and self.size < 1):
            raise GnervError(f"stage {index} has a zero or negative size")
        if self.epochs is not None and self.epochs < 1:
            raise GnervError(f"stage {index}: epochs = {self.epochs} must be >= 1")
        if index > 1:
            check_scale(self.residual_scale)


def check_stages(stages: list[StageSpec]) -> None:
    if not stages:
        raise GnervError("the stage list is empty: give at least the base stage")
    for j, s in enumerate(stages, start=1):
        s.check(j)


def stage_model_config(spec: StageSpec, base: GNeRVConfig, index: int) -> GNeRVConfig:
    """The model of stage `index`: the shared architecture settings with this stage's size."""
    residual = index > 1
    if spec.c0 is not None:
        return replace(base, c0=spec.c0, residual=residual)
    common = base.to_dict()
    common.pop("c0")
    common["residual"] = residual
    common["upscale_factors"] = tuple(common["upscale_factors"])
    return GNeRVConfig(c0=c0_for_size(spec.size, **common), **common)


def stage_train_config(spec: StageSpec, base: TrainConfig, index: int) -> TrainConfig:
    """Stage `index`'s training: the shared settings of `base`; for residual stages the paper's
    residual recipe in place of base's lr and alpha; then what `spec` sets."""
    own = {"epochs": spec.epochs, "lr": spec.lr, "loss_alpha": spec.alpha}
    residual = recipe_settings(base.recipe, "residuals") if index > 1 else {}
    settings = {**residual, **{k: v for k, v in own.items() if v is not None}}
    return replace(base, **settings)


def stage_specs(
    n_stages: int,
    sizes: list[int] | None = None,
    epochs: list[int] | None = None,
    residual_scales: list[float] | None = None,
    base_size: int | None = None,
    base_c0: int | None = None,
    base_lr: float | str | None = None,
    base_alpha: float | None = None,
    lrs: list[float | str] | None = None,
) -> list[StageSpec]:
    """The stage list of `encode --stages N`: per-stage sizes / epochs / learning rates (one
    value per stage), residual scales (one for all, or one per stage after the first). Without
    `sizes` every stage takes the base's size (base_size or base_c0): N stages of S each;
    base_lr/alpha apply to stage 1 (lrs replace base_lr)."""
    if n_stages < 1:
        raise GnervError(f"--stages {n_stages}: give at least 1 stage")
    scales = residual_scales or [DEFAULT_RESIDUAL_SCALE]
    for name, values in (
        ("--stage-sizes", sizes),
        ("--stage-epochs", epochs),
        ("--stage-lrs", lrs),
    ):
        if values is not None and len(values) != n_stages:
            raise GnervError(f"{name} lists {len(values)} values for --stages {n_stages}")
    if len(scales) not in (1, max(n_stages - 1, 1)):
        raise GnervError(
            f"--residual-scale lists {len(scales)} values: give one, or one per stage after the "
            f"first ({n_stages - 1})"
        )
    specs = []
    for j in range(n_stages):
        size = sizes[j] if sizes else base_size
        specs.append(
            StageSpec(
                size=size if base_c0 is None or sizes else None,
                c0=base_c0 if not sizes else None,
                epochs=epochs[j] if epochs else None,
                lr=lrs[j] if lrs else (base_lr if j == 0 else None),
                alpha=base_alpha if j == 0 else None,
                residual_scale=scales[min(max(j - 1, 0), len(scales) - 1)],
            )
        )
    return specs


def compute_residual(
    frames: np.ndarray,
    layer_paths: list[str | os.PathLike],
    scale: float,
    output: str | os.PathLike,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH,
) -> dict:
    """Decode `layer_paths` (a prefix chain) and write scale * (frames - their sum) to `output`.

    The sidecar names the stage the residual is for, its parent layer and scale, so that
    `gnerv fit` trains a residual model and `gnerv compress` codes it as the next layer."""
    scale = check_scale(scale)
    files = load_layers(layer_paths)
    n, height, width, _ = frames.shape
    last = files[-1]
    if (n, height, width) != (last.n_frames, last.model_config.height, last.model_config.width):
        raise GnervError(
            f"frames {n}x{height}x{width} are not the video of {last.name} "
            f"({last.n_frames}x{last.model_config.height}x{last.model_config.width})"
        )
    if video_fingerprint(frames) != last.stage["video_id"]:
        raise GnervError(f"the frames given are not the video {last.name} was made from")
    recon = decode_float(files, list(range(n)), device, batch_size)
    residual = residual_target(frames, recon.permute(0, 2, 3, 1).numpy(), scale)
    stage = next_stage(last, scale)
    meta = {"stage": stage, "residual_scale": scale, "fps": last.fps, "video_id": stage["video_id"]}
    save_residual(output, residual, meta)
    return meta


def prefix_figures(
    frames: np.ndarray, layers: list[Path], device: str, batch_size: int
) -> dict[str, float]:
    """Decoded PSNR and bpp (the files' sizes) of a prefix of layers, as a decoder shows it."""
    n, height, width, _ = frames.shape
    decoded = decode_layers(load_layers(layers), list(range(n)), device, batch_size)
    size = sum(Path(p).stat().st_size for p in layers)
    return {"psnr": mean_psnr(frames, decoded), "bpp": 8 * size / (n * height * width)}


def encode_progressive(  # resume: True, or "auto" (see gnerv.encoder.train.fit)
    frames: np.ndarray, meta: dict, stages: list[StageSpec], base_model: GNeRVConfig,
    base_train: TrainConfig, out_dir: str | os.PathLike, bits: int = DEFAULT_BITS,
    resume: bool | str = False, progress: bool = True, batch_size: int = DEFAULT_BATCH,
    target: Target | None = None, compress: CompressConfig | None = None,
    warm_start: bool = False,
) -> list[dict]:  # fmt: skip
    """Fit and code every stage into out_dir/stage<j>.gnerv (work in out_dir/stage<j>.work;
    with `compress`, which replaces `bits`, each stage is coded by the rate path: a residual
    stage's fine-tune fits its own residual). With `warm_start` (beyond the paper, whose stages
    start from random weights) stage j >= 2 starts from stage j-1's fitted weights with a zero
    head (see warm_start_weights).

    Returns one figures dict per stage (from compress_checkpoint, plus fit figures). With a
    `target`, each stage's decoded prefix is measured (`prefix_psnr`, `prefix_bpp`) and encoding
    stops at the first prefix that meets a PSNR target, or before the stage that would take the
    prefix above a bpp target (its layer is removed); the last figures' `target` entry says
    which: met, or not met within the stage limit (a bpp target no prefix meets is an error,
    nothing kept)."""
    check_stages(stages)
    compress = compress or paper_coding(bits)
    compress.validate()
    out_dir = Path(out_dir)
    video_id = video_fingerprint(frames)
    layers: list[Path] = []
    results = []
    for j, spec in enumerate(stages, start=1):
        model_cfg = stage_model_config(spec, base_model, j)
        train_cfg = stage_train_config(spec, base_train, j)
        work = out_dir / f"stage{j}.work"
        output = out_dir / f"stage{j}.gnerv"
        res_path = None
        if j == 1:
            goal, scale, stage = frames, 1.0, None
            fit_meta = {**meta, "video_id": video_id}
        else:
            res_path = work / "residual.npy"
            fit_meta = compute_residual(
                frames, layers, spec.residual_scale, res_path, base_train.device, batch_size
            )
            goal, scale = np.load(res_path, allow_pickle=False), spec.residual_scale
            stage = fit_meta["stage"]
        init = None
        if warm_start and j > 1:
            init = warm_start_weights(out_dir / f"stage{j - 1}.work", model_cfg, j)
        result = fit(
            goal,
            model_cfg,
            train_cfg,
            work,
            resume=resume,
            target_scale=scale,
            video_meta=fit_meta,
            progress=progress,
            init=init,
        )
        model_dir, coded_bits, extra = prepare_model(
            work, frames, compress, work / "finetune", train_cfg, resume or "auto", progress,
            residual_target=res_path,
        )  # fmt: skip
        figures = compress_checkpoint(
            model_dir,
            output,
            coded_bits,
            frames=frames if j == 1 else None,
            stage=stage,
            device=base_train.device,
            batch_size=batch_size,
            scheme=compress.scheme,
            recipe=compress.recipe,
        )
        figures.update(extra)
        figures.update(
            stage=j,
            fit_psnr=result.psnr,
            train_seconds=result.train_seconds,
            epochs=result.epochs,
            params=count_params(model_cfg),
            c0=model_cfg.c0,
        )
        layers.append(output)
        results.append(figures)
        if target is None:
            continue
        prefix = prefix_figures(frames, layers, base_train.device, batch_size)
        figures.update(prefix_psnr=prefix["psnr"], prefix_bpp=prefix["bpp"])
        measured = [{"psnr": r["prefix_psnr"], "bpp": r["prefix_bpp"]} for r in results]
        try:
            outcome = decide(target, measured, len(stages))
        except GnervError:  # stage 1 alone is over a bpp target: no layer is left behind
            output.unlink()
            raise
        if outcome is None:
            continue
        if outcome["stages"] < len(layers):  # the stage that took a bpp target over
            output.unlink()
            layers.pop()
            results.pop()
        results[-1]["target"] = outcome
        return results
    return results


def warm_start_weights(previous_work: Path, model_cfg: GNeRVConfig, index: int) -> dict:
    """Stage `index`'s starting weights: stage index-1's fitted ones (its embedding and blocks
    already describe the video), the head zeroed so that the new stage first adds nothing, as a
    cold residual stage does. Needs stages of one architecture (equal sizes)."""
    previous, _ = model_from_checkpoint(previous_work / CHECKPOINT_NAME)
    state = previous.state_dict()
    fresh = GNeRV(model_cfg).state_dict()
    if {k: v.shape for k, v in state.items()} != {k: v.shape for k, v in fresh.items()}:
        raise GnervError(
            f"--warm-start starts stage {index} from stage {index - 1}'s weights, so the two must "
            f"be the same size (C0 {previous.cfg.c0} against {model_cfg.c0}): give equal "
            "--stage-sizes"
        )
    init = {k: v.detach().clone().contiguous() for k, v in state.items()}
    for name in ("head.weight", "head.bias"):
        init[name] = torch.zeros_like(init[name])
    return init


def respective_sizes(stages: list[StageSpec], base_model: GNeRVConfig) -> list[int]:
    """Parameter counts of the progressive prefixes: stage 1, 1+2, 1+2+3, ..."""
    totals, running = [], 0
    for j, spec in enumerate(stages, start=1):
        running += count_params(stage_model_config(spec, base_model, j))
        totals.append(running)
    return totals


def encode_respective(  # resume: True, or "auto" (see gnerv.encoder.train.fit)
    frames: np.ndarray, meta: dict, stages: list[StageSpec], base_model: GNeRVConfig,
    base_train: TrainConfig, out_dir: str | os.PathLike, bits: int = DEFAULT_BITS,
    resume: bool | str = False, progress: bool = True, batch_size: int = DEFAULT_BATCH,
    compress: CompressConfig | None = None,
) -> list[dict]:  # fmt: skip
    """The paper's "respective" baseline: for each progressive prefix 1..j, one separately
    trained single-stage model with as many parameters as the prefix has in total, trained for
    stage 1's epochs and settings. Writes out_dir/respective<j>.gnerv."""
    check_stages(stages)
    out_dir = Path(out_dir)
    results = []
    for j, total in enumerate(respective_sizes(stages, base_model), start=1):
        spec = StageSpec(
            size=total, epochs=stages[0].epochs, lr=stages[0].lr, alpha=stages[0].alpha
        )
        figures = encode_single(
            frames,
            meta,
            stage_model_config(spec, base_model, 1),
            stage_train_config(spec, base_train, 1),
            out_dir / f"respective{j}.gnerv",
            bits,
            workdir=out_dir / f"respective{j}.work",
            resume=resume,
            progress=progress,
            batch_size=batch_size,
            compress=compress,
        )
        figures.update(stage=j, params=count_params(stage_model_config(spec, base_model, 1)))
        results.append(figures)
    return results
