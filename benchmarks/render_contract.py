"""What a decoder's frames depend on, render by render, on a real chain of layers.

    python benchmarks/render_contract.py --frames results/cockatoo/frames.npy \
        --layers results/cockatoo/stage1/stage1.gnerv results/cockatoo/stage2/stage2.gnerv \
                 results/cockatoo/stage3/stage3.gnerv

Each render version is forced on the same layers (gnerv.codec.kernels.RENDER_KERNELS: render 1 =
`lean`, render 2 = `fused`, render 3 = `tapped`), whatever render the files name:

- `quality`: the decoded PSNR against the source frames for the first 1..k layers, per render;
- `settings`: the float sums and decoded bytes with 1, 2 and 3 threads and batch 1, 7, 8 and 32,
  each against batch 8 with 2 threads: how many differ;
- `isa`: the same decode in a child process with oneDNN's and torch's kernels capped at AVX2 and
  at SSE4.1 (gnerv.codec.kernels.ISA_CAPS: oneDNN's, torch's and MKL's caps), against the
  native one;
- `bf16`: where the CPU computes bfloat16 natively, the opt-in `--precision bf16` render's PSNR for
  the first 1..k layers against the files' own (exact) render.

Writes benchmarks/records/render_contract.json (docs/bitstream.md renders it).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from record import write_record

from gnerv.codec.decode import (
    bf16_supported,
    decode_float,
    decode_layers,
    load_layers,
)
from gnerv.codec.kernels import ISA_CAPS, RENDER_KERNELS
from gnerv.codec.model import to_uint8
from gnerv.evaluation.metrics import mean_psnr

OUT = Path(__file__).resolve().parent / "records" / "render_contract.json"
SETTINGS = [(threads, batch) for threads in (1, 2, 3) for batch in (1, 7, 8, 32)]
REFERENCE = (2, 8)


def sums(files: list, kernel: str, batch: int) -> torch.Tensor:
    """The layers' float sum over every frame, rendered by `kernel` in batches of `batch`."""
    return decode_float(files, range(files[0].n_frames), "cpu", batch, kernel=kernel)


def compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    da = to_uint8(a).numpy().astype(int)
    db = to_uint8(b).numpy().astype(int)
    return {
        "floats_differing": int((a != b).sum()),
        "floats": a.numel(),
        "max_float_diff": float((a - b).abs().max()),
        "bytes_differing": int((da != db).sum()),
        "max_levels": int(np.abs(da - db).max()),
    }


def child(kernel: str, batch: str, layers: list[str]) -> None:
    """In a child process (the ISA caps set in its environment): the chain's sums to stdout."""
    torch.set_num_threads(2)
    np.save(sys.stdout.buffer, sums(load_layers(layers), kernel, int(batch)).numpy())


def in_child(layers: list[str], kernel: str, batch: int, caps: dict[str, str]) -> torch.Tensor:
    env = {**os.environ, **caps}
    cmd = [sys.executable, __file__, "--child", kernel, str(batch), *layers]
    done = subprocess.run(cmd, env=env, capture_output=True, check=True)
    return torch.from_numpy(np.load(io.BytesIO(done.stdout)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", nargs="+", required=True, help="a chain of .gnerv layers")
    p.add_argument("--frames", required=True, help="the source frames (.npy, uint8 NHWC)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    source = np.load(args.frames)
    chain = load_layers(args.layers)  # read and entropy-decoded once
    before = torch.get_num_threads()
    quality, settings, isa = [], [], []
    for render, kernel in RENDER_KERNELS.items():
        for k in range(1, len(args.layers) + 1):
            decoded = to_uint8(sums(chain[:k], kernel, 8)).numpy()
            psnr = mean_psnr(source, decoded)
            quality.append({"render": render, "layers": k, "psnr": psnr})
            print(f"render {render}, {k} layers: {psnr:.4f} dB", flush=True)
        torch.set_num_threads(REFERENCE[0])
        ref = sums(chain, kernel, REFERENCE[1])
        for threads, batch in SETTINGS:
            torch.set_num_threads(threads)
            row = {"render": render, "threads": threads, "batch": batch}
            settings.append({**row, **compare(sums(chain, kernel, batch), ref)})
            print(settings[-1], flush=True)
        torch.set_num_threads(before)
        for name, caps in ISA_CAPS.items():
            got = in_child(args.layers, kernel, REFERENCE[1], caps)
            isa.append({"render": render, "isa": name, **compare(got, ref)})
            print(isa[-1], flush=True)
    bf16 = []
    if bf16_supported(torch.device("cpu")):
        for k in range(1, len(chain) + 1):
            files = chain[:k]
            exact = decode_layers(files, range(files[0].n_frames), "cpu", 8)
            fast = decode_layers(files, range(files[0].n_frames), "cpu", 8, precision="bf16")
            row = {
                "layers": k,
                "render": files[0].render,
                "psnr_exact": mean_psnr(source, exact),
                "psnr_bf16": mean_psnr(source, fast),
            }
            bf16.append(row)
            print(row, flush=True)
    write_record(
        args.out,
        torch={"version": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability()},
        layers=args.layers,
        frames=args.frames,
        reference={"threads": REFERENCE[0], "batch": REFERENCE[1]},
        quality=quality,
        settings=settings,
        isa=isa,
        bf16=bf16,
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main()
