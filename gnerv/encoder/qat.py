"""Quantization-aware fine-tuning and magnitude pruning of a fitted GNeRV (after ``gnerv fit``).

A short run of :func:`gnerv.encoder.train.fit` that starts from the fitted weights and trains
through the
symmetric quantizer (:func:`gnerv.codec.quantize.fake_quantize`, a straight-through estimator of the
very rule the file is coded with), at a low learning rate with no warm-up, so that the weights
settle where 6-, 5- or 4-bit rounding costs little. With ``prune`` the smallest-magnitude share
of every convolution weight is set to zero first and kept there (masked in the forward pass, so
Adam never moves it): the symmetric grid codes those zeros as its peak symbol. The run writes a
checkpoint like ``fit`` (``gnerv compress`` reads it) and resumes like it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gnerv.codec.config import DEFAULT_BITS
from gnerv.codec.model import GNeRV
from gnerv.codec.quantize import _check_bits, channel_rows_and_steps, fake_quantize
from gnerv.encoder.config import DEFAULT_PRUNE, DEFAULT_RATE_LAMBDA, TrainConfig
from gnerv.encoder.train import FitResult, fit, model_from_checkpoint
from gnerv.pipeline.results import CHECKPOINT_NAME
from gnerv.runtime.errors import GnervError

# Tensors below this many weights are left out of the rate term (they are coded raw or cost
# next to nothing; gnerv.encoder.allocate leaves them at 8 bits for the same reason).
RATE_MIN_NUMEL = 1024


def prunable(name: str, t: torch.Tensor) -> bool:
    """Convolution weights (4-d, not the global embedding) are what pruning thins out."""
    return t.dim() == 4 and name.endswith(".weight")


def pruning_masks(model: GNeRV, share: float) -> dict[str, torch.Tensor]:
    """name -> 0/1 mask zeroing the ``share`` smallest-magnitude weights of each convolution
    (ties broken by position, so the count is exact)."""
    if not 0 <= share < 1:
        raise GnervError(f"prune share {share} must be in [0, 1)")
    masks = {}
    for name, p in model.named_parameters():
        if not prunable(name, p) or share == 0:
            continue
        flat = p.detach().abs().reshape(-1)
        k = math.ceil(share * flat.numel())  # at least the share asked
        mask = torch.ones_like(flat)
        mask[torch.argsort(flat, stable=True)[:k]] = 0
        masks[name] = mask.reshape(p.shape)
    return masks


@dataclass
class QuantizerInTheLoop:
    """The forward pass's parameters: pruned (masks), then quantize-dequantized at ``bits``
    (one depth, or one per tensor name) with a straight-through gradient."""

    bits: int | dict[str, int]
    masks: dict[str, torch.Tensor]
    prune: float
    rate_lambda: float = DEFAULT_RATE_LAMBDA
    pixels: int = 1  # frames x H x W of the target: the rate term is in bits per pixel

    def bits_of(self, name: str) -> int:
        return self.bits[name] if isinstance(self.bits, dict) else self.bits

    def settings(self) -> dict:
        settings = {"quantizer": "symmetric-ste", "bits": self.bits, "prune": self.prune}
        if self.rate_lambda:  # (absent when 0: earlier fine-tunes' checkpoints still match)
            settings["rate_lambda"] = self.rate_lambda
        return settings

    def _masked(self, name: str, p: torch.Tensor) -> torch.Tensor:
        mask = self.masks.get(name)
        return p * mask.to(p.device, p.dtype) if mask is not None else p

    def __call__(self, model: GNeRV) -> dict[str, torch.Tensor]:
        return {
            name: fake_quantize(self._masked(name, p), self.bits_of(name))
            for name, p in model.named_parameters()
        }

    def penalty(self, model: GNeRV) -> torch.Tensor | None:
        """The rate term: ``rate_lambda`` times the weights' estimated code length in bits per
        pixel, a differentiable proxy of what the entropy coder spends. Each tensor's weights,
        in units of their channel's step, are taken as Laplacian with the tensor's mean
        magnitude b (held fixed): -log2 p(q) = |q| / (b ln 2) + const, so the term pulls
        weights towards the grid's zero where that saves the most bits. None when off."""
        if not self.rate_lambda:
            return None
        bits = None
        for name, p in model.named_parameters():
            if p.numel() < RATE_MIN_NUMEL:
                continue
            rows, steps = channel_rows_and_steps(self._masked(name, p), self.bits_of(name))
            q = rows / torch.where(steps > 0, steps, torch.ones_like(steps))[:, None]
            b = q.detach().abs().mean().clamp_min(1e-3)
            term = q.abs().sum() / (b * math.log(2))
            bits = term if bits is None else bits + term
        return None if bits is None else self.rate_lambda * bits / self.pixels


def finetune(
    frames: np.ndarray,
    model_dir: str | Path,
    out_dir: str | Path,
    cfg: TrainConfig,
    bits: int | dict[str, int] = DEFAULT_BITS,
    prune: float = DEFAULT_PRUNE,
    resume: bool | str = False,
    progress: bool = True,
    rate_lambda: float = DEFAULT_RATE_LAMBDA,
) -> FitResult:
    """Fine-tune ``model_dir``'s fitted model for ``cfg.epochs`` with the quantizer in the loop
    (after pruning ``prune`` of each convolution, with the rate term ``rate_lambda`` in the
    loss when > 0); writes ``out_dir``'s checkpoint and fit.json.

    ``cfg`` is the fine-tune's own (epochs, lr; warm-up is usually 0). The weights saved are the
    float ones (pruned weights exactly 0); ``gnerv compress --scheme symmetric`` codes them.
    """
    for b in bits.values() if isinstance(bits, dict) else [bits]:
        _check_bits(b)
    model, ckpt = model_from_checkpoint(Path(model_dir) / CHECKPOINT_NAME)
    masks = pruning_masks(model, prune)
    init = {k: v * masks[k] if k in masks else v for k, v in model.state_dict().items()}
    meta = ckpt.get("video") or None
    pixels = int(np.prod(frames.shape[:3]))  # frames x H x W: the rate term is per pixel
    target_scale = float(ckpt["settings"].get("target_scale", 1.0))
    return fit(
        frames,
        model.cfg,
        cfg,
        out_dir,
        resume=resume,
        target_scale=target_scale,
        video_meta=meta,
        progress=progress,
        init=init,
        transform=QuantizerInTheLoop(bits, masks, prune, rate_lambda, pixels),
    )
