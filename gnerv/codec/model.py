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

The configuration (geometry, sizes, parameter counts) is :mod:`gnerv.codec.config`; the fast
inference paths, which compute this forward with fewer copies, are :mod:`gnerv.codec.kernels`.
Plain torch.nn here: no file or device handling, so the decoder can rebuild a model from a
bitstream without importing anything from training.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gnerv.codec import kernels
from gnerv.codec.config import GNeRVConfig, check_mask
from gnerv.runtime.threads import one_thread

# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def positional_encoding(t: torch.Tensor, base: float, levels: int) -> torch.Tensor:
    """Eq. 3: (sin(b^0 pi t), cos(b^0 pi t), ..., sin(b^(l-1) pi t), cos(b^(l-1) pi t))."""
    freqs = base ** torch.arange(levels, dtype=torch.float32, device=t.device) * math.pi
    angles = t.float()[:, None] * freqs[None, :]  # (B, l)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (B, 2l) interleaved


def distribution_shift(
    f: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Eq. 1: normalise f over its spatial dims, then give it the channel-wise mean and std."""
    mu = f.mean(dim=(2, 3), keepdim=True)
    sigma = (f.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return std[:, :, None, None] * (f - mu) / sigma + mean[:, :, None, None]


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grows:
            x = self.act(self.shuffle(self.conv1(x)))
            return self.act(self.conv2(x))
        x = self.act(self.conv1(x))
        return self.act(self.shuffle(self.conv2(x)))


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


class GNeRV(nn.Module):
    def __init__(self, cfg: GNeRVConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, w = cfg.embedding_hw
        chans = cfg.channels
        pe_dim = 2 * cfg.pe_levels
        # One global embedding shared by all frames (paper: randomly initialised, learned). A
        # model on the meta device is built for its shapes only (a header's check): torch's
        # normal_ there loads sympy, tens of MB and most of a second for a draw nobody reads.
        self.embedding = nn.Parameter(torch.empty(1, cfg.c0, h, w))
        if not self.embedding.is_meta:
            nn.init.normal_(self.embedding)  # the values torch.randn draws
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
        x, stats = self.time_path(t, mask)
        for j, block in enumerate(self.blocks):
            if stats is not None:
                mean, std = stats[j]
                # std is learned as an offset from 1: a fresh model starts near plain normalisation.
                x = distribution_shift(x, mean, 1.0 + std)
            x = block(x)
        out = self.head(x)
        if cfg.residual:
            return out
        return torch.sigmoid(out)

    def time_path(
        self, t: torch.Tensor, mask: str | None = None
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """The first block's input (the embedding, shifted by the M branch) and each block's
        (mean, std offset) from the DS branch, for frame times t (mask: see forward)."""
        cfg = self.cfg
        check_mask(cfg, mask)
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


def frame_times(indices: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Frame index -> t in [0, 1] (first frame 0, last frame 1)."""
    return indices.float() / max(n_frames - 1, 1)


# --------------------------------------------------------------------------------------------
# Sizing: parameters, MACs, and C0 for a target parameter count
# --------------------------------------------------------------------------------------------


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
    kernel: str = kernels.DEFAULT_KERNEL,
) -> torch.Tensor:
    """Render frames `indices` of an `n_frames` video: float (N, 3, H, W) on the model's device
    (mask: a time branch left out, see GNeRV.forward; kernel: one of gnerv.codec.kernels)."""
    device = model.embedding.device
    idx = torch.as_tensor(indices, dtype=torch.long)
    outs = [
        kernels.forward(
            model, frame_times(idx[i : i + batch_size], n_frames).to(device), kernel, mask
        )
        for i in range(0, len(idx), batch_size)
    ]
    return torch.cat(outs).float()


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """float (N, 3, H, W) in [0, 1] -> uint8 (N, H, W, 3), rounded and clipped."""
    u8 = frames.clamp(0, 1).mul_(255).round_().to(torch.uint8)  # one new float buffer, not three
    return u8.permute(0, 2, 3, 1).contiguous()
