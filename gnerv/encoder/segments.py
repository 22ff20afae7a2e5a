"""Encoding a video as segments (gnerv.codec.segments describes the folder and its index).

Each segment is encoded as a video of its own, into its own folder, by one call of
`encode_segment`, which may run anywhere (one process per segment: a workflow job each); a
segment done leaves a manifest beside its layers (segNNN/segment.json). `gather_segments` then
checks that the manifests tile the video and writes the index, last and atomically, so an encode
that stops early leaves no index and nothing a decoder would take for a whole video.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gnerv.codec.bitstream import encoder_name, read_gnerv
from gnerv.codec.segments import (
    INDEX_NAME,
    Segment,
    SegmentedVideo,
    check_segment_count,
    index_bytes,
    read_index,
)
from gnerv.media.video import DEFAULT_FPS
from gnerv.pipeline.results import SEGMENT_MANIFEST_NAME, segment_dir_name
from gnerv.runtime.atomic import atomic_output
from gnerv.runtime.errors import GnervError

# encode_segment(frames, meta, folder, index) -> the segment's layer files, base first
SegmentEncoder = Callable[[np.ndarray, dict, Path, int], list[Path]]
# read_part(start, length) -> that segment's uint8 frames (length, H, W, 3) and their meta
PartReader = Callable[[int, int], tuple[np.ndarray, dict]]
MANIFEST_NAME = SEGMENT_MANIFEST_NAME
MANIFEST_KIND = "gnerv-segment"


def segment_share(total: int, n_frames: int, segment_frames: int) -> int:
    """A segment's share of the video's parameter budget: proportional to its frames."""
    return max(1, round(total * segment_frames / n_frames))


def encode_segment_at(
    i: int,
    read_part: PartReader,
    n_frames: int,
    segment_frames: int,
    out_dir: str | os.PathLike,
    encode_segment: SegmentEncoder,
    recipe: str | None = None,
) -> Segment:
    """Encode segment i of a video of `n_frames` cut into `segment_frames`: read its frames
    with `read_part(start, length)`, encode them into out_dir/segNNN/ and write its manifest."""
    out_dir = Path(out_dir)
    spans = check_segment_count(n_frames, segment_frames)
    if not 0 <= i < len(spans):
        raise GnervError(
            f"segment {i}: the video has {len(spans)} segments of {segment_frames} frames "
            f"(0 to {len(spans) - 1})"
        )
    start, length = spans[i]
    part, meta = read_part(start, length)
    if len(part) != length:
        raise GnervError(
            f"segment {i}: read {len(part)} frames of {length} (frames {start}:"
            f"{start + length}): the clip is shorter than it said; give --frames A:B"
        )
    _, height, width, _ = part.shape
    folder = out_dir / segment_dir_name(i)
    seg_meta = {k: v for k, v in meta.items() if k != "video_id"}
    paths = encode_segment(part, seg_meta, folder, i)
    if not paths:
        raise GnervError(f"segment {i} wrote no layer")
    layers = tuple(
        (Path(p).relative_to(out_dir).as_posix(), read_gnerv(p, decode=False).sha256) for p in paths
    )
    manifest = {
        "kind": MANIFEST_KIND,
        "segment": i,
        "segments": len(spans),
        "start": start,
        "n_frames": length,
        "video": {
            "n_frames": int(n_frames),
            "height": int(height),
            "width": int(width),
            "fps": float(meta.get("fps") or DEFAULT_FPS),
        },
        "encoder": encoder_name(recipe),
        "layers": [{"file": name, "sha256": sha} for name, sha in layers],
    }
    with atomic_output(folder / MANIFEST_NAME) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1) + "\n")
    return Segment(start, length, layers)


def _manifest(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise GnervError(
            f"{path}: not a readable segment manifest ({e.__class__.__name__}); "
            "encode that segment again"
        )
    keys = {"kind", "segment", "segments", "start", "n_frames", "video", "encoder", "layers"}
    if not isinstance(doc, dict) or set(doc) != keys or doc["kind"] != MANIFEST_KIND:
        raise GnervError(f"{path}: not a segment manifest; encode that segment again")
    return doc


def gather_segments(out_dir: str | os.PathLike) -> SegmentedVideo:
    """Check that out_dir's segment manifests tile one video and their layers are the files on
    disk, then write out_dir/segments.json (atomically) and return it read back."""
    out_dir = Path(out_dir)
    docs = [_manifest(p) for p in sorted(out_dir.glob("seg*/" + MANIFEST_NAME))]
    if not docs:
        raise GnervError(f"{out_dir}: no encoded segments (segNNN/{MANIFEST_NAME}) to gather")
    first = docs[0]
    for d in docs:
        if d["segments"] != first["segments"] or d["video"] != first["video"]:
            raise GnervError(
                f"{out_dir}: segment {d['segment']} belongs to another encode (another video or "
                "segment length); remove the folder's segments or write elsewhere"
            )
    have = {d["segment"] for d in docs}
    missing = [i for i in range(first["segments"]) if i not in have]
    if missing or len(docs) != first["segments"]:
        listed = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
        raise GnervError(
            f"{out_dir}: segments {listed} of {first['segments']} are not encoded yet: "
            "encode them (--segment I), then gather again"
        )
    docs.sort(key=lambda d: d["segment"])
    segments = []
    for d in docs:
        for layer in d["layers"]:
            f = read_gnerv(out_dir / layer["file"], decode=False)
            if f.sha256 != layer["sha256"]:
                raise GnervError(
                    f"{f.name}: changed since segment {d['segment']} was encoded; encode it again"
                )
        pairs = tuple((layer["file"], layer["sha256"]) for layer in d["layers"])
        segments.append(Segment(d["start"], d["n_frames"], pairs))
    with atomic_output(out_dir / INDEX_NAME) as tmp:
        Path(tmp).write_bytes(index_bytes(first["video"], segments, first["encoder"]))
    return read_index(out_dir)  # the decoder's checks: tiling, names, ranges


def encode_segments(
    read_part: PartReader,
    n_frames: int,
    segment_frames: int,
    out_dir: str | os.PathLike,
    encode_segment: SegmentEncoder,
    recipe: str | None = None,
    on_segment: Callable[[int, int, int], None] | None = None,
) -> SegmentedVideo:
    """Every segment in turn (one segment's frames in memory at a time), then the index.
    `on_segment(i, start, length)` is called before segment i is read."""
    for i, (start, length) in enumerate(check_segment_count(n_frames, segment_frames)):
        if on_segment is not None:
            on_segment(i, start, length)
        encode_segment_at(i, read_part, n_frames, segment_frames, out_dir, encode_segment, recipe)
    return gather_segments(out_dir)
