"""GNeRV's configuration: the frame geometry, the network's shape and its size (paper 3.1, 4.1).

Everything needed to rebuild the network, and nothing that needs torch: the decoder reads a
config from a file's header and checks its size before building anything, and the command line
shows these defaults in ``--help`` without importing torch. The network itself is
:mod:`gnerv.codec.model`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from gnerv.runtime.errors import GnervError
from gnerv.runtime.sizes import parse_param_count

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
# before training what the decoder would refuse in a file (gnerv.codec.bitstream validates with
# them).
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


# The paper's (source, height, width, C0, parameters in M, GMACs per frame or None), as it
# prints them: Table 4 (Bunny, 720p) and Table 3's 160-channel stage-1 model (UVG, 1080p). The
# "paper" layout reproduces them (tests/test_model.py; benchmarks/paper_counts.py prints them).
PAPER_COUNTS = (
    ("Table 4", 720, 1280, 20, 0.115, None),
    ("Table 4", 720, 1280, 40, 0.274, None),
    ("Table 4", 720, 1280, 80, 0.92, None),
    ("Table 4", 720, 1280, 152, 3.17, None),
    ("Table 4", 720, 1280, 223, 6.67, None),
    ("Table 4", 720, 1280, 304, 12.42, None),
    ("Table 3", 1080, 1920, 160, 4.66, 54.80),
)
# Table 3's two larger "Respective" models: not among the seven pairs, a check on the reading.
PAPER_EXTRA_COUNTS = (
    ("Table 3", 1080, 1920, 230, 9.49, 91.14),
    ("Table 3", 1080, 1920, 280, 14.07, 133.07),
)


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


def c0_for_size(target_params: int | str, **cfg_kwargs) -> int:
    """The C0 whose model is closest to `target_params` (a count, or a size like 0.5M; params
    grow monotonically with C0)."""
    target_params = parse_param_count(target_params)
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


MIN_BITS = 2


MAX_BITS = 16


DEFAULT_BITS = 8  # the paper's 8-bit quantization


# Quantization schemes (the header's ``quantization.scheme``).
MINMAX_SCHEME = "uniform-minmax-per-channel"  # the paper's, and the default


SYMMETRIC_SCHEME = "uniform-symmetric-per-channel"  # zero-centred grid, log-coded steps


SCHEMES = (MINMAX_SCHEME, SYMMETRIC_SCHEME)


SCHEME_ALIASES = {"minmax": MINMAX_SCHEME, "symmetric": SYMMETRIC_SCHEME}  # --scheme names


DEFAULT_SCHEME = MINMAX_SCHEME


def check_scheme(scheme: str) -> None:
    """Refuse an unknown quantization scheme name."""
    if scheme not in SCHEMES:
        raise GnervError(f"quantization scheme {scheme!r} unknown: use one of {', '.join(SCHEMES)}")


DEFAULT_BATCH = 8


PRECISIONS = ("fp32", "bf16")


DEFAULT_PRECISION = "fp32"
