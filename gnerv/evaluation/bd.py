"""Bjontegaard deltas: BD-rate and BD-PSNR of one rate-distortion curve against another.

BD-rate follows VCEG-M33 (log10 rate as a function of PSNR, integrated over the PSNR range both
curves cover); "cubic" is the original third-order polyfit, "pchip" the piecewise cubic Hermite
interpolation (scipy's PchipInterpolator) that later common test conditions use. Both are
integrated exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

from gnerv.runtime.errors import GnervError

__all__ = ["bd_psnr", "bd_rate"]

BD_METHODS = ("pchip", "cubic")
# Fewest points each method needs per curve (cubic: a 3rd-order fit needs 4).
MIN_POINTS = {"pchip": 2, "cubic": 4}
CUBIC_DEGREE = 3


def _curve(
    rate: Sequence[float], quality: Sequence[float], method: str, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validated (log10 rate, quality) arrays of one curve."""
    if method not in BD_METHODS:
        raise GnervError(f"unknown BD method {method!r}; use one of {', '.join(BD_METHODS)}")
    r = np.asarray(rate, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise GnervError(f"curve {name}: {len(r)} rates but {len(q)} quality values")
    if len(r) < MIN_POINTS[method]:
        raise GnervError(
            f"curve {name}: BD ({method}) needs at least {MIN_POINTS[method]} points, "
            f"got {len(r)}; add R-D points"
        )
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise GnervError(f"curve {name}: rates and quality values must be finite")
    if np.any(r <= 0):
        raise GnervError(f"curve {name}: rates must be positive")
    return np.log10(r), q


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str, name: str) -> float:
    """Integral over [lo, hi] of y(x) fitted by `method` (points sorted by x first)."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if method == "cubic":
        poly = np.polyint(np.polyfit(x, y, CUBIC_DEGREE))
        return float(np.polyval(poly, hi) - np.polyval(poly, lo))
    repeated = x[1:][np.diff(x) <= 0]
    if len(repeated):
        raise GnervError(
            f"curve {name}: two points have the same value {repeated[0]:.6g} on the interpolation "
            "axis; PCHIP needs distinct values, drop or merge one of them"
        )
    return float(PchipInterpolator(x, y).integrate(lo, hi))


def _bd(
    xa: np.ndarray, ya: np.ndarray, xb: np.ndarray, yb: np.ndarray, method: str, axis: str
) -> float:
    """Mean of y_b(x) - y_a(x) over the x-interval both curves cover."""
    lo, hi = max(xa.min(), xb.min()), min(xa.max(), xb.max())
    if not lo < hi:
        raise GnervError(
            f"the two curves do not overlap in {axis}: [{xa.min():.4g}, {xa.max():.4g}] vs "
            f"[{xb.min():.4g}, {xb.max():.4g}]; choose points that cover a common range"
        )
    ia = _integral(xa, ya, lo, hi, method, "A")
    ib = _integral(xb, yb, lo, hi, method, "B")
    return (ib - ia) / (hi - lo)


Points = Sequence[float]  # one R-D curve's rates or PSNRs, in any order


def bd_rate(
    rate_a: Points, psnr_a: Points, rate_b: Points, psnr_b: Points, method: str = "pchip"
) -> float:
    """Bjontegaard delta rate (%) of curve B against reference A; negative: B needs fewer bits."""
    la, qa = _curve(rate_a, psnr_a, method, "A")
    lb, qb = _curve(rate_b, psnr_b, method, "B")
    diff = _bd(qa, la, qb, lb, method, "PSNR")
    return float((10.0**diff - 1.0) * 100.0)


def bd_psnr(
    rate_a: Points, psnr_a: Points, rate_b: Points, psnr_b: Points, method: str = "pchip"
) -> float:
    """Bjontegaard delta PSNR (dB) of curve B against reference A; positive: B is better."""
    la, qa = _curve(rate_a, psnr_a, method, "A")
    lb, qb = _curve(rate_b, psnr_b, method, "B")
    return float(_bd(la, qa, lb, qb, method, "log-rate"))
