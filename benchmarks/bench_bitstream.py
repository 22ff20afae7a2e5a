"""Entropy-coding efficiency of a real .gnerv: coded payload vs the empirical symbol entropy.

Run: ``python benchmarks/bench_bitstream.py [--model-dir DIR] [--epochs 60] [--size 0.1M]``.
Trains a small GNeRV on cockatoo (first 32 frames at 90x160, HxW) unless ``--model-dir`` names a
folder written by ``gnerv fit``, compresses it, and prints per tensor and in total: payload bytes
vs ``count x H`` (the tensor's own symbol frequencies) in bytes, their ratio, the header and table
bytes, and bpp from the file size. Writes the record ``benchmarks/records/bitstream.json`` (docs/
compression.md's table is rendered from it). Target: total
payload within 1 % of the entropy.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from record import write_record

from gnerv.codec.bitstream import read_gnerv
from gnerv.codec.config import GNeRVConfig, c0_for_size, describe
from gnerv.codec.entropy import empirical_entropy_bits
from gnerv.encoder.config import TrainConfig
from gnerv.encoder.encode import compress_checkpoint
from gnerv.encoder.train import fit
from gnerv.media.video import read_video, video_fingerprint
from gnerv.runtime.sizes import parse_param_count

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "records" / "bitstream.json"
VIDEO = ROOT / "data" / "raw" / "cockatoo.mp4"
TARGET_RATIO = 1.01


def tensor_rows(path: Path) -> tuple[list[dict], dict]:
    """Per-tensor payload vs entropy, and the file's sizes."""
    f = read_gnerv(path)
    rows = []
    for r, q in zip(f.records, f.tensors, strict=True):
        ideal = empirical_entropy_bits(q.symbols, q.alphabet_size) / 8
        rows.append(
            {
                "name": r.name,
                "count": r.numel,
                "mode": r.mode,
                "entropy_bytes": ideal,
                "payload_bytes": r.payload_bytes,
                "table_bytes": r.table_bytes,
                "minmax_bytes": r.minmax_bytes,
                "ratio": r.payload_bytes / ideal if ideal else None,
            }
        )
    return rows, f.sizes


def main() -> None:
    """Train (or reuse) a model, compress it, print the table and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, help="reuse a model written by `gnerv fit`")
    ap.add_argument("--video", type=Path, default=VIDEO)
    ap.add_argument("--frames", type=int, default=32, help="first N frames")
    ap.add_argument("--resize", default="90x160", help="HxW")
    ap.add_argument("--size", default="0.1M", help="parameter count")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    h, w = (int(v) for v in args.resize.lower().split("x"))
    frames, meta = read_video(args.video, (0, args.frames), resize=(h, w), progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        train_seconds = None
        if model_dir is None:
            model_dir = Path(tmp) / "model"
            cfg = GNeRVConfig(h, w, c0_for_size(parse_param_count(args.size), height=h, width=w))
            print(describe(cfg))
            t0 = time.perf_counter()
            fit(
                frames,
                cfg,
                TrainConfig(epochs=args.epochs, device=args.device),
                model_dir,
                video_meta={**meta, "video_id": video_fingerprint(frames)},
                progress=False,
            )
            train_seconds = time.perf_counter() - t0
        path = Path(tmp) / "bench.gnerv"
        fig = compress_checkpoint(model_dir, path, args.bits, frames, device=args.device)
        rows, sizes = tensor_rows(path)

    entropy = sum(r["entropy_bytes"] for r in rows)
    payload = sum(r["payload_bytes"] for r in rows)
    print(
        f"{'tensor':<24} {'count':>8} {'mode':>5} {'entropy B':>10} {'payload B':>10} "
        f"{'ratio':>7} {'table B':>8} {'minmax B':>8}"
    )
    for r in rows:
        ratio = f"{r['ratio']:.4f}" if r["ratio"] else "-"
        print(
            f"{r['name']:<24} {r['count']:>8} {r['mode']:>5} {r['entropy_bytes']:>10.1f} "
            f"{r['payload_bytes']:>10} {ratio:>7} {r['table_bytes']:>8} {r['minmax_bytes']:>8}"
        )
    ratio = payload / entropy
    print(
        f"{'total':<24} {sum(r['count'] for r in rows):>8} {'':>5} {entropy:>10.1f} "
        f"{payload:>10} {ratio:>7.4f} {sizes['entropy_tables']:>8} {sizes['minmax']:>8}"
    )
    print(
        f"file {sizes['total']} B = header {sizes['header']} + tables {sizes['table']} "
        f"(entropy {sizes['entropy_tables']}, min/max {sizes['minmax']}) + payload "
        f"{sizes['payload']}; {fig['bpp']:.4f} bpp; PSNR {fig['psnr_float']:.2f} dB float, "
        f"{fig['psnr_quantized']:.2f} dB after {args.bits}-bit quantization"
    )
    verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"payload / entropy = {ratio:.5f} (target <= {TARGET_RATIO}): {verdict}")

    result = {
        "benchmark": "bitstream",
        "video": args.video,
        "frames": args.frames,
        "size_hw": [h, w],
        "model_dir": args.model_dir,
        "epochs": args.epochs if args.model_dir is None else None,
        "train_seconds": train_seconds,
        "bits": args.bits,
        "params": fig["params"],
        "psnr_float": fig["psnr_float"],
        "psnr_quantized": fig["psnr_quantized"],
        "bpp": fig["bpp"],
        "sizes": sizes,
        "entropy_bytes": entropy,
        "payload_bytes": payload,
        "payload_over_entropy": ratio,
        "file_over_entropy": sizes["total"] / entropy,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "tensors": rows,
    }
    write_record(args.out, **result)


if __name__ == "__main__":
    main()
