"""Peak memory of a segmented encode against the clip's length: the same encode of a short and
a long clip should hold about the same memory, since it reads, trains and codes one segment at
a time.

    python benchmarks/segments_memory.py --out benchmarks/records/segments_memory.json

Each clip is made by ffmpeg's test source (moving patterns, --hw, 25 fps, lossless), then
`gnerv encode CLIP -o OUT --segment-frames N` runs in a child process with a tiny model and one
epoch (the memory of training does not grow with epochs); the child's peak resident memory
(wait4's ru_maxrss) is recorded beside its wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
from record import GNERV, write_record

ROOT = Path(__file__).resolve().parent.parent


def make_clip(path: Path, frames: int, hw: str) -> None:
    h, w = hw.split("x")
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
            "-i", f"testsrc2=size={w}x{h}:rate=25", "-frames:v", str(frames),
            "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(path),
        ],
        check=True,
    )  # fmt: skip


def measured(argv: list[str]) -> tuple[int, float]:
    """Peak RSS (bytes) and wall seconds of one command, run as a direct child."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss * 1024, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", default="100,1000", help="clip lengths in frames")
    p.add_argument("--hw", default="90x160")
    p.add_argument("--segment-frames", type=int, default=50)
    p.add_argument("--size", default="10k", help="parameters per segment")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "segments_memory.json")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gnerv_segmem_") as tmp:
        for n in (int(v) for v in args.lengths.split(",")):
            clip = Path(tmp) / f"clip{n}.mkv"
            make_clip(clip, n, args.hw)
            segments = max(1, n // args.segment_frames)
            total = f"{int(float(args.size.rstrip('k')) * 1000 * segments)}"
            rss, wall = measured(
                [
                    GNERV, "encode", str(clip), "-o", str(Path(tmp) / f"out{n}"),
                    "--segment-frames", str(args.segment_frames), "--size", total,
                    "--epochs", "1", "--min-channels", "8", "--quiet",
                ]
            )  # fmt: skip
            rows.append(
                {
                    "frames": n,
                    "segments": segments,
                    "max_rss_mb": round(rss / 2**20, 1),
                    "wall_seconds": round(wall, 1),
                }
            )
            print(rows[-1])
    write_record(
        args.out,
        settings={"hw": args.hw, "segment_frames": args.segment_frames, "size": args.size},
        rows=rows,
        ratio=round(rows[-1]["max_rss_mb"] / rows[0]["max_rss_mb"], 3),
    )


if __name__ == "__main__":
    sys.exit(main())
