"""Fitting one GNeRV stage (paper 4.1): frames (stage 1) or scaled residuals (stages >= 2).

Adam(0.5, 0.999), linear warm-up over the first 20 % of steps then cosine decay, loss
a * D + (1 - a) * (1 - SSIM). The whole target sits on the device once (frames as uint8, residuals
as float32) and is converted per batch. Training state is checkpointed atomically every few epochs;
`resume=True` continues from the last checkpoint and gives the same weights as an unbroken run.

Precision (:func:`training_precision`, the same rule on CPU and GPU): the forward pass runs under
bfloat16 autocast under `auto` where that pays (CUDA GPUs, CPUs with AMX) or where bf16 is asked
for (any device that computes bf16 natively); the weights, Adam's state and the loss stay
float32, and the final PSNR is measured in float32. fp32 gives the very weights of a build
without the choice.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gnerv.codec.config import GNeRVConfig, count_params, macs_per_frame
from gnerv.codec.decode import bf16_supported
from gnerv.codec.model import GNeRV, frame_times, render
from gnerv.encoder.config import RANDN_STD, TRAIN_PRECISIONS, TrainConfig, resolve_lr
from gnerv.evaluation.metrics import ssim_index
from gnerv.pipeline.results import CHECKPOINT_NAME
from gnerv.pipeline.results import FIT_SUMMARY_NAME as SUMMARY_NAME
from gnerv.runtime.atomic import atomic_output, write_json
from gnerv.runtime.device import (
    available_memory_bytes,
    seed_everything,
    select_device,
)
from gnerv.runtime.errors import GnervError

PROGRESS_EVERY_S = 30.0  # at most this long between two progress lines of a quiet fit


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up for the first warmup_fraction of steps, then cosine decay to 0."""
    warmup = int(round(cfg.warmup_fraction * total_steps))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(total_steps - warmup, 1)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _has_amx() -> bool:
    """Whether this CPU has AMX tiles (torch's own check, where this torch has it)."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def training_precision(precision: str, device: torch.device) -> str:
    """The arithmetic a training step on `device` uses for TrainConfig.precision: "bf16" or
    "fp32". auto is bf16 where it pays: CUDA GPUs with bf16, and CPUs with AMX tiles; a CPU with
    AVX-512 BF16 but no AMX trained a Bunny 180x320 fit no faster in bf16 than in fp32
    (docs/performance.md), so auto keeps fp32 there. bf16 where it is not native is refused."""
    native = bf16_supported(device)
    if precision == "auto":
        pays = device.type == "cuda" or _has_amx()
        return "bf16" if native and pays else "fp32"
    if precision == "bf16" and not native:
        raise GnervError(
            f"--precision bf16: this {device.type.upper()} has no native bfloat16 (a CPU needs "
            "AVX-512 BF16 or AMX); train with --precision fp32 or auto"
        )
    if precision not in ("bf16", "fp32"):
        raise GnervError(f"precision {precision!r} is not one of: {', '.join(TRAIN_PRECISIONS)}")
    return precision


def stage_loss(
    pred: torch.Tensor, target: torch.Tensor, alpha: float, distortion: str, data_range: float
) -> torch.Tensor:
    """Eq. 6: a * D(pred, target) + (1 - a) * (1 - SSIM(pred, target))."""
    d = F.l1_loss(pred, target) if distortion == "l1" else F.mse_loss(pred, target)
    if alpha >= 1.0:
        return d
    s = ssim_index(pred, target, data_range=data_range)
    return alpha * d + (1.0 - alpha) * (1.0 - s)


def estimate_training_bytes(cfg: GNeRVConfig, batch_size: int, n_target_bytes: int) -> int:
    """Rough peak memory of a training step: weights + grads + Adam state, the activations kept
    for backward (a few copies of each block's feature maps) and the target held on the device."""
    params = count_params(cfg)
    h, w = cfg.embedding_hw
    chans = cfg.channels
    act = 0
    for c_in, c_out, r in zip(chans[:-1], chans[1:], cfg.upscale_factors, strict=True):
        act += c_in * h * w * 3  # block input, its normalised copy, conv1 input
        act += max(c_in, c_out) * r * r * h * w * 3  # conv outputs, shuffle, GELU
        h, w = h * r, w * r
    act += 3 * h * w * 4  # head output, sigmoid, loss terms
    return 16 * params + 4 * act * batch_size + n_target_bytes


def _as_device_target(target: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 frames stay uint8 (4x smaller); residuals stay float32 (x100 needs the precision)."""
    if target.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(target)).to(device)
    return torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)).to(device)


def _batch(target: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Target rows `idx` as float (B, 3, H, W): frames scaled to [0, 1], residuals as stored."""
    x = target[idx].permute(0, 3, 1, 2)
    return x.float().div_(255.0) if target.dtype == torch.uint8 else x.float()


class ParamTransform(Protocol):
    """What the forward pass sees instead of the raw parameters (quantization-aware
    fine-tuning: :mod:`gnerv.encoder.qat`); the raw parameters stay the ones Adam updates."""

    def settings(self) -> dict:
        """What the transform does, as JSON: part of the run's settings (resume checks it)."""
        ...

    def __call__(self, model: GNeRV) -> dict[str, torch.Tensor]:
        """name -> tensor used in the forward pass, for every parameter of ``model``."""
        ...

    def penalty(self, model: GNeRV) -> torch.Tensor | None:
        """A term added to every step's loss (a rate term), or None."""
        ...


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """Fingerprint of a state dict's names, shapes and float32 values."""
    h = hashlib.sha256()
    for name, t in state.items():
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class FitResult:
    model: GNeRV
    psnr: float  # mean per-frame PSNR of the final model on the target (pixel units)
    epochs: int
    train_seconds: float
    history: list[dict]


def _settings_fingerprint(
    model_cfg: GNeRVConfig, cfg: TrainConfig, target: np.ndarray, target_scale: float
) -> dict:
    train = asdict(cfg)
    # how the arithmetic runs, not what is trained: a run may resume on another device or
    # precision (fit.json's summary records the precision of the run that finished)
    volatile = ("device", "checkpoint_every", "extra", "channels_last", "compile", "precision")
    for name in volatile:
        train.pop(name)
    train["betas"] = list(train["betas"])
    if train["embedding_std"] == RANDN_STD:  # absent at randn's std, as before the option existed:
        train.pop("embedding_std")  # checkpoints written then still resume (with --embedding-std 1)
    return {
        "model": model_cfg.to_dict(),
        "train": train,
        "target_shape": list(target.shape),
        "target_dtype": str(target.dtype),
        "target_scale": target_scale,
        "target_sha256": hashlib.sha256(np.ascontiguousarray(target).data).hexdigest(),
    }


def load_checkpoint(path: Path) -> dict:
    """Load our own checkpoint without unpickling arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the file is not a usable checkpoint
        raise GnervError(
            f"{path}: not a readable GNeRV checkpoint ({e.__class__.__name__}); "
            "delete it to start over"
        )


def model_from_checkpoint(path: Path) -> tuple[GNeRV, dict]:
    ckpt = load_checkpoint(path)
    try:
        model = GNeRV(GNeRVConfig.from_dict(ckpt["settings"]["model"]))
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise GnervError(f"{path}: checkpoint does not hold a GNeRV model ({e})")
    return model, ckpt


@dataclass
class TrainState:
    """What a checkpoint restores: the model, Adam, the shuffling RNG and the epochs done."""

    model: GNeRV
    optimizer: torch.optim.Optimizer
    shuffle: torch.Generator
    epoch: int = 0  # epochs done
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0


def _check_target(
    target: np.ndarray, model_cfg: GNeRVConfig, cfg: TrainConfig, device: torch.device
) -> None:
    """Refuse a target of the wrong shape, or a run that would not fit in the device's memory."""
    if target.ndim != 4 or target.shape[-1] != 3 or len(target) == 0:
        raise GnervError(f"training target has shape {target.shape}: expected (N, H, W, 3), N >= 1")
    _, height, width, _ = target.shape
    if (height, width) != (model_cfg.height, model_cfg.width):
        raise GnervError(
            f"model is for {model_cfg.height}x{model_cfg.width} but frames are {height}x{width}"
        )
    need = estimate_training_bytes(model_cfg, cfg.batch_size, target.nbytes)
    have = available_memory_bytes(device)
    if need > have:
        raise GnervError(
            f"training c0={model_cfg.c0} ({count_params(model_cfg) / 1e6:.2f}M params) with batch "
            f"{cfg.batch_size} on {height}x{width} frames needs about {need / 2**30:.1f} GiB, "
            f"{have / 2**30:.1f} GiB free on {device}: use a smaller size, batch or resolution"
        )


def _restore(
    model_cfg: GNeRVConfig,
    cfg: TrainConfig,
    settings: dict,
    ckpt_path: Path,
    resume: bool | str,
    device: torch.device,
    init: dict[str, torch.Tensor] | None = None,
) -> TrainState:
    """A fresh seeded start, or the state in ckpt_path when resuming, on `device`.

    resume=True refuses a checkpoint written with other settings or data; "auto" starts over."""
    seed_everything(cfg.seed)
    model = GNeRV(model_cfg)
    if cfg.embedding_std != RANDN_STD:
        with torch.no_grad():
            model.embedding.mul_(cfg.embedding_std / RANDN_STD)
    if init is not None:
        model.load_state_dict(init)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    state = TrainState(model, optimizer, torch.Generator().manual_seed(cfg.seed))
    ckpt = load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    if ckpt is not None and ckpt.get("settings") != settings:
        if resume != "auto":
            raise GnervError(
                f"{ckpt_path} was written with other settings or data; delete it or drop --resume"
            )
        print(f"{ckpt_path}: other settings or data, starting over", file=sys.stderr)
        ckpt = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state.shuffle.set_state(ckpt["shuffle_rng"])
        state.epoch, state.history = int(ckpt["epoch"]), list(ckpt["history"])
        state.train_seconds = float(ckpt["train_seconds"])
    model.to(device)
    # Adam's state tensors follow the parameters' device after load_state_dict + to(device).
    for param_state in optimizer.state.values():
        for k, v in param_state.items():
            if isinstance(v, torch.Tensor) and k != "step":
                param_state[k] = v.to(device)
    return state


def _save_checkpoint(
    path: Path, state: TrainState, settings: dict, video_meta: dict | None
) -> None:
    ckpt = {
        "format": "gnerv-checkpoint-1",
        "settings": settings,
        "model": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        "optimizer": state.optimizer.state_dict(),
        "shuffle_rng": state.shuffle.get_state(),
        "epoch": state.epoch,
        "history": state.history,
        "train_seconds": state.train_seconds,
        "video": video_meta or {},
    }
    with atomic_output(path) as tmp:
        torch.save(ckpt, tmp)


def _train_epoch(
    state: TrainState,
    step_model: Callable[[torch.Tensor], torch.Tensor],
    data: torch.Tensor,
    cfg: TrainConfig,
    data_range: float,
    pixel_scale: float,
    penalty: Callable[[], torch.Tensor | None] | None = None,
    precision: str = "fp32",
) -> dict:
    """Train epoch number state.epoch (0-based) on the shuffled target; return its history
    record: mean loss, PSNR of the outputs along the way (pixel units), last learning rate.
    ``penalty()``, when given and not None, is added to each step's loss (not to the
    recorded loss, which stays the distortion). precision: "bf16" runs the forward pass under
    bfloat16 autocast (the loss is computed in float32), "fp32" in float32 throughout."""
    n = data.shape[0]
    device = data.device
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    bf16 = precision == "bf16"
    order = torch.randperm(n, generator=state.shuffle)
    loss_sum = torch.zeros((), device=device)
    sq_err_sum = torch.zeros((), device=device, dtype=torch.float64)
    for b in range(steps_per_epoch):
        step = state.epoch * steps_per_epoch + b
        for group in state.optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps, cfg)
        idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
        gt = _batch(data, idx.to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            pred = step_model(frame_times(idx, n).to(device))
        pred = pred.float()
        loss = stage_loss(pred, gt, cfg.loss_alpha, cfg.distortion, data_range)
        extra = penalty() if penalty is not None else None
        state.optimizer.zero_grad(set_to_none=True)
        (loss if extra is None else loss + extra).backward()
        state.optimizer.step()
        loss_sum += loss.detach() * len(idx)
        sq_err_sum += (pred.detach() - gt).double().pow(2).sum()
    mse = float(sq_err_sum) / data.numel() / pixel_scale**2
    return {
        "epoch": state.epoch + 1,
        "loss": float(loss_sum) / n,
        "train_psnr": -10 * math.log10(max(mse, 1e-12)),
        "lr": lr_at((state.epoch + 1) * steps_per_epoch - 1, total_steps, cfg),
    }


def _finish(
    state: TrainState,
    data: torch.Tensor,
    pixel_scale: float,
    settings: dict,
    cfg: TrainConfig,
    device: torch.device,
    video_meta: dict | None,
    target_scale: float,
    summary_path: Path,
    precision: str,
) -> FitResult:
    """Measure the final model's PSNR on the target and write the run's summary (fit.json)."""
    model_cfg = state.model.cfg
    state.model.eval()
    final_psnr = fit_psnr(state.model, data, pixel_scale)
    summary = {
        "model": model_cfg.to_dict(),
        "train": settings["train"],
        "params": count_params(model_cfg),
        "macs_per_frame": macs_per_frame(model_cfg),
        "n_frames": data.shape[0],
        "psnr": final_psnr,
        "epochs": cfg.epochs,
        "train_seconds": state.train_seconds,
        "device": str(device),
        "precision": precision,  # the training step's arithmetic (training_precision)
        "video": video_meta or {},
        "target_scale": target_scale,
        "history": state.history,
    }
    write_json(summary_path, summary)
    return FitResult(state.model, final_psnr, cfg.epochs, state.train_seconds, state.history)


class ProgressLog:
    """Without a progress bar (--quiet, a workflow's log file), one line now and then on stderr:
    the first epoch, then every PROGRESS_EVERY_S seconds and every tenth of the run, and the
    last epoch, so `tail -f` on a log shows a fit is alive and when it will end."""

    def __init__(self) -> None:
        self.last = -math.inf

    def epoch_done(
        self, epoch: int, epochs: int, record: dict, seconds: float, start_epoch: int
    ) -> None:
        now = time.monotonic()
        tenth = max(epochs // 10, 1)
        if not (
            epoch == start_epoch + 1
            or epoch == epochs
            or epoch % tenth == 0
            or now - self.last >= PROGRESS_EVERY_S
        ):
            return
        self.last = now
        per_epoch = seconds / max(epoch - start_epoch, 1)
        eta = per_epoch * (epochs - epoch)
        print(
            f"fit: epoch {epoch}/{epochs}, loss {record['loss']:.5f}, "
            f"PSNR {record['train_psnr']:.2f} dB, {per_epoch:.2f} s/epoch, "
            f"ETA {int(eta // 60)}m{int(eta % 60):02d}s",
            file=sys.stderr,
            flush=True,
        )


def fit(
    target: np.ndarray,
    model_cfg: GNeRVConfig,
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool | str = False,
    target_scale: float = 1.0,
    video_meta: dict | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, dict], None] | None = None,
    init: dict[str, torch.Tensor] | None = None,
    transform: ParamTransform | None = None,
) -> FitResult:
    """Fit GNeRV(model_cfg) to `target` and write out_dir/checkpoint.pt and out_dir/fit.json.

    init: start from these weights instead of the seeded initialisation (a fine-tune);
    transform: the forward pass uses ``transform(model)`` as the parameters (a quantizer in the
    loop). Both are part of the settings a resumed run must match.

    target: uint8 frames (N, H, W, 3), or float residuals (N, H, W, 3) already multiplied by
    `target_scale` (PSNR is then reported in pixel units, i.e. after dividing by the scale).
    resume: True continues from out_dir's checkpoint and refuses one made with other settings or
    data; "auto" starts over in that case (what a workflow wants after a parameter change).
    """
    cfg.validate()
    cfg = resolve_lr(cfg, model_cfg)
    out_dir = Path(out_dir)
    device = select_device(cfg.device)
    precision = training_precision(cfg.precision, device)
    _check_target(target, model_cfg, cfg, device)
    settings = _settings_fingerprint(model_cfg, cfg, target, target_scale)
    if init is not None:
        settings["init_sha256"] = state_sha256(init)
    if transform is not None:
        settings["transform"] = transform.settings()
    ckpt_path = out_dir / CHECKPOINT_NAME
    state = _restore(model_cfg, cfg, settings, ckpt_path, resume, device, init)
    start_epoch = state.epoch
    if cfg.channels_last:
        state.model.to(memory_format=torch.channels_last)
    step_model: Callable[[torch.Tensor], torch.Tensor] = (
        torch.compile(state.model) if cfg.compile else state.model
    )
    penalty: Callable[[], torch.Tensor | None] | None = None
    if transform is not None:
        model = state.model

        def step_model(t: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(model, transform(model), (t,))

        def penalty() -> torch.Tensor | None:
            return transform.penalty(model)

    data = _as_device_target(target, device)
    data_range = 1.0 if target.dtype == np.uint8 else float(target_scale)
    pixel_scale = 1.0 if target.dtype == np.uint8 else float(target_scale)

    bar = tqdm(
        range(start_epoch, cfg.epochs),
        initial=start_epoch,
        total=cfg.epochs,
        desc="fit",
        unit="epoch",
        disable=not progress,
        dynamic_ncols=True,
    )
    log = ProgressLog()
    state.model.train()
    for epoch in bar:
        t0 = time.perf_counter()
        record = _train_epoch(
            state, step_model, data, cfg, data_range, pixel_scale, penalty, precision
        )
        if not math.isfinite(record["loss"]):
            bar.close()
            raise GnervError(
                f"training diverged at epoch {epoch + 1} (loss {record['loss']}); the last good "
                f"checkpoint is kept in {ckpt_path}: lower the learning rate or change the seed"
            )
        state.train_seconds += time.perf_counter() - t0
        state.epoch = epoch + 1
        record["elapsed_seconds"] = state.train_seconds  # training time so far, this epoch's too
        state.history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}", psnr=f"{record['train_psnr']:.2f}")
        if not progress:
            log.epoch_done(state.epoch, cfg.epochs, record, state.train_seconds, start_epoch)
        if on_epoch is not None:
            on_epoch(epoch + 1, record)
        if state.epoch % cfg.checkpoint_every == 0 or state.epoch == cfg.epochs:
            _save_checkpoint(ckpt_path, state, settings, video_meta)
    bar.close()
    if start_epoch >= cfg.epochs and not ckpt_path.exists():
        _save_checkpoint(ckpt_path, state, settings, video_meta)

    summary_path = out_dir / SUMMARY_NAME
    return _finish(
        state,
        data,
        pixel_scale,
        settings,
        cfg,
        device,
        video_meta,
        target_scale,
        summary_path,
        precision,
    )


def fit_psnr(model: GNeRV, data: torch.Tensor, pixel_scale: float) -> float:
    """Mean per-frame PSNR of the model's output against the device-held target.

    Frames are compared after rounding to uint8, as a decoder would show them; residuals are
    compared in pixel units (divided by their scale)."""
    n = data.shape[0]
    psnrs = []
    for i in range(0, n, 8):
        idx = torch.arange(i, min(i + 8, n))
        pred = render(model, idx, n, batch_size=8)
        gt = _batch(data, idx.to(data.device))
        if data.dtype == torch.uint8:
            pred = pred.clamp(0, 1).mul(255).round().div(255)
        err = ((pred.double() - gt.double()) / pixel_scale).pow(2).flatten(1).mean(1)
        psnrs.append(-10 * torch.log10(err.clamp_min(1e-12)))
    return float(torch.cat(psnrs).mean())
