"""What decoding a file may cost, bounded before anything is allocated (docs/bitstream.md,
"Decode limits").

A ``.gnerv`` file is untrusted: its header declares a model, a frame count and a frame size, and
from those alone (no tensor is built) this module computes the parameters, MACs, peak memory and
output bytes a decode would take, and refuses one beyond :class:`DecodeLimits` with a one-line
message naming the flag that raises the limit. The encoder checks its own models against the
same defaults before training (:func:`check_encodable`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from gnerv.codec.config import GNeRVConfig, count_params, macs_per_frame
from gnerv.runtime.errors import GnervError
from gnerv.runtime.sizes import format_bytes


class CodedLayer(Protocol):
    """What the limits read of a layer read from a file (gnerv.codec.bitstream.GnervFile)."""

    model_config: GNeRVConfig
    n_frames: int
    sizes: dict[str, int]
    limits: DecodeLimits
    name: str | None


MAX_PARAMS = 1 << 28


MAX_SIDE = 16384


MAX_VIDEO_SAMPLES = 1 << 34  # frames x H x W


def check_model_size(cfg: GNeRVConfig, n_frames: int) -> None:
    """Refuse configs too large to build or decode (raises GnervError)."""
    if cfg.height > MAX_SIDE or cfg.width > MAX_SIDE:
        raise GnervError(f"frame size {cfg.height}x{cfg.width} exceeds {MAX_SIDE} per side")
    if n_frames * cfg.height * cfg.width > MAX_VIDEO_SAMPLES:
        raise GnervError(
            f"{n_frames} frames of {cfg.height}x{cfg.width} exceed {MAX_VIDEO_SAMPLES} pixels"
        )
    params = count_params(cfg)
    if params > MAX_PARAMS:
        raise GnervError(f"model has {params} parameters, more than the limit {MAX_PARAMS}")


# A decode's peak memory is estimated as DECODE_BASE_BYTES + DECODE_BYTES_PER_PARAM x parameters
# + ACTIVATION_FACTOR x batch x 4 bytes x the largest feature map of one frame + 4 bytes x the
# head's tap planes (render 3), set above the peaks of `gnerv decode` measured by
# benchmarks/decode_memory.py (benchmarks/records/decode_memory.json, docs/bitstream.md "Decode
# limits").
DECODE_BASE_BYTES = 64 << 20  # whatever the file: the kernels' code and buffers, the writer
DECODE_BYTES_PER_PARAM = 16  # int32 symbols, float32 weights, their channels-last copy, slack
# A block's input, its normalised copy, a conv's output and its activation live at once.
ACTIVATION_FACTOR = 4


@dataclass(frozen=True)
class DecodeLimits:
    """What decoding one layer may cost (docs/bitstream.md, "Decode limits"). Every file the
    encoder honestly writes passes the defaults with room: a 12M-parameter 1080p model of 600
    frames needs 1.1e11 MACs per frame, 9.0 GB at batch 8 and 6e6 MACs per byte of file
    (docs/bitstream.md, "Decode limits")."""

    max_params: float = 6.4e7  # parameters of the model (--max-params)
    max_macs_per_frame: float = 1e12  # MACs to render one frame (--max-macs)
    max_memory: int = 32 << 30  # estimated peak bytes at the decode batch (--max-memory)
    max_output_bytes: int = 32 << 30  # n_frames x H x W x 3 (--max-output)
    # Declared work per byte of the file: an honest file has about a byte per parameter, tens of
    # bytes per frame and few pixels per byte; a small file declaring a huge decode is a bomb.
    max_params_per_byte: float = 64.0  # (--max-params-per-byte)
    max_frames_per_byte: float = 1.0  # (--max-frames-per-byte)
    max_pixels_per_byte: float = 4096.0  # H x W of one frame (--max-pixels-per-byte)
    max_macs_per_byte: float = 2e9  # MACs of decoding every frame (--max-macs-per-byte)


DEFAULT_LIMITS = DecodeLimits()


# The `gnerv decode` flag that raises each limit; SIZE_LIMITS take sizes like 4G, the rest numbers.
LIMIT_FLAGS = {
    "max_params": "--max-params",
    "max_macs_per_frame": "--max-macs",
    "max_memory": "--max-memory",
    "max_output_bytes": "--max-output",
    "max_params_per_byte": "--max-params-per-byte",
    "max_frames_per_byte": "--max-frames-per-byte",
    "max_pixels_per_byte": "--max-pixels-per-byte",
    "max_macs_per_byte": "--max-macs-per-byte",
}


SIZE_LIMITS = {"max_memory", "max_output_bytes"}


def _count_text(x: float) -> str:
    """A count for a message, rounded up to two digits: 1.2e+11, 64, 0.5."""
    if x <= 0:
        return "0"
    e = math.floor(math.log10(x)) - 1
    return f"{math.ceil(x / 10**e) * 10**e:.2g}"


def largest_feature_map(cfg: GNeRVConfig) -> int:
    """Elements of the largest feature map of one frame: a block's input, a conv's output, or the
    head's RGB output."""
    h, w = cfg.embedding_hw
    chans = cfg.channels
    largest = 0
    for c_in, c_out, r in zip(chans[:-1], chans[1:], cfg.upscale_factors, strict=True):
        conv1 = cfg.middle(c_in) * r * r if cfg.grows(c_in, c_out) else c_out
        largest = max(largest, c_in * h * w, conv1 * h * w, c_out * r * r * h * w)
        h, w = h * r, w * r
    return max(largest, 3 * h * w)


def tap_frames(frames: int, chans: int, rows: int) -> int:
    """How many frames' tap planes gnerv.codec.kernels.tapped_conv holds at once (`rows` planes
    of a frame's size each): as many as take no more memory than those frames' input of `chans`
    channels, at least one (head_tap_planes counts them in a decode's memory)."""
    return min(frames, max(1, frames * chans // rows))


def head_tap_planes(cfg: GNeRVConfig, batch: int) -> int:
    """Elements of the tap planes that render 3's head holds at once at ``batch``
    (gnerv.codec.kernels.tapped_conv): a frame's k*k*3 planes, for as many frames as fit in the
    memory of the head's input, at least one. Beside the block activations the kept heap still
    holds, so counted on top of them; with a kernel of 5 or more they outgrow a frame's largest
    feature map."""
    rows = cfg.head_kernel**2 * 3
    return tap_frames(batch, cfg.channels[-1], rows) * rows * cfg.height * cfg.width


def decode_cost(cfg: GNeRVConfig, n_frames: int, batch: int) -> dict[str, int]:
    """What decoding every frame at ``batch`` frames per pass costs (computed from the config
    only): parameters, MACs, estimated peak memory (weights and activations), output bytes."""
    per_frame = macs_per_frame(cfg)
    params = count_params(cfg)
    batch = max(1, min(batch, n_frames))
    return {
        "params": params,
        "macs_per_frame": per_frame,
        "total_macs": per_frame * n_frames,
        "batch": batch,
        "peak_memory": DECODE_BASE_BYTES
        + DECODE_BYTES_PER_PARAM * params
        + ACTIVATION_FACTOR * 4 * batch * largest_feature_map(cfg)
        + 4 * head_tap_planes(cfg, batch),
        "output_bytes": 3 * n_frames * cfg.height * cfg.width,
    }


def check_decode_cost(f: CodedLayer, batch: int, limits: DecodeLimits | None = None) -> None:
    """Refuse a file whose decode at ``batch`` would exceed ``limits`` (default: the limits it was
    read with): one-line GnervError naming the limit, the file's figure, the limit and its flag."""
    check_cost(
        f.model_config, f.n_frames, batch, f.sizes["total"], f.limits if limits is None else limits,
        f.name,
    )  # fmt: skip


def check_encodable(cfg: GNeRVConfig, n_frames: int) -> None:
    """Refuse, before any training, a model whose file the format could not hold or the decoder
    would refuse with its default limits (the file's size estimated at a byte per parameter,
    the paper's 8 bits)."""
    check_model_size(cfg, n_frames)
    check_cost(cfg, n_frames, 1, count_params(cfg), DEFAULT_LIMITS, "the file to write")


def check_cost(
    cfg: GNeRVConfig, n_frames: int, batch: int, size: int, limits: DecodeLimits, name: str | None
) -> None:
    cost = decode_cost(cfg, n_frames, batch)
    pixels = cfg.height * cfg.width
    # (what, the file's figure, the DecodeLimits field that bounds it). The figures per byte
    # first: an honest file is far within them, so a file beyond one declares more than its
    # bytes can hold, and the message says so rather than naming the size it also exceeds.
    checks = [
        ("parameters per byte of file", cost["params"] / size, "max_params_per_byte"),
        ("frames per byte of file", n_frames / size, "max_frames_per_byte"),
        ("frame pixels (H x W) per byte of file", pixels / size, "max_pixels_per_byte"),
        ("decode MACs (all frames) per byte", cost["total_macs"] / size, "max_macs_per_byte"),
        ("parameters", cost["params"], "max_params"),
        ("MACs per frame", cost["macs_per_frame"], "max_macs_per_frame"),
        ("output (frames x H x W x 3)", cost["output_bytes"], "max_output_bytes"),
        (f"estimated peak memory at batch {cost['batch']}", cost["peak_memory"], "max_memory"),
    ]
    for what, value, field_name in checks:
        limit = getattr(limits, field_name)
        if value > limit:
            text = format_bytes if field_name in SIZE_LIMITS else _count_text
            flag = LIMIT_FLAGS[field_name]
            hint = " (or lower --batch)" if field_name == "max_memory" and cost["batch"] > 1 else ""
            raise GnervError(
                f"{name + ': ' if name else ''}{what} {text(value)} exceeds the decode limit "
                f"{text(limit)}: "
                f"if you trust this file, raise it with {flag} {text(value)}{hint}"
            )
