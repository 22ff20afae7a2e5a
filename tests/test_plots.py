"""R-D / per-frame / frame-comparison plots and Markdown tables (gnerv.evaluation.plots)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gnerv.evaluation.plots import markdown_table, plot_frames, plot_per_frame, plot_rd
from gnerv.runtime.errors import GnervError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
