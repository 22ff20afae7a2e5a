"""Classical codec points (x264, x265) measured with the project's own metric code.

Frames are piped as raw RGB into the ffmpeg binary that imageio-ffmpeg ships, encoded to a raw
elementary stream (no container, so the byte count is the coded video only), decoded back to RGB
by a second ffmpeg run, and scored with `gnerv.evaluation.metrics.evaluate` -- never with ffmpeg's
own psnr
filter, which averages MSE over frames and pairs frames by timestamp.

By default the encoder's informational SEI (the x264/x265 version and option string, several
hundred to a few thousand bytes that a decoder ignores) is left out of the stream: on short, small
clips it would otherwise dominate the rate. Pass `drop_info_sei=False` to keep it.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np

from gnerv.evaluation.metrics import evaluate
from gnerv.media.video import _check_frames
from gnerv.runtime.atomic import atomic_output
from gnerv.runtime.errors import GnervError

__all__ = ["CODECS", "PRESETS", "encode_point", "run_baselines"]

# name -> (ffmpeg encoder, raw elementary-stream muxer)
CODECS: dict[str, tuple[str, str]] = {"x264": ("libx264", "h264"), "x265": ("libx265", "hevc")}
# Presets shared by x264 and x265.
PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
# Valid CRF range for 8-bit x264 and x265.
CRF_MIN, CRF_MAX = 0, 51
# Pixel formats: 4:2:0 needs even sizes; odd sizes fall back to 4:4:4 (high444 / main444-8).
PIX_FMT_EVEN = "yuv420p"
PIX_FMT_ODD = "yuv444p"
# SEI NAL unit type in H.264 (x264 writes its version/options there).
H264_SEI_NAL_TYPE = 6
# ffmpeg tags its libx264/libx265 log lines with "[libx26N @ 0x...]".
ENCODER_LOG_TAG = "[libx26"
# Wall-clock limit for one ffmpeg run (seconds); generous, it only guards against a hang.
FFMPEG_TIMEOUT_S = 3600.0


def _ffmpeg(args: list[str], stdin: bytes | None, what: str) -> bytes:
    """Run ffmpeg with `args` and return stdout; non-zero exit -> GnervError (last stderr line)."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *args]
    try:
        proc = subprocess.run(
            cmd, input=stdin, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise GnervError(f"{what}: ffmpeg took longer than {FFMPEG_TIMEOUT_S:.0f} s; gave up")
    except OSError as err:
        raise GnervError(f"{what}: cannot run ffmpeg ({err}); reinstall imageio-ffmpeg")
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.decode(errors="replace").splitlines()]
        lines = [ln for ln in lines if ln]
        last = lines[-1] if lines else "no message"
        status = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exit status {proc.returncode}"
        )
        # The last line is often generic ("Nothing was written..."): add the encoder's own words.
        cause = next((ln for ln in lines if ENCODER_LOG_TAG in ln and ln != last), None)
        extra = f" (encoder said: {cause})" if cause else ""
        raise GnervError(f"{what}: ffmpeg failed ({status}): {last}{extra}")
    return proc.stdout


def _check_args(codec: str, crf: int, preset: str, fps: float) -> float:
    if codec not in CODECS:
        raise GnervError(f"unknown codec {codec!r}; use one of {', '.join(sorted(CODECS))}")
    whole = isinstance(crf, int | np.integer) and not isinstance(crf, bool)
    if not whole or not CRF_MIN <= crf <= CRF_MAX:
        raise GnervError(f"bad CRF {crf!r}; use a whole number from {CRF_MIN} to {CRF_MAX}")
    if preset not in PRESETS:
        raise GnervError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise GnervError(f"bad fps {fps!r}; give a positive number") from None
    if not math.isfinite(fps) or fps <= 0:
        raise GnervError(f"bad fps {fps}; give a positive number")
    return fps


def encode_point(
    frames: np.ndarray,
    fps: float,
    codec: str,
    crf: int,
    preset: str = "medium",
    workdir: Path | None = None,
    keep_stream: Path | None = None,
    drop_info_sei: bool = True,
) -> dict[str, Any]:
    """Encode uint8 frames (N, H, W, 3) with x264/x265 at `crf`, decode, and measure.

    Returns codec, crf, preset, bytes (raw elementary stream), bpp (8*bytes/(N*H*W)), psnr,
    ms_ssim (None for small frames), ssim, psnr_per_frame, encode/decode seconds and pix_fmt.
    Temporary files go in `workdir` (default: the system temp folder); `keep_stream` saves the
    measured stream there, atomically.
    """
    fps = _check_args(codec, crf, preset, fps)
    frames = _check_frames(frames, f"{codec} crf {crf}")
    n, h, w, _ = frames.shape
    encoder, muxer = CODECS[codec]
    odd = h % 2 == 1 or w % 2 == 1
    pix_fmt = PIX_FMT_ODD if odd else PIX_FMT_EVEN
    what = f"{codec} crf {crf} preset {preset}"

    codec_args = ["-c:v", encoder, "-preset", preset, "-crf", str(int(crf)), "-pix_fmt", pix_fmt]
    if codec == "x265":
        x265_params = "log-level=error" + (":info=0" if drop_info_sei else "")
        codec_args += ["-x265-params", x265_params]
    elif drop_info_sei:
        codec_args += ["-bsf:v", f"filter_units=remove_types={H264_SEI_NAL_TYPE}"]

    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gnerv-baseline-", dir=workdir) as tmpdir:
        stream = Path(tmpdir) / f"stream.{muxer}"
        # ffmpeg's -r takes a rational; repr keeps every digit of the float.
        input_args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", repr(fps)]
        t0 = time.perf_counter()
        _ffmpeg(
            [*input_args, "-i", "-", *codec_args, "-an", "-f", muxer, "-y", str(stream)],
            frames.tobytes(),
            what,
        )
        encode_seconds = time.perf_counter() - t0
        n_bytes = stream.stat().st_size

        t0 = time.perf_counter()
        decode_args = ["-nostdin", "-f", muxer, "-i", str(stream), "-map", "0:v:0"]
        output_args = ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        raw = _ffmpeg([*decode_args, *output_args], None, what)
        decode_seconds = time.perf_counter() - t0
        frame_bytes = h * w * 3
        if len(raw) % frame_bytes != 0 or len(raw) // frame_bytes != n:
            raise GnervError(
                f"{what}: decoding the stream gave {len(raw) / frame_bytes:g} frames of {w}x{h}, "
                f"expected {n}; the ffmpeg build may be broken"
            )
        # bytearray: a writable buffer (torch warns on read-only arrays in the metrics).
        decoded = np.frombuffer(bytearray(raw), dtype=np.uint8).reshape(n, h, w, 3)

        if keep_stream is not None:
            with atomic_output(keep_stream) as tmp:
                shutil.copyfile(stream, tmp)

    metrics = evaluate(frames, decoded)
    result: dict[str, Any] = {
        "codec": codec,
        "crf": int(crf),
        "preset": preset,
        "bytes": int(n_bytes),
        "bpp": 8.0 * n_bytes / (n * h * w),
        "psnr": metrics["psnr"],
        "ms_ssim": metrics["ms_ssim"],
        "ssim": metrics["ssim"],
        "psnr_per_frame": metrics["psnr_per_frame"],
        "encode_seconds": encode_seconds,
        "decode_seconds": decode_seconds,
        "pix_fmt": pix_fmt,
        "info_sei_dropped": bool(drop_info_sei),
    }
    if odd:
        result["pix_fmt_note"] = (
            f"{h}x{w} has an odd side: {PIX_FMT_EVEN} needs even sizes, encoded as {PIX_FMT_ODD}"
        )
    if "ms_ssim_note" in metrics:
        result["ms_ssim_note"] = metrics["ms_ssim_note"]
    return result


def run_baselines(
    frames: np.ndarray,
    fps: float,
    codecs: list[str],
    crfs: list[int],
    preset: str = "medium",
    progress: bool = True,
    workdir: Path | None = None,
    drop_info_sei: bool = True,
) -> list[dict[str, Any]]:
    """One `encode_point` per (codec, crf), codecs outer; arguments are checked before any work."""
    codecs, crfs = list(codecs), list(crfs)
    if not codecs or not crfs:
        raise GnervError("no baseline points asked for; give at least one codec and one CRF")
    for codec in codecs:
        for crf in crfs:
            _check_args(codec, crf, preset, fps)

    from tqdm import tqdm

    points: list[dict[str, Any]] = []
    with tqdm(
        total=len(codecs) * len(crfs),
        desc="baselines",
        unit="point",
        file=sys.stderr,
        disable=None if progress else True,
        leave=False,
    ) as bar:
        for codec in codecs:
            for crf in crfs:
                bar.set_postfix_str(f"{codec} crf {crf}")
                points.append(
                    encode_point(
                        frames,
                        fps,
                        codec,
                        crf,
                        preset=preset,
                        workdir=workdir,
                        drop_info_sei=drop_info_sei,
                    )
                )
                bar.update(1)
    return points
