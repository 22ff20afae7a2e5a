"""Decoding speed: frames/s of the decoder's rendering against a plain eager forward and the
machine's conv ceiling, and where the time goes.

    python benchmarks/bench_decode.py                          # 180x320 and 720p, three sizes
    python benchmarks/bench_decode.py --shapes 180x320 --batches 1 8 --repeats 5

For each frame size, model size and batch: `decoder` is what `gnerv decode` runs per batch
(gnerv.codec.decode.decode_layers on a model rebuilt from a real .gnerv: NHWC weights, the thread
choice of gnerv/runtime/threads.py, the uint8 conversion), `eager` a plain fp32 forward of the same
model (NCHW, `model(t)` per batch, no conversion). Ceiling: FLOP/s of the model's most expensive
conv as one dense conv2d at batch 32 (benchmarks/bench_train.py); `of ceiling` = the model's
conv FLOP/s at that batch over it. A torch.profiler pass at each batch splits the decoder's time
into convolutions and the rest (normalisation, GELU, shuffle, layout copies, conversion).
Random weights (speed does not depend on them).

Paths, side by side in one run (`--paths`): `plain` is the plain decoder (glibc's default heap,
each large buffer a fresh mmap; the `reference` kernel: the forward as in training, torch's NHWC
pixel shuffle and a new tensor per step), `heap` adds the kept heap (gnerv/runtime/heap.py),
`render1` also the `lean` kernel (gnerv.codec.kernels: the blocked shuffle, in-place GELU, shift
and sigmoid): all three give the same bits, render 1's. `render2` is the `fused` kernel, the
arithmetic files of render 2 name (convs fused with their GELU or sigmoid in oneDNN, the shift's
sums in a fixed order, the time path frame by frame: exact and the same for every batch and
thread count, other last bits than render 1's). `render3` is the `tapped` kernel (render 2
with the head computed by taps, what the encoder writes). `bf16` is render 1's kernel with
`--precision bf16` (lossy; CPUs with AVX-512 BF16 or AMX, skipped elsewhere); its `of ceiling`
is against the fp32 ceiling, so it can pass 100 %. Each (frame, size) is measured in a fresh
process per path, the paths alternating, so a drift of the machine's load hits all;
`--rounds N` repeats that alternation N times and the table takes each figure's median round
(decode figures on a shared VM move by 10-30 % from one minute to the next). Prints a table;
writes benchmarks/out/decode.json (every round's rows).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from bench_entropy import median_seconds
from bench_train import conv_ceiling, dominant_conv
from record import write_record

from gnerv.codec import bitstream as bs
from gnerv.codec.config import GNeRVConfig, c0_for_size, count_params, macs_per_frame
from gnerv.codec.decode import bf16_supported, decode_layers, load_layers, prepare_layers
from gnerv.codec.model import GNeRV, frame_times
from gnerv.runtime.heap import keep_freed_memory
from gnerv.runtime.sizes import parse_param_count
from gnerv.runtime.threads import prepare_threads

ROOT = Path(__file__).resolve().parent.parent
PATHS = {  # name -> (kept heap, kernel, precision)
    "plain": (False, "reference", "fp32"),
    "heap": (True, "reference", "fp32"),
    "render1": (True, "lean", "fp32"),  # render 1's exact arithmetic
    "render2": (True, "fused", "fp32"),  # render 2's exact arithmetic
    "render3": (True, "tapped", "fp32"),  # render 3's: render 2 with the head by taps
    "bf16": (True, "lean", "bf16"),  # render 1's kernel, with --precision bf16 (lossy)
}
OUT = ROOT / "benchmarks" / "out"
CONV_OPS = ("conv", "mkldnn_convolution", "onednn", "convolution")


def conv_share(fn) -> dict[str, float]:
    """Self CPU time of one fn() call split into convolutions and the rest, by op name."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    by_op: dict[str, float] = {}
    for event in prof.key_averages():
        by_op[event.key] = by_op.get(event.key, 0.0) + event.self_cpu_time_total
    total = sum(by_op.values()) or 1.0
    conv = sum(t for name, t in by_op.items() if any(c in name.lower() for c in CONV_OPS))
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:8]
    return {
        "conv_share": conv / total,
        "top_ops": {name: t / total for name, t in top},
    }


def write_model(
    path: Path, height: int, width: int, size: str, n_frames: int, **cfg_kwargs
) -> tuple[GNeRVConfig, GNeRV]:
    """A random model (seed 0) of about `size` parameters, coded at 8 bits into `path`; any
    other GNeRVConfig field (layout, kernel_size, ...) as given."""
    common = {"height": height, "width": width, **cfg_kwargs}
    cfg = GNeRVConfig(c0=c0_for_size(parse_param_count(size), **common), **common)
    torch.manual_seed(0)
    model = GNeRV(cfg).eval()
    facts = bs.video_facts(n_frames, height, width, 25.0)
    bs.write_gnerv(path, bs.compress_model(model, 8, facts, bs.base_stage("ab" * 32)))
    return cfg, model


def one_model(height: int, width: int, size: str, n_frames: int, tmp: Path):
    """A random model of about `size` parameters, coded into a .gnerv and rebuilt from it."""
    path = tmp / f"{height}x{width}_{size}.gnerv"
    cfg, model = write_model(path, height, width, size, n_frames)
    return cfg, model, load_layers([path])


def measure(args, shape: str, size: str) -> list[dict]:
    """One (frame size, model size) in this process: a row per batch."""
    device = torch.device("cpu")
    height, width = (int(v) for v in shape.split("x"))
    big = height * width >= 720 * 1280
    rows = []
    _, kernel, precision = PATHS[args.path]
    if precision == "bf16" and not bf16_supported(device):
        return rows
    with tempfile.TemporaryDirectory() as tmp:
        frames = args.frames_720p if big else args.frames
        cfg, eager, files = one_model(height, width, size, frames, Path(tmp))
        models = prepare_layers(files, device)
        ceiling = conv_ceiling(dominant_conv(cfg), device, False, True)
        flops_per_frame = 2 * macs_per_frame(cfg)
        for batch in args.batches:
            if big and batch > args.max_720p_batch:
                continue
            n = max(batch, frames // batch * batch)
            idx = list(range(n))

            def decoder(idx=idx, batch=batch, files=files, models=models) -> None:
                decode_layers(files, idx, device, batch, models, precision, kernel)

            def plain(n=n, batch=batch, eager=eager) -> None:
                with torch.inference_mode():
                    for i in range(0, n, batch):
                        eager(frame_times(torch.arange(i, min(i + batch, n)), n))

            dec = n / median_seconds(decoder, args.repeats)
            ref = n / median_seconds(plain, args.repeats)
            rows.append(
                {
                    "shape": shape,
                    "size": size,
                    "params": count_params(cfg),
                    "batch": batch,
                    "path": args.path,
                    "decoder_fps": dec,
                    "eager_fps": ref,
                    "of_ceiling": dec * flops_per_frame / ceiling,
                    "ceiling_gflops": ceiling / 1e9,
                    **conv_share(decoder),
                }
            )
    return rows


def record(out: str, rows: list[dict]) -> None:
    """The JSON record, rewritten as rows come (a long run stopped early keeps what it has)."""
    capability = torch.backends.cpu.get_cpu_capability()
    write_record(out, torch={"version": torch.__version__, "capability": capability}, rows=rows)


def in_child(args, shape: str, size: str, path: str, tmp: Path) -> list[dict]:
    """measure() in a fresh process for the path, with the thread settings `gnerv decode` uses."""
    out = tmp / "rows.json"
    cmd = [sys.executable, __file__, "--worker", "--shapes", shape, "--sizes", size]
    cmd += ["--batches", *map(str, args.batches), "--frames", str(args.frames)]
    cmd += ["--frames-720p", str(args.frames_720p), "--repeats", str(args.repeats)]
    cmd += ["--max-720p-batch", str(args.max_720p_batch), "--out", str(out), "--path", path]
    env = dict(os.environ)
    prepare_threads(env)
    subprocess.run(cmd, check=True, env=env)
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", default=["180x320", "720x1280"])
    p.add_argument("--sizes", nargs="+", default=["0.1M", "0.3M", "1M"])
    p.add_argument(
        "--sizes-720p",
        nargs="+",
        default=["0.5M", "1M", "3M"],
        help="model sizes at 720p and above (the smallest GNeRV there is 0.13M)",
    )
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--frames", type=int, default=32, help="frames rendered per measurement")
    p.add_argument("--frames-720p", type=int, default=8, help="the same at 720p and above")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-720p-batch", type=int, default=8, help="memory: 720p batches above")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every path this many times, alternating; the table takes the median",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--path", default="render1", choices=list(PATHS), help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(OUT / "decode.json"))
    args = p.parse_args()
    if args.worker:  # one (shape, size) for one path
        if PATHS[args.path][0]:
            keep_freed_memory()
        Path(args.out).write_text(json.dumps(measure(args, args.shapes[0], args.sizes[0])))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            height, width = (int(v) for v in shape.split("x"))
            for size in args.sizes_720p if height * width >= 720 * 1280 else args.sizes:
                for round_, path in itertools.product(range(args.rounds), args.paths):
                    for row in in_child(args, shape, size, path, Path(tmp)):
                        rows.append({**row, "round": round_})
                        print(
                            f"{shape} {size} ({row['params'] / 1e6:.3f}M) batch {row['batch']} "
                            f"{path}: decoder {row['decoder_fps']:.1f} fps, eager "
                            f"{row['eager_fps']:.1f} fps, {row['of_ceiling']:.0%} of ceiling, "
                            f"convs {row['conv_share']:.0%}",
                            flush=True,
                        )
                    record(args.out, rows)
    table = summary(rows)
    plain = {
        (r["shape"], r["size"], r["batch"]): r["decoder_fps"]
        for r in table
        if r["path"] == "plain"
    }
    print(
        "\n| frame | params | batch | path | decoder fps | rounds | x plain | eager fps "
        "| of conv ceiling | convs |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        base = plain.get((r["shape"], r["size"], r["batch"]))
        gain = "" if base is None or r["path"] == "plain" else f"{r['decoder_fps'] / base:.2f}x"
        spread = " / ".join(f"{v:.1f}" for v in r["decoder_fps_rounds"])
        print(
            f"| {r['shape']} | {r['params'] / 1e6:.3f}M | {r['batch']} | {r['path']} | "
            f"{r['decoder_fps']:.1f} | {spread} | {gain} | {r['eager_fps']:.1f} | "
            f"{r['of_ceiling']:.0%} | {r['conv_share']:.0%} |"
        )
    record(args.out, rows)


def summary(rows: list[dict]) -> list[dict]:
    """One row per (frame, size, batch, path): the round with the median decoder frames/s (the
    lower middle for an even count), with every round's figure beside it."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["shape"], r["size"], r["batch"], r["path"]), []).append(r)
    table = []
    for group in groups.values():
        ranked = sorted(group, key=lambda r: r["decoder_fps"])
        middle = ranked[(len(ranked) - 1) // 2]
        table.append({**middle, "decoder_fps_rounds": [r["decoder_fps"] for r in group]})
    return table


if __name__ == "__main__":
    main()
