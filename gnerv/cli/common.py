"""What the command groups share: option groups defined once, settings resolved one way.

A setting comes from (highest first) an explicit flag, the ``--params`` file's value for
``--stage``, or the package's dataclass default (GNeRVConfig, TrainConfig, ...). Options are
declared with ``default=SUPPRESS`` so that an explicit flag is told apart from a default; the
help text shows the dataclass's default, read from the dataclass itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gnerv.codec.config import (
    DEFAULT_BATCH,
    DEFAULT_PRECISION,
    MAX_BITS,
    MIN_BITS,
    MINMAX_SCHEME,
    PRECISIONS,
    SYMMETRIC_SCHEME,
    GNeRVConfig,
)
from gnerv.encoder.config import (
    AUTO_LR_FROM,
    DEFAULT_RECIPE,
    PAPER_LR,
    PAPER_RESIDUAL_LR,
    RECIPES,
    RESIDUAL_ALPHA,
    TRAIN_PRECISIONS,
    CodingOption,
    CompressConfig,
    TrainConfig,
    coding_options,
    recipe_settings,
    stage_defaults,
)
from gnerv.runtime.device import DEFAULT_DEVICE
from gnerv.runtime.errors import GnervError

SUPPRESS = argparse.SUPPRESS
DEFAULT_SIZE = "0.5M"  # --size when neither --size, --c0 nor a --params stage gives one

# GNeRVConfig fields that are options (height, width come from the frames; c0 from --size/--c0).
MODEL_HELP = {
    "layout": "network layout: wide, or paper (C_in/4-wide growing blocks, 1x1 head, two-layer "
    "shared DS: the paper's parameter counts)",
    "time_branch": "how t enters: ds (the paper's distribution shift), m (a tensor added to the "
    "embedding: the ablation of paper 4.3) or ds+m",
    "upscale_factors": "Conv-Up upscale factors, e.g. 5,2,2,2,2 (auto: from gcd(H, W), the "
    "paper's at 720p/1080p)",
    "min_channels": "channel floor of the Conv-Up blocks",
    "pe_base": "positional-encoding base b",
    "pe_levels": "positional-encoding levels l",
    "ds_hidden": "width of the shared distribution-shift linear layer",
    "kernel_size": "convolution kernel size",
}
# (flag, TrainConfig field, help)
TRAIN_OPTIONS = (
    ("--epochs", "epochs", "training epochs"),
    ("--batch", "batch_size", "frames per training step"),
    (
        "--lr",
        "lr",
        f"peak learning rate, or auto: the paper's {PAPER_LR:g} raised for models under "
        f"{AUTO_LR_FROM / 1e6:g}M, residual stages too (the paper's for them: "
        f"{PAPER_RESIDUAL_LR:g})",
    ),
    ("--warmup", "warmup_fraction", "warm-up share of the steps before the cosine decay"),
    ("--embedding-std", "embedding_std", "std of the global embedding's random start"),
    (
        "--alpha",
        "loss_alpha",
        f"a in the loss a*D + (1-a)*(1-SSIM) (residual stages: {RESIDUAL_ALPHA:g})",
    ),
    ("--distortion", "distortion", "D in the loss: l1 or mse"),
    ("--seed", "seed", "random seed (weights and frame order)"),
    ("--checkpoint-every", "checkpoint_every", "epochs between checkpoints"),
)


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


MODEL_DEFAULTS = _defaults(GNeRVConfig)
TRAIN_DEFAULTS = _defaults(TrainConfig)
MODEL_FIELDS = tuple(name for name in MODEL_HELP if name in MODEL_DEFAULTS)
TRAIN_FIELDS = tuple(field for _, field, _ in TRAIN_OPTIONS) + ("device", "precision")
# Every setting a --params file may give (under the package's names).
# CompressConfig's fields (compress / encode: the quantization scheme, bits, fine-tune, pruning)
COMPRESS_FIELDS = tuple(f.name for f in dataclasses.fields(CompressConfig))
CODING_OPTIONS = coding_options()
SETTING_NAMES = {
    *MODEL_FIELDS, *TRAIN_FIELDS, *COMPRESS_FIELDS, "size", "c0", "residual_scale", "recipe"
}  # fmt: skip
# The rate path's settings, as a user names them, and the values that ask for it.
RATE_PATH_FLAGS = {
    **{
        name: (CodingOption.flag(name), option.asks_rate_path)
        for name, option in CODING_OPTIONS.items()
        if option.asks_rate_path
    },
    "bits": ("--bits auto", lambda v: v == "auto"),
}


# --------------------------------------------------------------------------------------------
# Small parsers
# --------------------------------------------------------------------------------------------


def learning_rate(text: str) -> float | str:
    """--lr: a positive number, or auto (from the model's size: gnerv.encoder.train.auto_lr)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number or auto") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 (or auto)")
    return value


def parse_factors(text: str | Sequence[int] | None) -> tuple[int, ...]:
    """'5,2,2' -> (5, 2, 2); 'auto' or empty -> () (derived from the frame size)."""
    if text is None or text == "auto" or text == "":
        return ()
    if not isinstance(text, str):
        return tuple(int(x) for x in text)
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(","))
    except ValueError:
        raise GnervError(f"--upscale-factors '{text}' is not a comma list of integers like 5,2,2")


def parse_list(text: str, kind: type, what: str) -> list:
    try:
        return [kind(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise GnervError(f"{what} '{text}' is not a comma list of {kind.__name__} values")


def positive_int(what: str):
    """An argparse type: an integer >= 1, or a one-line usage error naming the option."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}")
        if value < 1:
            raise argparse.ArgumentTypeError(f"{what} {value} must be >= 1")
        return value

    return parse


def check_suffix(path: str, suffixes: Sequence[str]) -> None:
    """Refuse an output name early, before any work is done."""
    if Path(path).suffix.lower() not in suffixes:
        raise GnervError(f"{path}: output must end in {' or '.join(suffixes)}")


def frame_indices(spec: str | None, n_frames: int, what: str) -> list[int]:
    """'A:B' (half-open, B may be omitted) -> indices, checked against the video's length."""
    if not spec:
        return list(range(n_frames))
    from gnerv.media.video import parse_range

    a, b = parse_range(spec)
    b = n_frames if b < 0 else b
    if not (0 <= a < b <= n_frames):
        raise GnervError(
            f"--frames {spec} is outside {what}, which has {n_frames} frames (0:{n_frames})"
        )
    return list(range(a, b))


# --------------------------------------------------------------------------------------------
# Option groups
# --------------------------------------------------------------------------------------------


def add_render_args(
    p: argparse.ArgumentParser, batch: bool = True, precision: bool = False
) -> None:
    """--batch (frames per forward pass) and --device: every command that renders frames;
    --precision: the decoders (decode, evaluate)."""
    if batch:
        p.add_argument(
            "--batch",
            type=positive_int("--batch"),
            default=DEFAULT_BATCH,
            help="frames per forward pass (default %(default)s)",
        )
    p.add_argument(
        "--device",
        default=DEFAULT_DEVICE,
        help="auto (GPU when present) | cpu | cuda[:N] (default %(default)s)",
    )
    if precision:
        p.add_argument(
            "--precision",
            choices=PRECISIONS,
            default=DEFAULT_PRECISION,
            help="fp32: exact, what the encoder assumed (default); bf16: faster on CPUs with "
            "AVX-512 BF16 or AMX, lossy against fp32",
        )


def bits_type(text: str) -> int | str:
    """--bits: an integer the quantizer and the format accept (checked before any work), or
    auto (a per-tensor allocation)."""
    if text == "auto":
        return text
    try:
        bits = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bits must be an integer, got {text!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise argparse.ArgumentTypeError(f"--bits must be in {MIN_BITS}..{MAX_BITS}, got {bits}")
    return bits


def add_bits_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bits",
        type=bits_type,
        default=SUPPRESS,
        help=f"quantization bits ({MIN_BITS}..{MAX_BITS}, default {CompressConfig.bits}), or auto: "
        "each tensor's bits chosen for --target-psnr-drop or --max-bytes (--scheme symmetric)",
    )


def add_rate_args(p: argparse.ArgumentParser) -> None:
    """How the fitted model is coded beyond --bits: a flag per coding option of CompressConfig
    (defaults: the rate path; --recipe paper or --scheme minmax: the paper's 8-bit min/max)."""
    defaults = _defaults(CompressConfig)
    g = p.add_argument_group("rate (defaults: the rate path; the paper's coding: --recipe paper)")
    for name, option in CODING_OPTIONS.items():
        g.add_argument(
            option.flag(name),
            type=_argument_type(option.parse),
            default=SUPPRESS,
            help=option.help.format(**defaults),
        )


def _argument_type(parse: Callable[[Any], Any]) -> Callable[[str], Any]:
    """`parse` as an argparse type: its error becomes argparse's one-line usage error."""

    def parse_flag(text: str) -> Any:
        try:
            return parse(text)
        except GnervError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse_flag


def compress_config(settings: dict[str, Any], note: bool = True) -> CompressConfig:
    """CompressConfig from resolved settings: the recipe's coding, then what flags or params
    give. A setting that asks for the rate path (a fine-tune, pruning, bits auto) selects the
    symmetric scheme, with a one-line note where the recipe's scheme was min/max; an explicit
    min/max scheme alone codes the paper's way, and with such a setting is an error."""
    recipe = settings.get("recipe", DEFAULT_RECIPE)
    given = {k: settings[k] for k in COMPRESS_FIELDS if k in settings and k != "recipe"}
    minmax = given.get("scheme") == MINMAX_SCHEME
    kw = recipe_settings("paper" if minmax else recipe, "coding")
    kw.update(given)
    asked = [
        flag
        for name, (flag, means) in RATE_PATH_FLAGS.items()
        if name in given and means(given[name])
    ]
    if minmax and asked:
        raise GnervError(
            f"{' and '.join(asked)} work on the symmetric scheme, not min/max: drop --scheme "
            "minmax (or those settings)"
        )
    if asked and kw.get("scheme", CompressConfig.scheme) != SYMMETRIC_SCHEME:
        kw["scheme"] = SYMMETRIC_SCHEME
        if note:
            print(
                f"note: {' and '.join(asked)} select the symmetric scheme (the {recipe} "
                "recipe codes min/max)",
                file=sys.stderr,
            )
    cfg = CompressConfig(**kw, recipe=recipe)
    cfg.validate()
    return cfg


def add_params_args(p: argparse.ArgumentParser, command: str) -> None:
    """--recipe, and --params FILE... --stage J: this command's settings from the workflow's
    params."""
    g = p.add_argument_group("recipe and settings from the workflow's parameters")
    g.add_argument(
        "--recipe",
        choices=RECIPES,
        default=SUPPRESS,
        help="default: the measured best settings for training and coding; paper: every value "
        "the paper states (its layout, lr 2e-3 / 2e-4, randn embedding start, fp32, 8-bit "
        "min/max, no fine-tune); flags and --params values still override it (default "
        f"{DEFAULT_RECIPE})",
    )
    g.add_argument(
        "--params",
        nargs="+",
        metavar="PARAMS.yaml",
        help=f"take {command}'s settings from params.yaml (and further files merged into it as "
        "by snakemake --configfile); explicit flags override them",
    )
    g.add_argument(
        "--stage",
        type=positive_int("--stage"),
        default=1,
        help="which entry of `stages` to use, 1 = base (default %(default)s)",
    )


def add_extract_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("frames")
    g.add_argument("--frames", metavar="A:B", help="half-open frame range, e.g. 0:32 (default all)")
    g.add_argument(
        "--stride", type=positive_int("--stride"), default=1, help="keep every S-th frame (1)"
    )
    g.add_argument("--resize", metavar="HxW", help="resize to height x width with the area filter")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    size = g.add_mutually_exclusive_group()
    size.add_argument(
        "--size",
        default=SUPPRESS,
        help=f"target parameter count, e.g. 0.5M or 300k (picks C0); default {DEFAULT_SIZE}",
    )
    size.add_argument(
        "--c0", type=positive_int("--c0"), default=SUPPRESS, help="embedding channels C0"
    )
    for name in MODEL_FIELDS:
        default = MODEL_DEFAULTS[name]
        kind = parse_factors if name == "upscale_factors" else type(default)
        shown = "auto" if name == "upscale_factors" else default
        g.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=SUPPRESS,
            help=f"{MODEL_HELP[name]} (default {shown})",
        )


def add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    for flag, name, text in TRAIN_OPTIONS:
        default = TRAIN_DEFAULTS[name]
        kind = positive_int(flag) if isinstance(default, int) else type(default)
        if name == "lr":
            kind = learning_rate
        extra = {"choices": ["l1", "mse"]} if name == "distortion" else {}
        text = f"{text} (default {default})"
        metavar = flag.lstrip("-").upper().replace("-", "_") if not extra else None
        g.add_argument(
            flag, dest=name, type=kind, default=SUPPRESS, metavar=metavar, help=text, **extra
        )
    g.add_argument(
        "--device",
        default=SUPPRESS,
        help=f"auto (GPU when present) | cpu | cuda[:N] (default {TRAIN_DEFAULTS['device']})",
    )
    g.add_argument(
        "--precision",
        choices=TRAIN_PRECISIONS,
        default=SUPPRESS,
        help="training arithmetic: fp32, bf16 (autocast, fp32 weights) or auto: bf16 on CUDA "
        f"GPUs and CPUs with AMX, else fp32 (default {TRAIN_DEFAULTS['precision']})",
    )
    g.add_argument(
        "--eager", action="store_true", help="plain path: NCHW tensors, no compile (for comparison)"
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the model (opt-in)")
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    g.add_argument(
        "--auto-resume",
        action="store_true",
        help="continue from the checkpoint if it matches these settings and data, else start over",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")


# --------------------------------------------------------------------------------------------
# Settings: explicit flags, then the --params file, then the dataclasses' defaults
# --------------------------------------------------------------------------------------------


def _coerce(name: str, value: Any) -> Any:
    """A value from a params file in the type the package uses (YAML gives 2.0e-3 as float, but
    a size may be 0.5M or 500000, and factors auto, "5,2,2" or a list)."""
    if name == "upscale_factors":
        return parse_factors(value)
    if name in ("size", "layout", "time_branch", "distortion", "device"):
        return str(value)
    if name == "bits" and value == "auto":
        return value
    if name in CODING_OPTIONS:
        try:
            return CODING_OPTIONS[name].parse(value)
        except GnervError as e:
            raise GnervError(f"parameter compress.{name}: {e}") from None
    if name == "recipe":
        return str(value)
    default = MODEL_DEFAULTS.get(name, TRAIN_DEFAULTS.get(name))
    try:
        if isinstance(default, bool):
            return bool(value)
        if isinstance(default, int) or name in ("c0", "bits"):
            return int(value)
        if isinstance(default, float) or name == "residual_scale":
            return float(value)
    except (TypeError, ValueError):
        raise GnervError(f"parameter {name} = {value!r} is not a number")
    return value


def resolve_settings(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """This command's settings: explicit flags over the --params file's (for --stage)."""
    from_file: dict[str, Any] = {}
    if getattr(args, "params", None):
        from gnerv.pipeline.params import command_settings, load_params

        raw = command_settings(load_params(args.params), command, args.stage)
        from_file = {name: _coerce(name, value) for name, value in raw.items()}
    explicit = {k: v for k, v in vars(args).items() if k in SETTING_NAMES}
    if "size" in explicit or "c0" in explicit:  # an explicit size replaces the file's either way
        from_file.pop("size", None)
        from_file.pop("c0", None)
    return {**from_file, **explicit}


def model_config(
    settings: dict[str, Any], height: int, width: int, residual: bool, n_frames: int = 1
) -> GNeRVConfig:
    """GNeRVConfig for n_frames frames of height x width: C0 from c0, else from size
    (DEFAULT_SIZE). Refused before any training when the .gnerv format could not hold it."""
    from gnerv.codec.config import c0_for_size
    from gnerv.codec.limits import check_encodable

    common = recipe_settings(settings.get("recipe", DEFAULT_RECIPE), "model")
    common.update({name: settings[name] for name in MODEL_FIELDS if name in settings})
    common.update(height=height, width=width, residual=residual)
    if "c0" in settings:
        cfg = GNeRVConfig(c0=settings["c0"], **common)
    else:
        cfg = GNeRVConfig(c0=c0_for_size(settings.get("size", DEFAULT_SIZE), **common), **common)
    try:
        check_encodable(cfg, n_frames)
    except GnervError as e:
        raise GnervError(
            f"{e}; a .gnerv file could not hold this model or a decoder would refuse "
            "it: change its size"
        ) from None
    return cfg


def train_config(settings: dict[str, Any], args: argparse.Namespace, residual: bool):
    """TrainConfig: the dataclass's defaults, then the recipe's for the stage's kind (frames or
    a residual), then the settings, then the --eager/--compile switches."""
    recipe = settings.get("recipe", DEFAULT_RECIPE)
    kw: dict[str, Any] = stage_defaults(2 if residual else 1, recipe)
    kw.update({name: settings[name] for name in TRAIN_FIELDS if name in settings})
    kw["recipe"] = recipe
    kw.update(channels_last=not args.eager)
    kw["compile"] = args.compile and not args.eager
    cfg = TrainConfig(**kw)
    cfg.validate()
    return cfg


def read_frames_from_args(args: argparse.Namespace, video: str, progress: bool = True):
    from gnerv.media.video import parse_range, read_video
    from gnerv.runtime.sizes import parse_hw

    return read_video(
        video,
        frame_range=parse_range(args.frames) if args.frames else None,
        stride=args.stride,
        resize=parse_hw(args.resize) if args.resize else None,
        progress=progress,
    )


def segment_reader(args: argparse.Namespace, video: str, progress: bool = True):
    """(frame count, read_part) for the frames --frames/--stride/--resize pick from `video`:
    read_part(start, length) reads those frames of the pick alone (one segment in memory)."""
    from gnerv.media.video import parse_range, probe_video, read_video
    from gnerv.runtime.sizes import parse_hw

    first, end = parse_range(args.frames) if args.frames else (0, -1)
    if end == -1:
        end = probe_video(video, exact=True)["n_frames"]
    n = len(range(first, end, args.stride))
    if n < 1:
        raise GnervError(f"{video}: no frames in {first}:{end}; check --frames")
    resize = parse_hw(args.resize) if args.resize else None

    def read_part(start: int, length: int):
        a = first + start * args.stride
        b = a + (length - 1) * args.stride + 1
        return read_video(video, (a, b), args.stride, resize, progress=progress)

    return n, read_part


def resume_mode(args: argparse.Namespace) -> bool | str:
    return "auto" if args.auto_resume else args.resume


def print_figures(fig: dict) -> None:
    """The lines compress and encode print: PSNRs (when measured), size and bpp."""
    if "psnr_quantized" in fig:
        print(
            f"PSNR {fig['psnr_float']:.2f} dB before quantization, "
            f"{fig['psnr_quantized']:.2f} dB after ({fig['bits']} bits, as decoded)"
        )
    print(
        f"{fig['file']}: {fig['bytes']} bytes, {fig['bpp']:.4f} bpp "
        f"({fig['params']} params at {fig['bits']} bits)"
    )
