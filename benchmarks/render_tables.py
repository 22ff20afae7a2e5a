"""Render the docs' measured tables from the JSON records in benchmarks/records/.

A table in a doc sits between two markers naming its renderer and its record:

    <!-- table: default_coding benchmarks/records/rd_default.json -->
    | ... the rendered rows ... |
    <!-- end table -->

    python benchmarks/render_tables.py            # rewrite every marked table in docs/ and README
    python benchmarks/render_tables.py --check    # exit 1 naming each table that differs

tests/test_docs.py runs the check, so a doc's table cannot drift from its record. The records
are small JSON files the benchmarks write (machine, date, command, rows), committed with the docs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(
    r"(?P<open><!-- table: (?P<name>\w+) (?P<record>\S+) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- end table -->)",
    re.S,
)


def _bd(paper: list[dict], other: list[dict]) -> tuple[float, float]:
    from gnerv.evaluation.bd import bd_psnr, bd_rate

    a = ([r["bpp"] for r in paper], [r["psnr"] for r in paper])
    b = ([r["bpp"] for r in other], [r["psnr"] for r in other])
    return bd_rate(*a, *b), bd_psnr(*a, *b)


def machine_line(record: dict) -> str:
    """A CPU record's first words: "Machine: 2-core CPU (flags), date; `command`"."""
    m = record["machine"]
    flags = ", ".join(m.get("flags", []))
    return (
        f"Machine: {m['cores']}-core {m['cpu']} ({flags}), {record['date']}; `{record['command']}`"
    )


def rd_clips(record: dict) -> dict[str, dict]:
    """benchmarks/rd_rate.py's record: clip name -> its result (the keys that hold models)."""
    return {c: r for c, r in record.items() if isinstance(r, dict) and "models" in r}


def rd_machine_line(res: dict) -> str:
    """An rd_rate.py clip result's first line: "Machine: CPU (flags), date; `command`."."""
    flags = ", ".join(res["cpu_flags"])
    return f"Machine: {res['machine']} ({flags}), {res['date']}; `{res['command']}`."


def default_point() -> str:
    """The rd_rate.py label of the point the package's defaults code (symB+qatS)."""
    from gnerv.encoder.config import CompressConfig

    return f"sym{CompressConfig.bits}+qat{CompressConfig.qat_share:g}"


def default_coding(record: dict) -> str:
    """The paper's coding (8-bit min/max) against the default coding, per clip and size, from
    benchmarks/rd_rate.py's record: file size and decoded PSNR, each clip's BD-rate of the
    default point over the three sizes, and (where the record has it) the default point with
    its fine-tune on the fit's own loss."""
    label = default_point()
    clips = rd_clips(record)
    lines = [
        rd_machine_line(next(iter(clips.values()))),
        "",
        "| clip | model | paper 8-bit: bytes | bpp | PSNR (dB) | default: bytes | bpp | PSNR (dB) "
        "| size | PSNR | PSNR, fine-tune on the fit's loss |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    summary = []
    for clip, res in clips.items():
        paper, default = [], []
        for model in res["models"]:
            rows = {r["label"]: r for r in model["rows"]}
            p, d = rows["paper8"], rows[label]
            fit_loss = rows.get(label + "+fitloss")
            fit_psnr = "" if fit_loss is None else f"{fit_loss['psnr']:.2f}"
            paper.append(p)
            default.append(d)
            lines.append(
                f"| {clip} | {model['size']} | {p['bytes']:,} | {p['bpp']:.4f} | {p['psnr']:.2f} "
                f"| {d['bytes']:,} | {d['bpp']:.4f} | {d['psnr']:.2f} "
                f"| {d['bytes'] / p['bytes'] - 1:+.1%} | {d['psnr'] - p['psnr']:+.2f} "
                f"| {fit_psnr} |"
            )
        rate, psnr = _bd(paper, default)
        summary.append(f"{clip} BD-rate {rate:+.1f} %, BD-PSNR {psnr:+.2f} dB")
    return "\n".join(lines) + "\n\n" + "; ".join(summary) + ".\n"


def coding_ssim(record: dict) -> str:
    """benchmarks/rd_rate.py's record as default_coding's, in SSIM: the paper's coding, the
    default (fine-tune on MSE) and the fine-tune on the fit's own loss, of the same fitted
    models (SSIM of the decoded frames, as `gnerv evaluate` reports it)."""
    label = default_point()
    clips = rd_clips(record)
    rows = []
    for clip, res in clips.items():
        for model in res["models"]:
            by = {r["label"]: r for r in model["rows"]}
            p, d, f = by["paper8"], by[label], by[label + "+fitloss"]
            rows.append(
                f"| {clip} | {model['size']} | {p['ssim']:.4f} | {d['ssim']:.4f} "
                f"| {f['ssim']:.4f} | {d['ssim'] - f['ssim']:+.4f} | {d['psnr'] - f['psnr']:+.2f} |"
            )
    return table(
        rd_machine_line(next(iter(clips.values()))),
        "| clip | model | paper 8-bit: SSIM | default (fine-tune on MSE): SSIM | fine-tune on the "
        "fit's loss: SSIM | SSIM, MSE - fit's loss | PSNR (dB), MSE - fit's loss |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        rows,
    )


def time_to_quality(record: dict) -> str:
    """benchmarks/time_to_quality.py's table: each path's settings, training time, decoded PSNR
    and the time it took to reach the reference path's final training PSNR."""

    def settings(name: str) -> str:
        path = record["paths"][name]
        words = [*(f"{k}={v}" for k, v in path["env"].items()), *path["flags"]]
        return f"`{' '.join(words)}`" if words else "(defaults)"

    def reached(row: dict) -> str:
        if row["time_to_quality_seconds"] is None:
            return "not reached | -"
        return (
            f"{row['time_to_quality_epoch']:.0f}, {row['time_to_quality_seconds']:.1f} "
            f"| {row['time_to_quality_ratio']:.2f}x"
        )

    return table(
        machine_line(record) + ".",
        "| clip | path | settings | precision | train s | ratio | decoded PSNR (dB) | to the "
        "reference's quality: epoch, s | ratio |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
        (
            f"| {row['clip']} | {row['path']} | {settings(row['path'])} | {row['precision']} "
            f"| {row['train_seconds']:.1f} | {row['train_seconds_ratio']:.2f}x "
            f"| {row['decoded_psnr']:.2f} | {reached(row)} |"
            for row in record["table"]
        ),
    )


def load(record: dict) -> str:
    """benchmarks/bench_load.py's table: each thread setting idle and beside busy processes."""
    return table(
        machine_line(record) + ".",
        "| threads | busy processes | train s | slowdown | decode frames/s | slowdown |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        (
            f"| {e['variant']} | {e['hogs']} | {e['train_seconds']:.1f} | "
            f"{e.get('train_slowdown', float('nan')):.2f}x | {e['decode_fps']:.1f} | "
            f"{e.get('decode_slowdown', float('nan')):.2f}x |"
            for e in record["table"]
        ),
    )


def gpu(record: dict) -> str:
    """benchmarks/gpu_check.sh's figures: the targets, decode speed per configuration, the fit's
    quality and where a training epoch spends its device time."""
    m = record["machine"]
    full = record["runs"][0]["result"]
    prof = next(r["result"]["profile"] for r in record["runs"] if "profile" in r["result"])
    tests = [r["result"]["tests"] for r in record["runs"] if "tests" in r["result"]][-1]
    fit, dec, small = full["fit"], full["decode"], full["small_fit"]
    coding = f" {small['compress_flags']}" if small.get("compress_flags") else ""
    epochs = 300
    compiled = prof["compiled"]
    compiled_s = compiled["first_epoch_s"] + compiled["s_per_epoch"] * (epochs - 1)
    best = dec["best"]
    lines = [
        f"Machine: {m['gpu']} ({m['gpu_memory_gib']} GiB, compute capability "
        f"{m['compute_capability']}), torch {m['torch']}, CUDA {m['cuda']}, driver "
        f"{m['driver']}, {record['date']}; "
        + "; ".join(f"`{r['command']}`" for r in record["runs"])
        + ".",
        "",
        "| target | measured | limit | |",
        "| --- | ---: | ---: | --- |",
        f"| {epochs} epochs, Bunny 720p, {fit['params'] / 1e6:.2f}M params, "
        f"{fit['train_config']['precision']}, eager | {fit['projected_s_300_epochs']:.0f} s "
        f"({fit['s_per_epoch']:.3f} s/epoch, {fit['frames_per_s']:.0f} frames/s) | <= 300 s | "
        f"{'met' if fit['projected_s_300_epochs'] <= 300 else 'not met'} |",
        f"| the same with `TrainConfig.compile` | {compiled_s:.0f} s (compile and first epoch "
        f"{compiled['first_epoch_s']:.1f} s, then {compiled['s_per_epoch']:.3f} s/epoch) | "
        f"<= 300 s | {'met' if compiled_s <= 300 else 'not met'} |",
        f"| 1080p decoding, {dec['params'] / 1e6:.2f}M params | {best['frames_per_s']:.0f} "
        f"frames/s ({best['name']}) | >= 500 | "
        f"{'met' if best['frames_per_s'] >= 500 else 'not met'} |",
        "",
    ]
    batches = sorted({r["batch"] for r in dec["runs"]})
    lines += [
        "| 1080p decode, frames/s | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "| --- | " + " | ".join("---:" for _ in batches) + " |",
    ]
    configs = dict.fromkeys(f"{r['mode']} {r['dtype']}" for r in dec["runs"])
    for config in configs:
        fps = {
            r["batch"]: r["frames_per_s"]
            for r in dec["runs"]
            if f"{r['mode']} {r['dtype']}" == config
        }
        lines.append(f"| {config} | " + " | ".join(f"{fps[b]:.0f}" for b in batches) + " |")
    e2e = dec["decoder_end_to_end"]
    lines += [
        "| the decoder end to end (`decode_layers`, fp32, uint8 frames on the host) | "
        + " | ".join(f"{e2e['frames_per_s']:.0f}" if b == e2e["batch"] else "" for b in batches)
        + " |",
        "",
        "| fit | epochs | training s | decoded or rendered PSNR | bpp |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| Bunny 720p, {fit['params'] / 1e6:.2f}M, one schedule in a 180 s budget | "
        f"{fit['epochs']} | {fit['train_s']:.0f} | {fit['render_psnr_fp32']:.2f} dB (float "
        f"model; bf16 render {fit['render_psnr_bf16']:.2f} dB) | |",
        f"| Bunny {small['height']}x{small['width']}, {small['params'] / 1e6:.3f}M, "
        f"`gnerv fit` + `gnerv compress{coding}` | {small['epochs']} | {small['train_s']:.1f} | "
        f"{small['decoded_psnr']:.2f} dB (decoded file) | {small['bpp']:.4f} |",
        "",
        f"The gpu tests (`pytest -m gpu tests/test_gpu.py`): {tests['passed']} passed, "
        f"{tests['failures'] + tests['errors']} failed.",
        "",
        f"One eager bf16 training epoch of the 720p fit under `torch.profiler`: "
        f"{prof['device_ms_total']:.0f} ms of device time, by operator (each operator's "
        "kernels) and by kernel:",
        "",
        "| share | ms | calls | operator |",
        "| ---: | ---: | ---: | --- |",
    ]
    for k in prof["operators"][:8]:
        lines.append(f"| {k['share']:.1%} | {k['device_ms']:.0f} | {k['calls']} | `{k['name']}` |")
    lines += ["", "| share | ms | calls | kernel |", "| ---: | ---: | ---: | --- |"]
    for k in prof["kernels"][:8]:
        name = k["name"].replace("|", "/")
        name = name if len(name) <= 64 else name[:61] + "..."
        lines.append(f"| {k['share']:.1%} | {k['device_ms']:.0f} | {k['calls']} | `{name}` |")
    return "\n".join(lines) + "\n"


def loss(record: dict) -> str:
    """benchmarks/bench_loss.py's table: a training step with each SSIM, and the SSIM alone."""
    st = record["settings"]

    def ratio(row: dict) -> str:
        value = row.get("vs_library_step")
        return f"{value:.2f}x" if value else ""

    return table(
        machine_line(record) + f"; {st['hw']}, {st['size']}, batch {st['batch']}, "
        f"torch {st['torch']}.",
        "| what | ms | against the step with pytorch-msssim |",
        "| --- | ---: | ---: |",
        (f"| {row['variant']} | {row['ms']:.1f} | {ratio(row)} |" for row in record["rows"]),
    )


def demo(record: dict) -> str:
    """benchmarks/demo.py's table: the demo pipeline's R-D points against x264 and x265."""
    jobs = {j["job"]: j["seconds"] for j in record["jobs"]}
    minutes, seconds = divmod(round(record["wall_seconds"]), 60)
    lines = [
        machine_line(record) + f" (`{record['pipeline']}`): {minutes} min "
        f"{seconds} s for the whole pipeline.",
        "",
        "| curve | point | params | bpp | PSNR (dB) | fit (s) | fine-tune (s) "
        "| decode (frames/s) |",
        "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    baselines: dict[str, list[dict]] = {}
    for row in record["rows"]:
        if row["curve"] != "gnerv":
            baselines.setdefault(row["curve"], []).append(row)
            continue
        stage = int(row["point"].split()[-1])
        point = "stage 1" if stage == 1 else "stages 1+" + "+".join(map(str, range(2, stage + 1)))
        tune = jobs.get(f"finetune_stage{stage}")
        lines.append(
            f"| GNeRV | {point} | {row['params']:,} | {row['bpp']:.2f} | {row['psnr']:.2f} | "
            f"{row['encode_seconds']:.0f} | {'' if tune is None else f'{tune:.0f}'} | "
            f"{row['decode_fps']:.0f} |"
        )
    for codec, rows in baselines.items():
        lines.append(
            f"| {codec} | "
            + " / ".join(r["point"] for r in rows)
            + " | | "
            + " / ".join(f"{r['bpp']:.2f}" for r in rows)
            + " | "
            + " / ".join(f"{r['psnr']:.2f}" for r in rows)
            + " | | | |"
        )
    lines.append("")
    lines.append(
        "BD-rate of GNeRV (all stages) against "
        + "; against ".join(
            f"{b['reference']}: **{b['bd_rate_percent']:+.0f} %** "
            f"(BD-PSNR {b['bd_psnr_db']:+.2f} dB)"
            for b in record["bd"]
        )
        + "."
    )
    return "\n".join(lines) + "\n"


def segments(record: dict) -> str:
    """benchmarks/segments.py's table: one network against segments of several lengths."""
    st = record["settings"]
    return table(
        machine_line(record) + f"; {st['frames']} frames at {st['resize']}, "
        f"{st['size']} parameters in all, {st['epochs']} epochs per network.",
        "| coded as | networks | bytes | bpp | PSNR (dB) | encode (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        (
            f"| {r['variant']} | {r['segments']} | {r['bytes']:,} | {r['bpp']:.4f} | "
            f"{r['psnr']:.2f} | {r['encode_seconds']:.0f} |"
            for r in record["rows"]
        ),
    )


def segments_memory(record: dict) -> str:
    """benchmarks/segments_memory.py's table: a segmented encode's peak memory by clip length."""
    st = record["settings"]
    return table(
        machine_line(record) + f"; {st['hw']}, segments of "
        f"{st['segment_frames']} frames, {st['size']} parameters each, one epoch.",
        "| clip frames | segments | peak RSS (MB) | wall (s) |",
        "| ---: | ---: | ---: | ---: |",
        (
            f"| {r['frames']} | {r['segments']} | {r['max_rss_mb']:.0f} | {r['wall_seconds']:.0f} |"
            for r in record["rows"]
        ),
        [f"Peak memory of the longest clip against the shortest: {record['ratio']:.2f}x."],
    )


def decode_memory(record: dict) -> str:
    """benchmarks/decode_memory.py's table: `gnerv decode`'s measured peak against the decode
    limits' estimate, per frame size, layout and batch (the kernel sizes' range)."""
    groups: dict[tuple, list[dict]] = {}
    for r in record["rows"]:
        groups.setdefault((r["frame"], r["size"], r["layout"], r["batch"]), []).append(r)
    mib = 2**20

    def span(values: list[float], fmt: str) -> str:
        lo, hi = min(values), max(values)
        return (
            format(lo, fmt)
            if format(lo, fmt) == format(hi, fmt)
            else (f"{format(lo, fmt)}-{format(hi, fmt)}")
        )

    rows = [
        f"| {frame} | {size} | {layout} | {', '.join(str(r['kernel']) for r in rs)} | {batch} | "
        f"{span([r['peak_bytes'] / mib for r in rs], '.0f')} | "
        f"{span([r['estimate_bytes'] / mib for r in rs], '.0f')} | "
        f"{max(r['peak_over_estimate'] for r in rs):.2f} | "
        f"{max(0.0, max(r['implied_factor'] for r in rs)):.2f} |"
        for (frame, size, layout, batch), rs in groups.items()
    ]
    covered = any(r["implied_factor"] < 0 for r in record["rows"])
    worst = max(record["rows"], key=lambda r: r["peak_over_estimate"])
    return table(
        machine_line(record) + "; random weights, 8-bit files, each decode in a fresh process.",
        "| frame | size | layout | kernels | batch | peak (MiB) | estimate (MiB) | "
        "largest peak / estimate | largest implied factor |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
        rows,
        [
            f"The estimate: {record['base_bytes'] // mib} MiB + {record['bytes_per_param']} "
            f"bytes a parameter + {record['activation_factor']} x batch x 4 bytes x the largest "
            f"feature map + 4 bytes x the head's tap planes. Largest peak / estimate: "
            f"{worst['peak_over_estimate']:.2f} "
            f"({worst['frame']}, {worst['layout']}, kernel {worst['kernel']}, batch "
            f"{worst['batch']})."
            + (" An implied factor of 0: the base alone covers the peak." if covered else "")
        ],
    )


def segments_parallel(record: dict) -> str:
    """benchmarks/segments_parallel.py's table: segment jobs one at a time or side by side."""
    base = record["rows"][0]["wall_seconds"]
    lines = [
        machine_line(record) + f"; `snakemake --cores {record['cores']} "
        f"--configfile {record['config']}`.",
        "",
        "| segment jobs | threads per job | wall (s) | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in record["rows"]:
        threads = r["flags"][-1].split("=")[-1]
        lines.append(
            f"| {r['variant']} | {threads} | {r['wall_seconds']:.0f} | "
            f"{r['wall_seconds'] / base:.2f}x |"
        )
    same = "the same bytes" if record["same_index"] else "different bytes"
    lines += ["", f"The two runs' indexes: {same}."]
    return "\n".join(lines) + "\n"


def median_round(rows: list[dict]) -> dict:
    """Of one path's rounds in a bench_decode.py record, the one with the median decoder
    frames/s (the lower middle for an even count), as bench_decode.py's own summary takes."""
    return sorted(rows, key=lambda r: r["decoder_fps"])[(len(rows) - 1) // 2]


def decode_renders(record: dict) -> str:
    """benchmarks/bench_decode.py's record of render versions against each other (`render1`, ...):
    each path's median round, its frames/s against a plain eager forward in the same process."""
    groups: dict[tuple, list[dict]] = {}
    for r in record["rows"]:
        groups.setdefault((r["shape"], r["params"], r["batch"], r["path"]), []).append(r)
    names = {
        "render1": "render 1 (`lean`)",
        "render2": "render 2 (`fused`)",
        "render3": "render 3 (`tapped`)",
    }
    lines = [
        machine_line(record) + ", torch " + record["torch"]["version"] + "; random weights; "
        "each path in a fresh process, the paths alternating; the median of the rounds.",
        "",
        "| frame | params | batch | render | decoder frames/s | rounds | eager frames/s "
        "| x eager | convs |",
        "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for (shape, params, batch, path), rows in groups.items():
        mid = median_round(rows)
        spread = " / ".join(f"{r['decoder_fps']:.1f}" for r in rows)
        lines.append(
            f"| {shape} | {params / 1e6:.3f}M | {batch} | {names.get(path, path)} | "
            f"{mid['decoder_fps']:.1f} | {spread} | {mid['eager_fps']:.1f} | "
            f"{mid['decoder_fps'] / mid['eager_fps']:.2f}x | {mid['conv_share']:.0%} |"
        )
    return "\n".join(lines) + "\n"


def decode_budget(record: dict) -> str:
    """benchmarks/decode_budget.py's table: an exact render's steps in ms per frame at each batch
    size, against the eager forward and the frame time each decoding target allows."""
    rows = record["rows"]
    batches = " | ".join(f"batch {r['batch']}: ms | share" for r in rows)

    def line(label: str, values: list[float | None], shares: bool = True) -> str:
        cells = [
            "| |"
            if v is None
            else f"{v:.2f} | {v / r['forward_ms']:.0%} |"
            if shares
            else f"{v:.2f} | |"
            for v, r in zip(values, rows, strict=True)
        ]
        return f"| {label} | " + " ".join(cells)

    first = rows[0]
    body = [line(name, [r["steps_ms"][name] for r in rows]) for name in first["steps_ms"]]
    body += [
        line("**all convolutions**", [r["convs_ms"] for r in rows]),
        line(
            f"render {first.get('render', 2)}'s forward (the steps)",
            [r["forward_ms"] for r in rows],
            False,
        ),
        line("the decoder (`decode_layers`, uint8 out)", [r["decoder_ms"] for r in rows], False),
        line("eager fp32 forward", [r["eager_ms"] for r in rows], False),
        line(
            "**the target allows** (eager / "
            + " or ".join(f"{r['target_x_eager']}" for r in rows if r["target_x_eager"])
            + ")",
            [r["target_ms"] for r in rows],
            False,
        ),
    ]
    intro = (
        machine_line(record)
        + ", torch "
        + record["torch"]["version"]
        + f"; {first['shape']}, {first['params'] / 1e6:.3f}M parameters, random weights; the "
        "eager forward, the decoder and the steps alternating; medians, ms per frame."
    )
    return table(
        intro,
        f"| step | {batches} |",
        "| --- | " + " ".join("---: | ---: |" for _ in rows),
        body,
    )


def render_candidates(record: dict) -> str:
    """benchmarks/render_candidates.py's table: render 2 and each candidate arithmetic, ms per
    frame against the eager forward at each batch size, and how far its frames are from render
    2's."""
    rows = record["rows"]
    first = rows[0]
    body = []
    for r in rows:
        rounds = f"{min(r['rounds_ms']):.2f}-{max(r['rounds_ms']):.2f}"
        differ = (
            ""
            if r["path"] == "render 2"
            else f"{r['max_abs_diff']:.1e} | {r['bytes_differ']:,} of {r['values']:,}"
        )
        target = f"{r['target_x_eager']}x" if r["target_x_eager"] else ""
        body.append(
            f"| {r['batch']} | {r['path']} | {r['ms_per_frame']:.2f} | {rounds} | "
            f"{r['x_eager']:.2f}x | {target} | {differ or ' | '} |"
        )
    intro = (
        machine_line(record)
        + ", torch "
        + record["torch"]["version"]
        + f"; {first['shape']}, {first['params'] / 1e6:.3f}M parameters, random weights; the "
        "paths alternating; medians, ms per frame; differences from render 2's frames over "
        "all frames."
    )
    return table(
        intro,
        "| batch | path | ms/frame | rounds: fastest-slowest | x eager | target "
        "| largest difference | 8-bit values that differ |",
        "| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |",
        body,
    )


def render_contract(record: dict) -> str:
    """benchmarks/render_contract.py's tables: what each render's frames depend on."""
    ref = record["reference"]
    lines = [
        machine_line(record)
        + ", torch "
        + record["torch"]["version"]
        + "; layers "
        + ", ".join(f"`{p}`" for p in record["layers"])
        + ".",
        "",
        "| render | layers | PSNR (dB) |",
        "| --- | ---: | ---: |",
    ]
    for q in record["quality"]:
        lines.append(f"| {q['render']} | {q['layers']} | {q['psnr']:.4f} |")
    lines += [
        "",
        f"Against the same render at batch {ref['batch']} with {ref['threads']} threads "
        "(all layers; floats: the layers' float sum, bytes: the decoded uint8 values):",
        "",
        "| render | setting | floats differing | max float diff | bytes differing | max levels |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    rows = [
        (r, f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}, batch {r['batch']}")
        for r in record["settings"]
    ]
    rows += [(r, f"{r['isa']} kernels, batch {ref['batch']}") for r in record["isa"]]
    for r, setting in sorted(rows, key=lambda rs: rs[0]["render"]):
        lines.append(
            f"| {r['render']} | {setting} | {r['floats_differing']:,} of {r['floats']:,} | "
            f"{r['max_float_diff']:.1e} | {r['bytes_differing']:,} | {r['max_levels']} |"
        )
    if record.get("bf16"):
        lines += [
            "",
            "`--precision bf16` (lossy, opt-in) against the files' own render:",
            "",
            "| layers | exact PSNR (dB) | bf16 PSNR (dB) | difference (dB) |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for r in record["bf16"]:
            lines.append(
                f"| {r['layers']} | {r['psnr_exact']:.3f} | {r['psnr_bf16']:.3f} | "
                f"{r['psnr_bf16'] - r['psnr_exact']:+.3f} |"
            )
    return "\n".join(lines) + "\n"


def train_variants(record: dict) -> str:
    """benchmarks/bench_train.py's table: training and decoding frames/s per variant, each
    round's figure side by side."""
    n, h, w, _ = record["frames"]
    lines = [
        machine_line(record) + f", torch {record['torch']}, {record['threads']} threads; "
        f"{n} frames at {h}x{w}, c0 {record['c0']} ({record['macs_per_frame'] / 1e9:.3f} "
        "GMACs/frame); per round: training the median epoch after the warm-up ones, decoding "
        "the median of 5 renders of every frame.",
        "",
        "| variant | train frames/s | of ceiling | x eager | decode frames/s | of ceiling |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = {
        "eager": "eager (NCHW, `channels_last=False`)",
        "fast": "fast (NHWC, the default)",
        "fast+compile": "fast + `torch.compile` (`TrainConfig.compile`)",
    }
    variants: dict[str, list[dict]] = {}
    for r in record["rows"]:
        variants.setdefault(r["variant"], []).append(r)

    def each(rows: list[dict], key: str, fmt: str) -> str:
        return " / ".join(format(r[key], fmt) for r in rows)

    for name, rows in variants.items():
        lines.append(
            f"| {names.get(name, name)} | {each(rows, 'train_fps', '.1f')} | "
            f"{each(rows, 'train_fraction', '.0%')} | {each(rows, 'train_speedup_vs_eager', '.2f')}"
            f" | {each(rows, 'decode_fps', '.0f')} | {each(rows, 'decode_fraction', '.0%')} |"
        )
    return "\n".join(lines) + "\n"


DECODE_PATH_NAMES = {
    "plain": "plain",
    "heap": "heap",
    "render1": "render 1",
    "render2": "render 2",
    "render3": "render 3",
    "bf16": "bf16",
}


def decode_paths(record: dict) -> str:
    """benchmarks/bench_decode.py's record of several paths in one run: frames/s per path and
    each against `plain` (the decoder without the kept heap and the lean kernel), one row per
    model size and batch (the median round)."""
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in record["rows"]:
        groups.setdefault((r["shape"], r["params"], r["batch"]), {}).setdefault(
            r["path"], []
        ).append(r)
    paths = [p for p in DECODE_PATH_NAMES if any(p in g for g in groups.values())]
    head = "| frame | params | batch |"
    rule = "| --- | ---: | ---: |"
    for p in paths:
        head += f" {DECODE_PATH_NAMES[p]} frames/s |" + (" x plain |" if p != "plain" else "")
        rule += " ---: |" + (" ---: |" if p != "plain" else "")
    head += " render 2 of conv ceiling |"
    rule += " ---: |"
    lines = [
        machine_line(record) + ", torch " + record["torch"]["version"] + "; random weights; "
        "each path in a fresh process, the paths alternating per model size.",
        "",
        head,
        rule,
    ]

    for (shape, params, batch), by_path in groups.items():
        line = f"| {shape} | {params / 1e6:.3f}M | {batch} |"
        plain = median_round(by_path["plain"])["decoder_fps"] if "plain" in by_path else None
        for p in paths:
            if p not in by_path:
                line += " |" + (" |" if p != "plain" else "")
                continue
            fps = median_round(by_path[p])["decoder_fps"]
            line += f" {fps:.1f} |"
            if p != "plain":
                line += f" {fps / plain:.2f} |" if plain else " |"
        fused = by_path.get("render2")
        line += f" {median_round(fused)['of_ceiling']:.0%} |" if fused else " |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def table(
    intro: str, header: str, align: str, rows: Iterable[str], outro: Sequence[str] = ()
) -> str:
    """A rendered table: its intro line, a blank line, the header and alignment rows, a line per
    row, then (after a blank line) any closing lines."""
    lines = [intro, "", header, align, *rows]
    if outro:
        lines += ["", *outro]
    return "\n".join(lines) + "\n"


def paper_counts(record: dict) -> str:
    """benchmarks/paper_counts.py's table: the paper's parameter and MAC counts against this
    package's, one row per (C0, frame size) pair the paper gives."""
    lines = [
        f"Layout `{record['layout']}`; `{record['command']}` ({record['date']}; counting only, "
        "the same on any machine).",
        "",
        "| source | frame | C0 | paper params | ours | error | paper GMACs | ours | error |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in record["rows"]:
        err = 100 * (r["params"] / 1e6 - r["paper_params_m"]) / r["paper_params_m"]
        macs = "- | - | -"  # the paper gives MACs only in Tables 2 and 3 (1080p)
        if r["paper_gmacs"] is not None:
            gerr = 100 * (r["gmacs"] - r["paper_gmacs"]) / r["paper_gmacs"]
            macs = f"{r['paper_gmacs']:.2f} | {r['gmacs']:.2f} | {gerr:+.2f} %"
        source = r["source"] + (" (extra)" if r["extra"] else "")
        lines.append(
            f"| {source} | {r['width']}x{r['height']} | {r['c0']} | {r['paper_params_m']:g}M | "
            f"{r['params'] / 1e6:.4f}M | {err:+.2f} % | {macs} |"
        )
    return "\n".join(lines) + "\n"


def _recipe_rows(record: dict, recipe: str) -> dict[tuple[str, str], dict]:
    """benchmarks/quality.py's rows of one recipe, by (clip, size asked)."""
    return {(r["clip"], r["size"]): r for r in record["rows"] if r["recipe"] == recipe}


def quality_recipes(record: dict) -> str:
    """benchmarks/quality.py's record: the package's defaults (`default`) against the paper's
    training recipe (`paper`) at each clip and size, decoded PSNR and bpp of the coded files."""
    paper, default = _recipe_rows(record, "paper"), _recipe_rows(record, "default")
    lines = [
        machine_line(record) + f"; {record['epochs']} epochs.",
        "",
        "| clip | size (params) | paper's training: PSNR (dB) | bpp | default training: PSNR "
        "(dB) | bpp | default - paper |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    gains = []
    for key, d in default.items():
        if key not in paper:
            continue
        p = paper[key]
        gains.append(d["psnr"] - p["psnr"])
        lines.append(
            f"| {key[0]} | {key[1]} ({d['params']:,}) | {p['psnr']:.2f} | {p['bpp']:.4f} | "
            f"{d['psnr']:.2f} | {d['bpp']:.4f} | **{gains[-1]:+.2f} dB** |"
        )
    lines += [
        "",
        f"Mean gain **{sum(gains) / len(gains):+.2f} dB**, smallest {min(gains):+.2f} dB, "
        f"largest {max(gains):+.2f} dB over the {len(gains)} points.",
    ]
    return "\n".join(lines) + "\n"


def quality_sweep(record: dict) -> str:
    """benchmarks/quality.py's record of a sweep: the decoded PSNR (and bpp) of every recipe at
    each clip and size, the best in bold, and how often each recipe is the best."""
    recipes = list(dict.fromkeys(r["recipe"] for r in record["rows"]))
    by_recipe = {name: _recipe_rows(record, name) for name in recipes}
    keys = list(dict.fromkeys((r["clip"], r["size"]) for r in record["rows"]))
    lines = [
        machine_line(record) + f"; {record['epochs']} epochs; decoded PSNR (dB) and bpp.",
        "",
        "| clip | size (params) | " + " | ".join(f"`{n}`" for n in recipes) + " |",
        "| --- | --- |" + " ---: |" * len(recipes),
    ]
    wins = dict.fromkeys(recipes, 0)
    for key in keys:
        got = {n: by_recipe[n][key] for n in recipes if key in by_recipe[n]}
        best = max(got, key=lambda n: got[n]["psnr"])
        wins[best] += 1
        cells = []
        for n in recipes:
            if n not in got:
                cells.append("")
                continue
            text = f"{got[n]['psnr']:.2f} ({got[n]['bpp']:.3f})"
            cells.append(f"**{text}**" if n == best else text)
        params = next(iter(got.values()))["params"]
        lines.append(f"| {key[0]} | {key[1]} ({params:,}) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Best: " + ", ".join(f"`{n}` {k} of {len(keys)}" for n, k in wins.items() if k) + ".",
    ]
    return "\n".join(lines) + "\n"


def quality_layout(record: dict) -> str:
    """benchmarks/quality.py's record: the wide layout (the default) against the paper's
    (`paper-layout`) at each size asked, and each clip's BD figures of paper against wide."""
    wide, paper = _recipe_rows(record, "default"), _recipe_rows(record, "paper-layout")
    lines = [
        machine_line(record) + f"; {record['epochs']} epochs.",
        "",
        "| clip | size asked | layout | params | bpp | PSNR (dB) | paper vs wide |",
        "| :--- | :--- | :--- | ---: | ---: | ---: | ---: |",
    ]
    for key, w in wide.items():
        if key not in paper:
            continue
        p = paper[key]
        for name, r, gain in (("wide", w, ""), ("paper", p, f"{p['psnr'] - w['psnr']:+.2f} dB")):
            lines.append(
                f"| {key[0]} | {key[1]} | {name} | {r['params']:,} | {r['bpp']:.4f} | "
                f"{r['psnr']:.2f} | {gain} |"
            )
    lines.append("")
    for clip in dict.fromkeys(c for c, _ in wide):
        pairs = [(w, paper[k]) for k, w in wide.items() if k[0] == clip and k in paper]
        rate, psnr = _bd([w for w, _ in pairs], [p for _, p in pairs])
        lines.append(
            f"- {clip}: the paper layout's R-D curve against the wide one: BD-rate "
            f"**{rate:+.1f} %**, BD-PSNR **{psnr:+.2f} dB** (pchip, `gnerv.evaluation.bd`)."
        )
    return "\n".join(lines) + "\n"


def progressive_stages(record: dict) -> str:
    """benchmarks/progressive.py's record: each variant's prefixes against the respective model
    of the same parameter total, per clip (and per stage sizes and epochs, with a column each
    when the record holds several)."""

    def group(r: dict) -> tuple:
        return r["clip"], r["stage_sizes"], r["epochs"]

    respective = {
        (*group(r), r["stages"]): r["psnr"] for r in record["rows"] if r["variant"] == "respective"
    }
    sizes_column = len(record["stage_sizes"]) > 1
    epochs_column = len(record["epochs"]) > 1
    extra_head = ("stage sizes | " if sizes_column else "") + ("epochs | " if epochs_column else "")
    extra_rule = ("--- | " if sizes_column else "") + ("---: | " if epochs_column else "")
    lines = [
        machine_line(record) + f"; stages of {' and '.join(record['stage_sizes'])}, "
        f"{' and '.join(map(str, record['epochs']))} epochs for every stage"
        + (" and every model." if respective else "."),
        "",
        f"| clip | {extra_head}model | params | MACs/frame | bpp | PSNR (dB) |"
        + (" vs respective (equal params) |" if respective else ""),
        f"| :--- | {extra_rule}:--- | ---: | ---: | ---: | ---: |"
        + (" ---: |" if respective else ""),
    ]
    # A sweep of the residual stages (no respective models): where every variant's stage 1 is
    # the same model, one row shows it.
    stage1: dict[tuple, set[float]] = {}
    for r in record["rows"]:
        if r["stages"] == 1:
            stage1.setdefault(group(r), set()).add(r["psnr"])
    merged = set() if respective else {g for g, psnrs in stage1.items() if len(psnrs) == 1}
    shown = set()
    for r in record["rows"]:
        if r["variant"] == "respective":
            model, gain = f"respective {r['stages']}", ""
        else:
            model = f"progressive 1..{r['stages']}, {r['variant']}"
            ref = respective.get((*group(r), r["stages"]))
            gain = "" if ref is None else f"{r['psnr'] - ref:+.2f}"
        if r["variant"] != "respective" and r["stages"] == 1:
            if respective and not gain.strip("+-0."):
                continue  # stage 1 alone is respective 1 (the same model, seed and settings)
            if group(r) in merged:
                if group(r) in shown:
                    continue
                shown.add(group(r))
                model = "stage 1 (every variant)"
        extra = (f"{r['stage_sizes']} | " if sizes_column else "") + (
            f"{r['epochs']} | " if epochs_column else ""
        )
        lines.append(
            f"| {r['clip']} | {extra}{model} | {r['params']:,} | "
            f"{r['macs_per_frame'] / 1e6:.1f} M | {r['bpp']:.4f} | {r['psnr']:.2f} |"
            + (f" {gain} |" if respective else "")
        )
    return "\n".join(lines) + "\n"


def rd_points(record: dict) -> str:
    """benchmarks/rd_rate.py's record of one clip: every operating point of every model size,
    the paper's 8-bit min/max first, and the envelope's BD figures against the paper's curve."""
    (clip, res), *_ = record.items()
    lines = [
        rd_machine_line(res),
        "",
        "| model | coding | bytes | bpp | PSNR (dB) | side info | fine-tune share |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in res["models"]:
        for r in m["rows"]:
            coding = "paper: 8-bit min/max" if r["label"] == "paper8" else r["label"]
            share = f"{100 * r['finetune_share']:.1f} %" if r.get("finetune_share") else ""
            lines.append(
                f"| {m['size']} | {coding} | {r['bytes']:,} | {r['bpp']:.4f} | {r['psnr']:.2f} | "
                f"{100 * r['side_share']:.2f} % | {share} |"
            )
    sm = res["summary"]
    lines += [
        "",
        f"{clip}: the rate path's lower envelope against the paper's curve: BD-rate "
        f"**{sm['bd_rate_percent']:+.1f} %**, BD-PSNR **{sm['bd_psnr_db']:+.2f} dB** (pchip, "
        f"`gnerv.evaluation.bd`); the lowest rate-path point inside the paper curve's rate range "
        f"lies {sm['min_psnr_vs_paper_at_equal_size']:+.2f} dB from it at equal file size; side "
        f"information at most {100 * sm['max_side_share_files_over_50kB']:.2f} % of any file of "
        f"50 KB or more; fine-tunes at most {100 * sm['max_finetune_share']:.1f} % of their "
        "fit's training time.",
    ]
    return "\n".join(lines) + "\n"


def bitstream(record: dict) -> str:
    """benchmarks/bench_bitstream.py's table: where a real file's bytes go."""
    sz = record["sizes"]
    entropy = record["entropy_bytes"]
    h, w = record["size_hw"]
    lines = [
        machine_line(record) + f"; {record['params']:,} parameters fitted {record['epochs']} "
        f"epochs to {record['frames']} frames at {h}x{w}, {record['bits']} bits.",
        "",
        "| | bytes |",
        "| --- | ---: |",
        f"| empirical entropy of all symbols | {entropy:,.0f} |",
        f"| coded payload | {sz['payload']:,} (**{record['payload_over_entropy']:.4f} x** "
        "entropy) |",
        f"| header (magic, version, length, JSON, CRC) | {sz['header']:,} |",
        f"| tables: min/max pairs | {sz['minmax']:,} |",
        f"| tables: entropy tables inside the blobs | {sz['entropy_tables']:,} |",
        f"| file | {sz['total']:,} ({record['file_over_entropy']:.3f} x entropy), "
        f"**{record['bpp']:.4f} bpp** |",
        "",
        f"PSNR {record['psnr_float']:.2f} dB before quantization, "
        f"{record['psnr_quantized']:.2f} dB after; the min/max pairs are "
        f"{100 * sz['minmax'] / sz['total']:.1f} % of the file.",
    ]
    return "\n".join(lines) + "\n"


def ablation_time_branch(record: dict) -> str:
    """benchmarks/ablations.py's record: Table 4's layout for each video, as the ablation's own
    markdown writes it."""
    from gnerv.studies.ablations import time_branch_markdown

    return "\n".join(
        time_branch_markdown(v["time_branch"]["columns"]) for v in record["videos"].values()
    )


def ablation_epochs(record: dict) -> str:
    """benchmarks/ablations.py's record: Fig. 7 as a table for each video."""
    from gnerv.studies.ablations import epochs_markdown

    return "\n".join(epochs_markdown(v["epochs"]["points"]) for v in record["videos"].values())


def ablation_progressive(record: dict) -> str:
    """benchmarks/ablations.py's record: Fig. 8 as a table for each video, and the run."""
    from gnerv.studies.ablations import progressive_markdown

    tables = [progressive_markdown(v["progressive"]["rows"]) for v in record["videos"].values()]
    run = machine_line(record) + f"; {record['run_seconds'] / 60:.1f} minutes in all."
    return "\n".join([*tables, run]) + "\n"


def entropy(record: dict) -> str:
    """benchmarks/bench_entropy.py's table: the ANS coder's speed and its payload against the
    empirical entropy."""
    return table(
        machine_line(record) + f"; constriction {record['constriction']}, median of "
        f"{record['repeats']}.",
        "| symbols | encode (M symbols/s) | decode (M symbols/s) | entropy (bits/symbol) "
        "| payload / entropy | table (bytes) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        (
            f"| {r['symbols']:,} | {r['encode_msym_s']:.1f} | {r['decode_msym_s']:.1f} | "
            f"{r['bits_per_symbol_entropy']:.4f} | {r['payload_over_entropy']:.5f} | "
            f"{r['table_bytes']} |"
            for r in record["rows"]
        ),
    )


def extract(record: dict) -> str:
    """benchmarks/bench_extract.py's table: frames/s read through imageio-ffmpeg per size."""
    src = record["source"]
    return table(
        machine_line(record) + f"; {record['video']} ({src['height']}x{src['width']} "
        f"{src.get('codec')}), median of {record['repeats']}.",
        "| size | frames | frames/s |",
        "| --- | ---: | ---: |",
        (f"| {r['size']} | {r['frames']} | {r['fps']:.1f} |" for r in record["rows"]),
    )


RENDERERS: dict[str, Callable[[dict], str]] = {
    "entropy": entropy,
    "extract": extract,
    "quality_recipes": quality_recipes,
    "quality_layout": quality_layout,
    "progressive_stages": progressive_stages,
    "rd_points": rd_points,
    "bitstream": bitstream,
    "ablation_time_branch": ablation_time_branch,
    "ablation_epochs": ablation_epochs,
    "ablation_progressive": ablation_progressive,
    "paper_counts": paper_counts,
    "decode_paths": decode_paths,
    "train_variants": train_variants,
    "decode_renders": decode_renders,
    "decode_budget": decode_budget,
    "render_candidates": render_candidates,
    "render_contract": render_contract,
    "load": load,
    "default_coding": default_coding,
    "coding_ssim": coding_ssim,
    "time_to_quality": time_to_quality,
    "gpu": gpu,
    "loss": loss,
    "demo": demo,
    "segments": segments,
    "segments_memory": segments_memory,
    "decode_memory": decode_memory,
    "quality_sweep": quality_sweep,
    "segments_parallel": segments_parallel,
}


def render(text: str) -> tuple[str, list[str]]:
    """`text` with every marked table rendered from its record, and the tables' names."""
    names = []

    def one(m: re.Match) -> str:
        name, record = m["name"], ROOT / m["record"]
        if name not in RENDERERS:
            raise SystemExit(f"unknown table renderer {name!r}: one of {', '.join(RENDERERS)}")
        names.append(f"{name} ({m['record']})")
        body = RENDERERS[name](json.loads(record.read_text()))
        return m["open"] + body + m["close"]

    return MARKER.sub(one, text), names


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="report tables that differ; write nothing")
    args = p.parse_args()
    stale = []
    for doc in DOCS:
        text = doc.read_text()
        new, names = render(text)
        if new != text:
            stale.append(f"{doc.relative_to(ROOT)}: {', '.join(names)}")
            if not args.check:
                doc.write_text(new)
    if args.check and stale:
        print("tables differ from their records (python benchmarks/render_tables.py):")
        print("\n".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
