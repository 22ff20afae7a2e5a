"""The GPU check: training and decoding speed and the GPU tests, about 8 minutes on an H200.

    benchmarks/gpu_check.sh                              # on a GPU machine (wheels in .whl/)
    python benchmarks/gpu_check.py --device cpu --tiny   # dry run of the same code, < 1 minute

Sections (each one is recorded even when another fails; --sections picks some):

  tests   ``pytest -m gpu tests/test_gpu.py`` in a subprocess; counts from its JUnit XML.
  fit     Bunny 720p (132 frames) at 0.5M parameters in the training precision auto (bf16
          autocast on a GPU), through the package's own ``gnerv.encoder.train.fit``: a 3-epoch
          probe fit measures seconds per epoch, then one fit (its full warm-up + cosine
          schedule) runs as many epochs as fit in --fit-seconds, at most 300. Prints training
          frames/s, the projected seconds for 300 epochs (target <= 300 s) and the PSNR curve;
          then renders the fitted model in fp32 and in bf16.
  small_fit  the fit benchmarks/time_to_quality.py times on a CPU, here on the device: Bunny
          (all frames) at 180x320, 0.095M, --min-channels 12, 100 epochs, every other setting
          the package's default (time_to_quality.py's `defaults` path), through the commands
          `gnerv fit`, `gnerv compress` and `gnerv evaluate`: training seconds, the precision,
          the per-epoch training PSNR with elapsed seconds, the decoded PSNR.
  profile  where the fit's time goes: one epoch of the fit section's model under
          ``torch.profiler`` (after a warm-up epoch), its costliest kernels by device time with
          their share; then a few epochs eager and with ``TrainConfig.compile`` for s/epoch.
  decode  a ~4.7M-parameter 1080p model (random weights): frames/s at batch 1, 8 and 32, fp32
          and bf16 autocast, eager and ``torch.compile``d (warm-up and compile excluded, CUDA
          synchronised around each timing); the PSNR of bf16 output against fp32 output; and
          the real decoder (``gnerv.codec.decode.decode_layers`` on a ``.gnerv`` written by
          ``gnerv.codec.bitstream.compress_model``) end to end, uint8 frames on the host included.

Writes $OUT/gpu_check.json (rewritten after every step, so a run cut short keeps what it had),
$OUT/gpu_check.log and $OUT/pytest_gpu.xml; OUT defaults to benchmarks/out/gpu_check/. Exit
status 0 when every section ran and the gpu tests passed (targets missed do not fail it).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnerv.codec.bitstream import base_stage, compress_model, unpack, video_facts
from gnerv.codec.config import GNeRVConfig, c0_for_size, count_params, describe, macs_per_frame
from gnerv.codec.decode import decode_layers, prepare_layers
from gnerv.codec.model import GNeRV, for_inference, frame_times, to_uint8
from gnerv.encoder.config import TrainConfig
from gnerv.encoder.train import fit, training_precision
from gnerv.evaluation.metrics import mean_psnr
from gnerv.runtime.device import seed_everything, select_device
from gnerv.runtime.sizes import parse_param_count

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "gpu_check"
# The clip: a copy in .gpu_data/ where there is one (git-ignored: a copy to take to a GPU
# machine), else where the workflow keeps it (data/README.md).
VIDEO_PLACES = (ROOT / ".gpu_data" / "bunny.mkv", ROOT / "data" / "raw" / "bunny.mkv")
SECTIONS = ("tests", "fit", "decode", "small_fit", "profile")
PROFILE_ROWS = 20  # kernels listed by the profile section, the costliest first
# benchmarks/time_to_quality.py's Bunny fit: size, resolution, channel floor, epochs
SMALL_FIT = {"size": "0.095M", "hw": (180, 320), "min_channels": 12, "epochs": 100}
PAPER_EPOCHS = 300
FIT_TARGET_S = 300.0  # 300 epochs of Bunny 720p at 0.5M params
DECODE_TARGET_FPS = 500.0  # 1080p frames/s of a ~4.7M model
WARMUP_CALLS = 3  # forward calls before a timing (the first also compiles / picks kernels)
COMPILE_RESERVE_S = 60.0  # a compiled decode config starts only with this much time left


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: the real one on the GPU or the tiny CPU dry run."""

    tiny: bool
    fit_size: int
    fit_min_channels: int
    probe_epochs: int
    max_epochs: int
    fit_seconds: float
    small_fit_size: str
    small_fit_hw: tuple[int, int] | None  # None: the clip as it is (the synthetic one)
    small_fit_min_channels: int
    small_fit_epochs: int
    decode_hw: tuple[int, int]
    decode_size: int
    decode_min_channels: int
    decode_frames: int  # notional video length for frame times and the end-to-end decode
    batches: tuple[int, ...]
    timing_seconds: float  # minimum timed span per decode config
    compile: bool


def make_plan(args: argparse.Namespace) -> Plan:
    if args.tiny:
        return Plan(
            tiny=True,
            fit_size=parse_param_count(args.fit_size or "20k"),
            fit_min_channels=8,
            probe_epochs=1,
            max_epochs=min(args.max_epochs, 2),
            fit_seconds=args.fit_seconds if args.fit_seconds is not None else 5.0,
            small_fit_size="20k",
            small_fit_hw=None,
            small_fit_min_channels=8,
            small_fit_epochs=min(args.small_fit_epochs or 2, 2),
            decode_hw=(36, 64),
            decode_size=parse_param_count(args.decode_size or "20k"),
            decode_min_channels=8,
            decode_frames=8,
            batches=tuple(args.batches or (1, 2)),
            timing_seconds=0.05,
            compile=args.compile == "on",  # off unless asked: a CPU compile takes minutes
        )
    return Plan(
        tiny=False,
        fit_size=parse_param_count(args.fit_size or "0.5M"),
        fit_min_channels=30,
        probe_epochs=3,
        max_epochs=args.max_epochs,
        fit_seconds=args.fit_seconds if args.fit_seconds is not None else 240.0,
        small_fit_size=SMALL_FIT["size"],
        small_fit_hw=SMALL_FIT["hw"],
        small_fit_min_channels=SMALL_FIT["min_channels"],
        small_fit_epochs=args.small_fit_epochs or SMALL_FIT["epochs"],
        decode_hw=(1080, 1920),
        decode_size=parse_param_count(args.decode_size or "4.7M"),
        decode_min_channels=30,
        decode_frames=132,
        batches=tuple(args.batches or (1, 8, 32)),
        timing_seconds=1.0,
        compile=args.compile != "off",
    )


# --------------------------------------------------------------------------------------------
# Report: one JSON object and a log, both under $OUT, the JSON rewritten after every step
# --------------------------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such floats become null (and fail the test's checks)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class Report:
    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.json_path = out / "gpu_check.json"
        self.log_file = open(out / "gpu_check.log", "w", encoding="utf-8")  # noqa: SIM115
        self.data: dict[str, Any] = {"schema": "gnerv-gpu-check-1"}
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def log(self, message: str) -> None:
        line = f"[{self.elapsed():7.1f}s] {message}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def raw(self, text: str) -> None:
        """Another program's output, into the log only (the console gets a summary)."""
        self.log_file.write(text if text.endswith("\n") else text + "\n")
        self.log_file.flush()

    def save(self) -> None:
        self.data["elapsed_s"] = round(self.elapsed(), 2)
        text = json.dumps(_finite(self.data), indent=2, allow_nan=False) + "\n"
        tmp = self.json_path.with_name(self.json_path.name + ".part")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.json_path)

    def close(self) -> None:
        self.save()
        self.log_file.close()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> dict:
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        )
        try:
            smi = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,driver_version,clocks.sm,clocks.mem,"
                    "temperature.gpu,power.draw",
                    "--format=csv,noheader",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        except (OSError, subprocess.SubprocessError) as e:
            env["nvidia_smi"] = f"not run ({e.__class__.__name__})"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        env["git_commit"] = head.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


# --------------------------------------------------------------------------------------------
# The clip: .npy, or a video through imageio-ffmpeg, or through OpenCV where no ffmpeg exists
# --------------------------------------------------------------------------------------------


def synthetic_clip(n: int, height: int, width: int) -> np.ndarray:
    """Moving ramps and a checkerboard: uint8 (n, height, width, 3), for the dry run."""
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(n):
        r = ((x + 3 * i) % width) * 255 // max(width - 1, 1)
        g = ((y + 2 * i) % height) * 255 // max(height - 1, 1)
        b = ((x // 8 + y // 8 + i) % 2) * 200 + 20
        frames.append(np.stack([r, g, b], axis=-1))
    return np.stack(frames).astype(np.uint8)


def _read_with_opencv(path: Path) -> np.ndarray:
    """All frames as uint8 RGB through OpenCV's bundled FFmpeg (for a machine with OpenCV but
    no ffmpeg binary; on bunny.mkv this gives the same bytes as gnerv.media.video.read_video)."""
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot open it")
    frames = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(np.ascontiguousarray(bgr[..., ::-1]))
    finally:
        cap.release()
    if not frames:
        raise RuntimeError(f"{path}: OpenCV decoded no frames")
    return np.stack(frames)


def default_video() -> Path:
    """The first of VIDEO_PLACES that exists (the last where none does: its error names it)."""
    return next((p for p in VIDEO_PLACES if p.is_file()), VIDEO_PLACES[-1])


def has_ffmpeg() -> bool:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except (ImportError, RuntimeError):
        return False


def load_clip(video: Path | None, resize: tuple[int, int] | None = None) -> tuple[np.ndarray, str]:
    """(uint8 frames (N, H, W, 3), how they were read), resized to (H, W) if given: with
    ``gnerv extract``'s code where ffmpeg is present, else with OpenCV's area filter."""
    if video is None:
        return synthetic_clip(8, 36, 64), "synthetic 8x36x64 (--tiny)"
    if not video.is_file():
        raise FileNotFoundError(
            f"{video}: not found; put Bunny (data/README.md) at .gpu_data/bunny.mkv or "
            "data/raw/bunny.mkv, or give --video"
        )
    if video.suffix == ".npy":
        frames, how = np.load(video, allow_pickle=False), f"{video.name} (npy)"
    elif has_ffmpeg():
        from gnerv.media.video import read_video

        frames, _ = read_video(video, resize=resize, progress=False)
        how = f"{video.name} (gnerv.media.video, imageio-ffmpeg)"
        if resize is not None:
            return frames, f"{how}, resized to {resize[0]}x{resize[1]} by ffmpeg (area)"
        return frames, how
    else:
        frames, how = _read_with_opencv(video), f"{video.name} (OpenCV: no ffmpeg binary here)"
    if resize is None or frames.shape[1:3] == tuple(resize):
        return frames, how
    import cv2

    size = (resize[1], resize[0])
    frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    return frames, f"{how}, resized to {resize[0]}x{resize[1]} by OpenCV (area)"


# --------------------------------------------------------------------------------------------
# a. fit
# --------------------------------------------------------------------------------------------


class OutOfTime(Exception):
    """Raised from fit's on_epoch callback when the main fit overruns its budget."""


def _curve(history: list[dict], points: int = 12) -> list[dict]:
    """About `points` entries of the history, always the first and the last."""
    if len(history) <= points:
        return history
    step = (len(history) - 1) / (points - 1)
    picks = sorted({round(i * step) for i in range(points)})
    return [history[i] for i in picks]


def render_all(
    model: GNeRV, n: int, device: torch.device, bf16: bool, batch: int = 8
) -> np.ndarray:
    """uint8 frames (n, H, W, 3) of the model, fp32 or under bf16 autocast."""
    out = []
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        for i in range(0, n, batch):
            t = frame_times(torch.arange(i, min(i + batch, n)), n).to(device)
            out.append(to_uint8(model(t).float()).cpu().numpy())
    return np.concatenate(out)


def fit_model_config(plan: Plan, height: int, width: int) -> GNeRVConfig:
    """The fit's model (the fit and profile sections train the same one)."""
    c0 = c0_for_size(plan.fit_size, height=height, width=width, min_channels=plan.fit_min_channels)
    return GNeRVConfig(height, width, c0=c0, min_channels=plan.fit_min_channels)


def fit_section(args: argparse.Namespace, plan: Plan, device: torch.device, rep: Report) -> dict:
    res: dict[str, Any] = {}
    rep.data["fit"] = res
    video = args.video if args.video is not None else (None if plan.tiny else default_video())
    t = time.perf_counter()
    frames, how = load_clip(video)
    n, height, width, _ = frames.shape
    res.update(source=how, frames=n, height=height, width=width)
    res["read_s"] = round(time.perf_counter() - t, 2)
    rep.log(f"fit: read {how}: {n} frames {height}x{width} in {res['read_s']} s")

    model_cfg = fit_model_config(plan, height, width)
    macs = macs_per_frame(model_cfg)
    res.update(model=describe(model_cfg), params=count_params(model_cfg), macs_per_frame=macs)
    rep.log(f"fit: {describe(model_cfg)}")

    def train_cfg(epochs: int) -> TrainConfig:
        return TrainConfig(
            epochs=epochs,
            batch_size=args.fit_batch,
            device=str(device),
            precision="auto",
            compile=args.fit_compile,
            checkpoint_every=10,
        )

    res["train_config"] = {
        "batch_size": args.fit_batch,
        "precision": training_precision("auto", device),
        "channels_last": True,
        "compile": args.fit_compile,
    }
    with tempfile.TemporaryDirectory(prefix="gpu_check_fit_") as tmp:
        # Probe: a few epochs to measure the time per epoch (its first pays the warm-up).
        stamps: list[float] = []
        t_probe = time.perf_counter()
        fit(
            frames,
            model_cfg,
            train_cfg(plan.probe_epochs),
            Path(tmp) / "probe",
            progress=False,
            on_epoch=lambda _e, _r, st=stamps: st.append(time.perf_counter()),
        )
        probe_s = time.perf_counter() - t_probe
        per_epoch = (stamps[-1] - stamps[-2]) if len(stamps) > 1 else stamps[0] - t_probe
        budget = plan.fit_seconds - probe_s
        epochs = max(1, min(plan.max_epochs, int(0.95 * budget / max(per_epoch, 1e-6))))
        res.update(probe_epochs=plan.probe_epochs, probe_s=round(probe_s, 2))
        res["probe_s_per_epoch"] = round(per_epoch, 4)
        rep.log(
            f"fit: probe {plan.probe_epochs} epochs in {probe_s:.1f} s, last epoch "
            f"{per_epoch:.3f} s -> {epochs} epochs in the {plan.fit_seconds:.0f} s budget"
        )
        rep.save()

        # The fit itself: a complete schedule of `epochs` epochs, stopped only if far over time.
        ends: list[float] = []
        history: list[dict] = []
        hard_stop = max(1.3 * budget, 2.0 * per_epoch * epochs) + 10.0
        every = max(1, epochs // 10)

        def on_epoch(epoch: int, record: dict) -> None:
            ends.append(time.perf_counter())
            history.append(dict(record, seconds=round(ends[-1] - t_fit, 4)))
            if epoch % every == 0 or epoch == epochs:
                rep.log(
                    f"fit: epoch {epoch}/{epochs} loss {record['loss']:.4f} "
                    f"train PSNR {record['train_psnr']:.2f} dB"
                )
            if ends[-1] - t_fit > hard_stop and epoch < epochs:
                raise OutOfTime

        t_fit = time.perf_counter()
        result = None
        try:
            result = fit(
                frames,
                model_cfg,
                train_cfg(epochs),
                Path(tmp) / "fit",
                progress=False,
                on_epoch=on_epoch,
            )
        except OutOfTime:
            rep.log(f"fit: stopped after {len(history)} epochs ({hard_stop:.0f} s hard stop)")
        wall = time.perf_counter() - t_fit

    durations = [b - a for a, b in zip([t_fit, *ends[:-1]], ends, strict=True)]
    steady = durations[1:] or durations
    s_per_epoch = statistics.fmean(steady)
    projected = durations[0] + s_per_epoch * (PAPER_EPOCHS - 1)
    fps = n / s_per_epoch
    res.update(
        epochs_planned=epochs,
        epochs=len(history),
        completed=result is not None,
        wall_s=round(wall, 2),
        train_s=round(result.train_seconds, 2) if result else round(sum(durations), 2),
        first_epoch_s=round(durations[0], 4),
        s_per_epoch=round(s_per_epoch, 4),
        s_per_epoch_median=round(statistics.median(steady), 4),
        frames_per_s=round(fps, 2),
        train_tflops=round(3 * 2 * macs * fps / 1e12, 3),
        projected_s_300_epochs=round(projected, 1),
        final_psnr=result.psnr if result else None,
        last_train_psnr=history[-1]["train_psnr"],
        psnr_curve=[{k: r[k] for k in ("epoch", "loss", "train_psnr", "seconds")} for r in history],
    )
    if device.type == "cuda":
        res["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    rep.log(
        f"fit: {len(history)} epochs in {wall:.1f} s: {fps:.1f} frames/s "
        f"({s_per_epoch:.3f} s/epoch, first {durations[0]:.2f} s), "
        f"projected 300 epochs {projected:.0f} s (target <= {FIT_TARGET_S:.0f} s)"
    )
    rep.log(
        "fit: PSNR curve (epoch: train PSNR dB): "
        + ", ".join(f"{r['epoch']}: {r['train_psnr']:.2f}" for r in _curve(history))
    )
    if result is not None:
        rep.log(f"fit: final PSNR {result.psnr:.2f} dB (uint8 frames, fp32 render)")
        model = result.model.to(device).eval()
        fp32 = render_all(model, n, device, bf16=False)
        bf16 = render_all(model, n, device, bf16=True)
        res["render_psnr_fp32"] = mean_psnr(frames, fp32)
        res["render_psnr_bf16"] = mean_psnr(frames, bf16)
        res["render_psnr_bf16_vs_fp32"] = mean_psnr(fp32, bf16)
        rep.log(
            f"fit: fitted model rendered fp32 {res['render_psnr_fp32']:.2f} dB, bf16 "
            f"{res['render_psnr_bf16']:.2f} dB against the source; bf16 against fp32 "
            f"{res['render_psnr_bf16_vs_fp32']:.2f} dB"
        )
    return res


# --------------------------------------------------------------------------------------------
# small fit: benchmarks/time_to_quality.py's Bunny fit, on the device, through the commands
# --------------------------------------------------------------------------------------------

# The command line without an installed `gnerv` script (the repository is on PYTHONPATH).
CLI = "import sys; from gnerv.cli import main; sys.exit(main(sys.argv[1:]))"


def gnerv_command(args: list[str], rep: Report, timeout: float) -> None:
    """Run `gnerv ARGS` in a subprocess (its output into the log); a failure raises."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    rep.raw("$ gnerv " + shlex.join(args))
    proc = subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    rep.raw(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"gnerv {args[0]} exited {proc.returncode}: {tail}")


def small_fit_section(
    args: argparse.Namespace, plan: Plan, device: torch.device, rep: Report
) -> dict:
    res: dict[str, Any] = {}
    rep.data["small_fit"] = res
    video = args.video if args.video is not None else (None if plan.tiny else default_video())
    t = time.perf_counter()
    frames, how = load_clip(video, plan.small_fit_hw)
    n, height, width, _ = frames.shape
    res.update(source=how, frames=n, height=height, width=width)
    res["read_s"] = round(time.perf_counter() - t, 2)
    rep.log(f"small_fit: read {how}: {n} frames {height}x{width} in {res['read_s']} s")
    flags = ["--size", plan.small_fit_size, "--min-channels", str(plan.small_fit_min_channels)]
    flags += ["--epochs", str(plan.small_fit_epochs), "--device", str(device), "--quiet"]
    res["command"] = "gnerv fit FRAMES -o MODEL " + shlex.join(flags)
    with tempfile.TemporaryDirectory(prefix="gpu_check_small_fit_") as tmp:
        npy, model = Path(tmp) / "frames.npy", Path(tmp) / "model"
        layer, metrics = Path(tmp) / "layer.gnerv", Path(tmp) / "metrics.json"
        np.save(npy, frames)
        rep.log(f"small_fit: {res['command']}")
        t = time.perf_counter()
        gnerv_command(["fit", str(npy), "-o", str(model), *flags], rep, args.small_fit_timeout)
        res["fit_wall_s"] = round(time.perf_counter() - t, 2)
        summary = json.loads((model / "fit.json").read_text())
        on = ["--device", str(device)]
        res["compress_flags"] = ""  # the package's default coding
        gnerv_command(
            ["compress", str(model), "-o", str(layer), "--frames-file", str(npy), *on], rep, 300
        )
        gnerv_command(
            ["evaluate", str(npy), "--layers", str(layer), "-o", str(metrics), *on], rep, 300
        )
        top = json.loads(metrics.read_text())["points"][0]
    history = summary["history"]
    train_s = summary["train_seconds"]
    res.update(
        precision=summary.get("precision"),
        model=summary["model"],
        params=summary["params"],
        epochs=summary["epochs"],
        train_s=round(train_s, 2),
        s_per_epoch=round(train_s / summary["epochs"], 4),
        frames_per_s=round(n * summary["epochs"] / train_s, 2),
        float_psnr=summary["psnr"],
        decoded_psnr=top["psnr"],
        bpp=top["bpp"],
        final_train_psnr=history[-1]["train_psnr"],
        psnr_curve=[
            {k: r.get(k) for k in ("epoch", "train_psnr", "elapsed_seconds")} for r in history
        ],
    )
    rep.log(
        f"small_fit: {summary['params']} params, {summary['epochs']} epochs in {train_s:.1f} s "
        f"({res['precision']}, {res['s_per_epoch']:.3f} s/epoch), training PSNR "
        f"{res['final_train_psnr']:.2f} dB, decoded {res['decoded_psnr']:.2f} dB at "
        f"{res['bpp']:.4f} bpp"
    )
    rep.log(
        "small_fit: PSNR curve (epoch: train PSNR dB @ s): "
        + ", ".join(
            f"{r['epoch']}: {r['train_psnr']:.2f} @ {r.get('elapsed_seconds') or 0:.1f}"
            for r in _curve(history)
        )
    )
    return res


# --------------------------------------------------------------------------------------------
# profile: where one training epoch of the fit section's model spends its device time
# --------------------------------------------------------------------------------------------


def _self_us(event: Any, device: torch.device) -> float:
    """Self time of a profiler row in microseconds: on the device (its name changed across
    versions), or on the CPU for the dry run."""
    names = ("self_device_time_total", "self_cuda_time_total")
    for name in names if device.type == "cuda" else ("self_cpu_time_total",):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def profile_section(
    args: argparse.Namespace, plan: Plan, device: torch.device, rep: Report
) -> dict:
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    res: dict[str, Any] = {}
    rep.data["profile"] = res
    video = args.video if args.video is not None else (None if plan.tiny else default_video())
    frames, how = load_clip(video)
    n, height, width, _ = frames.shape
    model_cfg = fit_model_config(plan, height, width)
    res.update(source=how, model=describe(model_cfg))

    def cfg(epochs: int, compile: bool = False) -> TrainConfig:
        return TrainConfig(
            epochs=epochs,
            batch_size=args.fit_batch,
            device=str(device),
            precision="auto",
            compile=compile,
            checkpoint_every=10,
        )

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with tempfile.TemporaryDirectory(prefix="gpu_check_profile_") as tmp:
        fit(frames, model_cfg, cfg(1), Path(tmp) / "warm", progress=False)
        with profile(activities=activities) as prof:
            fit(frames, model_cfg, cfg(1), Path(tmp) / "profiled", progress=False)
            sync(device)
        # Kernel rows (device-side: kernels and copies) add up to the device's busy time; an
        # operator row's self device time is the kernels it launched, so the two lists are two
        # views of the same time and are never summed together.
        events = [e for e in prof.key_averages() if _self_us(e, device) > 0]
        on_device = [e for e in events if getattr(e, "device_type", None) != DeviceType.CPU]
        total = sum(_self_us(e, device) for e in on_device or events) or 1.0
        res["device_ms_total"] = round(total / 1e3, 2)

        def rows(chosen: list[Any]) -> list[dict]:
            chosen = sorted(chosen, key=lambda e: _self_us(e, device), reverse=True)
            return [
                {
                    "name": e.key[:120],
                    "calls": e.count,
                    "device_ms": round(_self_us(e, device) / 1e3, 3),
                    "share": round(_self_us(e, device) / total, 4),
                }
                for e in chosen[:PROFILE_ROWS]
            ]

        res["kernels"] = rows(on_device)
        res["operators"] = rows([e for e in events if e not in on_device])
        rep.log(f"profile: one epoch, {total / 1e3:.1f} ms of device time")
        for what in ("operators", "kernels"):
            rep.log(f"profile: costliest {what}:")
            for k in res[what]:
                rep.log(
                    f"profile:   {k['share']:6.1%} {k['device_ms']:9.2f} ms "
                    f"{k['calls']:6d}x  {k['name']}"
                )
        rep.save()
        epochs = plan.probe_epochs + 1
        for compile in (False, True) if plan.compile else (False,):
            stamps: list[float] = []
            t0 = time.perf_counter()
            fit(
                frames,
                model_cfg,
                cfg(epochs, compile),
                Path(tmp) / f"c{int(compile)}",
                progress=False,
                on_epoch=lambda _e, _r, st=stamps: st.append(time.perf_counter()),
            )
            steps = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
            key = "compiled" if compile else "eager"
            res[key] = {
                "epochs": epochs,
                "first_epoch_s": round(stamps[0] - t0, 2),
                "s_per_epoch": round(statistics.fmean(steps), 4) if steps else None,
            }
            rep.log(f"profile: {key}: {res[key]}")
            rep.save()
    return res


# --------------------------------------------------------------------------------------------
# b. decode
# --------------------------------------------------------------------------------------------


def time_calls(
    run: Callable[[], object], device: torch.device, min_seconds: float
) -> dict[str, float]:
    """Warm-up (the first call timed apart: compile, kernel choice), then enough calls to span
    `min_seconds`, with the device synchronised before and after the timed span."""
    sync(device)
    t = time.perf_counter()
    run()
    sync(device)
    first = time.perf_counter() - t
    for _ in range(WARMUP_CALLS - 1):
        run()
    sync(device)
    t = time.perf_counter()
    run()
    sync(device)
    one = time.perf_counter() - t
    iters = max(3, min(1000, math.ceil(min_seconds / max(one, 1e-6))))
    sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        run()
    sync(device)
    return {"first_call_s": first, "iters": iters, "seconds": time.perf_counter() - t}


def decode_section(args: argparse.Namespace, plan: Plan, device: torch.device, rep: Report) -> dict:
    res: dict[str, Any] = {"runs": []}
    rep.data["decode"] = res
    height, width = plan.decode_hw
    mc = plan.decode_min_channels
    c0 = c0_for_size(plan.decode_size, height=height, width=width, min_channels=mc)
    cfg = GNeRVConfig(height, width, c0=c0, min_channels=mc)
    seed_everything(0)
    model = for_inference(GNeRV(cfg), device)
    res.update(model=describe(cfg), params=count_params(cfg), macs_per_frame=macs_per_frame(cfg))
    rep.log(f"decode: {describe(cfg)} (random weights)")
    n = plan.decode_frames

    def forward(net: torch.nn.Module, t: torch.Tensor, bf16: bool) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            return net(t)

    variants: list[tuple[str, bool]] = [("eager", False), ("eager", True)]
    if plan.compile:
        variants += [("compiled", False), ("compiled", True)]
    else:
        res["compile"] = "skipped (--tiny dry run)" if plan.tiny else "skipped (--compile off)"
    compiled = torch.compile(model) if plan.compile else None
    for mode, bf16 in variants:
        net = compiled if mode == "compiled" else model
        for batch in plan.batches:
            name = f"{mode} {'bf16' if bf16 else 'fp32'} batch {batch}"
            if mode == "compiled" and args.deadline - rep.elapsed() < COMPILE_RESERVE_S:
                res["runs"].append({"name": name, "skipped": "too close to --deadline"})
                rep.log(f"decode: {name}: skipped, too close to the deadline")
                continue
            t = frame_times(torch.arange(batch) % n, n).to(device)
            try:
                call = functools.partial(forward, net, t, bf16)
                timing = time_calls(call, device, plan.timing_seconds)
            except Exception as e:  # noqa: BLE001 - one config failing must not end the check
                res["runs"].append({"name": name, "error": f"{e.__class__.__name__}: {e}"})
                rep.log(f"decode: {name}: FAILED {e.__class__.__name__}: {e}")
                rep.raw(traceback.format_exc())
                continue
            fps = timing["iters"] * batch / timing["seconds"]
            run = {
                "name": name,
                "mode": mode,
                "dtype": "bf16" if bf16 else "fp32",
                "batch": batch,
                "frames_per_s": round(fps, 2),
                "first_call_s": round(timing["first_call_s"], 3),
                "iters": timing["iters"],
                "timed_s": round(timing["seconds"], 4),
                "tflops": round(2 * res["macs_per_frame"] * fps / 1e12, 3),
            }
            res["runs"].append(run)
            rep.log(
                f"decode: {name}: {fps:8.1f} frames/s (first call {timing['first_call_s']:.2f} s,"
                f" {timing['iters']} timed calls)"
            )
            rep.save()

    fps_runs = [r for r in res["runs"] if "frames_per_s" in r]
    if fps_runs:
        best = max(fps_runs, key=lambda r: r["frames_per_s"])
        res["best"] = {"name": best["name"], "frames_per_s": best["frames_per_s"]}

    # Output agreement: bf16 against fp32 (and compiled against eager), as uint8 frames.
    t = frame_times(torch.arange(min(8, n)), n).to(device)
    ref = to_uint8(forward(model, t, False).float()).cpu().numpy()
    res["psnr_bf16_vs_fp32"] = mean_psnr(ref, to_uint8(forward(model, t, True).float()).cpu())
    rep.log(f"decode: bf16 output against fp32 output: {res['psnr_bf16_vs_fp32']:.2f} dB PSNR")
    if compiled is not None and any(r.get("mode") == "compiled" for r in res["runs"]):
        out = to_uint8(forward(compiled, t, False).float()).cpu()
        res["psnr_compiled_vs_eager_fp32"] = mean_psnr(ref, out)
        rep.log(
            "decode: compiled fp32 output against eager fp32 output: "
            f"{res['psnr_compiled_vs_eager_fp32']:.2f} dB PSNR"
        )

    # The real decoder end to end: .gnerv bytes -> models -> uint8 frames on the host.
    video_id = hashlib.sha256(b"gnerv gpu_check random model").hexdigest()
    t0 = time.perf_counter()
    # The writer quantizes on the CPU; the timings are done, so the model can move there.
    data = compress_model(model.cpu(), 8, video_facts(n, height, width, 30.0), base_stage(video_id))
    coded = unpack(data, "gpu_check.gnerv")
    layers = prepare_layers([coded], device)
    res["decoder_setup_s"] = round(time.perf_counter() - t0, 2)
    batch = max(plan.batches)
    frames_idx = list(range(n))
    decode_layers([coded], frames_idx[:batch], device, batch, models=layers)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    decoded = decode_layers([coded], frames_idx, device, batch, models=layers)
    sync(device)
    dt = time.perf_counter() - t0
    res["decoder_end_to_end"] = {
        "batch": batch,
        "frames": n,
        "bytes": len(data),
        "frames_per_s": round(n / dt, 2),
        "seconds": round(dt, 3),
        "shape": list(decoded.shape),
    }
    rep.log(
        f"decode: gnerv.codec.decode.decode_layers, {len(data)} B file, batch {batch}: "
        f"{n / dt:.1f} frames/s end to end ({n} frames, uint8 on the host)"
    )
    return res


# --------------------------------------------------------------------------------------------
# c. the tests marked gpu
# --------------------------------------------------------------------------------------------


def tests_section(args: argparse.Namespace, rep: Report) -> dict:
    res: dict[str, Any] = {"paths": args.tests}
    rep.data["tests"] = res
    xml_path = rep.out / "pytest_gpu.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={xml_path}",
        *args.tests,
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    timeout = max(30.0, min(args.tests_timeout, args.deadline - rep.elapsed()))
    rep.log(f"tests: {' '.join(cmd[1:])} (timeout {timeout:.0f} s)")
    t = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        res["returncode"] = proc.returncode
        rep.raw(proc.stdout + proc.stderr)
        tail = (proc.stdout.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired as e:
        res["returncode"] = None
        res["error"] = f"pytest timed out after {timeout:.0f} s"
        rep.raw(str(e.stdout or "") + str(e.stderr or ""))
        tail = res["error"]
    res["seconds"] = round(time.perf_counter() - t, 2)
    if xml_path.is_file():
        root = ET.parse(xml_path).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        counts = {
            k: sum(int(s.get(k, 0)) for s in suites)
            for k in ("tests", "failures", "errors", "skipped")
        }
        counts["passed"] = (
            counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
        )
        res.update(counts)
    res["ok"] = res["returncode"] == 0
    rep.log(f"tests: {tail} ({res['seconds']} s)")
    return res


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def targets(rep: Report, plan: Plan) -> dict:
    fit_res, dec = rep.data.get("fit", {}), rep.data.get("decode", {})
    out: dict[str, Any] = {"meaningful": not plan.tiny}
    proj = fit_res.get("projected_s_300_epochs")
    if proj is not None:
        out["fit_300_epochs_s"] = {
            "value": proj,
            "limit": FIT_TARGET_S,
            "met": proj <= FIT_TARGET_S,
        }
    best = dec.get("best")
    if best is not None:
        out["decode_fps"] = {
            "value": best["frames_per_s"],
            "config": best["name"],
            "limit": DECODE_TARGET_FPS,
            "met": best["frames_per_s"] >= DECODE_TARGET_FPS,
        }
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (with --tiny)")
    p.add_argument("--tiny", action="store_true", help="dry run: tiny sizes, 1-2 epochs")
    p.add_argument(
        "--video",
        type=Path,
        default=None,
        help="clip to fit (.mkv/.mp4 or .npy); default .gpu_data/bunny.mkv, else "
        "data/raw/bunny.mkv; a synthetic clip with --tiny",
    )
    p.add_argument(
        "--fit-seconds",
        type=float,
        default=None,
        help="time budget of the fit section (default 240; 5 with --tiny)",
    )
    p.add_argument("--fit-size", default=None, help="fit model size (default 0.5M)")
    p.add_argument("--fit-batch", type=int, default=TrainConfig.batch_size)
    p.add_argument("--fit-compile", action="store_true", help="torch.compile the fitted model")
    p.add_argument("--max-epochs", type=int, default=PAPER_EPOCHS)
    p.add_argument(
        "--small-fit-epochs",
        type=int,
        default=None,
        help=f"epochs of the small_fit section (default {SMALL_FIT['epochs']}; 2 with --tiny)",
    )
    p.add_argument(
        "--small-fit-timeout",
        type=float,
        default=240.0,
        help="seconds the small_fit section's `gnerv fit` may take (default 240)",
    )
    p.add_argument("--decode-size", default=None, help="decode model size (default 4.7M)")
    p.add_argument(
        "--batches",
        type=lambda s: [int(v) for v in s.split(",")],
        default=None,
        help="decode batch sizes, comma-separated (default 1,8,32; 1,2 with --tiny)",
    )
    p.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="torch.compile'd decode timings (auto: on, off with --tiny)",
    )
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    p.add_argument(
        "--tests",
        nargs="+",
        default=["tests/test_gpu.py"],
        help="pytest paths for the gpu-marked tests",
    )
    p.add_argument("--tests-timeout", type=float, default=240.0)
    p.add_argument(
        "--deadline",
        type=float,
        default=450.0,
        help="seconds into the run by which everything should end: a compiled decode config "
        "starts only with 60 s to spare, the tests get no more time (default 450)",
    )
    args = p.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}: choose from {', '.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(os.environ.get("OUT") or DEFAULT_OUT)
    rep = Report(out)
    plan = make_plan(args)
    try:
        device = select_device(args.device)
    except Exception as e:  # noqa: BLE001 - reported in one line, then exit
        rep.log(f"no device: {e}")
        rep.data["error"] = str(e)
        rep.close()
        return 2
    rep.data["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    rep.data["plan"] = asdict(plan)
    rep.data["environment"] = environment(device)
    env = rep.data["environment"]
    rep.log(
        f"gpu_check on {env.get('gpu', device)}: torch {env['torch']}, python {env['python']}"
        + (" (tiny dry run)" if plan.tiny else "")
    )
    rep.save()

    errors = []
    sections: dict[str, Callable[[], dict]] = {
        "tests": lambda: tests_section(args, rep),
        "fit": lambda: fit_section(args, plan, device, rep),
        "decode": lambda: decode_section(args, plan, device, rep),
        "small_fit": lambda: small_fit_section(args, plan, device, rep),
        "profile": lambda: profile_section(args, plan, device, rep),
    }
    for name in SECTIONS:
        if name not in args.sections.split(","):
            continue
        t = time.perf_counter()
        try:
            sections[name]()
        except Exception as e:  # noqa: BLE001 - the other sections still run
            rep.data.setdefault(name, {})["error"] = f"{e.__class__.__name__}: {e}"
            rep.log(f"{name}: FAILED {e.__class__.__name__}: {e}")
            rep.raw(traceback.format_exc())
            errors.append(name)
        rep.data.setdefault(name, {})["section_s"] = round(time.perf_counter() - t, 2)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        rep.save()

    rep.data["targets"] = targets(rep, plan)
    for key, tgt in rep.data["targets"].items():
        if isinstance(tgt, dict):
            verdict = "met" if tgt["met"] else "NOT met"
            limit = ("<= " if key.startswith("fit") else ">= ") + f"{tgt['limit']:g}"
            rep.log(
                f"target {key}: {tgt['value']:g} ({limit}): {verdict}"
                + (" (tiny run: not meaningful)" if plan.tiny else "")
            )
    tests_ok = rep.data.get("tests", {}).get("ok", True)
    ok = not errors and tests_ok
    rep.data["ok"] = ok
    verdict = "ok" if ok else "FAILED: " + ", ".join(errors or ["tests"])
    rep.log(f"done in {rep.elapsed():.1f} s: {verdict}; results in {rep.json_path}")
    rep.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
