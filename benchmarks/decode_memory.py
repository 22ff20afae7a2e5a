"""Peak memory of `gnerv decode` against the estimate its decode limits use.

    python benchmarks/decode_memory.py --out benchmarks/records/decode_memory.json

The decoder refuses a file whose estimated peak memory at --batch exceeds --max-memory
(gnerv.codec.limits.decode_cost): DECODE_BASE_BYTES, plus DECODE_BYTES_PER_PARAM bytes per
parameter, plus ACTIVATION_FACTOR x batch x 4 bytes x the largest feature map of one frame, plus
4 bytes x the tap planes render 3's head holds (gnerv.codec.limits.head_tap_planes). The
estimate must not be below what a decode really holds. Per case (frame size, layout, kernel
size, model size, batch), a random model is coded into a .gnerv, then a child process runs the
real command line (`gnerv decode FILE -o out.npy --batch B --device cpu` on B frames, through
gnerv.cli.main) with its high-water mark reset just before (Linux's /proc/self/clear_refs): the
decode's own peak is the high-water mark less the resident memory before it (interpreter and
torch). Recorded per case: that peak, the estimate, their ratio, and the activation factor the
peak implies, once the base, the weights' share of the estimate, the head's tap planes and the
decoded frames are taken off.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_decode import write_model
from record import write_record

from gnerv.codec.config import count_params
from gnerv.codec.limits import (
    ACTIVATION_FACTOR,
    DECODE_BASE_BYTES,
    DECODE_BYTES_PER_PARAM,
    decode_cost,
    head_tap_planes,
    largest_feature_map,
)
from gnerv.runtime.errors import GnervError

ROOT = Path(__file__).resolve().parent.parent

# (frame size, model size) pairs measured for each layout, kernel size and batch.
CASES = ("180x320:0.3M", "720x1280:1M", "1080x1920:3M")

CHILD = r"""
import json, re, sys
from pathlib import Path

def status(key):
    text = Path("/proc/self/status").read_text()
    return int(re.search(key + r":\s+(\d+) kB", text).group(1)) << 10

import numpy as np, torch
import gnerv.cli.codec, gnerv.codec.decode  # imported before the mark: start-up, not decoding
from gnerv.cli import main

args = json.loads(sys.argv[1])
Path("/proc/self/clear_refs").write_text("5")  # the high-water mark := resident memory now
before = status("VmRSS")
rc = main(["decode", args["file"], "-o", args["out"], "--batch", str(args["batch"]),
           "--device", "cpu", "--frames", f"0:{args['batch']}"])
print(json.dumps({"rc": rc, "before": before, "peak": status("VmHWM")}))
"""


def measure(file: Path, out: Path, batch: int) -> dict:
    """The decode's peak in a fresh process (see the module's docstring)."""
    args = json.dumps({"file": str(file), "out": str(out), "batch": batch})
    got = subprocess.run(
        [sys.executable, "-c", CHILD, args], capture_output=True, text=True, check=False
    )
    lines = got.stdout.strip().splitlines()
    if got.returncode != 0 or not lines:
        raise SystemExit(f"decode of {file.name} failed:\n{got.stderr[-2000:]}")
    figures = json.loads(lines[-1])
    if figures["rc"] != 0:
        raise SystemExit(f"decode of {file.name} failed:\n{got.stderr[-2000:]}")
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), help="FRAME:SIZE, e.g. 720x1280:1M")
    p.add_argument("--layouts", nargs="+", default=["wide", "paper"])
    p.add_argument("--kernels", nargs="+", type=int, default=[3, 5, 7])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "decode_memory.json")
    args = p.parse_args()

    rows = []
    n = max(args.batches)
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            shape, size = case.split(":")
            height, width = (int(v) for v in shape.split("x"))
            for layout in args.layouts:
                for kernel in args.kernels:
                    file = Path(tmp) / f"{shape}_{size}_{layout}_k{kernel}.gnerv"
                    try:
                        cfg, _ = write_model(
                            file, height, width, size, n, layout=layout, kernel_size=kernel
                        )
                    except GnervError as e:  # too small for this kernel or layout
                        print(f"{shape} {size} {layout} k{kernel}: skipped ({e})", flush=True)
                        continue
                    params = count_params(cfg)
                    for batch in args.batches:
                        got = measure(file, Path(tmp) / "out.npy", batch)
                        peak = got["peak"] - got["before"]
                        estimate = decode_cost(cfg, batch, batch)["peak_memory"]
                        frames = 3 * batch * height * width  # the decoded uint8 frames
                        weights = DECODE_BASE_BYTES + DECODE_BYTES_PER_PARAM * params
                        planes = 4 * head_tap_planes(cfg, batch)
                        unit = 4 * batch * largest_feature_map(cfg)
                        row = {
                            "frame": shape, "size": size, "layout": layout, "kernel": kernel,
                            "c0": cfg.c0, "params": params, "batch": batch,
                            "peak_bytes": peak, "estimate_bytes": estimate,
                            "peak_over_estimate": peak / estimate,
                            "implied_factor": (peak - frames - weights - planes) / unit,
                        }  # fmt: skip
                        rows.append(row)
                        print(
                            f"{shape} {size:>5} {layout:5} k{kernel} batch {batch}: peak "
                            f"{peak / 2**20:8.1f} MiB, estimate {estimate / 2**20:8.1f} MiB "
                            f"({row['peak_over_estimate']:.2f}), implied factor "
                            f"{row['implied_factor']:.2f}",
                            flush=True,
                        )
    worst = max(r["implied_factor"] for r in rows)
    print(f"largest implied factor {worst:.2f}; ACTIVATION_FACTOR = {ACTIVATION_FACTOR}")
    write_record(
        args.out,
        settings=vars(args),
        activation_factor=ACTIVATION_FACTOR,
        base_bytes=DECODE_BASE_BYTES,
        bytes_per_param=DECODE_BYTES_PER_PARAM,
        rows=rows,
    )


if __name__ == "__main__":
    main()
