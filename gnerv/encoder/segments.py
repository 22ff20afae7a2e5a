"""Encoding a video as segments (gnerv.codec.segments describes the folder and its index).

Each segment is encoded as a video of its own by `encode_segment`, into its own folder; the
index is written last, atomically, so an encode that stops early leaves no index and nothing a
decoder would take for a whole video (a rerun with --resume continues each segment's training).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gnerv.codec.bitstream import encoder_name, read_gnerv
from gnerv.codec.segments import (
    INDEX_NAME,
    Segment,
    index_bytes,
    segment_dir,
    split_frames,
)
from gnerv.media.video import DEFAULT_FPS
from gnerv.runtime.atomic import atomic_output
from gnerv.runtime.errors import GnervError

# encode_segment(frames, meta, folder, index) -> the segment's layer files, base first
SegmentEncoder = Callable[[np.ndarray, dict, Path, int], list[Path]]


def segment_share(total: int, n_frames: int, segment_frames: int) -> int:
    """A segment's share of the video's parameter budget: proportional to its frames."""
    return max(1, round(total * segment_frames / n_frames))


def encode_segments(
    read_part: Callable[[int, int], tuple[np.ndarray, dict]],
    n_frames: int,
    segment_frames: int,
    out_dir: str | os.PathLike,
    encode_segment: SegmentEncoder,
    recipe: str | None = None,
    on_segment: Callable[[int, int, int], None] | None = None,
) -> list[Segment]:
    """Cut a video of `n_frames` into segments of `segment_frames`, read each with
    `read_part(start, length)` (uint8 frames and their meta: one segment in memory at a time),
    encode it with `encode_segment` into out_dir/segNNN/, then write out_dir/segments.json.
    `on_segment(i, start, length)` is called before segment i is read. Returns the segments."""
    out_dir = Path(out_dir)
    spans = split_frames(n_frames, segment_frames)
    segments, video = [], None
    for i, (start, length) in enumerate(spans):
        if on_segment is not None:
            on_segment(i, start, length)
        part, meta = read_part(start, length)
        _, height, width, _ = part.shape
        if len(part) != length:
            raise GnervError(
                f"segment {i}: read {len(part)} frames of {length} (frames {start}:"
                f"{start + length}): the clip is shorter than it said; give --frames A:B"
            )
        facts = {"height": int(height), "width": int(width)}
        if video is None:
            video = {"n_frames": int(n_frames), **facts}
            video["fps"] = float(meta.get("fps") or DEFAULT_FPS)
        elif facts != {k: video[k] for k in facts}:
            raise GnervError(f"segment {i}: frames of {height}x{width}, not the clip's size")
        folder = out_dir / segment_dir(i)
        seg_meta = {k: v for k, v in meta.items() if k != "video_id"}
        paths = encode_segment(part, seg_meta, folder, i)
        del part
        if not paths:
            raise GnervError(f"segment {i} wrote no layer")
        layers = []
        for p in paths:
            f = read_gnerv(p, decode=False)
            layers.append((Path(p).relative_to(out_dir).as_posix(), f.sha256))
        segments.append(Segment(start, length, tuple(layers)))
    with atomic_output(out_dir / INDEX_NAME) as tmp:
        Path(tmp).write_bytes(index_bytes(video, segments, encoder_name(recipe)))
    return segments
