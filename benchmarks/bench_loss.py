"""The training loss's cost: one training step with pytorch-msssim's SSIM against the project's
`ssim_index` (the same value, its moments filtered in one pass), side by side, alternating.

    python benchmarks/bench_loss.py                      # Bunny's 180x320 at 0.095M, batch 4
    python benchmarks/bench_loss.py --out benchmarks/records/loss.json

Random weights and a random target: the cost of a step does not depend on the content. Per
round, each variant runs --steps timed steps after 3 warm-up steps; the figures are medians over
--rounds rounds. Also timed: the SSIM term alone (forward + backward) and a step without it
(alpha = 1), so the loss's share of a step is visible.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from gnerv.runtime.process import prepare_process

prepare_process()  # the commands' thread settings, before torch loads

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pytorch_msssim import ssim  # noqa: E402
from record import write_record  # noqa: E402

from gnerv.codec.config import GNeRVConfig, c0_for_size  # noqa: E402
from gnerv.codec.model import GNeRV, frame_times  # noqa: E402
from gnerv.encoder.config import TrainConfig  # noqa: E402
from gnerv.encoder.train import stage_loss  # noqa: E402
from gnerv.evaluation.metrics import ssim_index  # noqa: E402
from gnerv.runtime.sizes import parse_hw, parse_param_count  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def library_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float) -> torch.Tensor:
    return alpha * F.l1_loss(pred, target) + (1 - alpha) * (
        1 - ssim(pred, target, data_range=1.0, size_average=True)
    )


def project_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float) -> torch.Tensor:
    return stage_loss(pred, target, alpha, "l1", 1.0)  # what `gnerv fit` trains with


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="0.095M")
    p.add_argument("--hw", default="180x320")
    p.add_argument("--min-channels", type=int, default=12)
    p.add_argument("--batch", type=int, default=TrainConfig.batch_size)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "loss.json")
    args = p.parse_args()

    h, w = parse_hw(args.hw)
    c0 = c0_for_size(
        parse_param_count(args.size), height=h, width=w, min_channels=args.min_channels
    )
    torch.manual_seed(0)
    model = GNeRV(GNeRVConfig(h, w, c0=c0, min_channels=args.min_channels))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    target = torch.rand(args.batch, 3, h, w)
    t = frame_times(torch.arange(args.batch), 132)
    alpha = TrainConfig.loss_alpha

    def step(loss: Callable, a: float) -> None:
        opt.zero_grad(set_to_none=True)
        loss(model(t), target, a).backward()
        opt.step()

    def ssim_alone(fn: Callable) -> None:
        x = target.roll(1, dims=0).clone().requires_grad_()
        (1 - fn(x)).backward()

    variants: dict[str, Callable[[], None]] = {
        "step, pytorch-msssim SSIM": lambda: step(library_loss, alpha),
        "step, ssim_index (gnerv fit)": lambda: step(project_loss, alpha),
        "step, no SSIM (alpha 1)": lambda: step(project_loss, 1.0),
        "SSIM alone, pytorch-msssim": lambda: ssim_alone(
            lambda x: ssim(x, target, data_range=1.0, size_average=True)
        ),
        "SSIM alone, ssim_index": lambda: ssim_alone(lambda x: ssim_index(x, target, 1.0)),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, fn in variants.items():
            for _ in range(3):
                fn()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times[name].append((time.perf_counter() - t0) / args.steps * 1e3)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{v[-1]:.1f}" for v in times.values()))
    rows = [{"variant": name, "ms": round(statistics.median(v), 2)} for name, v in times.items()]
    base = rows[0]["ms"]
    for row in rows[:3]:
        row["vs_library_step"] = round(row["ms"] / base, 3)
    for row in rows:
        print(f"{row['variant']:30s} {row['ms']:8.2f} ms")
    write_record(
        args.out,
        settings={
            "size": args.size,
            "hw": args.hw,
            "min_channels": args.min_channels,
            "batch": args.batch,
            "steps": args.steps,
            "rounds": args.rounds,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        rows=rows,
    )


if __name__ == "__main__":
    main()
