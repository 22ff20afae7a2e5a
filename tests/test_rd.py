"""Bjontegaard deltas, PCHIP, plots and tables (gnerv.rd)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gnerv.errors import GnervError
from gnerv.rd import (
    bd_psnr,
    bd_rate,
    markdown_table,
    pchip_integral,
    pchip_interpolate,
    plot_frames,
    plot_per_frame,
    plot_rd,
)

METHODS = ("pchip", "cubic")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A typical four-point curve (kbps, dB), listed high rate first on purpose (must be sorted).
RATE = [9487.76, 4593.60, 2486.44, 1358.24]
PSNR = [40.037, 38.615, 36.845, 34.851]


@pytest.mark.parametrize("method", METHODS)
def test_identical_curves_give_zero(method: str) -> None:
    assert bd_rate(RATE, PSNR, RATE, PSNR, method) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(RATE, PSNR, RATE, PSNR, method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("factor", "expected"), [(0.5, -50.0), (2.0, 100.0)])
def test_constant_rate_factor(method: str, factor: float, expected: float) -> None:
    rate_b = [r * factor for r in RATE]
    assert bd_rate(RATE, PSNR, rate_b, PSNR, method) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_unsorted_input_same_answer(method: str) -> None:
    order = [2, 0, 3, 1]
    rate_b = [r * 0.8 for r in RATE]
    psnr_b = [p + 0.3 for p in PSNR]
    ref = bd_rate(RATE, PSNR, rate_b, psnr_b, method)
    shuffled = bd_rate(
        [RATE[i] for i in order],
        [PSNR[i] for i in order],
        [rate_b[i] for i in order],
        [psnr_b[i] for i in order],
        method,
    )
    assert shuffled == pytest.approx(ref, rel=1e-12)
    assert ref < 0  # B: fewer bits and more dB


def _trapezoid_mean(
    x: tuple[np.ndarray, np.ndarray], y_a: np.ndarray, y_b: np.ndarray, lo: float, hi: float
) -> float:
    """Mean of y_b(x) - y_a(x) over [lo, hi]: plain trapezoid on linear interpolation."""
    grid = np.linspace(lo, hi, 2001)
    diff = np.interp(grid, x[1], y_b) - np.interp(grid, x[0], y_a)
    return float(np.sum((diff[1:] + diff[:-1]) / 2 * np.diff(grid))) / (hi - lo)


@pytest.mark.parametrize("method", METHODS)
def test_hand_checked_linear_case(method: str) -> None:
    # Curves straight in (PSNR, log10 rate), with different slopes and ranges: both methods
    # reproduce a straight line exactly, so linear interpolation gives the exact answer.
    psnr_a = np.array([30.0, 32.5, 35.0, 37.0, 40.0])
    psnr_b = np.array([32.0, 34.0, 37.5, 40.0, 42.0])
    log_a = 0.10 * psnr_a - 2.0
    log_b = 0.08 * psnr_b - 1.5
    lo, hi = 32.0, 40.0  # the common PSNR range
    mean = _trapezoid_mean((psnr_a, psnr_b), log_a, log_b, lo, hi)
    # By hand: (0.08 p - 1.5) - (0.10 p - 2.0) = 0.5 - 0.02 p, mean over [32, 40] = 0.5 - 0.72.
    assert mean == pytest.approx(-0.22, abs=1e-12)
    expected = (10.0**mean - 1.0) * 100.0
    got = bd_rate(10.0**log_a, psnr_a, 10.0**log_b, psnr_b, method)
    assert got == pytest.approx(expected, rel=1e-9)

    # BD-PSNR of the same lines: psnr = (log + 2) / 0.1 and (log + 1.5) / 0.08 over the common
    # log-rate range [max(1.0, 1.06), min(2.0, 1.86)] = [1.06, 1.86].
    lo_r, hi_r = 1.06, 1.86
    mean_db = _trapezoid_mean((log_a, log_b), psnr_a, psnr_b, lo_r, hi_r)
    mid = (lo_r + hi_r) / 2  # both are linear, so the mean is the value at the midpoint
    assert mean_db == pytest.approx((mid + 1.5) / 0.08 - (mid + 2.0) / 0.1, abs=1e-9)
    got_db = bd_psnr(10.0**log_a, psnr_a, 10.0**log_b, psnr_b, method)
    assert got_db == pytest.approx(mean_db, abs=1e-9)


def test_sign_conventions() -> None:
    better = [p + 1.0 for p in PSNR]
    assert bd_rate(RATE, PSNR, RATE, better) < 0
    assert bd_psnr(RATE, PSNR, RATE, better) > 0


@pytest.mark.parametrize(("method", "n"), [("pchip", 1), ("cubic", 3)])
def test_too_few_points(method: str, n: int) -> None:
    with pytest.raises(GnervError, match="at least"):
        bd_rate(RATE[:n], PSNR[:n], RATE, PSNR, method)
    with pytest.raises(GnervError, match="at least"):
        bd_psnr(RATE, PSNR, RATE[:n], PSNR[:n], method)


def test_two_points_enough_for_pchip() -> None:
    assert math.isfinite(bd_rate(RATE[:2], PSNR[:2], RATE[:2], [p + 0.1 for p in PSNR[:2]]))


@pytest.mark.parametrize("method", METHODS)
def test_no_overlap(method: str) -> None:
    far = [p + 20.0 for p in PSNR]
    with pytest.raises(GnervError, match="do not overlap"):
        bd_rate(RATE, PSNR, RATE, far, method)
    with pytest.raises(GnervError, match="do not overlap"):
        bd_psnr(RATE, PSNR, [r * 1e3 for r in RATE], PSNR, method)


def test_bad_inputs() -> None:
    with pytest.raises(GnervError, match="unknown BD method"):
        bd_rate(RATE, PSNR, RATE, PSNR, "akima")
    with pytest.raises(GnervError, match="positive"):
        bd_rate([0.0, *RATE[1:]], PSNR, RATE, PSNR)
    with pytest.raises(GnervError, match="finite"):
        bd_rate(RATE, [math.nan, *PSNR[1:]], RATE, PSNR)
    with pytest.raises(GnervError, match="rates but"):
        bd_rate(RATE[:3], PSNR, RATE, PSNR)
    with pytest.raises(GnervError, match="same value"):
        bd_rate(RATE, [PSNR[0], *PSNR[:3]], RATE, PSNR)


def test_pchip_passes_through_points_and_is_monotone() -> None:
    x = np.array([0.0, 1.0, 1.5, 4.0, 4.2, 7.0])
    y = np.array([0.0, 0.1, 3.0, 3.1, 8.0, 8.0])  # non-decreasing, with sharp steps and a flat end
    assert np.allclose(pchip_interpolate(x, y, x), y, atol=1e-12)
    grid = np.linspace(x[0], x[-1], 5001)
    values = pchip_interpolate(x, y, grid)
    assert np.all(np.diff(values) >= -1e-12)
    assert values.min() >= y.min() - 1e-12 and values.max() <= y.max() + 1e-12
    # Decreasing data too.
    assert np.all(np.diff(pchip_interpolate(x, -y, grid)) <= 1e-12)


def test_pchip_integral_exact() -> None:
    x = np.array([0.0, 0.7, 2.0, 3.1, 5.0])
    y = np.array([1.0, -0.5, 2.0, 2.5, 0.0])
    grid = np.linspace(0.3, 4.4, 200_001)
    values = pchip_interpolate(x, y, grid)
    trapezoid = float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(grid)))
    assert pchip_integral(x, y, 0.3, 4.4) == pytest.approx(trapezoid, abs=1e-8)
    # A cubic reproduces straight lines: integral of 2x + 1 over [0, 5] is 30.
    assert pchip_integral(x, 2 * x + 1, 0.0, 5.0) == pytest.approx(30.0, rel=1e-12)
    with pytest.raises(GnervError, match="outside"):
        pchip_integral(x, y, -1.0, 2.0)


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp" in p.name]


def test_plots_write_png(tmp_path: Path) -> None:
    rd_png = tmp_path / "eval" / "rd.png"
    plot_rd(
        {
            "GNeRV": ([0.05, 0.1, 0.2], [28.0, 31.0, 33.5]),
            "x265": ([0.3, 0.08, 0.15], [34, 29, 31]),
        },
        rd_png,
        title="R-D",
    )
    per_frame = tmp_path / "per_frame.png"
    plot_per_frame({"GNeRV": [30.0, 31.0, 29.5], "x264": [28.0, 28.5, 29.0]}, per_frame)
    frames = tmp_path / "frames.png"
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (36, 64, 3), dtype=np.uint8)
    plot_frames({"original": img, "GNeRV": img[::-1].copy(), "x265": img // 2}, frames)
    for path in (rd_png, per_frame, frames):
        assert path.read_bytes()[: len(PNG_MAGIC)] == PNG_MAGIC
        assert _no_temp_files(path.parent)


def test_plot_errors_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(GnervError, match="suffix"):
        plot_rd({"a": ([1.0], [30.0])}, tmp_path / "rd.txt")
    with pytest.raises(GnervError, match="uint8"):
        plot_frames({"x": np.zeros((4, 4, 3), dtype=np.float32)}, tmp_path / "f.png")
    with pytest.raises(GnervError, match="no R-D curves"):
        plot_rd({}, tmp_path / "rd.png")
    assert list(tmp_path.iterdir()) == []


def test_markdown_table() -> None:
    rows = [
        {"codec": "x264", "crf": 23, "bpp": 0.01234567, "psnr": 33.456789, "ms_ssim": None},
        {"codec": "x|265", "crf": 28, "bpp": 0.5, "psnr": 30.0, "ms_ssim": 0.98765},
    ]
    text = markdown_table(rows, ["codec", "crf", "bpp", "psnr", "ms_ssim"])
    lines = text.splitlines()
    assert lines[0] == "| codec | crf | bpp | psnr | ms_ssim |"
    assert lines[1] == "| :--- | ---: | ---: | ---: | ---: |"
    assert lines[2] == "| x264 | 23 | 0.0123 | 33.46 | – |"
    assert lines[3] == "| x\\|265 | 28 | 0.5000 | 30.00 | 0.9877 |"
    assert text.endswith("\n")
