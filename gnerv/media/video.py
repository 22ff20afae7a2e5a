"""Video in and out: read any ffmpeg-readable clip into uint8 RGB frames, write npy/mp4/mkv.

Everything goes through the ffmpeg binary that imageio-ffmpeg ships. Frames are numpy arrays of
shape (N, H, W, 3), dtype uint8, RGB. Resizing happens inside ffmpeg (area filter).
:func:`video_fingerprint` names a video by its frames (the ``stage.video_id`` of .gnerv files).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import math
import os
import re
import signal
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import imageio_ffmpeg
import numpy as np

from gnerv.runtime.atomic import atomic_output, read_json, write_json
from gnerv.runtime.errors import GnervError

__all__ = [
    "VideoWriter",
    "load_frames",
    "open_video_writer",
    "parse_range",
    "probe_video",
    "read_video",
    "save_frames",
    "video_fingerprint",
    "write_video",
]

# Used when a source does not state its frame rate (and by load_frames without a sidecar).
DEFAULT_FPS = 25.0
# Suffixes write_video accepts.
WRITE_SUFFIXES = (".npy", ".mp4", ".mkv")
# H.264 settings for the playable .mp4 output.
MP4_CRF = 16
MP4_PRESET = "medium"

_FINGERPRINT_TAG = b"gnerv-frames-v1"

_FFMPEG_ERRORS = (RuntimeError, OSError, StopIteration, IndexError, AttributeError, ValueError)


class _DropSizeWarning(logging.Filter):
    """imageio-ffmpeg warns whenever the output size differs from the source: expected here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("The frame size for reading")


logging.getLogger("imageio_ffmpeg").addFilter(_DropSizeWarning())


def parse_range(text: str) -> tuple[int, int]:
    """Parse a half-open frame range "A:B" (":32", "10:", "10:32"); a missing B is -1 (to end)."""
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", str(text))
    if not m:
        raise GnervError(
            f"bad frame range {text!r}: write START:END (half-open, either may be left out), "
            "for example 0:32"
        )
    a = int(m.group(1)) if m.group(1) else 0
    b = int(m.group(2)) if m.group(2) else -1
    if b != -1 and b <= a:
        raise GnervError(f"bad frame range {text!r}: END must be greater than START")
    return a, b


def _check_source(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise GnervError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise GnervError(f"{path}: not a file; give a video file")
    return path


def _not_a_video(path: Path, err: BaseException) -> GnervError:
    last = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    why = f" ({last[-1].strip()})" if last else ""
    return GnervError(
        f"{path}: ffmpeg cannot read it as a video{why}; give an mp4/mkv/avi/mov/y4m file"
    )


def _open(path: Path, output_params: list[str]) -> tuple[Any, dict]:
    """Start ffmpeg on `path`; return the frame generator (meta already consumed) and meta."""
    gen = imageio_ffmpeg.read_frames(
        str(path),
        pix_fmt="rgb24",
        output_params=["-map", "0:v:0", "-an", "-sn", "-fps_mode", "passthrough", *output_params],
    )
    try:
        meta = next(gen)
    except _FFMPEG_ERRORS as err:
        gen.close()
        raise _not_a_video(path, err) from None
    return gen, meta


def longest_clip_frames(paths: Iterable[str | os.PathLike]) -> int:
    """The largest frame count of these videos (estimated from each one's duration x fps)."""
    return max(probe_video(path)["n_frames"] for path in paths)


def probe_video(path: str | os.PathLike, exact: bool = False) -> dict:
    """Frame count, fps, size, codec and pixel format of a video, without decoding it.

    n_frames is estimated from duration x fps unless `exact`, which decodes the clip to count.
    """
    path = _check_source(path)
    gen, meta = _open(path, [])
    gen.close()
    fps = float(meta.get("fps") or 0.0)
    width, height = meta["source_size"]
    n_frames = int(round(float(meta.get("duration") or 0.0) * fps))
    if exact:
        try:
            n_frames = int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])
        except _FFMPEG_ERRORS as err:
            raise _not_a_video(path, err) from None
    return {
        "n_frames": n_frames,
        "fps": fps if fps > 0 else DEFAULT_FPS,
        "height": int(height),
        "width": int(width),
        "codec": meta.get("codec"),
        "pix_fmt": str(meta.get("pix_fmt", "")).split("(")[0] or None,
    }


def read_video(
    path: str | os.PathLike,
    frame_range: tuple[int, int] | None = None,
    stride: int = 1,
    resize: tuple[int, int] | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, dict]:
    """Read frames A:B (half-open; B=-1: to the end), every `stride`-th, resized to (H, W) if given.

    Returns uint8 frames (N, H, W, 3) and a meta dict (source, sizes, effective fps, range, stride).
    Decoding stops as soon as frame B is reached.
    """
    a, b = frame_range if frame_range is not None else (0, -1)
    a, b = int(a), int(b)
    if a < 0 or b < -1:
        raise GnervError(f"{path}: bad frame range {a}:{b}; frame numbers start at 0")
    if b != -1 and b <= a:
        raise GnervError(f"{path}: bad frame range {a}:{b}; the end must be after the start")
    if int(stride) != stride or stride < 1:
        raise GnervError(f"{path}: bad stride {stride}; use a whole number >= 1")
    stride = int(stride)
    output_params: list[str] = []
    if resize is not None:
        rh, rw = (int(v) for v in resize)
        if rh <= 0 or rw <= 0:
            raise GnervError(f"{path}: bad resize {rh}x{rw}; height and width must be positive")
        output_params = ["-vf", f"scale={rw}:{rh}:flags=area"]
    path = _check_source(path)

    gen, meta = _open(path, output_params)
    width, height = (int(v) for v in meta["size"])
    src_width, src_height = (int(v) for v in meta["source_size"])
    src_fps = float(meta.get("fps") or 0.0) or DEFAULT_FPS
    estimate = int(round(float(meta.get("duration") or 0.0) * float(meta.get("fps") or 0.0)))
    total = b if b != -1 else (estimate or None)

    from tqdm import tqdm

    frames: list[np.ndarray] = []
    n_decoded = 0
    bar = tqdm(
        total=total,
        desc=f"reading {path.name}",
        unit="frame",
        file=sys.stderr,
        disable=None if progress else True,
        leave=False,
    )
    try:
        for raw in gen:
            index = n_decoded
            n_decoded += 1
            bar.update(1)
            if index >= a and (index - a) % stride == 0:
                frame = np.frombuffer(raw, dtype=np.uint8)
                frames.append(frame.reshape(height, width, 3))
            if b != -1 and n_decoded >= b:
                break
    except _FFMPEG_ERRORS as err:
        raise GnervError(
            f"{path}: ffmpeg failed after {n_decoded} frames ({str(err).splitlines()[0]}); "
            "the file may be truncated or corrupt"
        ) from None
    finally:
        gen.close()
        bar.close()

    if n_decoded == 0:
        raise GnervError(f"{path}: no frames could be decoded; check that it is a valid video")
    if not frames:
        raise GnervError(
            f"{path}: frame range starts at {a} but the clip has only {n_decoded} frames; "
            f"choose a start below {n_decoded}"
        )
    end = b if b != -1 else n_decoded
    if end > n_decoded:  # asked past the end: say how many frames were taken
        print(
            f"gnerv: warning: {path}: frame range {a}:{b} runs past the clip's end; took "
            f"frames {a}:{n_decoded} ({len(frames)} frames)",
            file=sys.stderr,
        )
        end = n_decoded
    out = np.ascontiguousarray(np.stack(frames))
    info = {
        "source": str(path),
        "source_height": src_height,
        "source_width": src_width,
        "fps": src_fps / stride,
        "frame_range": [a, end],
        "stride": stride,
        "height": height,
        "width": width,
        "n_frames": int(out.shape[0]),
    }
    return out, info


def _check_frames(frames: Any, what: str) -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        raise GnervError(f"{what}: frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise GnervError(f"{what}: frames must be uint8, got {frames.dtype}; clip and convert them")
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) < 1:
        raise GnervError(
            f"{what}: frames must have shape (N, H, W, 3) with N, H, W >= 1, got {frames.shape}"
        )
    return np.ascontiguousarray(frames)


def video_fingerprint(frames: np.ndarray) -> str:
    """Hex SHA-256 of uint8 frames (N, H, W, 3): their shape and bytes; names the source video."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
        raise GnervError("video fingerprint needs uint8 frames of shape (N, H, W, 3)")
    frames = np.ascontiguousarray(frames)
    h = hashlib.sha256(_FINGERPRINT_TAG)
    h.update(struct.pack("<4Q", *frames.shape))
    h.update(frames.data)
    return h.hexdigest()


def save_frames(path: str | os.PathLike, frames: np.ndarray, meta: dict) -> None:
    """Write frames to `path` (.npy) and meta to the `.json` sidecar beside it, both atomically."""
    path = Path(path)
    if path.suffix != ".npy":
        raise GnervError(f"{path}: frames are saved as .npy; give a path ending in .npy")
    frames = _check_frames(frames, str(path))
    n, h, w, _ = frames.shape
    meta = {**meta, "n_frames": int(n), "height": int(h), "width": int(w)}
    # The sidecar is written (and renamed) only once the array is, and the array is renamed
    # only if the sidecar could be written: a failure leaves the old pair as it was.
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, frames, allow_pickle=False)
        write_json(path.with_suffix(".json"), meta, sort_keys=True)


def load_frames(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Load frames from a .npy (+ .json sidecar) or, for any other suffix, read a video file."""
    path = Path(path)
    if path.suffix != ".npy":
        return read_video(path, progress=False)
    _check_source(path)
    try:
        frames = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise GnervError(
            f"{path}: not a readable .npy array ({err}); re-create it with `gnerv extract`"
        ) from None
    if not isinstance(frames, np.ndarray):
        raise GnervError(f"{path}: holds several arrays, expected one (N, H, W, 3) uint8 array")
    frames = _check_frames(frames, str(path))
    n, h, w, _ = frames.shape
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        meta = read_json(sidecar, f"the sidecar of {path.name}; delete or re-create it")
        if not isinstance(meta, dict):
            raise GnervError(f"{sidecar}: expected a JSON object; delete or re-create it")
        for key, value in (("n_frames", n), ("height", h), ("width", w)):
            if key in meta and meta[key] != value:
                raise GnervError(
                    f"{sidecar}: says {key}={meta[key]} but {path.name} has {value}; "
                    "the sidecar is stale, re-create both"
                )
    else:
        meta = {"source": str(path), "fps": DEFAULT_FPS, "frame_range": [0, int(n)], "stride": 1}
    meta = {**meta, "n_frames": int(n), "height": int(h), "width": int(w)}
    meta.setdefault("fps", DEFAULT_FPS)
    return frames, meta


# What a failed write means, by errno and by ffmpeg's message: (errno, ffmpeg text, cause; fix).
_WRITE_FAILURES = (
    (
        errno.ENOSPC,
        "no space left on device",
        "no space left on the device; free space or write elsewhere",
    ),
    (errno.EDQUOT, "disk quota exceeded", "disk quota exceeded; free space or write elsewhere"),
    (
        errno.EFBIG,
        "file too large",
        "the file grew past the file-size limit; raise the limit (ulimit -f) or write elsewhere",
    ),
)
# Lines of ffmpeg's stderr kept for the error message.
_STDERR_LINES = 50


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise GnervError(
            f"{path}: unknown output type {path.suffix or '(none)'!r}; "
            f"use one of {', '.join(WRITE_SUFFIXES)}"
        )
    return suffix


def _check_fps(path: Path, fps: Any) -> float:
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise GnervError(f"{path}: bad fps {fps!r}; give a positive number") from None
    if not math.isfinite(fps) or fps <= 0:
        raise GnervError(f"{path}: bad fps {fps}; give a positive number")
    return fps


def _os_error(path: Path, err: OSError) -> GnervError:
    for code, _, why in _WRITE_FAILURES:
        if err.errno == code:
            return GnervError(f"{path}: cannot write it: {why}")
    return GnervError(
        f"{path}: cannot write it ({err.strerror or err}); check the folder and free space"
    )


class VideoWriter:
    """Frames written batch by batch to the temporary file of :func:`open_video_writer`."""

    def __init__(self, path: Path, tmp: Path, height: int, width: int, n_frames: int) -> None:
        self.path, self.tmp = path, tmp
        self.height, self.width, self.n_frames = height, width, n_frames
        self.n_written = 0

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 frames (B, H, W, 3)."""
        frames = _check_frames(frames, str(self.path))
        if frames.shape[1:3] != (self.height, self.width):
            raise GnervError(
                f"{self.path}: frames of {frames.shape[1]}x{frames.shape[2]} (HxW) given to a "
                f"writer of {self.height}x{self.width}"
            )
        if self.n_written + len(frames) > self.n_frames:
            raise GnervError(
                f"{self.path}: more than the announced {self.n_frames} frames were written"
            )
        self._put(frames)
        self.n_written += len(frames)

    def finish(self) -> None:
        """Complete the temporary file and check it (raises GnervError); then it can be renamed."""
        if self.n_written != self.n_frames:
            raise GnervError(
                f"{self.path}: got {self.n_written} of the announced {self.n_frames} frames; "
                "nothing was written"
            )
        self._finish()

    def abort(self) -> None:
        """Release the file or process (a no-op after finish)."""

    def _put(self, frames: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError


class _NpyWriter(VideoWriter):
    """The .npy header for the final shape (as np.save writes it), then the raw bytes."""

    def __init__(self, path: Path, tmp: Path, height: int, width: int, n_frames: int) -> None:
        super().__init__(path, tmp, height, width, n_frames)
        header = {"descr": "|u1", "fortran_order": False, "shape": (n_frames, height, width, 3)}
        self._file: IO[bytes] | None = None
        try:
            self._file = open(tmp, "wb")
            np.lib.format.write_array_header_1_0(self._file, header)
        except OSError as err:
            self.abort()
            raise _os_error(path, err) from None

    def _put(self, frames: np.ndarray) -> None:
        assert self._file is not None
        try:
            self._file.write(memoryview(frames).cast("B"))
        except OSError as err:
            raise _os_error(self.path, err) from None

    def _finish(self) -> None:
        assert self._file is not None
        try:
            self._file.close()
        except OSError as err:
            raise _os_error(self.path, err) from None
        finally:
            self._file = None

    def abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


class _FfmpegWriter(VideoWriter):
    """ffmpeg (imageio-ffmpeg's binary) reading raw RGB frames on its stdin.

    The command is the one ``imageio_ffmpeg.write_frames`` builds (quality=None,
    macro_block_size=1), run here so that its exit status and messages can be checked.
    """

    def __init__(
        self, path: Path, tmp: Path, height: int, width: int, n_frames: int, fps: float
    ) -> None:
        super().__init__(path, tmp, height, width, n_frames)
        if path.suffix.lower() == ".mp4":
            codec = "libx264"
            pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
            params = ["-crf", str(MP4_CRF), "-preset", MP4_PRESET, "-movflags", "+faststart"]
        else:
            codec, pix_fmt = "libx264rgb", "rgb24"
            params = ["-qp", "0", "-preset", MP4_PRESET]
        cmd = [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-y",
            "-f", "rawvideo",
            "-vcodec", "rawvideo",
            "-s", f"{width}x{height}",
            "-pix_fmt", "rgb24",
            "-r", str(Fraction(fps).limit_denominator()),
            "-i", "-",
            "-an",
            "-vcodec", codec,
            "-pix_fmt", pix_fmt,
            "-v", "error",
            *params,
            str(tmp),
        ]  # fmt: skip
        self._stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except OSError as err:
            raise GnervError(
                f"{path}: cannot start ffmpeg ({err}); reinstall imageio-ffmpeg"
            ) from None
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    def _put(self, frames: np.ndarray) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            for frame in frames:
                self._proc.stdin.write(memoryview(frame).cast("B"))
        except OSError:  # ffmpeg is gone (broken pipe): say why it stopped
            raise self._failure() from None

    def _wait(self) -> int:
        assert self._proc is not None
        rc = self._proc.wait()
        self._reader.join()
        return rc

    def _failure(self) -> GnervError:
        """ffmpeg stopped early or exited non-zero: the error naming the cause."""
        assert self._proc is not None
        with contextlib.suppress(OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        rc = self._wait()
        text = "\n".join(self._stderr).lower()
        if rc == -signal.SIGXFSZ:  # killed for passing the file-size limit
            text += "\nfile too large"
        for _, message, why in _WRITE_FAILURES:
            if message in text:
                return GnervError(f"{self.path}: cannot write it: {why}")
        last = [ln.strip() for ln in self._stderr if ln.strip()]
        detail = f"exit status {rc}" + (f": {last[-1]}" if last else "")
        return GnervError(
            f"{self.path}: ffmpeg failed ({detail}); check free disk space and the frames"
        )

    def _finish(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except OSError:
            raise self._failure() from None
        if self._wait() != 0:
            raise self._failure()
        self._proc = None
        self._check_output()

    def _check_output(self) -> None:
        """The file opens as a video of the right size and holds every frame."""
        try:
            gen, meta = _open(self.tmp, [])
            gen.close()
        except GnervError:
            meta = None
        if meta is None or tuple(meta["size"]) != (self.width, self.height):
            raise GnervError(
                f"{self.path}: ffmpeg did not produce a readable video; see its messages"
            )
        count = _count_packets(self.tmp)
        if count != self.n_frames:
            raise GnervError(
                f"{self.path}: ffmpeg wrote {count or 'not all'} of {self.n_frames} frames; "
                "check free disk space and write again"
            )

    def abort(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        if self._proc.poll() is None:
            self._proc.kill()
        self._wait()
        self._proc = None


def _count_packets(path: Path) -> int | None:
    """Video frames in `path`, counted by ffmpeg without decoding them (None if it cannot)."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    cmd += ["-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    try:
        run = subprocess.run(cmd, capture_output=True, check=False)
    except OSError:
        return None
    found = re.findall(rb"frame=\s*(\d+)", run.stderr)
    return int(found[-1]) if run.returncode == 0 and found else None


@contextlib.contextmanager
def open_video_writer(
    path: str | os.PathLike, fps: float, height: int, width: int, n_frames: int
) -> Iterator[VideoWriter]:
    """Write `n_frames` frames of `height` x `width` to `path` by suffix, batch by batch.

    ``with open_video_writer(path, fps, h, w, n) as out: out.write(batch)`` for uint8 batches
    (B, H, W, 3). Formats as :func:`write_video`. The frames go to a temporary file beside
    `path`, renamed onto it only once all `n_frames` were written and checked (ffmpeg's exit
    status, the frame count); a failure (a full disk, an exception in the block) removes it and
    raises GnervError naming the file.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    if suffix != ".npy":
        fps = _check_fps(path, fps)
    for what, value in (("height", height), ("width", width), ("frame count", n_frames)):
        if int(value) != value or value < 1:
            raise GnervError(f"{path}: bad {what} {value}; it must be a whole number >= 1")
    height, width, n_frames = int(height), int(width), int(n_frames)
    with atomic_output(path) as tmp:
        writer: VideoWriter
        if suffix == ".npy":
            writer = _NpyWriter(path, tmp, height, width, n_frames)
        else:
            writer = _FfmpegWriter(path, tmp, height, width, n_frames, fps)
        try:
            yield writer
            writer.finish()
        finally:
            writer.abort()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Write frames by suffix: .npy (uint8 array), .mp4 (H.264, playable), .mkv (lossless RGB).

    The .mp4 is yuv420p when H and W are even, else yuv444p (no crop or pad). The .mkv is
    libx264rgb at -qp 0 and reads back bit-exactly. The file appears only when complete; see
    :func:`open_video_writer` to write frames as they come.
    """
    path = Path(path)
    _check_suffix(path)
    frames = _check_frames(frames, str(path))
    n, h, w, _ = frames.shape
    with open_video_writer(path, fps, h, w, n) as out:
        out.write(frames)
