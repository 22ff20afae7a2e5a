"""The paper's ablations (section 4.3) from fitted models: a JSON, a markdown table in the paper's
layout and a plot each.

- Time branch (Table 4): models with the DS branch only, and with both the DS and the M branch
  (``GNeRVConfig.time_branch``), at the same channel numbers C0; the two-branch model is evaluated
  directly, with M masked and with DS masked.
- Epochs (Fig. 7): PSNR against training epochs for one model size, one run per epoch count
  (each with its own full warm-up + cosine schedule, so a run is not a checkpoint of a longer one).
- Progressive (Fig. 8): a 3-stage pipeline against one base model with the pipeline's total
  parameters trained for its total epochs, both decoded from their .gnerv files (coded as the
  run's params.yaml codes stage 1).

PSNR is the mean per-frame PSNR of the output rounded to uint8, as a decoder would show it: of
the fitted float model for the first two (masking is a property of the network, not of a file),
of the decoded layers for the third.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnerv.codec.config import GNeRVConfig, count_params, ds_branch_params, m_branch_params
from gnerv.codec.model import for_inference, render, to_uint8
from gnerv.evaluation.metrics import mean_psnr
from gnerv.evaluation.plots import markdown_table, plot_lines
from gnerv.pipeline.results import CHECKPOINT_NAME, FIT_SUMMARY_NAME
from gnerv.runtime.atomic import read_json, write_json
from gnerv.runtime.device import select_device
from gnerv.runtime.errors import GnervError

# The paper's Table 4 (Bunny, 1280x720, 300 epochs): C0 -> PSNR (dB) of each row.
PAPER_TABLE4 = {
    "c0": [20, 40, 80, 152, 223, 304],
    "params_m": [0.115, 0.274, 0.92, 3.17, 6.67, 12.42],
    "w. DS": [31.95, 34.19, 37.46, 40.83, 42.58, 43.53],
    "w. DS and M": [32.00, 34.26, 37.46, 41.12, 42.46, 43.41],
    "w. DS and M, mask M": [31.98, 34.22, 37.42, 40.86, 42.14, 42.26],
    "w. DS and M, mask DS": [17.93, 17.96, 17.96, 17.88, 17.95, 17.97],
}
# Table 4's rows: (label, time_branch of the model, mask).
TIME_BRANCH_ROWS = (
    ("w. DS", "ds", None),
    ("w. DS and M", "ds+m", None),
    ("w. DS and M, mask M", "ds+m", "m"),
    ("w. DS and M, mask DS", "ds+m", "ds"),
)


def outputs(json_path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """An ablation's three files: X.json, and X.md and X.png beside it."""
    path = Path(json_path)
    if path.suffix != ".json":
        raise GnervError(f"{path}: the ablation's output must end in .json")
    return path, path.with_suffix(".md"), path.with_suffix(".png")


def model_psnr(
    fit_dir: str | os.PathLike, frames: np.ndarray, device: torch.device, mask: str | None
) -> float:
    """PSNR of a fitted model (fit_dir/checkpoint.pt) on `frames`, with `mask` left out."""
    from gnerv.encoder.train import model_from_checkpoint

    model, _ = model_from_checkpoint(Path(fit_dir) / CHECKPOINT_NAME)
    model = for_inference(model, device)
    n = len(frames)
    decoded = to_uint8(render(model, list(range(n)), n, mask=mask)).cpu().numpy()
    return mean_psnr(frames, decoded)


def time_branch(frames: np.ndarray, fit_dirs: Sequence[str], device: str, output: str) -> dict:
    """Table 4 from fits of DS-only and DS+M models (one of each per C0)."""
    dev = select_device(device)
    models: dict[tuple[str, int], tuple[str, Any]] = {}
    for fit_dir in fit_dirs:
        cfg = GNeRVConfig.from_dict(read_json(Path(fit_dir) / FIT_SUMMARY_NAME)["model"])
        models[(cfg.time_branch, cfg.c0)] = (fit_dir, cfg)
    c0s = sorted({c0 for _, c0 in models})
    columns: list[dict] = []
    for c0 in c0s:
        column: dict[str, Any] = {"c0": c0}
        for label, branch, mask in TIME_BRANCH_ROWS:
            if (branch, c0) not in models:
                raise GnervError(f"no {branch} model with C0 = {c0} among the fits")
            fit_dir, cfg = models[(branch, c0)]
            column[label] = model_psnr(fit_dir, frames, dev, mask)
            column[f"params {branch}"] = count_params(cfg)
        cfg = models[("ds+m", c0)][1]
        column["params DS branch"] = ds_branch_params(cfg)
        column["params M branch"] = m_branch_params(cfg, cfg.m_hidden)
        columns.append(column)
    result = {"ablation": "time_branch", "paper": PAPER_TABLE4, "columns": columns}
    json_path, md_path, png_path = outputs(output)
    write_json(json_path, result)
    md_path.write_text(time_branch_markdown(columns))
    plot_lines(
        {
            label: ([c["params ds"] / 1e6 for c in columns], [c[label] for c in columns])
            for label, _, _ in TIME_BRANCH_ROWS
        },
        png_path,
        "parameters of the DS model (M)",
        "Time branch (paper Table 4)",
    )
    return result


def time_branch_markdown(columns: list[dict]) -> str:
    """Table 4's layout: one column per channel number, one row per model / mask."""
    header = ["Channel Number"] + [str(c["c0"]) for c in columns]
    rows = [
        ["Parameter Number/M (w. DS)"] + [f"{c['params ds'] / 1e6:.3f}" for c in columns],
        ["Parameter Number/M (w. DS and M)"] + [f"{c['params ds+m'] / 1e6:.3f}" for c in columns],
        ["DS branch / M branch params"]
        + [f"{c['params DS branch']} / {c['params M branch']}" for c in columns],
    ]
    rows += [[label] + [f"{c[label]:.2f}" for c in columns] for label, _, _ in TIME_BRANCH_ROWS]
    return _rows_markdown(header, rows)


def epochs(fit_dirs: Sequence[str], output: str) -> dict:
    """Fig. 7: final PSNR of one model size trained for different numbers of epochs."""
    points = []
    for fit_dir in fit_dirs:
        summary = read_json(Path(fit_dir) / FIT_SUMMARY_NAME)
        points.append(
            {
                "epochs": int(summary["epochs"]),
                "psnr": float(summary["psnr"]),
                "params": int(summary["params"]),
                "c0": int(summary["model"]["c0"]),
                "train_seconds": float(summary["train_seconds"]),
            }
        )
    points.sort(key=lambda p: p["epochs"])
    result = {"ablation": "epochs", "points": points}
    json_path, md_path, png_path = outputs(output)
    write_json(json_path, result)
    md_path.write_text(epochs_markdown(points))
    label = f"C0 = {points[0]['c0']}, {points[0]['params'] / 1e6:.3f}M params" if points else ""
    plot_lines(
        {label: ([p["epochs"] for p in points], [p["psnr"] for p in points])},
        png_path,
        "training epochs",
        "PSNR against epochs (paper Fig. 7)",
    )
    return result


def epochs_markdown(points: list[dict]) -> str:
    """Fig. 7 as a table: one column per epoch count."""
    return _rows_markdown(
        ["Epochs"] + [str(p["epochs"]) for p in points],
        [
            ["PSNR(dB)"] + [f"{p['psnr']:.2f}" for p in points],
            ["training s"] + [f"{p['train_seconds']:.0f}" for p in points],
        ],
    )


def _fit_of_layer(layer: str) -> dict:
    """The fit.json `gnerv encode` left in the layer's work folder (X.work/ beside X.gnerv)."""
    return read_json(Path(layer).with_suffix(".work") / FIT_SUMMARY_NAME)


def progressive(pipeline_metrics: str, long_metrics: str, output: str) -> dict:
    """Fig. 8: the pipeline's decoded PSNR after each stage against one long run's."""
    curves: dict[str, tuple[list[float], list[float]]] = {}
    rows = []
    for name, path in (("progressive", pipeline_metrics), ("one model", long_metrics)):
        total = 0
        xs: list[float] = []
        ys: list[float] = []
        for point in read_json(path)["points"]:
            fit = _fit_of_layer(point["layers"][-1])
            for record in fit["history"]:  # training PSNR of the reconstruction so far
                xs.append(total + record["epoch"])
                ys.append(record["train_psnr"])
            total += int(fit["epochs"])
            rows.append(
                {
                    "pipeline": name,
                    "stage": point["stage"],
                    "epochs": total,
                    "params": point["params"],
                    "bpp": point["bpp"],
                    "psnr": point["psnr"],
                }
            )
        curves[f"{name} (training)"] = (xs, ys)
        done = [r for r in rows if r["pipeline"] == name]
        curves[f"{name} (decoded)"] = ([r["epochs"] for r in done], [r["psnr"] for r in done])
    result = {"ablation": "progressive", "rows": rows}
    json_path, md_path, png_path = outputs(output)
    write_json(json_path, result)
    md_path.write_text(progressive_markdown(rows))
    plot_lines(
        curves, png_path, "training epochs (cumulative)", "Progressive vs one model (Fig. 8)"
    )
    return result


def progressive_markdown(rows: list[dict]) -> str:
    """Fig. 8 as a table: each stage of the pipeline, then the one model."""
    return markdown_table(
        [
            {
                "pipeline": r["pipeline"],
                "stage": r["stage"],
                "total epochs": r["epochs"],
                "total params": r["params"],
                "bpp": round(r["bpp"], 4),
                "PSNR (dB)": round(r["psnr"], 2),
            }
            for r in rows
        ],
        ["pipeline", "stage", "total epochs", "total params", "bpp", "PSNR (dB)"],
    )


def _rows_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| :--- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
