"""Quality metrics on RGB frames, computed the same way for GNeRV and for every baseline.

PSNR is computed per frame and then averaged (the NeRV papers' convention), not from the mean error.
The reported SSIM and MS-SSIM come from pytorch-msssim. Training's loss uses `ssim_index`: the same
SSIM, computed in fewer passes (its docstring says how and what it costs).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim, ssim

from gnerv.runtime.errors import GnervError

# pytorch-msssim's MS-SSIM downsamples 4 times with an 11-px window: the short side must exceed
# (11 - 1) * 2**4 = 160 px.
MS_SSIM_MIN_SIDE = 161


def to_float_nchw(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) or float (N, 3, H, W) in [0, 1] -> float32 (N, 3, H, W) in [0, 1]."""
    x = torch.as_tensor(frames)
    if x.dtype == torch.uint8:
        return x.permute(0, 3, 1, 2).float().div_(255.0)
    return x.float()


def psnr_per_frame(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    """PSNR (dB) of each frame, peak 1.0 on [0, 1] RGB (uint8 inputs are scaled by 1/255)."""
    x, y = to_float_nchw(a), to_float_nchw(b)
    if x.shape != y.shape:
        raise GnervError(f"cannot compare frames of shapes {tuple(x.shape)} and {tuple(y.shape)}")
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return (-10.0 * torch.log10(mse)).numpy()


def mean_psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Mean over frames of per-frame PSNR."""
    return float(psnr_per_frame(a, b).mean())


# SSIM as Wang et al. (2004) define it and pytorch-msssim computes it: an 11-tap Gaussian window
# of sigma 1.5, filtered without padding, stabilisers K1 = 0.01 and K2 = 0.03 of the data range.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian window (size,), float32."""
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_index(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of images x, y (N, C, H, W) as one differentiable scalar: the value of
    ``pytorch_msssim.ssim(x, y, data_range, size_average=True)``.

    The five local moments (means of x and y, of x*x, y*y and x*y) go through the separable
    Gaussian filter as one stacked tensor, so the filter runs as one grouped convolution per
    axis instead of ten; forward and backward take about half the library's time on a CPU
    (`benchmarks/bench_loss.py`). A side shorter than the window is not filtered along, as
    in the library."""
    n, c, h, w = x.shape
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    win = gaussian_window().to(device=x.device, dtype=x.dtype)
    groups = 5 * c
    if h >= SSIM_WINDOW:
        stacked = F.conv2d(stacked, win.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)
    if w >= SSIM_WINDOW:
        stacked = F.conv2d(stacked, win.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups)
    mu_x, mu_y, xx, yy, xy = stacked.chunk(5, dim=1)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_xy, mu_xx, mu_yy = mu_x * mu_y, mu_x.pow(2), mu_y.pow(2)
    var_x, var_y, cov = xx - mu_xx, yy - mu_yy, xy - mu_xy
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1)
    return (luminance * contrast_structure).flatten(2).mean(-1).mean()


def ssim_per_frame(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    x, y = to_float_nchw(a), to_float_nchw(b)
    return ssim(x, y, data_range=1.0, size_average=False).numpy()


def ms_ssim_supported(height: int, width: int) -> bool:
    return min(height, width) >= MS_SSIM_MIN_SIDE


def ms_ssim_per_frame(
    a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor
) -> np.ndarray | None:
    """MS-SSIM per frame, or None when frames are too small for its 5 scales (short side <= 160)."""
    x, y = to_float_nchw(a), to_float_nchw(b)
    if not ms_ssim_supported(x.shape[2], x.shape[3]):
        return None
    return ms_ssim(x, y, data_range=1.0, size_average=False).numpy()


def evaluate(
    reference: np.ndarray, decoded: np.ndarray, batch: int = 16
) -> dict[str, float | list[float] | None | str]:
    """Summary metrics of decoded vs reference uint8 frames, in batches to bound memory."""
    psnrs, ssims, msssims = [], [], []
    for i in range(0, len(reference), batch):
        a, b = reference[i : i + batch], decoded[i : i + batch]
        psnrs.append(psnr_per_frame(a, b))
        ssims.append(ssim_per_frame(a, b))
        m = ms_ssim_per_frame(a, b)
        if m is not None:
            msssims.append(m)
    psnr = np.concatenate(psnrs)
    out: dict[str, float | list[float] | None | str] = {
        "psnr": float(psnr.mean()),
        "psnr_per_frame": [round(float(p), 4) for p in psnr],
        "ssim": float(np.concatenate(ssims).mean()),
        "ms_ssim": float(np.concatenate(msssims).mean()) if msssims else None,
    }
    if not msssims:
        out["ms_ssim_note"] = (
            f"MS-SSIM needs frames with a short side >= {MS_SSIM_MIN_SIDE} px; not computed"
        )
    return out
