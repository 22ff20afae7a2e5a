"""One network against segments: the same clip, total parameters and epochs, coded whole and
cut into segments of several lengths, measured on the decoded files.

    python benchmarks/segments.py --out benchmarks/records/segments.json   # about 10 minutes

The clip (default: all 280 frames of the sample clip at 90x160) is encoded by `gnerv encode`
with the default recipe and coding, once as one network and once per --segment-lengths value
with --segment-frames; every segment gets its share of --size and the same --epochs, so each
variant trains on the same number of frame passes. Each result is decoded by `gnerv decode` and
compared with the frames `gnerv extract` gives: PSNR, bpp (file sizes), encode wall time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from record import gnerv, write_record

from gnerv.codec.segments import read_index
from gnerv.evaluation.metrics import mean_psnr

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", type=Path, default=ROOT / "data" / "raw" / "cockatoo.mp4")
    p.add_argument("--resize", default="90x160")
    p.add_argument("--size", default="0.1M", help="the video's total parameters")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--segment-lengths", default="32,64,128")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "segments.json")
    args = p.parse_args()
    lengths = [int(v) for v in args.segment_lengths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="gnerv_segments_") as tmp:
        work = Path(tmp)
        frames_file = work / "frames.npy"
        gnerv("extract", str(args.video), "-o", str(frames_file), "--resize", args.resize)
        frames = np.load(frames_file)
        n, h, w, _ = frames.shape
        common = ["--resize", args.resize, "--size", args.size, "--epochs", str(args.epochs)]
        for length in [None, *lengths]:
            name = "one network" if length is None else f"segments of {length}"
            out = work / (f"seg{length}" if length else "whole.gnerv")
            flags = [] if length is None else ["--segment-frames", str(length)]
            t0 = time.perf_counter()
            gnerv("encode", str(args.video), "-o", str(out), *common, *flags, "--quiet")
            seconds = time.perf_counter() - t0
            decoded = work / f"{out.stem}.npy"
            gnerv("decode", str(out), "-o", str(decoded))
            files = [out] if length is None else sorted(out.glob("seg*/*.gnerv"))
            size = sum(f.stat().st_size for f in files)
            row = {
                "variant": name,
                "segment_frames": length,
                "segments": 1 if length is None else len(read_index(out).segments),
                "bytes": size,
                "bpp": 8 * size / (n * h * w),
                "psnr": mean_psnr(frames, np.load(decoded)),
                "encode_seconds": round(seconds, 1),
            }
            rows.append(row)
            print(f"{name:16s} {row['bpp']:.4f} bpp {row['psnr']:.2f} dB {seconds:.0f} s")
    write_record(
        args.out,
        settings={
            "video": args.video,
            "frames": n,
            "resize": args.resize,
            "size": args.size,
            "epochs": args.epochs,
        },
        rows=rows,
    )


if __name__ == "__main__":
    main()
