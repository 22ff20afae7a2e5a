"""The evaluation report of one video: R-D plot, per-frame PSNR, frame comparison, BD-rates and
the summary table (Markdown + JSON), from `gnerv evaluate` and `gnerv baselines` outputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gnerv.codec.decode import decode_layers, load_layers
from gnerv.evaluation.baselines import CODECS, encode_point
from gnerv.evaluation.bd import bd_psnr, bd_rate
from gnerv.evaluation.metrics import MS_SSIM_MIN_SIDE
from gnerv.evaluation.plots import markdown_table, plot_frames, plot_per_frame, plot_rd
from gnerv.media.video import read_video
from gnerv.runtime.atomic import read_json, write_bytes_atomic, write_json
from gnerv.runtime.errors import GnervError

# Said in summary.md/json when the frames are too small for MS-SSIM (not silently left out).
MS_SSIM_NOTE = f"not applicable: it needs frames whose short side is >= {MS_SSIM_MIN_SIDE} px"
TABLE_COLUMNS = [
    "curve",
    "point",
    "params",
    "macs_per_frame",
    "bpp",
    "psnr",
    "ms_ssim",
    "encode_seconds",
    "decode_fps",
]
COMPARE_CODEC = "x265"  # the classical codec shown beside GNeRV in frames.png


def _curves(metrics: list[dict], baselines: list[dict]) -> dict[str, tuple[list, list]]:
    curves: dict[str, tuple[list, list]] = {}
    for m in metrics:
        pts = m["points"]
        label = pts[0].get("label", "gnerv") if pts else "gnerv"
        curves[label] = ([p["bpp"] for p in pts], [p["psnr"] for p in pts])
    for codec in sorted({b["codec"] for b in baselines}):
        pts = sorted((b for b in baselines if b["codec"] == codec), key=lambda b: b["bpp"])
        curves[codec] = ([p["bpp"] for p in pts], [p["psnr"] for p in pts])
    return curves


def bd_rates(curves: dict[str, tuple[list, list]]) -> list[dict]:
    """BD-rate and BD-PSNR of every GNeRV curve against every baseline (where they overlap)."""
    out = []
    for name, (r, p) in curves.items():
        if name in ("x264", "x265"):
            continue
        for ref in ("x264", "x265"):
            if ref not in curves:
                continue
            rr, pr = curves[ref]
            row: dict = {
                "curve": name,
                "reference": ref,
                "bd_rate_percent": None,
                "bd_psnr_db": None,
            }
            notes = []
            # Each delta needs its own overlap (PSNR range for the rate, rate range for the
            # PSNR), so one can exist without the other: say why a value is missing.
            for key, delta in (("bd_rate_percent", bd_rate), ("bd_psnr_db", bd_psnr)):
                try:
                    row[key] = delta(rr, pr, r, p)
                except GnervError as e:
                    notes.append(f"{key}: {e}")
            if notes:
                row["note"] = "; ".join(notes)
            out.append(row)
    return out


def table_rows(metrics: list[dict], baselines: list[dict]) -> list[dict]:
    rows = []
    for m in metrics:
        for p in m["points"]:
            rows.append({"curve": p.get("label", "gnerv"), "point": f"stage {p['stage']}", **p})
    for b in sorted(baselines, key=lambda b: (b["codec"], b["bpp"])):
        rows.append(
            {
                "curve": b["codec"],
                "point": f"crf {b['crf']}",
                **b,
                "encode_seconds": b.get("encode_seconds"),
                "decode_fps": None,
            }
        )
    return rows


def _bd_by_reference(bd: list[dict], key: str) -> dict[str, float]:
    """{reference codec: value} of one BD figure; None where the curves do not overlap (the
    row's note says why), so that the figure is listed, not silently absent."""
    return {
        row["reference"] if row["curve"] == "gnerv" else f"{row['curve']}_vs_{row['reference']}": (
            row.get(key)
        )
        for row in bd
    }


def make_report(
    metrics_paths: list[str | os.PathLike],
    baselines_path: str | os.PathLike | None,
    frames: np.ndarray,
    fps: float,
    out_dir: str | os.PathLike,
    device: str = "auto",
    params_files: list[str] | None = None,
) -> dict:
    """Write rd.png, per_frame.png, frames.png, summary.md and summary.json into out_dir;
    `params_files` (the parameter files the run used, in merge order) are listed in both."""
    out_dir = Path(out_dir)
    metrics = [read_json(p, "what `gnerv evaluate` writes") for p in metrics_paths]
    baselines = read_json(baselines_path, "what `gnerv baselines` writes") if baselines_path else []
    if not metrics or not all(m.get("points") for m in metrics):
        raise GnervError("no GNeRV points to report: give metrics.json from `gnerv evaluate`")
    curves = _curves(metrics, baselines)
    rows = table_rows(metrics, baselines)
    bd = bd_rates(curves)
    top = metrics[0]["points"][-1]

    plot_rd(curves, out_dir / "rd.png", title="rate-distortion")
    per_frame = {
        f"{p.get('label', 'gnerv')} stage {p['stage']}": p["psnr_per_frame"]
        for m in metrics
        for p in m["points"]
    }
    if baselines:
        near = min(baselines, key=lambda b: abs(b["bpp"] - top["bpp"]))
        per_frame[f"{near['codec']} crf {near['crf']}"] = near["psnr_per_frame"]
    plot_per_frame(per_frame, out_dir / "per_frame.png")

    # Middle frame: original / GNeRV (all layers) / the x265 point nearest in bpp.
    k = len(frames) // 2
    files = load_layers(top["layers"])
    panels = {
        "original": frames[k],
        f"GNeRV {top['bpp']:.3f} bpp, {top['psnr']:.2f} dB": decode_layers(files, [k], device)[0],
    }
    codec_points = [b for b in baselines if b["codec"] == COMPARE_CODEC]
    if codec_points:
        near = min(codec_points, key=lambda b: abs(b["bpp"] - top["bpp"]))
        stream = out_dir / f".compare.{CODECS[near['codec']][1]}"
        try:
            encode_point(
                frames,
                fps,
                near["codec"],
                near["crf"],
                near.get("preset", "medium"),
                keep_stream=stream,
            )
            decoded, _ = read_video(stream, frame_range=(k, k + 1), progress=False)
        finally:
            stream.unlink(missing_ok=True)
        panels[
            f"{near['codec']} crf {near['crf']}, {near['bpp']:.3f} bpp, {near['psnr']:.2f} dB"
        ] = decoded[0]
    plot_frames(panels, out_dir / "frames.png")

    md = ["# Evaluation summary", "", markdown_table(rows, TABLE_COLUMNS), ""]
    if bd:
        md += [
            "## Bjontegaard deltas (negative BD-rate: GNeRV needs fewer bits)",
            "",
            markdown_table(bd, ["curve", "reference", "bd_rate_percent", "bd_psnr_db", "note"]),
            "",
        ]
    if top.get("ms_ssim") is None:
        md += [f"MS-SSIM: {MS_SSIM_NOTE}", ""]
    if params_files:
        md += [
            "Parameter files (later ones override earlier): "
            + ", ".join(f"`{name}`" for name in params_files),
            "",
        ]
    write_bytes_atomic(out_dir / "summary.md", "\n".join(md).encode())
    summary = {
        "video": metrics[0]["video"],
        "device": metrics[0].get("device"),
        # the top layer's figures and the BD-rates as top-level numbers: `dvc metrics show`
        # lists numbers, not the lists below
        "psnr": top["psnr"],
        "bpp": top["bpp"],
        **({"ms_ssim": top["ms_ssim"]} if top.get("ms_ssim") is not None else {}),
        "bd_rate_percent": _bd_by_reference(bd, "bd_rate_percent"),
        "bd_psnr_db": _bd_by_reference(bd, "bd_psnr_db"),
        "top": {k: top[k] for k in ("stage", "bpp", "psnr", "ms_ssim", "params")},
        "bd": bd,
        "rows": [{c: r.get(c) for c in TABLE_COLUMNS} for r in rows],
    }
    if top.get("ms_ssim") is None:
        summary["ms_ssim_note"] = MS_SSIM_NOTE
    if params_files:
        summary["parameter_files"] = list(params_files)
    write_json(out_dir / "summary.json", summary)
    return summary
