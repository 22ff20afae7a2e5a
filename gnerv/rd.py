"""Rate-distortion summaries: Bjontegaard deltas, R-D / per-frame / frame-comparison plots, tables.

BD-rate follows VCEG-M33 (log10 rate as a function of PSNR, integrated over the PSNR range both
curves cover); "cubic" is the original third-order polyfit, "pchip" the piecewise cubic Hermite
interpolation (Fritsch-Carlson monotone slopes, as in scipy's PchipInterpolator) that later
common test conditions use. Both are integrated exactly. Plots use matplotlib's Agg canvas
directly (no pyplot, no global backend switch) and are written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gnerv.atomic import atomic_output
from gnerv.errors import GnervError

__all__ = [
    "bd_psnr",
    "bd_rate",
    "markdown_table",
    "pchip_integral",
    "pchip_interpolate",
    "pchip_slopes",
    "plot_frames",
    "plot_per_frame",
    "plot_rd",
]

BD_METHODS = ("pchip", "cubic")
# Fewest points each method needs per curve (cubic: a 3rd-order fit needs 4).
MIN_POINTS = {"pchip": 2, "cubic": 4}
CUBIC_DEGREE = 3
# Figure output: resolution and accepted suffixes (matplotlib picks the format from the suffix).
PLOT_DPI = 150
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
# Inches of figure per plot / per frame panel.
PLOT_SIZE = (6.4, 4.8)
FRAME_PANEL_WIDTH = 3.2
FRAME_TITLE_HEIGHT = 0.4


# ---------------------------------------------------------------------------------------------
# PCHIP


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson monotone slopes at the knots (x strictly increasing, >= 2 points).

    Interior: weighted harmonic mean of the neighbouring secants, 0 where they differ in sign or
    one is 0. Ends: the shape-preserving three-point formula (scipy / MATLAB pchip).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    if n == 2:
        return np.array([delta[0], delta[0]])
    d = np.zeros(n)
    w1 = 2.0 * h[1:] + h[:-1]
    w2 = h[1:] + 2.0 * h[:-1]
    same_sign = np.sign(delta[:-1]) * np.sign(delta[1:]) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
    d[1:-1] = np.where(same_sign, harmonic, 0.0)
    d[0] = _end_slope(h[0], h[1], delta[0], delta[1])
    d[-1] = _end_slope(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _end_slope(h0: float, h1: float, d0: float, d1: float) -> float:
    """Non-centred three-point end slope, limited so the end interval stays monotone."""
    d = ((2.0 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
    if np.sign(d) != np.sign(d0):
        return 0.0
    if np.sign(d0) != np.sign(d1) and abs(d) > 3.0 * abs(d0):
        return 3.0 * d0
    return float(d)


def _pchip_coeffs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-interval coefficients c0..c3 of y = c0 + c1 t + c2 t^2 + c3 t^3, t = x - x_k."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    h = np.diff(x)
    delta = np.diff(y) / h
    d = pchip_slopes(x, y)
    c2 = (3.0 * delta - 2.0 * d[:-1] - d[1:]) / h
    c3 = (d[:-1] + d[1:] - 2.0 * delta) / h**2
    return np.stack([y[:-1], d[:-1], c2, c3], axis=1)


def _check_knots(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
        raise GnervError("PCHIP needs two 1-D arrays of the same length >= 2")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise GnervError("PCHIP needs finite values")
    if np.any(np.diff(x) <= 0):
        raise GnervError("PCHIP needs strictly increasing x")
    return x, y


def pchip_interpolate(x: Sequence[float], y: Sequence[float], xq: Any) -> np.ndarray:
    """Evaluate the PCHIP interpolant of (x, y) at `xq` (x strictly increasing; extrapolates)."""
    x, y = _check_knots(x, y)
    c = _pchip_coeffs(x, y)
    xq = np.asarray(xq, dtype=np.float64)
    k = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, len(x) - 2)
    t = xq - x[k]
    return c[k, 0] + t * (c[k, 1] + t * (c[k, 2] + t * c[k, 3]))


def pchip_integral(x: Sequence[float], y: Sequence[float], lo: float, hi: float) -> float:
    """Exact integral of the PCHIP interpolant of (x, y) over [lo, hi] within [x[0], x[-1]]."""
    x, y = _check_knots(x, y)
    if not x[0] <= lo <= hi <= x[-1]:
        raise GnervError(f"integration range [{lo}, {hi}] is outside [{x[0]}, {x[-1]}]")
    c = _pchip_coeffs(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        ta, tb = a - x[k], b - x[k]
        # Antiderivative of c0 + c1 t + c2 t^2 + c3 t^3.
        powers = np.arange(1, CUBIC_DEGREE + 2)
        total += float(np.sum(c[k] * (tb**powers - ta**powers) / powers))
    return total


# ---------------------------------------------------------------------------------------------
# Bjontegaard deltas


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
    return pchip_integral(x, y, lo, hi)


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


def bd_rate(
    rate_a: Sequence[float],
    psnr_a: Sequence[float],
    rate_b: Sequence[float],
    psnr_b: Sequence[float],
    method: str = "pchip",
) -> float:
    """Bjontegaard delta rate (%) of curve B against reference A; negative: B needs fewer bits."""
    la, qa = _curve(rate_a, psnr_a, method, "A")
    lb, qb = _curve(rate_b, psnr_b, method, "B")
    diff = _bd(qa, la, qb, lb, method, "PSNR")
    return float((10.0**diff - 1.0) * 100.0)


def bd_psnr(
    rate_a: Sequence[float],
    psnr_a: Sequence[float],
    rate_b: Sequence[float],
    psnr_b: Sequence[float],
    method: str = "pchip",
) -> float:
    """Bjontegaard delta PSNR (dB) of curve B against reference A; positive: B is better."""
    la, qa = _curve(rate_a, psnr_a, method, "A")
    lb, qb = _curve(rate_b, psnr_b, method, "B")
    return float(_bd(la, qa, lb, qb, method, "log-rate"))


# ---------------------------------------------------------------------------------------------
# Plots


def _new_figure(size: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise GnervError(f"{path}: plots are written as {', '.join(PLOT_SUFFIXES)}; fix the suffix")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lower().lstrip("."))


def plot_rd(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    metric_name: str = "PSNR (dB)",
    title: str = "",
) -> None:
    """R-D plot: bpp on x, `metric_name` on y, one line with markers per named curve."""
    if not curves:
        raise GnervError(f"{path}: no R-D curves to plot")
    fig = _new_figure(PLOT_SIZE)
    ax = fig.add_subplot()
    for name, (rate, quality) in curves.items():
        r, q = np.asarray(rate, dtype=float), np.asarray(quality, dtype=float)
        if r.shape != q.shape:
            raise GnervError(f"{path}: curve {name!r} has {len(r)} rates and {len(q)} values")
        order = np.argsort(r, kind="stable")
        ax.plot(r[order], q[order], marker="o", label=name)
    ax.set_xlabel("bits per pixel (bpp)")
    ax.set_ylabel(metric_name)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def plot_per_frame(
    series: dict[str, Sequence[float]], path: str | os.PathLike, ylabel: str = "PSNR (dB)"
) -> None:
    """Per-frame quality: frame index on x, one line per named series."""
    if not series:
        raise GnervError(f"{path}: no per-frame series to plot")
    fig = _new_figure(PLOT_SIZE)
    ax = fig.add_subplot()
    for name, values in series.items():
        v = np.asarray(values, dtype=float)
        ax.plot(np.arange(len(v)), v, marker="." if len(v) <= 64 else None, label=name)
    ax.set_xlabel("frame")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def plot_frames(rows: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Side-by-side uint8 (H, W, 3) images, each titled with its name (original, GNeRV, x265...)."""
    if not rows:
        raise GnervError(f"{path}: no frames to show")
    for name, img in rows.items():
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3:
            raise GnervError(f"{path}: frame {name!r} must be a uint8 (H, W, 3) array")
        if img.shape[-1] != 3:
            raise GnervError(f"{path}: frame {name!r} must have 3 channels, got {img.shape}")
    h, w, _ = next(iter(rows.values())).shape  # panels take the first image's aspect ratio
    panel_h = FRAME_PANEL_WIDTH * h / w
    fig = _new_figure((FRAME_PANEL_WIDTH * len(rows), panel_h + FRAME_TITLE_HEIGHT))
    axes = fig.subplots(1, len(rows), squeeze=False)[0]
    for ax, (name, img) in zip(axes, rows.items(), strict=True):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize="medium")
        ax.set_axis_off()
    fig.tight_layout(pad=0.2)
    _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Tables


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool | str):
        return str(value).replace("|", "\\|")
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v == 0.0:
            return "0"
        if abs(v) >= 1.0:
            return f"{v:.2f}"  # dB, seconds, percentages
        return f"{v:.4f}" if abs(v) >= 0.01 else f"{v:.3g}"  # bpp, SSIM
    return str(value).replace("|", "\\|")


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A GitHub-markdown table of `columns` from `rows`; numeric columns are right-aligned."""
    if not columns:
        raise GnervError("a table needs at least one column")
    header = "| " + " | ".join(columns) + " |"
    aligns = []
    for col in columns:
        values = [row[col] for row in rows if row.get(col) is not None]
        aligns.append("---:" if values and all(_numeric(v) for v in values) else ":---")
    lines = [header, "| " + " | ".join(aligns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(col)) for col in columns) + " |")
    return "\n".join(lines) + "\n"
