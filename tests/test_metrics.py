"""Metrics: per-frame PSNR averaged (not PSNR of the mean error), SSIM, MS-SSIM's size limit."""

import numpy as np
import pytest
import torch

from gnerv.evaluation.metrics import evaluate, mean_psnr, ms_ssim_per_frame, psnr_per_frame
from gnerv.runtime.errors import GnervError


def test_psnr_is_the_mean_of_per_frame_psnr():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    b = a.copy()
    b[0] = np.clip(a[0].astype(int) + 1, 0, 255)  # small error on frame 0
    b[1] = np.clip(a[1].astype(int) + 20, 0, 255)  # large error on frame 1; frame 2 exact
    mse = ((a.astype(float) - b.astype(float)) ** 2).reshape(3, -1).mean(1) / 255**2
    want = -10 * np.log10(np.maximum(mse, 1e-12))
    np.testing.assert_allclose(psnr_per_frame(a, b), want, rtol=1e-7)  # float32 input scaling
    assert mean_psnr(a, b) == pytest.approx(want.mean(), rel=1e-7)
    assert mean_psnr(a, b) != pytest.approx(-10 * np.log10(mse.mean()))  # not the pooled MSE


def test_shapes_must_match():
    with pytest.raises(GnervError, match="shapes"):
        psnr_per_frame(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 5, 3), np.uint8))


def test_ms_ssim_needs_161_px_and_says_so(tiny_cockatoo, cockatoo_path):
    frames, _ = tiny_cockatoo
    assert ms_ssim_per_frame(frames, frames) is None
    small = evaluate(frames, frames)
    assert small["ms_ssim"] is None and "161" in small["ms_ssim_note"]
    assert small["ssim"] == pytest.approx(1.0)
    from gnerv.media.video import read_video

    big, _ = read_video(cockatoo_path, frame_range=(0, 2), resize=(180, 320), progress=False)
    noisy = np.clip(big.astype(int) + 8, 0, 255).astype(np.uint8)
    result = evaluate(big, noisy)
    assert 0.9 < result["ms_ssim"] < 1.0 and "ms_ssim_note" not in result


@pytest.mark.parametrize("shape", [(4, 3, 72, 128), (2, 3, 36, 64), (1, 3, 8, 20), (3, 3, 11, 11)])
def test_ssim_index_is_pytorch_msssims_ssim(shape):
    """Training's SSIM gives the library's value and, to float rounding, its gradient; a side
    shorter than the window (8 < 11) is left unfiltered along, as in the library."""
    import warnings

    from pytorch_msssim import ssim

    from gnerv.evaluation.metrics import ssim_index

    gen = torch.Generator().manual_seed(0)
    y = torch.rand(shape, generator=gen)
    x = (y + 0.1 * torch.randn(shape, generator=gen)).clamp(0, 1)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library warns about the skipped axis
        expected = ssim(theirs, y, data_range=1.0, size_average=True)
    value = ssim_index(ours, y, data_range=1.0)
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=0)
    (1 - value).backward()
    (1 - expected).backward()
    scale = theirs.grad.abs().max().item()  # summation order moves the last bits only
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-6 * scale)
    assert ssim_index(y, y).item() == pytest.approx(1.0)
