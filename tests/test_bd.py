"""Bjontegaard deltas (gnerv.evaluation.bd)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gnerv.evaluation.bd import bd_psnr, bd_rate
from gnerv.runtime.errors import GnervError

METHODS = ("pchip", "cubic")

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


def test_pchip_hand_computed_curve() -> None:
    # B: log10 rate [1, 2, 2.5] at PSNR [30, 31, 32]; A: the line [1, 2, 3] (PCHIP keeps lines).
    # PCHIP slopes by hand (Fritsch-Carlson): secants 1 and 0.5; interior 6 / (3/1 + 3/0.5) = 2/3;
    # ends (3 * 1 - 0.5) / 2 = 1.25 and (3 * 0.5 - 1) / 2 = 0.25. A cubic Hermite piece integrates
    # to h (y0 + y1) / 2 + h^2 (d0 - d1) / 12: 1.5 + 7/144 and 2.25 + 5/144, so B's mean over
    # [30, 32] is 23/12 and A's is 2 (straight lines would give 1.875 instead).
    psnr = [30.0, 31.0, 32.0]
    rate_a = [10.0, 100.0, 1000.0]
    rate_b = [10.0, 100.0, 10.0**2.5]
    assert bd_rate(rate_a, psnr, rate_b, psnr) == pytest.approx(
        (10.0 ** (-1 / 12) - 1) * 100, rel=1e-9
    )


def test_pchip_and_cubic_values_unchanged() -> None:
    # Pinned from the hand-written PCHIP this package used before switching to scipy.
    rate_b = [8000.0, 4200.0, 2000.0, 1100.0]
    psnr_b = [40.2, 38.9, 36.5, 34.6]
    assert bd_rate(RATE, PSNR, rate_b, psnr_b) == pytest.approx(-14.690795062555505, rel=1e-9)
    assert bd_psnr(RATE, PSNR, rate_b, psnr_b) == pytest.approx(0.4403450914932069, rel=1e-9)
    cubic_rate = bd_rate(RATE, PSNR, rate_b, psnr_b, "cubic")
    assert cubic_rate == pytest.approx(-14.875638922812618, rel=1e-9)
    cubic_psnr = bd_psnr(RATE, PSNR, rate_b, psnr_b, "cubic")
    assert cubic_psnr == pytest.approx(0.44290204908472597, rel=1e-9)
