"""The encoder's settings: how a stage trains (TrainConfig) and how a fitted model becomes a file
(CompressConfig), with the defaults and the rules that pick them.

Torch-free, so that the command line shows these defaults in ``--help`` without importing torch;
training itself is :mod:`gnerv.encoder.train`, the fine-tune :mod:`gnerv.encoder.qat`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gnerv.codec.config import (
    MINMAX_SCHEME,
    SCHEME_ALIASES,
    SCHEMES,
    SYMMETRIC_SCHEME,
    GNeRVConfig,
    check_scheme,
    count_params,
)
from gnerv.runtime.device import DEFAULT_DEVICE
from gnerv.runtime.errors import GnervError

# The learning rate of a stage when none is given (lr "auto"): the paper's 2e-3, tuned for its
# 0.5M-12M models, raised for smaller ones as (AUTO_LR_FROM / params) ** AUTO_LR_POWER, at most
# AUTO_LR_MAX_FACTOR times; residual stages take the same rule (the paper's 2e-4 for them left
# the residual stages far behind in a CPU-sized training). Measured with benchmarks/quality.py
# and benchmarks/progressive.py: docs/model.md, docs/results.md.
PAPER_LR = 2e-3
PAPER_RESIDUAL_LR = 2e-4  # paper 4.1: residual stages (configs/paper-*.yaml set it)
AUTO_LR = "auto"
# The global embedding's start: the model's torch.randn (std RANDN_STD, the paper does not say)
# scaled to EMBEDDING_STD. Every block input is normalised by the distribution shift, so only the
# start's scale against the lr matters: 0.01 gained over 1 at every size and clip measured
# (docs/model.md); the paper configs set 1.
RANDN_STD = 1.0
EMBEDDING_STD = 0.01
AUTO_LR_FROM = 800_000  # parameters from which the paper's lr is kept
AUTO_LR_POWER = 1.0
AUTO_LR_MAX_FACTOR = 4.0  # 8e-3: the best of 2e-3..1.6e-2 at 0.05-0.2M on the sample clips


def auto_lr(params: int) -> float:
    """The peak learning rate for a frame model of `params` parameters (see AUTO_LR_*)."""
    factor = min(max((AUTO_LR_FROM / max(params, 1)) ** AUTO_LR_POWER, 1.0), AUTO_LR_MAX_FACTOR)
    return PAPER_LR * factor


TRAIN_PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_TRAIN_PRECISION = "auto"


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
    # arithmetic of the training step: fp32, bf16 (autocast, fp32 master weights) or auto:
    # bf16 where it pays (CUDA GPUs, CPUs with AMX), fp32 elsewhere (training_precision)
    precision: str = DEFAULT_TRAIN_PRECISION
    channels_last: bool = True  # NHWC activations: oneDNN / cuDNN convs run faster on them
    compile: bool = False  # torch.compile the model (pays a compile time up front)
    extra: dict = field(default_factory=dict)  # free-form notes kept in the checkpoint
    recipe: str = "default"  # the recipe these settings came from (RECIPES; recorded only)

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
        check_recipe(self.recipe)
        if self.precision not in TRAIN_PRECISIONS:
            raise GnervError(
                f"precision {self.precision!r} is not one of: {', '.join(TRAIN_PRECISIONS)}"
            )
        if self.checkpoint_every < 1:
            raise GnervError(f"checkpoint_every = {self.checkpoint_every} must be >= 1")


def resolve_lr(cfg: TrainConfig, model_cfg: GNeRVConfig) -> TrainConfig:
    """`cfg` with an "auto" learning rate replaced by auto_lr of the model's size (frame and
    residual stages alike)."""
    if cfg.lr != AUTO_LR:
        return cfg
    return replace(cfg, lr=auto_lr(count_params(model_cfg)))


# How a fitted model is coded by default: the rate path, chosen by measurement on three clips at
# three sizes each (docs/compression.md, "The default coding"): a zero-centred grid at 6 bits
# with a quantization-aware fine-tune of a tenth of the fit's epochs at a tenth of its lr. The
# paper's coding (8-bit min/max, nothing fine-tuned) is the paper recipe's (PAPER_RECIPE).
DEFAULT_CODING_SCHEME = SYMMETRIC_SCHEME
DEFAULT_CODING_BITS = 6
DEFAULT_QAT_SHARE = 0.1  # fine-tune epochs as a share of the fit's (paper: none)
AUTO_QAT_LR = "auto"  # the fine-tune's lr: QAT_LR_FACTOR x the fit's peak lr
QAT_LR_FACTOR = 0.1  # the weights only settle onto the grid
DEFAULT_PRUNE = 0.0  # pruning did not pay on the clips measured (paper: none)
DEFAULT_RATE_LAMBDA = 0.0  # the rate term did not pay on the clips measured (paper: none)
DEFAULT_TARGET_PSNR_DROP = 0.2  # bits auto: dB below the float model
# The fine-tune's loss: "mse", what PSNR measures (the fit's loss a*L1 + (1-a)*(1-SSIM) is the
# paper's for training; in the short fine-tune MSE lifted decoded PSNR by 0.3-0.8 dB at equal
# bytes on the three clips measured: docs/compression.md), or "fit", the fit's own loss.
QAT_LOSSES = ("mse", "fit")
DEFAULT_QAT_LOSS = "mse"
MSE_LOSS = {"loss_alpha": 1.0, "distortion": "mse"}  # "mse" as TrainConfig's loss fields


@dataclass(frozen=True)
class CodingOption:
    """How one coding setting (a CompressConfig field) appears outside the code: as the flag
    `--<field-name>` of `gnerv compress|encode|finetune`, as the key `<field_name>` of
    params.yaml's `compress:` section, and in that section's JSON schema. A new coding option is
    one field with this metadata, plus its use (docs/package.md, "Adding a coding option")."""

    help: str  # the flag's help; "{name}" is replaced by that field's default
    parse: Callable[[Any], Any]  # a flag's text or a params value -> the field's value
    schema: dict[str, Any]  # the params.yaml value's JSON schema
    asks_rate_path: Callable[[Any], bool] | None = None  # values that need the symmetric grid

    @staticmethod
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")


def parse_scheme(value: Any) -> str:
    """A scheme by its short name (minmax, symmetric) or its full name."""
    scheme = SCHEME_ALIASES.get(str(value), str(value))
    if scheme not in SCHEMES:
        raise GnervError(f"scheme {value!r}: use one of {', '.join(SCHEME_ALIASES)}")
    return scheme


def _number(kind: type) -> Callable[[Any], Any]:
    """A parser of `kind` (int or float) that lets null through (the recipe's value)."""

    def parse(value: Any) -> Any:
        if value is None:
            return None
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise GnervError(f"{value!r} is not {'an integer' if kind is int else 'a number'}")

    return parse


def parse_qat_lr(value: Any) -> float | str:
    """The fine-tune's learning rate: a number, or auto (QAT_LR_FACTOR x the fit's)."""
    return AUTO_QAT_LR if str(value).strip().lower() == AUTO_QAT_LR else _number(float)(value)


def parse_qat_loss(value: Any) -> str:
    """The fine-tune's loss: one of QAT_LOSSES."""
    loss = str(value).strip().lower()
    if loss not in QAT_LOSSES:
        raise GnervError(f"fine-tune loss {value!r}: use one of {', '.join(QAT_LOSSES)}")
    return loss


def _option(default: Any, **option: Any) -> Any:
    return field(default=default, metadata={"option": CodingOption(**option)})


@dataclass(frozen=True)
class CompressConfig:
    """How a fitted model becomes a file. The defaults are the measured best (DEFAULT_CODING_*);
    the paper's coding is ``recipe_settings("paper")``. params.yaml's ``quant: bits`` and every
    ``compress:`` key map onto these fields; the fields with a CodingOption also make the CLI's
    rate flags and the schema of params.yaml's ``compress:`` section (coding_options)."""

    scheme: str = _option(
        DEFAULT_CODING_SCHEME,  # (paper: minmax)
        help="quantization scheme: symmetric (zero-centred grid, compact ranges, parametric "
        "entropy model; the default) or minmax (the paper's; alone it codes 8 bits, nothing "
        "fine-tuned)",
        parse=parse_scheme,
        schema={"enum": [*SCHEME_ALIASES, *SCHEMES, None]},
    )
    bits: int | str = DEFAULT_CODING_BITS  # or "auto": per-tensor (gnerv.encoder.allocate)
    target_psnr_drop: float = _option(
        DEFAULT_TARGET_PSNR_DROP,
        help="--bits auto: dB below the float model (default {target_psnr_drop:g})",
        parse=_number(float),
        schema={"type": "number", "exclusiveMinimum": 0},
    )
    max_bytes: int | None = _option(
        None,
        help="--bits auto: a byte budget instead",
        parse=_number(int),
        schema={"type": ["integer", "null"], "minimum": 1},
    )
    qat_epochs: int | None = _option(
        None,  # None: qat_share of the fit's epochs
        help="quantization-aware fine-tune epochs after fit (default: {qat_share:g} of the "
        "fit's epochs; 0: none)",
        parse=_number(int),
        schema={"type": ["integer", "null"], "minimum": 0},
        asks_rate_path=lambda v: v is not None and v > 0,
    )
    qat_share: float = _option(
        DEFAULT_QAT_SHARE,
        help="fine-tune epochs as a share of the fit's, where --qat-epochs is not given "
        "(default {qat_share:g})",
        parse=_number(float),
        schema={"type": ["number", "null"], "minimum": 0, "maximum": 1},
        asks_rate_path=lambda v: v is not None and v > 0,
    )
    qat_lr: float | str = _option(
        AUTO_QAT_LR,
        help=f"its peak learning rate (default {{qat_lr}}: {QAT_LR_FACTOR:g} x the fit's)",
        parse=parse_qat_lr,
        schema={"oneOf": [{"type": "number", "exclusiveMinimum": 0}, {"const": AUTO_QAT_LR}]},
    )
    qat_loss: str = _option(
        DEFAULT_QAT_LOSS,
        help="the fine-tune's loss: mse (what PSNR measures) or fit (the fit's own loss) "
        "(default {qat_loss})",
        parse=parse_qat_loss,
        schema={"enum": list(QAT_LOSSES)},
    )
    prune: float = _option(
        DEFAULT_PRUNE,
        help="share of each convolution's weights set to zero before the fine-tune "
        "(default {prune:g})",
        parse=_number(float),
        schema={"type": "number", "minimum": 0, "maximum": 0.95},
        asks_rate_path=lambda v: v is not None and v > 0,
    )
    rate_lambda: float = _option(
        DEFAULT_RATE_LAMBDA,
        help="weight of a rate term in the fine-tune's loss: the weights' estimated code "
        "length in bits per pixel (default {rate_lambda:g}: none)",
        parse=_number(float),
        schema={"type": "number", "minimum": 0},
    )
    recipe: str = "default"  # the recipe these settings came from (RECIPES; in the header)

    def validate(self) -> None:
        check_recipe(self.recipe)
        check_scheme(self.scheme)
        if self.bits != "auto" and not isinstance(self.bits, int):
            raise GnervError(f"bits {self.bits!r}: give an integer or auto")
        if self.qat_epochs is not None and self.qat_epochs < 0:
            raise GnervError(f"qat_epochs = {self.qat_epochs} must be >= 0")
        if not 0 <= self.qat_share <= 1:
            raise GnervError(f"qat_share = {self.qat_share} must be in [0, 1]")
        if self.qat_lr != AUTO_QAT_LR and not (
            isinstance(self.qat_lr, int | float) and self.qat_lr > 0
        ):
            raise GnervError(f"qat_lr = {self.qat_lr!r} must be positive, or auto")
        parse_qat_loss(self.qat_loss)
        if not 0 <= self.prune < 1:
            raise GnervError(f"prune = {self.prune} must be in [0, 1)")
        if self.prune and not self.fine_tunes:
            raise GnervError("pruning needs a fine-tune to recover: give qat_epochs >= 1")
        if self.rate_lambda < 0:
            raise GnervError(f"rate_lambda = {self.rate_lambda} must be >= 0")
        if self.rate_lambda and not self.fine_tunes:
            raise GnervError("the rate term trains in the fine-tune: give qat_epochs >= 1")
        if self.rate_path and self.scheme != SYMMETRIC_SCHEME:
            raise GnervError(
                "fine-tuning, pruning and --bits auto work on the symmetric scheme: drop "
                "--scheme minmax (or the fine-tune: --qat-epochs 0)"
            )

    @property
    def fine_tunes(self) -> bool:
        """Whether a quantization-aware fine-tune runs after the fit."""
        return (self.qat_epochs if self.qat_epochs is not None else self.qat_share) > 0

    @property
    def rate_path(self) -> bool:
        """Whether anything of the rate path beyond the grid is asked for."""
        return self.fine_tunes or bool(self.prune) or self.bits == "auto"

    @property
    def needs_frames(self) -> bool:
        return self.fine_tunes or self.bits == "auto"

    def finetune_epochs(self, fit_epochs: int) -> int:
        """The fine-tune's epochs after a fit of `fit_epochs` (qat_epochs, else the share)."""
        if self.qat_epochs is not None:
            return self.qat_epochs
        return max(1, round(self.qat_share * fit_epochs)) if self.qat_share > 0 else 0

    def finetune_lr(self, fit_lr: float) -> float:
        """The fine-tune's peak lr after a fit whose peak lr was `fit_lr`."""
        return QAT_LR_FACTOR * fit_lr if self.qat_lr == AUTO_QAT_LR else float(self.qat_lr)


DEFAULT_RESIDUAL_SCALE = 100.0  # paper's ablation
RESIDUAL_LR = AUTO_LR  # the frames' size rule (paper 4.1: PAPER_RESIDUAL_LR, 2e-4)
RESIDUAL_ALPHA = 1.0  # paper: no SSIM term on residuals


# --------------------------------------------------------------------------------------------
# Recipes: every default above (the measured best), or every value the paper states
# --------------------------------------------------------------------------------------------

RECIPES = ("default", "paper")
DEFAULT_RECIPE = "default"
# What each recipe sets, under the package's names, by part: the model, the base stage's
# training, a residual stage's training (over the base's), the coding. Explicit flags and
# params.yaml values still override a recipe's; the default recipe's own values are the
# dataclasses' defaults, so it lists only what differs between frames and residuals.
RECIPE_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {
        "model": {},
        "frames": {},
        "residuals": {"lr": RESIDUAL_LR, "loss_alpha": RESIDUAL_ALPHA},
        "coding": {},
    },
    # Paper sections 3.1 and 4.1: its layout (E-NeRV's Conv-Up block, 1x1 head, two-layer DS),
    # lr 2e-3 (2e-4 for residual stages), the embedding's randn start, fp32 training, 8-bit
    # min/max per-channel quantization with nothing fine-tuned.
    "paper": {
        "model": {"layout": "paper"},
        "frames": {"lr": PAPER_LR, "embedding_std": RANDN_STD, "precision": "fp32"},
        "residuals": {"lr": PAPER_RESIDUAL_LR, "loss_alpha": RESIDUAL_ALPHA},
        "coding": {"scheme": MINMAX_SCHEME, "bits": 8, "qat_epochs": None, "qat_share": 0.0},
    },
}


def check_recipe(recipe: str) -> None:
    if recipe not in RECIPES:
        raise GnervError(f"recipe {recipe!r} is not one of: {', '.join(RECIPES)}")


def recipe_settings(recipe: str, part: str) -> dict[str, Any]:
    """What `recipe` sets for `part` (model, frames, residuals or coding)."""
    check_recipe(recipe)
    return dict(RECIPE_SETTINGS[recipe][part])


def paper_coding(bits: int) -> CompressConfig:
    """The paper's coding (min/max per channel, nothing fine-tuned) at `bits`: what the
    library's encode functions do when given bits rather than a CompressConfig, and what
    `--scheme minmax` alone selects (the recipe stays the default one, whose coding it
    overrides)."""
    return CompressConfig(**{**recipe_settings("paper", "coding"), "bits": bits})


def stage_defaults(index: int, recipe: str = DEFAULT_RECIPE) -> dict[str, Any]:
    """TrainConfig settings of stage `index` under `recipe`: the frames' part for the base, the
    frames' and then the residuals' for stages >= 2."""
    settings = recipe_settings(recipe, "frames")
    if index > 1:
        settings.update(recipe_settings(recipe, "residuals"))
    return settings


def fine_tunes(params: Mapping[str, Any]) -> bool:
    """Whether the pipeline fine-tunes each fitted stage with the quantizer in the loop (the
    recipe's coding and the compress section resolved as the CLI resolves them): a training
    step of its own in the workflow (rule finetune)."""
    from gnerv.pipeline.params import COMMAND_SECTIONS, keys_of

    recipe = str(params.get("recipe") or "default")
    given = {
        name: value
        for section, keys in COMMAND_SECTIONS["compress"]
        for key, name in keys_of(keys, params.get(section) or {}).items()
        if (value := (params.get(section) or {}).get(key)) is not None
    }
    if given.get("scheme") in (
        "minmax",
        MINMAX_SCHEME,
    ):  # min/max alone: the paper's coding, nothing fine-tuned
        return bool(given.get("qat_epochs") or given.get("qat_share"))
    fields = {k: v for k, v in given.items() if k in ("qat_epochs", "qat_share")}
    return CompressConfig(**{**recipe_settings(recipe, "coding"), **fields}).fine_tunes


def coding_options() -> dict[str, CodingOption]:
    """CompressConfig's coding options by field name, in the fields' order."""
    return {f.name: f.metadata["option"] for f in fields(CompressConfig) if f.metadata}


def compress_schema() -> dict[str, Any]:
    """The JSON schema of params.yaml's `compress:` properties, one per coding option
    (workflow/scripts/dvc_yaml.py writes it into workflow/schemas/params.schema.yaml)."""
    return {name: option.schema for name, option in coding_options().items()}
