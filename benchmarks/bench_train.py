"""Training and decoding throughput beside the plain eager path and the machine's ceiling.

    python benchmarks/bench_train.py                      # demo size (cockatoo 90x160, ~0.1M)
    python benchmarks/bench_train.py --size 0.5M --resize 720x1280 --frames 0:8 --epochs 3

Ceiling: the FLOP/s of one large dense conv2d with the model's dominant shape (its most expensive
conv, run at a large batch) on the same device, forward for decoding and forward+backward for
training. Model work = MACs x 2 per frame (x 3 for a training step). Decoding renders every frame
as the decoder does: render 2's `fused` kernel on NHWC weights, the `reference` forward for the
eager variant. `--rounds N` measures every variant N times, alternating. Prints a table and
writes the record (benchmarks/out/train.json). Figures are medians over repeats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from record import write_record

from gnerv.codec.config import GNeRVConfig, c0_for_size, macs_per_frame
from gnerv.codec.model import GNeRV, render
from gnerv.encoder.config import TrainConfig
from gnerv.encoder.train import fit
from gnerv.media.video import read_video
from gnerv.runtime.device import select_device
from gnerv.runtime.sizes import parse_param_count

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
CEILING_BATCH = 32  # large enough to saturate the device
WARMUP_EPOCHS = 2  # first epochs pay oneDNN / compile warm-up; left out of the median


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dominant_conv(cfg: GNeRVConfig) -> tuple[int, int, int, int, int]:
    """(c_in, c_out, h, w, k) of the conv with the most MACs in the model."""
    model = GNeRV(cfg)
    shapes: list[tuple[int, tuple[int, int, int, int, int]]] = []

    def hook(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        if isinstance(mod, torch.nn.Conv2d):
            _, c, h, w = inp[0].shape
            macs = mod.weight.numel() * h * w
            shapes.append((macs, (c, mod.out_channels, h, w, mod.kernel_size[0])))

    for m in model.modules():
        m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1))
    return max(shapes)[1]


def conv_ceiling(
    shape: tuple[int, int, int, int, int],
    device: torch.device,
    train: bool,
    channels_last: bool,
    repeats: int = 7,
) -> float:
    """FLOP/s of a dense conv2d of `shape` at CEILING_BATCH (forward, or forward+backward)."""
    c_in, c_out, h, w, k = shape
    conv = torch.nn.Conv2d(c_in, c_out, k, padding=k // 2).to(device)
    x = torch.randn(CEILING_BATCH, c_in, h, w, device=device, requires_grad=train)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.detach().to(memory_format=torch.channels_last).requires_grad_(train)
    flops = 2 * CEILING_BATCH * c_in * c_out * k * k * h * w * (3 if train else 1)
    times = []
    for i in range(repeats + 2):
        sync(device)
        t0 = time.perf_counter()
        if train:
            conv(x).sum().backward()
        else:
            with torch.inference_mode():
                conv(x)
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return flops / statistics.median(times)


def train_fps(frames: np.ndarray, cfg: GNeRVConfig, tcfg: TrainConfig) -> float:
    """Median training frames/s over epochs after the warm-up ones."""
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        t_start = time.perf_counter()
        stamps.append(t_start)
        fit(
            frames,
            cfg,
            tcfg,
            tmp,
            progress=False,
            on_epoch=lambda _e, _r: stamps.append(time.perf_counter()),
        )
    epoch_times = np.diff(stamps)[WARMUP_EPOCHS:]
    return len(frames) / float(np.median(epoch_times))


def decode_fps(
    cfg: GNeRVConfig,
    n_frames: int,
    device: torch.device,
    batch: int,
    channels_last: bool,
    repeats: int = 5,
    kernel: str = "fused",
) -> float:
    model = GNeRV(cfg).to(device).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    idx = list(range(n_frames))
    times = []
    for i in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        render(model, idx, n_frames, batch, kernel=kernel)
        sync(device)
        if i >= 1:
            times.append(time.perf_counter() - t0)
    return n_frames / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(ROOT / "data" / "raw" / "cockatoo.mp4"))
    ap.add_argument("--frames", default="0:32")
    ap.add_argument("--resize", default="90x160", help="HxW")
    ap.add_argument("--size", default="0.1M")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--decode-batch", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile")
    ap.add_argument("--rounds", type=int, default=1, help="measure the variants N times")
    ap.add_argument("--out", default=str(OUT / "train.json"))
    args = ap.parse_args()

    a, b = (int(x) for x in args.frames.split(":"))
    h, w = (int(x) for x in args.resize.split("x"))
    frames, _ = read_video(args.video, frame_range=(a, b), resize=(h, w), progress=False)
    device = select_device(args.device)
    cfg = GNeRVConfig(h, w, c0=c0_for_size(parse_param_count(args.size), height=h, width=w))
    macs = macs_per_frame(cfg)
    shape = dominant_conv(cfg)

    variants = {"eager": dict(channels_last=False), "fast": dict(channels_last=True)}
    if args.compile:
        variants["fast+compile"] = dict(channels_last=True, compile=True)
    rows = []
    for round_ in range(args.rounds):
        for name, opts in variants.items():
            tcfg = TrainConfig(
                epochs=args.epochs + WARMUP_EPOCHS,
                batch_size=args.batch,
                device=args.device,
                checkpoint_every=10**6,
                **opts,
            )
            fps = train_fps(frames, cfg, tcfg)
            nhwc = opts["channels_last"]
            ceil_t = conv_ceiling(shape, device, True, nhwc)
            kernel = "fused" if nhwc else "reference"
            dfps = decode_fps(cfg, len(frames), device, args.decode_batch, nhwc, kernel=kernel)
            ceil_d = conv_ceiling(shape, device, False, nhwc)
            rows.append(
                {
                    "round": round_,
                    "variant": name,
                    "decode_kernel": kernel,
                    "train_fps": fps,
                    "train_gflops": fps * macs * 6 / 1e9,
                    "train_ceiling_gflops": ceil_t / 1e9,
                    "train_fraction": fps * macs * 6 / ceil_t,
                    "decode_fps": dfps,
                    "decode_gflops": dfps * macs * 2 / 1e9,
                    "decode_ceiling_gflops": ceil_d / 1e9,
                    "decode_fraction": dfps * macs * 2 / ceil_d,
                }
            )
    for r in rows:
        eager = next(e for e in rows if e["round"] == r["round"] and e["variant"] == "eager")
        r["train_speedup_vs_eager"] = r["train_fps"] / eager["train_fps"]
    write_record(
        args.out,
        device=str(device),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        frames=list(frames.shape),
        params_size=args.size,
        c0=cfg.c0,
        macs_per_frame=macs,
        dominant_conv=shape,
        rows=rows,
    )
    print(
        f"{cfg.height}x{cfg.width}, c0={cfg.c0}, {macs / 1e9:.3f} GMACs/frame, device {device}, "
        f"{torch.get_num_threads()} threads, dominant conv {shape}"
    )
    print(
        f"{'variant':14s} {'train f/s':>10s} {'GFLOP/s':>8s} {'of ceil':>8s} {'x eager':>8s} "
        f"{'decode f/s':>11s} {'GFLOP/s':>8s} {'of ceil':>8s}"
    )
    for r in rows:
        print(
            f"{r['variant']:14s} {r['train_fps']:10.1f} {r['train_gflops']:8.1f} "
            f"{r['train_fraction']:8.1%} {r['train_speedup_vs_eager']:8.2f} "
            f"{r['decode_fps']:11.1f} {r['decode_gflops']:8.1f} {r['decode_fraction']:8.1%}"
        )


if __name__ == "__main__":
    main()
