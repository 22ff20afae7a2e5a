"""A video coded as segments: consecutive frame ranges, each its own chain of layers.

A long clip is cut into segments of consecutive frames, as classical codecs cut groups of
pictures; each segment is an independent progressive video (base layer + residual layers) with
its own networks, so segments train in parallel and a frame range decodes from the segments it
overlaps alone. On disk a segmented video is a folder:

    OUT/segments.json          the index: the video's facts, each segment's first frame, its
                               length and its layers (file name and SHA-256, base first)
    OUT/seg000/stage1.gnerv    segment 0's layers, ordinary .gnerv files
    OUT/seg000/stage2.gnerv    ...
    OUT/seg001/stage1.gnerv

The index is untrusted like the layers: its size, keys, numbers and names are checked before
use (names stay inside the folder), the segments must tile the video without gaps, and each
layer read is checked against the SHA-256 the index gives for it and against the segment's
length and the video's frame size, so a layer from another encode or another video is refused.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gnerv.codec.bitstream import GnervFile, canonical_json, read_gnerv
from gnerv.codec.decode import check_chain
from gnerv.codec.limits import DEFAULT_LIMITS, DecodeLimits, check_decode_cost
from gnerv.pipeline.results import SEGMENT_INDEX_NAME, split_frames
from gnerv.runtime.errors import GnervError

INDEX_NAME = SEGMENT_INDEX_NAME
INDEX_KIND = "gnerv-segments"
INDEX_VERSION = 1
MAX_INDEX_BYTES = 4 << 20  # 4 MiB: room for tens of thousands of segments
MAX_SEGMENTS = 100_000
MAX_LAYERS = 64  # per segment
# A layer's name in the index: a segment folder and a file in it, nothing that climbs out.
LAYER_NAME = re.compile(r"seg[0-9]{3,6}/[A-Za-z0-9_.-]{1,64}\.gnerv")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_segment_count(n_frames: int, segment_frames: int) -> list[tuple[int, int]]:
    """split_frames, refusing more segments than an index may hold."""
    spans = split_frames(n_frames, segment_frames)
    if len(spans) > MAX_SEGMENTS:
        raise GnervError(
            f"{len(spans)} segments of {segment_frames} frames exceed {MAX_SEGMENTS}: "
            "give a larger --segment-frames"
        )
    return spans


@dataclass(frozen=True)
class Segment:
    """One segment of the index: frames [start, start + n_frames) and its layers' names and
    SHA-256 digests, base first."""

    start: int
    n_frames: int
    layers: tuple[tuple[str, str], ...]

    @property
    def stop(self) -> int:
        return self.start + self.n_frames


@dataclass(frozen=True)
class SegmentedVideo:
    """A checked index: the folder, the video's facts and its segments in frame order."""

    folder: Path
    video: dict
    segments: tuple[Segment, ...]
    encoder: str

    @property
    def n_frames(self) -> int:
        return int(self.video["n_frames"])

    def overlapping(self, start: int, stop: int) -> list[int]:
        """Indices of the segments that frames [start, stop) touch."""
        return [i for i, s in enumerate(self.segments) if s.start < stop and start < s.stop]


def is_segmented(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder holding a segment index."""
    return Path(path).is_dir() and (Path(path) / INDEX_NAME).is_file()


def index_document(video: dict, segments: list[Segment], encoder: str) -> dict:
    """The JSON object of an index (what :func:`read_index` reads back)."""
    return {
        "kind": INDEX_KIND,
        "version": INDEX_VERSION,
        "encoder": encoder,
        "video": video,
        "segments": [
            {
                "start": s.start,
                "n_frames": s.n_frames,
                "layers": [{"file": name, "sha256": sha} for name, sha in s.layers],
            }
            for s in segments
        ],
    }


def index_bytes(video: dict, segments: list[Segment], encoder: str) -> bytes:
    return canonical_json(index_document(video, segments, encoder)) + b"\n"


def _fail(folder: Path, what: str) -> GnervError:
    return GnervError(
        f"{folder / INDEX_NAME}: {what}; the segment index is damaged: encode the video again"
    )


def _whole(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def read_index(folder: str | os.PathLike) -> SegmentedVideo:
    """Read and check a folder's segment index (raises GnervError, one line, naming the file)."""
    folder = Path(folder)
    path = folder / INDEX_NAME
    if not path.is_file():
        raise GnervError(
            f"{folder}: no {INDEX_NAME}: not a segmented video (`gnerv encode "
            "--segment-frames N` writes one)"
        )
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise _fail(folder, f"larger than {MAX_INDEX_BYTES} bytes")
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise _fail(folder, f"not readable JSON ({e.__class__.__name__})")
    if not isinstance(doc, dict) or set(doc) != {"kind", "version", "encoder", "video", "segments"}:
        raise _fail(folder, "not a segment index (unexpected keys)")
    if doc["kind"] != INDEX_KIND:
        raise _fail(folder, f"kind {doc['kind']!r} is not {INDEX_KIND!r}")
    if doc["version"] != INDEX_VERSION:
        raise GnervError(
            f"{path}: segment index version {doc['version']!r}; this gnerv reads version "
            f"{INDEX_VERSION}: update gnerv"
        )
    video = doc["video"]
    if not isinstance(video, dict) or set(video) != {"n_frames", "height", "width", "fps"}:
        raise _fail(folder, "its video facts are malformed")
    if not all(_whole(video[k], 1, 1 << 31) for k in ("n_frames", "height", "width")) or not (
        isinstance(video["fps"], int | float) and 0 < video["fps"] <= 1000
    ):
        raise _fail(folder, "its video facts are out of range")
    entries = doc["segments"]
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_SEGMENTS:
        raise _fail(folder, f"it must list 1 to {MAX_SEGMENTS} segments")
    if not isinstance(doc["encoder"], str) or len(doc["encoder"]) > 200:
        raise _fail(folder, "its encoder field is malformed")
    segments, expected_start = [], 0
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or set(e) != {"start", "n_frames", "layers"}:
            raise _fail(folder, f"segment {i} is malformed")
        if e["start"] != expected_start or not _whole(e["n_frames"], 1, video["n_frames"]):
            raise _fail(folder, f"segment {i} does not start where segment {i - 1} ends")
        layers = e["layers"]
        if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
            raise _fail(folder, f"segment {i} must list 1 to {MAX_LAYERS} layers")
        pairs = []
        for layer in layers:
            if (
                not isinstance(layer, dict)
                or set(layer) != {"file", "sha256"}
                or not isinstance(layer["file"], str)
                or not LAYER_NAME.fullmatch(layer["file"])
                or not isinstance(layer["sha256"], str)
                or not _HEX64.fullmatch(layer["sha256"])
            ):
                raise _fail(folder, f"segment {i} names a layer badly")
            pairs.append((layer["file"], layer["sha256"]))
        segments.append(Segment(e["start"], e["n_frames"], tuple(pairs)))
        expected_start += e["n_frames"]
    if expected_start != video["n_frames"]:
        raise _fail(folder, f"its segments cover {expected_start} of {video['n_frames']} frames")
    return SegmentedVideo(folder, video, tuple(segments), doc["encoder"])


def read_segment(
    video: SegmentedVideo, i: int, limits: DecodeLimits = DEFAULT_LIMITS
) -> list[GnervFile]:
    """The layers of segment i, read, checked against the index and chained (base first)."""
    seg = video.segments[i]
    files = []
    for name, sha in seg.layers:
        f = read_gnerv(video.folder / name, limits=limits)
        if f.sha256 != sha:
            raise GnervError(
                f"{f.name}: not the layer the index lists (SHA-256 {f.sha256[:8]}, index "
                f"{sha[:8]}): the folder mixes files of different encodes; encode the video again"
            )
        facts = {k: f.video[k] for k in ("height", "width")}
        if f.n_frames != seg.n_frames or facts != {k: video.video[k] for k in facts}:
            raise GnervError(
                f"{f.name}: codes {f.n_frames} frames of {f.video['height']}x{f.video['width']}, "
                f"not segment {i}'s {seg.n_frames} of {video.video['height']}x"
                f"{video.video['width']}: a layer of another video"
            )
        files.append(f)
    check_chain(files)
    return files


def iter_segmented(
    video: SegmentedVideo,
    indices: list[int],
    decode: Callable[[list[GnervFile], list[int]], Iterator[np.ndarray]],
    limits: DecodeLimits = DEFAULT_LIMITS,
    batch: int = 8,
    on_segment: Callable[[int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Decoded frames for ascending, consecutive `indices` of the whole video, a batch at a
    time: each segment they touch is read (one at a time, so memory holds one segment's
    models) and `decode(files, local_indices)` renders its part. `on_segment(i)` is called as
    segment i is opened."""
    if not indices:
        raise GnervError("no frames to decode")
    if indices != list(range(indices[0], indices[-1] + 1)):
        raise GnervError("a segmented video decodes a range of frames (A:B)")
    start, stop = indices[0], indices[-1] + 1
    if start < 0 or stop > video.n_frames:
        raise GnervError(f"frames {start}:{stop} are outside the video (0:{video.n_frames})")
    for i in video.overlapping(start, stop):
        seg = video.segments[i]
        files = read_segment(video, i, limits)
        for f in files:
            check_decode_cost(f, batch)
        if on_segment is not None:
            on_segment(i)
        local = list(range(max(start, seg.start) - seg.start, min(stop, seg.stop) - seg.start))
        yield from decode(files, local)


def describe_segments(video: SegmentedVideo) -> list[dict]:
    """One line of facts per segment, for `gnerv info`."""
    out = []
    for i, seg in enumerate(video.segments):
        try:
            sizes = [(video.folder / name).stat().st_size for name, _ in seg.layers]
        except OSError as e:
            raise GnervError(
                f"{e.filename}: missing ({e.strerror}); the segmented video is "
                "incomplete: encode it again"
            )
        out.append(
            {
                "segment": i,
                "frames": f"{seg.start}:{seg.stop}",
                "layers": len(seg.layers),
                "bytes": sum(sizes),
            }
        )
    return out
