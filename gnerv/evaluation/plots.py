"""R-D, per-frame and frame-comparison plots, and Markdown tables of results.

Plots use matplotlib's Agg canvas directly (no pyplot, no global backend switch) and are written
atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gnerv.runtime.atomic import atomic_output
from gnerv.runtime.errors import GnervError

__all__ = ["markdown_table", "plot_frames", "plot_lines", "plot_per_frame", "plot_rd"]

# Figure output: resolution and accepted suffixes (matplotlib picks the format from the suffix).
PLOT_DPI = 150
# One marker per curve of an R-D plot (GNeRV, x264, x265, ...), in curve order.
RD_MARKERS = ("o", "s", "^", "D", "v", "P")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
# Inches of figure per plot / per frame panel.
PLOT_SIZE = (6.4, 4.8)
FRAME_PANEL_WIDTH = 3.2
FRAME_TITLE_HEIGHT = 0.4


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
    for index, (name, (rate, quality)) in enumerate(curves.items()):
        r, q = np.asarray(rate, dtype=float), np.asarray(quality, dtype=float)
        if r.shape != q.shape:
            raise GnervError(f"{path}: curve {name!r} has {len(r)} rates and {len(q)} values")
        order = np.argsort(r, kind="stable")
        marker = RD_MARKERS[index % len(RD_MARKERS)]  # told apart without colour too
        ax.plot(r[order], q[order], marker=marker, label=name)
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


def plot_lines(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    xlabel: str,
    title: str,
) -> None:
    """One line per named curve (markers where a curve has few points), PSNR on y."""
    fig = _new_figure(PLOT_SIZE)
    ax = fig.add_subplot()
    for name, (x, y) in curves.items():
        ax.plot(x, y, marker="o" if len(x) <= 20 else None, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
