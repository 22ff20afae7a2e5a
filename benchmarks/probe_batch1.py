"""What the exact decode path could still gain at batch 1, and at what cost in bits.

    python benchmarks/probe_batch1.py            # 0.1M model at 180x320, about 2 minutes

Four probes on a random 0.1M GNeRV at Bunny's frame size (180x320), in one process:

- `fused`: the bf16 render's structure in fp32 (gnerv.codec.kernels.bf16_forward with fp32
  weights: each conv fused with its GELU in oneDNN, the shift from sums) against the default
  exact forward, frames per second at batch 1 and 8, alternating, and how many decoded bytes differ.
- `gelu`: torch's GELU on the last block's NHWC output against the same values as a flat
  vector (ms), and whether each gives the same bits with 1, 2 and 3 threads.
- `subpixel`: the head conv computed on the sub-pixel grid (the 120-channel output before the
  last shuffle, a 3x3 conv to 12 outputs, then a shuffle of 3-channel pixels) against shuffle +
  head as today (ms per batch); the head alone, and padded to 16 outputs.
- `threads`: the default decode at batch 1 with 1 and with 2 threads: differing floats, bytes.

Prints each figure; writes benchmarks/out/probe_batch1.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_decode import one_model
from bench_entropy import median_seconds
from record import write_record

from gnerv.codec import kernels
from gnerv.codec.decode import decode_float, decode_layers, prepare_layers
from gnerv.codec.kernels import shuffle_blocked
from gnerv.codec.model import GNeRV, frame_times, to_uint8

OUT = Path(__file__).resolve().parent / "out" / "probe_batch1.json"


def median_ms(fn, repeats: int) -> float:
    return median_seconds(fn, repeats) * 1e3


def fused_fp32(model: GNeRV, t: torch.Tensor) -> torch.Tensor:
    """The bf16 kernel's structure with fp32 weights (the kept bf16 weights swapped out)."""
    keep = kernels.bf16_weights
    kernels.bf16_weights = lambda conv, factor: (
        kernels.blocked_weights(conv, factor) if factor else (conv.weight, conv.bias)
    )
    try:
        x, stats = model.time_path(t)
        x = x.contiguous(memory_format=torch.channels_last)
        for j, block in enumerate(model.blocks):
            if stats is not None:
                mean, std = stats[j]
                x = kernels.distribution_shift_bf16(x, mean, 1.0 + std)
            x = kernels.block_bf16(block, x)
        return kernels.conv_bf16(model.head, x, "none" if model.cfg.residual else "sigmoid")
    finally:
        kernels.bf16_weights = keep


def probe_fused(model: GNeRV, n: int, repeats: int) -> dict:
    out = {}
    for batch in (1, 8):

        def run(fn, batch=batch):
            with torch.inference_mode():
                return torch.cat(
                    [
                        to_uint8(fn(frame_times(torch.arange(lo, min(lo + batch, n)), n)))
                        for lo in range(0, n, batch)
                    ]
                )

        exact, fused = run(model), run(lambda t: fused_fp32(model, t))
        times: dict[str, list[float]] = {"today": [], "fused": []}
        for _ in range(repeats):
            for name, fn in (("today", model), ("fused", lambda t: fused_fp32(model, t))):
                t0 = time.perf_counter()
                run(fn)
                times[name].append(time.perf_counter() - t0)
        fps = {k: n / sorted(v)[len(v) // 2] for k, v in times.items()}
        out[f"batch{batch}"] = {
            "today_fps": fps["today"],
            "fused_fps": fps["fused"],
            "ratio": fps["fused"] / fps["today"],
            "bytes_differing": int((exact != fused).sum()),
            "bytes": exact.numel(),
        }
        print(f"fused fp32, batch {batch}: {out[f'batch{batch}']}", flush=True)
    return out


def probe_gelu(repeats: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(1, 30, 180, 320).contiguous(memory_format=torch.channels_last)
    flat = x.permute(0, 2, 3, 1).reshape(-1)
    with torch.inference_mode():
        out = {
            "nhwc_ms": median_ms(lambda: torch.ops.aten.gelu_(x.clone()), repeats),
            "flat_ms": median_ms(lambda: torch.ops.aten.gelu_(flat.clone()), repeats),
            "clone_ms": median_ms(lambda: flat.clone(), repeats),  # both include one clone
        }
        small = torch.randn(1, 11, 45, 80).contiguous(memory_format=torch.channels_last)
        count = torch.get_num_threads()
        by_threads = {}
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            by_threads[threads] = (
                F.gelu(small),
                F.gelu(small.permute(0, 2, 3, 1).reshape(-1)),
            )
        torch.set_num_threads(count)
    for k in (2, 3):
        out[f"nhwc_values_differing_1_vs_{k}_threads"] = int(
            (by_threads[1][0] != by_threads[k][0]).sum()
        )
        out[f"flat_values_differing_1_vs_{k}_threads"] = int(
            (by_threads[1][1] != by_threads[k][1]).sum()
        )
    print(f"gelu: {out}", flush=True)
    return out


def probe_subpixel(repeats: int, channels: int = 30) -> dict:
    """Head on the sub-pixel grid: W'[(i, j, o), (i', j', c), ky, kx] = W[o, c, dy + 1, dx + 1]
    where the high-res tap (2Y + i + dy) falls on low-res row Y + ky - 1, sub-row i'."""
    torch.manual_seed(0)
    cl = torch.channels_last
    w = torch.randn(3, channels, 3, 3) * 0.1
    b = torch.randn(3)
    wp = torch.zeros(2, 2, 3, 2, 2, channels, 3, 3)
    for i in range(2):
        for j in range(2):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ky, ip = (i + dy) // 2 + 1, (i + dy) % 2
                    kx, jp = (j + dx) // 2 + 1, (j + dx) % 2
                    wp[i, j, :, ip, jp, :, ky, kx] = w[:, :, dy + 1, dx + 1]
    wp = wp.reshape(12, 4 * channels, 3, 3).contiguous(memory_format=cl)
    bp = b.repeat(4)
    wc = w.contiguous(memory_format=cl)
    out = {}
    with torch.inference_mode():
        for batch in (1, 8):
            z = torch.randn(batch, 4 * channels, 90, 160).contiguous(memory_format=cl)

            def today(z=z):
                return F.conv2d(shuffle_blocked(z, 2), wc, b, padding=1)

            def subpixel(z=z):
                return shuffle_blocked(F.conv2d(z, wp, bp, padding=1), 2)

            x = shuffle_blocked(z, 2)
            w16 = torch.cat([w, torch.zeros(13, channels, 3, 3)]).contiguous(memory_format=cl)
            b16 = torch.cat([b, torch.zeros(13)])
            head = F.conv2d(x, wc, b, padding=1)
            out[f"batch{batch}"] = {
                "max_abs_diff": float((today() - subpixel()).abs().max()),
                "today_ms": median_ms(today, repeats),
                "subpixel_ms": median_ms(subpixel, repeats),
                "head_ms": median_ms(lambda x=x: F.conv2d(x, wc, b, padding=1), repeats),
                # oneDNN computes 16 output channels a vector: 3 or 16 cost the same
                "head_16_outputs_ms": median_ms(
                    lambda x=x, w16=w16, b16=b16: F.conv2d(x, w16, b16, padding=1), repeats
                ),
                "head_16_same_bits": torch.equal(F.conv2d(x, w16, b16, padding=1)[:, :3], head),
            }
            print(f"sub-pixel head, batch {batch}: {out[f'batch{batch}']}", flush=True)
    return out


def probe_threads(files, n: int) -> dict:
    idx = list(range(n))
    count = torch.get_num_threads()
    res = {}
    for threads in (2, 1):
        torch.set_num_threads(threads)
        res[threads] = (decode_float(files, idx, "cpu", 1), decode_layers(files, idx, "cpu", 1))
    torch.set_num_threads(count)
    (f2, u2), (f1, u1) = res[2], res[1]
    out = {
        "floats_differing": int((f1 != f2).sum()),
        "floats": f1.numel(),
        "bytes_differing": int((np.abs(u1.astype(int) - u2.astype(int)) > 0).sum()),
        "bytes": u1.size,
    }
    print(f"threads 1 vs 2, batch 1: {out}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        _, _, files = one_model(180, 320, "0.1M", args.frames, Path(tmp))
        model = prepare_layers(files, torch.device("cpu"))[0][0]
        figures = {
            "fused": probe_fused(model, args.frames, args.repeats),
            "gelu": probe_gelu(args.repeats * 3),
            "subpixel": probe_subpixel(args.repeats * 3),
            "threads": probe_threads(files, args.frames),
        }
    write_record(args.out, **figures)


if __name__ == "__main__":
    main()
