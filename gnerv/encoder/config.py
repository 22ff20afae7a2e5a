"""The encoder's settings: how a stage trains (TrainConfig) and how a fitted model becomes a file
(CompressConfig), with the defaults and the rules that pick them.

Torch-free, so that the command line shows these defaults in ``--help`` without importing torch;
training itself is :mod:`gnerv.encoder.train`, the fine-tune :mod:`gnerv.encoder.qat`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gnerv.codec.config import (
    DEFAULT_BITS,
    DEFAULT_SCHEME,
    SYMMETRIC_SCHEME,
    GNeRVConfig,
    check_scheme,
    count_params,
)
from gnerv.runtime.device import DEFAULT_DEVICE
from gnerv.runtime.errors import GnervError

# The learning rate of a stage when none is given (lr "auto"): the paper's 2e-3, tuned for its
# 0.5M-12M models, raised for smaller ones as (AUTO_LR_FROM / params) ** AUTO_LR_POWER, at most
# AUTO_LR_MAX_FACTOR times; residual stages take the same rule (the paper's 2e-4 for them left a
# 0.05M residual stage 1.1 dB lower than 8e-3 in 100 epochs). Measured with
# benchmarks/quality.py and benchmarks/progressive.py: docs/model.md, docs/results.md.
PAPER_LR = 2e-3
PAPER_RESIDUAL_LR = 2e-4  # paper 4.1: residual stages (configs/paper-*.yaml set it)
AUTO_LR = "auto"
# The global embedding's start: the model's torch.randn (std RANDN_STD, the paper does not say)
# scaled to EMBEDDING_STD. Every block input is normalised by the distribution shift, so only the
# start's scale against the lr matters: 0.01 gained 0.28-0.80 dB over 1 at every size and clip
# measured (docs/model.md); the paper configs set 1.
RANDN_STD = 1.0
EMBEDDING_STD = 0.01
AUTO_LR_FROM = 800_000  # parameters from which the paper's lr is kept
AUTO_LR_POWER = 1.0
AUTO_LR_MAX_FACTOR = 4.0  # 8e-3: the best of 2e-3..1.6e-2 at 0.05-0.2M on the demo clip


def auto_lr(params: int) -> float:
    """The peak learning rate for a frame model of `params` parameters (see AUTO_LR_*)."""
    factor = min(max((AUTO_LR_FROM / max(params, 1)) ** AUTO_LR_POWER, 1.0), AUTO_LR_MAX_FACTOR)
    return PAPER_LR * factor


@dataclass
class TrainConfig:
    epochs: int = 300  # paper 4.1
    batch_size: int = 4  # paper 4.1
    # peak learning rate; "auto": auto_lr(the model's size) (paper: 2e-3 frames, 2e-4 residuals)
    lr: float | str = AUTO_LR
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas, paper 4.1
    warmup_fraction: float = 0.2  # share of steps with linear warm-up before the cosine decay
    embedding_std: float = EMBEDDING_STD  # std of the global embedding's random start
    loss_alpha: float = 0.7  # a in a*D + (1-a)*(1-SSIM); paper: 0.7 frames, 1.0 residuals
    distortion: str = "l1"  # D: "l1" or "mse"
    seed: int = 0
    checkpoint_every: int = 10  # epochs between checkpoints (the last epoch always writes one)
    device: str = DEFAULT_DEVICE  # auto | cpu | cuda[:N]
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # NHWC activations: oneDNN / cuDNN convs run faster on them
    compile: bool = False  # torch.compile the model (pays a compile time up front)
    extra: dict = field(default_factory=dict)  # free-form notes kept in the checkpoint

    def validate(self) -> None:
        if self.epochs < 1:
            raise GnervError(f"epochs = {self.epochs}: train for at least 1 epoch")
        if self.batch_size < 1:
            raise GnervError(f"batch size = {self.batch_size}: use a batch of at least 1")
        if self.lr != AUTO_LR and not (isinstance(self.lr, int | float) and self.lr > 0):
            raise GnervError(f"learning rate = {self.lr} must be positive, or auto")
        if not self.embedding_std > 0:
            raise GnervError(f"embedding_std = {self.embedding_std} must be positive")
        if not 0 <= self.warmup_fraction < 1:
            raise GnervError(f"warm-up fraction = {self.warmup_fraction} must be in [0, 1)")
        if not 0 <= self.loss_alpha <= 1:
            raise GnervError(f"loss alpha = {self.loss_alpha} must be in [0, 1]")
        if self.distortion not in ("l1", "mse"):
            raise GnervError(f"distortion '{self.distortion}' unknown: use l1 or mse")
        if self.checkpoint_every < 1:
            raise GnervError(f"checkpoint_every = {self.checkpoint_every} must be >= 1")


def resolve_lr(cfg: TrainConfig, model_cfg: GNeRVConfig) -> TrainConfig:
    """`cfg` with an "auto" learning rate replaced by auto_lr of the model's size (frame and
    residual stages alike)."""
    if cfg.lr != AUTO_LR:
        return cfg
    return replace(cfg, lr=auto_lr(count_params(model_cfg)))


DEFAULT_QAT_EPOCHS = 0  # the paper fine-tunes nothing
DEFAULT_QAT_LR = 5e-4  # a tenth of the demo's fit lr: the weights only settle onto the grid
DEFAULT_PRUNE = 0.0  # the paper prunes nothing
DEFAULT_RATE_LAMBDA = 0.0  # the paper's loss has no rate term
DEFAULT_TARGET_PSNR_DROP = 0.2  # dB below the float model


@dataclass(frozen=True)
class CompressConfig:
    """How a fitted model becomes a file; the defaults are the paper's (8-bit min/max, no
    fine-tune, no pruning). params.yaml's ``compress:`` section maps onto these fields."""

    scheme: str = DEFAULT_SCHEME
    bits: int | str = DEFAULT_BITS  # or "auto": per-tensor allocation (gnerv.encoder.allocate)
    target_psnr_drop: float = DEFAULT_TARGET_PSNR_DROP  # --bits auto: dB below the float model
    max_bytes: int | None = None  # --bits auto: a byte budget instead of the PSNR drop
    qat_epochs: int = DEFAULT_QAT_EPOCHS  # quantization-aware fine-tune after fit
    qat_lr: float = DEFAULT_QAT_LR
    prune: float = DEFAULT_PRUNE  # share of each convolution's weights set to zero
    rate_lambda: float = DEFAULT_RATE_LAMBDA  # weight of the fine-tune's rate term (per bpp)

    def validate(self) -> None:
        check_scheme(self.scheme)
        if self.bits != "auto" and not isinstance(self.bits, int):
            raise GnervError(f"bits {self.bits!r}: give an integer or auto")
        if self.qat_epochs < 0:
            raise GnervError(f"qat_epochs = {self.qat_epochs} must be >= 0")
        if not 0 <= self.prune < 1:
            raise GnervError(f"prune = {self.prune} must be in [0, 1)")
        if self.prune and not self.qat_epochs:
            raise GnervError("pruning needs a fine-tune to recover: give qat_epochs >= 1")
        if self.rate_lambda < 0:
            raise GnervError(f"rate_lambda = {self.rate_lambda} must be >= 0")
        if self.rate_lambda and not self.qat_epochs:
            raise GnervError("the rate term trains in the fine-tune: give qat_epochs >= 1")
        if (self.qat_epochs or self.prune or self.bits == "auto") and (
            self.scheme != SYMMETRIC_SCHEME
        ):
            raise GnervError(
                f"fine-tuning, pruning and --bits auto work on the {SYMMETRIC_SCHEME} scheme: "
                "add --scheme symmetric"
            )

    @property
    def needs_frames(self) -> bool:
        return self.qat_epochs > 0 or self.bits == "auto"


DEFAULT_RESIDUAL_SCALE = 100.0  # paper's ablation
RESIDUAL_LR = AUTO_LR  # the frames' size rule (paper 4.1: PAPER_RESIDUAL_LR, 2e-4)
RESIDUAL_ALPHA = 1.0  # paper: no SSIM term on residuals
