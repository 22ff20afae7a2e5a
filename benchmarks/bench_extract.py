"""Frame extraction throughput (frames/s) through imageio-ffmpeg, native size and resized.

    python benchmarks/bench_extract.py [--video data/raw/cockatoo.mp4] [--frames 0:120]

Prints a table and writes the record benchmarks/records/extract.json (docs/performance.md's
table); medians over repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from record import write_record

from gnerv.media.video import probe_video, read_video

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "records" / "extract.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(ROOT / "data" / "raw" / "cockatoo.mp4"))
    ap.add_argument("--frames", default="0:120")
    ap.add_argument("--sizes", default="native,360x640,90x160", help="HxW list, or native")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    a, b = (int(x) for x in args.frames.split(":"))
    info = probe_video(args.video)
    rows = []
    for size in args.sizes.split(","):
        resize = None if size == "native" else tuple(int(x) for x in size.split("x"))
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            frames, _ = read_video(args.video, frame_range=(a, b), resize=resize, progress=False)
            times.append(time.perf_counter() - t0)
        n, h, w, _ = frames.shape
        rows.append({"size": f"{h}x{w}", "frames": n, "fps": n / statistics.median(times)})
    print(f"{args.video} ({info['height']}x{info['width']}, {info.get('codec')})")
    for r in rows:
        print(f"  to {r['size']:>10s}: {r['fps']:8.1f} frames/s ({r['frames']} frames)")
    write_record(args.out, video=args.video, repeats=args.repeats, source=info, rows=rows)


if __name__ == "__main__":
    main()
