"""The GNeRV network (paper section 3.1): frame index t in, RGB frame t out.

    t --PE--> shared linear --GELU--> per-block linear --> (mean, std) for each block's input
    global embedding (C0 x h x w) --[DS -> Conv-Up block] x len(upscale_factors)--> head --> RGB

Two layouts of the blocks, the head and the shared DS part (``GNeRVConfig.layout``): "wide", this
package's first reading, and "paper", the reading that reproduces the paper's parameter counts
(Tables 3 and 4; docs/model.md, "The paper's layout").

Time enters through the DS branch (the paper's model), or, for the ablation of section 4.3
(Table 4), through the "M" branch, which modulates the embedding itself, or through both
(``GNeRVConfig.time_branch``); ``GNeRV.forward(t, mask=...)`` masks one branch of a two-branch
model.

Pure torch.nn: no file or device handling here, so the decoder can rebuild a model from a bitstream
without importing anything from training.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from gnerv.errors import GnervError
from gnerv.params import parse_param_count  # noqa: F401 (re-exported: a size in parameters)
from gnerv.threads import one_thread

# --------------------------------------------------------------------------------------------
# Geometry: embedding shape and upscale factors from the frame size (paper 3.1 and 4.1)
# --------------------------------------------------------------------------------------------

# Paper 4.1 fixes these two; every other size derives its factors from gcd's factorisation.
PAPER_UPSCALE_FACTORS = {(720, 1280): (5, 2, 2, 2, 2), (1080, 1920): (5, 3, 2, 2, 2)}


def prime_factors(n: int) -> list[int]:
    """Prime factors of n, largest first (80 -> [5, 2, 2, 2, 2])."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return sorted(out, reverse=True)


def is_sane_geometry(
    height: int, width: int, max_embedding_side: int, max_upscale_factor: int
) -> bool:
    """True when the gcd rule gives a small embedding and small upscale factors."""
    g = math.gcd(height, width)
    return (
        max(height, width) // g <= max_embedding_side
        and max(prime_factors(g), default=1) <= max_upscale_factor
    )


def suggest_size(
    height: int, width: int, max_embedding_side: int, max_upscale_factor: int
) -> tuple[int, int] | None:
    """The largest crop (H', W') <= (H, W) that the gcd rule accepts, or None."""
    best, best_area = None, 0
    for h in range(height, 0, -1):
        if h * width <= best_area:
            break
        for w in range(width, 0, -1):
            if h * w <= best_area:
                break
            if is_sane_geometry(h, w, max_embedding_side, max_upscale_factor):
                best, best_area = (h, w), h * w
                break
    return best


def embedding_geometry(
    height: int,
    width: int,
    upscale_factors: tuple[int, ...] | None = None,
    max_embedding_side: int = 32,
    max_upscale_factor: int = 7,
) -> tuple[tuple[int, int], tuple[int, ...]]:
    """Return ((h, w), upscale_factors) for a frame size, or raise GnervError saying what to do.

    (h, w) = (H, W) / gcd(H, W); the factors multiply to the overall upscale H / h.
    """
    if height < 1 or width < 1:
        raise GnervError(f"frame size {height}x{width} is empty: give a positive HxW")
    if upscale_factors is not None:
        factors = tuple(int(f) for f in upscale_factors)
        if not factors or any(f < 1 for f in factors):
            raise GnervError(f"upscale factors {list(factors)} must be a non-empty list of >= 1")
        total = math.prod(factors)
        if height % total or width % total:
            raise GnervError(
                f"frame size {height}x{width} does not divide by the upscale factors "
                f"{list(factors)} (product {total}): resize or crop to a multiple of {total}, "
                "or let the factors be derived (upscale_factors: auto)"
            )
        return (height // total, width // total), factors
    if not is_sane_geometry(height, width, max_embedding_side, max_upscale_factor):
        g = math.gcd(height, width)
        hint = suggest_size(height, width, max_embedding_side, max_upscale_factor)
        fix = f"crop or resize to {hint[0]}x{hint[1]} (HxW)" if hint else "resize the video"
        raise GnervError(
            f"frame size {height}x{width} (HxW) gives gcd {g}, an embedding of "
            f"{height // g}x{width // g} and upscale factors {prime_factors(g)}: too large for "
            f"GNeRV (embedding side <= {max_embedding_side}, factors <= {max_upscale_factor}); "
            f"{fix}"
        )
    factors = PAPER_UPSCALE_FACTORS.get((height, width)) or tuple(
        prime_factors(math.gcd(height, width))
    )
    total = math.prod(factors)
    return (height // total, width // total), factors


# --------------------------------------------------------------------------------------------
# Configuration: everything needed to rebuild the network (it goes into the bitstream)
# --------------------------------------------------------------------------------------------

# "wide": a growing block is C_in wide in the middle, 3x3 head, one shared DS linear.
# "paper": E-NeRV's Conv-Up block, which the paper builds on (a growing block, or one whose channels
# stay equal, is C_in // 4 wide in the middle), 1x1 head, shared DS MLP PE -> 40 -> 40.
LAYOUTS = ("wide", "paper")
# How t enters (paper 4.3, Table 4): "ds" the distribution shift at each block's input (the
# paper's model), "m" a tensor added to the embedding (the ablation's "M"), "ds+m" both.
TIME_BRANCHES = ("ds", "m", "ds+m")
MASKS = ("ds", "m")  # the branch an evaluation may mask (Table 4: "mask M", "mask DS")
MIN_PAPER_CHANNELS = 4  # so that C_in // 4 >= 1
# Plausible ranges of the config's fields: checked when a config is made, so the encoder refuses
# before training what the decoder would refuse in a file (gnerv.bitstream validates with them).
MAX_KERNEL_SIZE = 7  # odd, 1..7 (paper: 3)
MAX_UPSCALE_FACTOR = 7  # each upscale factor 1..7, as embedding_geometry derives them
MAX_MIN_CHANNELS = 1024  # paper: 30
MAX_DS_HIDDEN = 1024  # paper: 40
MAX_PE_BASE = 4.0  # pe_base in (1, 4] (paper: 1.25)
# The highest PE frequency, pe_base ** (pe_levels - 1) (paper: 1.25 ** 19 = 69): above it the
# float32 angles lose their precision and the encoding turns to noise (and CPU and GPU differ).
MAX_PE_FREQUENCY = 1e4


@dataclass(frozen=True)
class GNeRVConfig:
    height: int  # frame height H
    width: int  # frame width W
    c0: int  # embedding channels; sets every block's width and so the model size
    upscale_factors: tuple[int, ...] = field(default=())  # () -> derived from gcd(H, W)
    min_channels: int = 30  # channel floor when blocks halve (paper 4.1)
    pe_base: float = 1.25  # positional-encoding base b (paper 4.1)
    pe_levels: int = 20  # positional-encoding levels l: 2l values (paper 4.1)
    ds_hidden: int = 40  # width of the shared DS linear (paper 4.1: 40 -> 40)
    kernel_size: int = 3  # conv kernel in Conv-Up blocks and head
    residual: bool = False  # residual stage: signed output, no sigmoid on the head
    layout: str = "wide"  # one of LAYOUTS: block middles, head kernel, shared DS depth
    time_branch: str = "ds"  # one of TIME_BRANCHES: DS (paper), M (Table 4's ablation), or both

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise GnervError(f"layout {self.layout!r} is not one of: {', '.join(LAYOUTS)}")
        if self.time_branch not in TIME_BRANCHES:
            raise GnervError(
                f"time_branch {self.time_branch!r} is not one of: {', '.join(TIME_BRANCHES)}"
            )
        (h, w), factors = embedding_geometry(self.height, self.width, self.upscale_factors or None)
        object.__setattr__(self, "upscale_factors", tuple(factors))
        if self.c0 < 1:
            raise GnervError(f"c0 = {self.c0}: the embedding needs at least one channel")
        if self.min_channels < 1:
            raise GnervError(f"min_channels = {self.min_channels} must be >= 1")
        if self.pe_levels < 1 or self.ds_hidden < 1 or self.pe_base <= 0:
            raise GnervError("pe_levels, ds_hidden and pe_base must be positive")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise GnervError(f"kernel_size = {self.kernel_size} must be odd and >= 1")
        self._check_ranges()
        if self.layout == "paper" and min(self.c0, self.min_channels) < MIN_PAPER_CHANNELS:
            raise GnervError(
                f"c0 = {self.c0}, min_channels = {self.min_channels}: the paper layout needs "
                f"both >= {MIN_PAPER_CHANNELS} (a growing block is C_in // 4 channels wide inside)"
            )

    def _check_ranges(self) -> None:
        """The plausible ranges above (GnervError naming the field and its range)."""
        if self.kernel_size > MAX_KERNEL_SIZE:
            raise GnervError(f"kernel_size = {self.kernel_size} must be at most {MAX_KERNEL_SIZE}")
        if max(self.upscale_factors) > MAX_UPSCALE_FACTOR:
            raise GnervError(
                f"upscale factors {list(self.upscale_factors)}: each must be at most "
                f"{MAX_UPSCALE_FACTOR}"
            )
        if self.min_channels > MAX_MIN_CHANNELS:
            raise GnervError(
                f"min_channels = {self.min_channels} must be at most {MAX_MIN_CHANNELS}"
            )
        if self.ds_hidden > MAX_DS_HIDDEN:
            raise GnervError(f"ds_hidden = {self.ds_hidden} must be at most {MAX_DS_HIDDEN}")
        if not 1 < self.pe_base <= MAX_PE_BASE:
            raise GnervError(f"pe_base = {self.pe_base:g} must be in (1, {MAX_PE_BASE:g}]")
        if (self.pe_levels - 1) * math.log(self.pe_base) > math.log(MAX_PE_FREQUENCY):
            raise GnervError(
                f"pe_base ** (pe_levels - 1) = {self.pe_base:g} ** {self.pe_levels - 1} exceeds "
                f"{MAX_PE_FREQUENCY:g}: fewer pe_levels or a smaller pe_base"
            )

    @property
    def embedding_hw(self) -> tuple[int, int]:
        total = math.prod(self.upscale_factors)
        return self.height // total, self.width // total

    @property
    def channels(self) -> list[int]:
        """Channel count before each block and after the last: [C0, 2C0, max(C0, m), ...]."""
        chans = [self.c0, 2 * self.c0]
        for _ in self.upscale_factors[1:]:
            chans.append(max(chans[-1] // 2, self.min_channels))
        return chans

    def grows(self, c_in: int, c_out: int) -> bool:
        """Whether a block takes the growing form Conv-PixelShuffle-Conv (paper 3.1). The paper
        layout, like E-NeRV's Conv-Up block, also takes it when the channels stay equal."""
        return c_out >= c_in if self.layout == "paper" else c_out > c_in

    def middle(self, c_in: int) -> int:
        """Channels between the two convs of a growing block (after the pixel shuffle)."""
        return c_in // 4 if self.layout == "paper" else c_in

    @property
    def head_kernel(self) -> int:
        """Kernel of the head conv to RGB: 1x1 in the paper layout, kernel_size in wide."""
        return 1 if self.layout == "paper" else self.kernel_size

    @property
    def has_ds(self) -> bool:
        return "ds" in self.time_branch.split("+")

    @property
    def has_m(self) -> bool:
        return "m" in self.time_branch.split("+")

    @property
    def m_hidden(self) -> int:
        """Channels between the M branch's two convs: chosen so that the M branch has as many
        parameters as the DS branch (paper 4.3: "We control the parameter number of DS-branch
        and that of M-branch the same")."""
        fixed, per_channel = m_branch_params(self, 0), m_branch_params(self, 1)
        per_channel -= fixed
        return max(1, round((ds_branch_params(self) - fixed) / per_channel))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["upscale_factors"] = list(self.upscale_factors)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GNeRVConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise GnervError(f"unknown model config keys {sorted(unknown)}")
        d = dict(d)
        d["upscale_factors"] = tuple(d.get("upscale_factors", ()))
        return cls(**d)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def positional_encoding(t: torch.Tensor, base: float, levels: int) -> torch.Tensor:
    """Eq. 3: (sin(b^0 pi t), cos(b^0 pi t), ..., sin(b^(l-1) pi t), cos(b^(l-1) pi t))."""
    freqs = base ** torch.arange(levels, dtype=torch.float32, device=t.device) * math.pi
    angles = t.float()[:, None] * freqs[None, :]  # (B, l)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (B, 2l) interleaved


def distribution_shift(
    f: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-5, inplace: bool = False
) -> torch.Tensor:
    """Eq. 1: normalise f over its spatial dims, then give it the channel-wise mean and std.

    inplace (inference only): the same four element-wise steps in one buffer, the same bits."""
    mu = f.mean(dim=(2, 3), keepdim=True)
    sigma = (f.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    if inplace:
        return (f - mu).mul_(std[:, :, None, None]).div_(sigma).add_(mean[:, :, None, None])
    return std[:, :, None, None] * (f - mu) / sigma + mean[:, :, None, None]


# GNERV_RENDER=reference in the environment renders inference as training does (torch's own
# PixelShuffle, a new tensor for every step): the decoder before issue #18, kept for
# benchmarks/bench_decode.py's side-by-side comparison. The result is the same bits either way.
RENDER_ENV = "GNERV_RENDER"


def lean_inference() -> bool:
    """True when a forward may reuse its buffers: no autograd, and the reference not asked for."""
    return not torch.is_grad_enabled() and os.environ.get(RENDER_ENV) != "reference"


def _kept(
    conv: nn.Conv2d, name: str, factor: int | None, make: Callable
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """make(conv, factor) -> (weight, bias), kept on the module under `name` until the weight
    changes (inference only: renders reuse it batch after batch)."""
    key = (conv.weight.data_ptr(), conv.weight._version, factor)
    cached = conv.__dict__.get(name)
    if cached is None or cached[0] != key:
        cached = (key, *make(conv, factor))
        conv.__dict__[name] = cached
    return cached[1], cached[2]


def _reorder(conv: nn.Conv2d, factor: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    order = torch.arange(conv.out_channels, device=conv.weight.device)
    order = order.view(-1, factor * factor).t().reshape(-1)
    return conv.weight[order], None if conv.bias is None else conv.bias[order]


def _blocked_weights(conv: nn.Conv2d, factor: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """conv's weight and bias with output channels (c, i, j) listed as (i, j, c); kept."""
    return _kept(conv, "_blocked", factor, _reorder)


def conv_shuffle_nhwc(conv: nn.Conv2d, x: torch.Tensor, factor: int) -> torch.Tensor:
    """PixelShuffle(factor)(conv(x)) for an NHWC (channels_last) x, without torch's NHWC pixel
    shuffle, which gathers single floats at a stride of factor^2 (a third of a decode's time).

    The conv computes its output channels in the order (i, j, c) instead of (c, i, j): the same
    dot products, listed in another order. In NHWC memory each pixel's factor * C values of one
    output row i then lie side by side, and the shuffle is a copy of such blocks. Pure data
    movement on both sides: the same bits as the plain path (tests/test_model.py)."""
    weight, bias = _blocked_weights(conv, factor)
    return shuffle_blocked(conv._conv_forward(x, weight, bias), factor)


def shuffle_blocked(y: torch.Tensor, factor: int) -> torch.Tensor:
    """PixelShuffle of an NHWC y whose channels are listed (i, j, c): a copy of r * C blocks."""
    n, _, h, w = y.shape
    y = y.permute(0, 2, 3, 1).reshape(n, h, w, factor, -1)  # a view: (n, h, w, i, [j c])
    y = y.transpose(2, 3).contiguous()  # (n, h, i, w, [j c]): the copy
    return y.view(n, h * factor, w * factor, -1).permute(0, 3, 1, 2)  # NCHW view, NHWC memory


# --------------------------------------------------------------------------------------------
# The bf16 render (opt-in and lossy: `--precision bf16` on CPUs with AVX-512 BF16 or AMX). Free
# of the exact path's constraint, it fuses what oneDNN can: each conv with its GELU (or the
# head's sigmoid) as one kernel on bf16 weights made once, the shift as one statistics pass and
# one multiply-add. The time path stays fp32.
# --------------------------------------------------------------------------------------------


def _to_bf16(conv: nn.Conv2d, factor: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    w, b = _blocked_weights(conv, factor) if factor else (conv.weight, conv.bias)
    w = w.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    return w, None if b is None else b.to(torch.bfloat16)


def _bf16_weights(conv: nn.Conv2d, factor: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """conv's weight (NHWC) and bias in bfloat16, channels (i, j, c) with a factor; kept."""
    return _kept(conv, "_bf16", factor, _to_bf16)


def conv_bf16(
    conv: nn.Conv2d, x: torch.Tensor, post: str, factor: int | None = None
) -> torch.Tensor:
    """post(conv(x)) in one oneDNN kernel (post: "gelu", "sigmoid" or "none"), bf16 NHWC; then
    PixelShuffle(factor) when given (GELU commutes with it: both are per element)."""
    w, b = _bf16_weights(conv, factor)
    y = torch.ops.mkldnn._convolution_pointwise(
        x, w, b, conv.padding, conv.stride, conv.dilation, conv.groups,
        post, [], "none" if post == "gelu" else "",
    )  # fmt: skip
    return shuffle_blocked(y, factor) if factor else y


def distribution_shift_bf16(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Eq. 1 as x * a + b on an NHWC bf16 x: the spatial sums of x and x^2 in fp32 (one pass
    each, far faster than torch's bf16 var_mean over NHWC), per-channel a and b, one addcmul."""
    n, c, h, w = x.shape
    flat = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # NHWC memory: a view
    mu = flat.sum(1, dtype=torch.float32) / (h * w)
    var = ((flat * flat).sum(1, dtype=torch.float32) / (h * w) - mu * mu).clamp_min(0)
    a = std / (var + eps).sqrt()
    b = mean - mu * a
    return torch.addcmul(b[:, :, None, None].to(x.dtype), x, a[:, :, None, None].to(x.dtype))


class ConvUpBlock(nn.Module):
    """Conv-Up block: Conv-PixelShuffle-Conv when channels grow, Conv-Conv-PixelShuffle when they
    shrink (GNeRVConfig.grows says which); a growing block is `middle` channels wide inside."""

    def __init__(
        self, c_in: int, c_out: int, factor: int, kernel_size: int, grows: bool, middle: int
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.grows = grows
        if self.grows:  # Conv(C_in -> M r^2) - Shuffle -> M - Conv(M -> C_out)
            self.conv1 = nn.Conv2d(c_in, middle * factor**2, kernel_size, padding=pad)
            self.conv2 = nn.Conv2d(middle, c_out, kernel_size, padding=pad)
        else:  # Conv(C_in -> C_out) - Conv(C_out -> C_out r^2) - Shuffle
            self.conv1 = nn.Conv2d(c_in, c_out, kernel_size, padding=pad)
            self.conv2 = nn.Conv2d(c_out, c_out * factor**2, kernel_size, padding=pad)
        self.shuffle = nn.PixelShuffle(factor)
        self.act = nn.GELU()

    def up(self, conv: nn.Conv2d, x: torch.Tensor, lean: bool) -> torch.Tensor:
        """shuffle(conv(x)); in lean inference on NHWC CPU tensors by conv_shuffle_nhwc."""
        if (
            not lean
            or x.device.type != "cpu"
            or not x.is_contiguous(memory_format=torch.channels_last)
            or not conv.weight.is_contiguous(memory_format=torch.channels_last)
        ):
            return self.shuffle(conv(x))
        return conv_shuffle_nhwc(conv, x, self.shuffle.upscale_factor)

    def forward_bf16(self, x: torch.Tensor) -> torch.Tensor:
        """The block in bf16, each conv fused with its GELU (see conv_bf16)."""
        r = self.shuffle.upscale_factor
        if self.grows:
            return conv_bf16(self.conv2, conv_bf16(self.conv1, x, "gelu", r), "gelu")
        return conv_bf16(self.conv2, conv_bf16(self.conv1, x, "gelu"), "gelu", r)

    def forward(self, x: torch.Tensor, lean: bool = False) -> torch.Tensor:
        """lean (inference only, see lean_inference): GELU in place, the blocked shuffle."""
        act = torch.ops.aten.gelu_ if lean else self.act  # the same kernel, in place
        if self.grows:
            x = act(self.up(self.conv1, x, lean))
            return act(self.conv2(x))
        x = act(self.conv1(x))
        return act(self.up(self.conv2, x, lean))


class TimeModulation(nn.Module):
    """The M branch (paper 4.3): the time vector (its PE) mapped to h * w values and reshaped to
    (1, h, w), then two convolutions to C0 channels: a tensor added to the embedding."""

    def __init__(self, cfg: GNeRVConfig) -> None:
        super().__init__()
        h, w = cfg.embedding_hw
        pad = cfg.kernel_size // 2
        self.hw = (h, w)
        self.to_map = nn.Linear(2 * cfg.pe_levels, h * w)
        self.conv1 = nn.Conv2d(1, cfg.m_hidden, cfg.kernel_size, padding=pad)
        self.conv2 = nn.Conv2d(cfg.m_hidden, cfg.c0, cfg.kernel_size, padding=pad)
        self.act = nn.GELU()

    def forward(self, pe: torch.Tensor) -> torch.Tensor:
        """pe: (B, 2l) -> (B, C0, h, w)."""
        x = self.to_map(pe).view(pe.shape[0], 1, *self.hw)
        return self.conv2(self.act(self.conv1(x)))


def check_mask(cfg: GNeRVConfig, mask: str | None) -> None:
    """Refuse a mask the model cannot take: only a two-branch model (ds+m) masks one branch."""
    if mask is None:
        return
    if mask not in MASKS:
        raise GnervError(f"mask {mask!r} is not one of: {', '.join(MASKS)}")
    if cfg.time_branch != "ds+m":
        only = "only the DS branch" if cfg.has_ds else "only the M branch"
        raise GnervError(
            f"cannot mask {mask.upper()}: this model (time_branch {cfg.time_branch}) has {only}; "
            "masking a branch needs a model with both (time_branch ds+m)"
        )


class GNeRV(nn.Module):
    def __init__(self, cfg: GNeRVConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, w = cfg.embedding_hw
        chans = cfg.channels
        pe_dim = 2 * cfg.pe_levels
        # One global embedding shared by all frames (paper: randomly initialised, learned).
        self.embedding = nn.Parameter(torch.randn(1, cfg.c0, h, w))
        # DS branch: h (shared by all blocks) then h_j (one per block) -> mean and std of C_in.
        if cfg.has_ds:
            self.ds_shared: nn.Module
            if cfg.layout == "paper":  # h is a two-layer MLP, PE -> 40 -> 40
                self.ds_shared = nn.Sequential(
                    nn.Linear(pe_dim, cfg.ds_hidden),
                    nn.GELU(),
                    nn.Linear(cfg.ds_hidden, cfg.ds_hidden),
                )
            else:
                self.ds_shared = nn.Linear(pe_dim, cfg.ds_hidden)
            self.ds_heads = nn.ModuleList(nn.Linear(cfg.ds_hidden, 2 * c) for c in chans[:-1])
        if cfg.has_m:  # M branch (ablation, paper 4.3): modulates the embedding
            self.m_branch = TimeModulation(cfg)
        self.blocks = nn.ModuleList(
            ConvUpBlock(c_in, c_out, r, cfg.kernel_size, cfg.grows(c_in, c_out), cfg.middle(c_in))
            for c_in, c_out, r in zip(chans[:-1], chans[1:], cfg.upscale_factors, strict=True)
        )
        self.head = nn.Conv2d(chans[-1], 3, cfg.head_kernel, padding=cfg.head_kernel // 2)
        if cfg.residual:
            # A residual stage starts by adding nothing, so training can only improve on the
            # layers below it (a random head would first add noise to the reconstruction).
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.act = nn.GELU()

    def forward(self, t: torch.Tensor, mask: str | None = None) -> torch.Tensor:
        """t: (B,) frame times in [0, 1] -> (B, 3, H, W); in [0, 1] unless cfg.residual.

        mask "m" leaves the embedding unmodulated, mask "ds" leaves every block's input as it is
        (no normalisation, no shift): Table 4's "mask M" and "mask DS" (ds+m models only)."""
        cfg = self.cfg
        check_mask(cfg, mask)
        x, stats = self.time_path(t, mask)
        lean = lean_inference()
        for j, block in enumerate(self.blocks):
            if stats is not None:
                mean, std = stats[j]
                # std is learned as an offset from 1: a fresh model starts near plain normalisation.
                x = distribution_shift(x, mean, 1.0 + std, inplace=lean)
            x = block(x, lean)
        out = self.head(x)
        if cfg.residual:
            return out
        return out.sigmoid_() if lean else torch.sigmoid(out)

    def time_path(
        self, t: torch.Tensor, mask: str | None = None
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """The first block's input (the embedding, shifted by the M branch) and each block's
        (mean, std offset) from the DS branch, for frame times t (mask: see forward)."""
        cfg = self.cfg
        use_m = cfg.has_m and mask != "m"
        use_ds = cfg.has_ds and mask != "ds"
        # The time path: tiny matrix products whose sums a multi-threaded BLAS splits by thread
        # count (3+ threads changed them), run on one thread so that what a decoder shows does
        # not depend on its machine's thread count (tests/test_model.py).
        with one_thread():
            pe = positional_encoding(t, cfg.pe_base, cfg.pe_levels)
            shift = self.m_branch(pe) if use_m else None
            z = self.act(self.ds_shared(pe)) if use_ds else None
            stats = [head(z).chunk(2, dim=1) for head in self.ds_heads] if use_ds else None
        x = self.embedding.expand(t.shape[0], -1, -1, -1)
        if shift is not None:
            x = x + shift
        return x, stats

    def forward_bf16(self, t: torch.Tensor) -> torch.Tensor:
        """The lossy bf16 render on a CPU (oneDNN): as forward, in bfloat16 from the first block
        on, convs fused with their activations. Returns fp32 (B, 3, H, W)."""
        x, stats = self.time_path(t)
        x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        for j, block in enumerate(self.blocks):
            if stats is not None:
                mean, std = stats[j]
                x = distribution_shift_bf16(x, mean, 1.0 + std)
            x = block.forward_bf16(x)
        return conv_bf16(self.head, x, "none" if self.cfg.residual else "sigmoid").float()


def frame_times(indices: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Frame index -> t in [0, 1] (first frame 0, last frame 1)."""
    return indices.float() / max(n_frames - 1, 1)


# --------------------------------------------------------------------------------------------
# Sizing: parameters, MACs, and C0 for a target parameter count
# --------------------------------------------------------------------------------------------


def ds_branch_params(cfg: GNeRVConfig) -> int:
    """Parameters of the DS branch: the shared h and the per-block linears h_j."""
    pe_dim, d = 2 * cfg.pe_levels, cfg.ds_hidden
    n = pe_dim * d + d
    if cfg.layout == "paper":  # second layer of the shared DS MLP
        n += d * d + d
    return n + sum(d * 2 * c + 2 * c for c in cfg.channels[:-1])


def m_branch_params(cfg: GNeRVConfig, hidden: int) -> int:
    """Parameters of an M branch `hidden` channels wide: PE -> h*w linear, Conv(1 -> hidden),
    Conv(hidden -> C0)."""
    h, w = cfg.embedding_hw
    k2 = cfg.kernel_size**2
    return 2 * cfg.pe_levels * h * w + h * w + k2 * hidden + hidden + k2 * hidden * cfg.c0 + cfg.c0


def count_params(cfg: GNeRVConfig) -> int:
    """Parameter count of GNeRV(cfg), computed from shapes without building the model."""
    k2 = cfg.kernel_size**2
    h, w = cfg.embedding_hw
    chans = cfg.channels
    n = cfg.c0 * h * w
    if cfg.has_ds:
        n += ds_branch_params(cfg)
    if cfg.has_m:
        n += m_branch_params(cfg, cfg.m_hidden)
    for c_in, c_out, r in zip(chans[:-1], chans[1:], cfg.upscale_factors, strict=True):
        if cfg.grows(c_in, c_out):
            m = cfg.middle(c_in)
            n += k2 * c_in * m * r * r + m * r * r + k2 * m * c_out + c_out
        else:
            n += k2 * c_in * c_out + c_out + k2 * c_out * c_out * r * r + c_out * r * r
    n += cfg.head_kernel**2 * chans[-1] * 3 + 3
    return n


def macs_per_frame(cfg: GNeRVConfig) -> int:
    """Multiply-accumulates to render one frame (convs and linears; norms and GELU ignored)."""
    k2 = cfg.kernel_size**2
    h, w = cfg.embedding_hw
    chans = cfg.channels
    pe_dim = 2 * cfg.pe_levels
    d = cfg.ds_hidden
    macs = 0
    if cfg.has_ds:
        macs += pe_dim * d + (d * d if cfg.layout == "paper" else 0) + d * 2 * sum(chans[:-1])
    if cfg.has_m:
        m = cfg.m_hidden
        macs += pe_dim * h * w + k2 * m * h * w + k2 * m * cfg.c0 * h * w
    for c_in, c_out, r in zip(chans[:-1], chans[1:], cfg.upscale_factors, strict=True):
        if cfg.grows(c_in, c_out):
            m = cfg.middle(c_in)
            macs += k2 * c_in * m * r * r * h * w + k2 * m * c_out * h * w * r * r
        else:
            macs += k2 * c_in * c_out * h * w + k2 * c_out * c_out * r * r * h * w
        h, w = h * r, w * r
    macs += cfg.head_kernel**2 * chans[-1] * 3 * h * w
    return macs


def c0_for_size(target_params: int, **cfg_kwargs) -> int:
    """The C0 whose model is closest to `target_params` (params grow monotonically with C0)."""
    lo = MIN_PAPER_CHANNELS if cfg_kwargs.get("layout") == "paper" else 1
    smallest_cfg = GNeRVConfig(c0=lo, **cfg_kwargs)
    smallest = count_params(smallest_cfg)
    if target_params < smallest:
        raise GnervError(
            f"model size {target_params / 1e6:.4g}M is below the smallest GNeRV for this frame "
            f"size with min_channels={smallest_cfg.min_channels} ({smallest / 1e6:.4g}M at "
            f"c0={lo}): lower "
            "min_channels or ask for a larger size"
        )
    hi = 2 * lo
    while count_params(GNeRVConfig(c0=hi, **cfg_kwargs)) < target_params:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_params(GNeRVConfig(c0=mid, **cfg_kwargs)) < target_params:
            lo = mid
        else:
            hi = mid
    p_lo = count_params(GNeRVConfig(c0=lo, **cfg_kwargs))
    p_hi = count_params(GNeRVConfig(c0=hi, **cfg_kwargs))
    return lo if abs(p_lo - target_params) <= abs(p_hi - target_params) else hi


def describe(cfg: GNeRVConfig) -> str:
    """One line for logs: size, embedding, factors, channels, params, MACs."""
    h, w = cfg.embedding_hw
    return (
        f"GNeRV {cfg.height}x{cfg.width}, {cfg.layout} layout, time branch {cfg.time_branch}: "
        f"embedding {cfg.c0}x{h}x{w}, "
        f"upscale {list(cfg.upscale_factors)}, channels {cfg.channels}, "
        f"{count_params(cfg) / 1e6:.3f}M params, {macs_per_frame(cfg) / 1e9:.3f} GMACs/frame"
    )


# --------------------------------------------------------------------------------------------
# Rendering: frame indices -> frames (used by training's final figure and by the decoder)
# --------------------------------------------------------------------------------------------


def for_inference(model: GNeRV, device: torch.device | str) -> GNeRV:
    """Move to `device`, eval mode, NHWC weights (oneDNN / cuDNN convs are faster on them)."""
    return model.to(device).eval().to(memory_format=torch.channels_last)


@torch.inference_mode()
def render(
    model: GNeRV,
    indices: torch.Tensor | list[int],
    n_frames: int,
    batch_size: int = 8,
    mask: str | None = None,
) -> torch.Tensor:
    """Render frames `indices` of an `n_frames` video: float (N, 3, H, W) on the model's device
    (mask: a time branch left out, see GNeRV.forward)."""
    device = model.embedding.device
    idx = torch.as_tensor(indices, dtype=torch.long)
    outs = [
        model(frame_times(idx[i : i + batch_size], n_frames).to(device), mask=mask)
        for i in range(0, len(idx), batch_size)
    ]
    return torch.cat(outs).float()


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """float (N, 3, H, W) in [0, 1] -> uint8 (N, H, W, 3), rounded and clipped."""
    u8 = frames.clamp(0, 1).mul_(255).round_().to(torch.uint8)  # one new float buffer, not three
    return u8.permute(0, 2, 3, 1).contiguous()
