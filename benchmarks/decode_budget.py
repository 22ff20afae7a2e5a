"""Where a frame's time goes in an exact render (2 or 3), step by step, against the frame time a
decoding target allows.

    python benchmarks/decode_budget.py                      # render 3, 0.093M at 180x320
    python benchmarks/decode_budget.py --render 2 --size 0.3M --batches 1 8 32 --repeats 7

A model of about --size parameters (random weights) is coded into a .gnerv and rebuilt from it,
as benchmarks/bench_decode.py does. In one process with the thread setting and the kept heap of
`gnerv decode`, per batch size, the milliseconds per frame of:

  eager      a plain NCHW fp32 forward (`model(t)`), the reference of the decoding targets
  decoder    gnerv.codec.decode.decode_layers with the render's kernel (uint8 frames out)
  steps      the render's forward (gnerv.codec.kernels.fused_forward, tapped_forward) taken
             apart: the time path, each block's distribution shift, each convolution with its
             fused activation, each pixel shuffle's copy, the head (render 3: its taps and its
             sigmoid); timed one after the other within each pass

`convs` is the sum of the convolutions' steps (render 2's head included): oneDNN's direct
convolution, which the renders' arithmetic is defined by. A target of `x` times the eager forward
allows eager / x per frame; when the convolutions alone take longer, no change outside them (and
none that keeps the render's bits) reaches it. Medians over --repeats passes of --frames frames.
Prints a table; writes benchmarks/out/decode_budget.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_decode import one_model
from record import write_record

from gnerv.codec import kernels
from gnerv.codec.decode import decode_layers, prepare_layers
from gnerv.codec.model import frame_times
from gnerv.runtime.heap import keep_freed_memory
from gnerv.runtime.threads import prepare_threads

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
TARGETS = {1: 1.5, 8: 2.0}  # batch -> x eager asked of an exact render (docs/performance.md)


class Steps:
    """Wall time per named step, summed over a pass, one list entry per pass (each step is
    called at once, so lambdas over loop variables see the current values)."""

    def __init__(self) -> None:
        self.passes: list[dict[str, float]] = []

    def new_pass(self) -> None:
        self.passes.append({})

    def __call__(self, name: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        t0 = time.perf_counter()
        y = fn()
        self.passes[-1][name] = self.passes[-1].get(name, 0.0) + time.perf_counter() - t0
        return y


def timed_forward(model, t: torch.Tensor, steps: Steps, render: int) -> torch.Tensor:
    """kernels.fused_forward (render 2) or tapped_forward (3), each step timed (the same calls in
    the same order)."""
    x, stats = steps("time path", lambda: kernels.per_frame_time_path(model, t))
    x = x.contiguous(memory_format=torch.channels_last)
    for j, block in enumerate(model.blocks):
        if stats is not None:
            mean, std = stats[j]
            shift = f"block {j + 1} shift"
            x = steps(shift, lambda: kernels.shift_fixed_order(x, mean, 1 + std))  # noqa: B023
        r = block.shuffle.upscale_factor
        for k, conv in enumerate((block.conv1, block.conv2), start=1):
            factor = r if (k == 1) == block.grows else None
            name = f"block {j + 1} conv{k} {conv.in_channels}->{conv.out_channels} (conv)"
            x = steps(name, lambda: kernels.fused_conv_blocked(conv, x, "gelu", factor))  # noqa: B023
            if factor:
                x = steps(f"block {j + 1} shuffle", lambda: kernels.shuffle_blocked(x, r))  # noqa: B023
    post = "none" if model.cfg.residual else "sigmoid"
    head = f"head {model.head.in_channels}->{model.head.out_channels}"
    if render == 2:
        return steps(f"{head} (conv)", lambda: kernels.fused_conv_blocked(model.head, x, post))
    y = steps(f"{head} (taps)", lambda: kernels.tapped_conv(model.head, x))
    if post == "sigmoid":
        y = steps("head sigmoid", lambda: kernels.sigmoid_per_frame_(y))
    return y


def per_frame_ms(seconds: list[float], frames: int) -> float:
    return statistics.median(seconds) * 1e3 / frames


def measure_batch(
    files, model, eager, batch: int, frames: int, repeats: int, render: int
) -> dict:
    """The eager forward, the decoder and the render's steps at one batch size, alternating."""
    kernel = kernels.RENDER_KERNELS[render]
    n = max(batch, frames // batch * batch)
    times = [frame_times(torch.arange(i, min(i + batch, n)), n) for i in range(0, n, batch)]
    steps = Steps()

    def plain() -> None:
        for t in times:
            eager(t)

    def decoder() -> None:
        decode_layers(files, list(range(n)), torch.device("cpu"), batch, [model], "fp32", kernel)

    def taken_apart() -> None:
        steps.new_pass()
        for t in times:
            timed_forward(model[0], t, steps, render)

    paths = {"eager": plain, "decoder": decoder, "steps": taken_apart}
    runs: dict[str, list[float]] = {name: [] for name in paths}
    with torch.inference_mode():
        for fn in paths.values():  # warm-up: oneDNN's kernel choice, the kept heap
            fn()
        check = Steps()  # the steps taken apart are the render's forward, bit for bit
        check.new_pass()
        if not torch.equal(
            timed_forward(model[0], times[0], check, render),
            kernels.forward(model[0], times[0], kernel),
        ):
            raise SystemExit(f"the timed steps do not compute render {render}'s frames")
        steps.passes.clear()
        for _ in range(repeats):  # alternating, so a drift of the machine falls on all three
            for name, fn in paths.items():
                t0 = time.perf_counter()
                fn()
                runs[name].append(time.perf_counter() - t0)
    step_ms = {name: per_frame_ms([p[name] for p in steps.passes], n) for name in steps.passes[0]}
    eager_ms = per_frame_ms(runs["eager"], n)
    target = TARGETS.get(batch)
    return {
        "batch": batch,
        "render": render,
        "eager_ms": eager_ms,
        "decoder_ms": per_frame_ms(runs["decoder"], n),
        "forward_ms": per_frame_ms(runs["steps"], n),
        "steps_ms": step_ms,
        "convs_ms": sum(v for k, v in step_ms.items() if k.endswith("(conv)")),
        "target_x_eager": target,
        "target_ms": None if target is None else eager_ms / target,
    }


def decoder_model(args: argparse.Namespace) -> tuple[list, tuple, torch.nn.Module, int]:
    """A model of about --size parameters at --shape (random weights), coded into a .gnerv and
    rebuilt from it as `gnerv decode` does: (the files, the decoder's prepared layer, the eager
    model, its parameter count)."""
    height, width = (int(v) for v in args.shape.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        _, eager, files = one_model(height, width, args.size, args.frames, Path(tmp))
        layer = prepare_layers(files, torch.device("cpu"))[0]
    return files, layer, eager, sum(p.numel() for p in eager.parameters())


def measure(args) -> list[dict]:
    """Every batch of --batches in this process: a row each."""
    files, model, eager, params = decoder_model(args)
    return [
        {"shape": args.shape, "size": args.size, "params": params}
        | measure_batch(files, model, eager, batch, args.frames, args.repeats, args.render)
        for batch in args.batches
    ]


def print_table(rows: list[dict]) -> None:
    for r in rows:
        print(f"\n{r['shape']} {r['params'] / 1e6:.3f}M, batch {r['batch']}: ms per frame")
        print("| step | ms | share of the forward |")
        print("|---|---:|---:|")
        for name, ms in r["steps_ms"].items():
            print(f"| {name} | {ms:.2f} | {ms / r['forward_ms']:.0%} |")
        print(f"| convolutions | {r['convs_ms']:.2f} | {r['convs_ms'] / r['forward_ms']:.0%} |")
        print(f"| forward (the steps) | {r['forward_ms']:.2f} | |")
        print(f"| decoder | {r['decoder_ms']:.2f} | |")
        print(f"| eager | {r['eager_ms']:.2f} | |")
        if r["target_ms"] is not None:
            print(f"| {r['target_x_eager']}x eager allows | {r['target_ms']:.2f} | |")


def decoder_arguments(p: argparse.ArgumentParser, out_name: str, repeats: int) -> None:
    """The arguments of a decode timing taken in a child process: the model, batches, passes."""
    p.add_argument("--shape", default="180x320", help="frame size HxW")
    p.add_argument("--size", default="0.093M", help="model size (Bunny's demo size by default)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--frames", type=int, default=32, help="frames rendered per pass")
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(OUT / out_name))


def run_as_decoder(
    script: str,
    args: argparse.Namespace,
    measure: Callable[[argparse.Namespace], list[dict]],
    show: Callable[[list[dict]], None] | None = None,
) -> None:
    """`measure(args)` in a fresh process set up as `gnerv decode` sets itself up (its thread
    setting, the kept heap); its rows are written to args.out with torch's version and CPU
    capability. `script` reruns itself with --child (decoder_arguments)."""
    if args.child:
        keep_freed_memory()
        sys.argv.remove("--child")  # the record names the command a reader runs
        rows = measure(args)
        capability = torch.backends.cpu.get_cpu_capability()
        write_record(args.out, torch={"version": torch.__version__, "capability": capability},
                     rows=rows)  # fmt: skip
        if show is not None:
            show(rows)
        return
    env = dict(os.environ)
    prepare_threads(env)  # before torch starts its threads: only a fresh process takes it
    done = subprocess.run([sys.executable, script, "--child", *sys.argv[1:]], env=env)
    if done.returncode:  # the child has said why
        raise SystemExit(done.returncode)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    decoder_arguments(p, "decode_budget.json", repeats=5)
    p.add_argument(
        "--render", type=int, choices=kernels.INVARIANT_RENDERS,
        default=max(kernels.INVARIANT_RENDERS),
        help="the render taken apart (default: %(default)s)",
    )  # fmt: skip
    run_as_decoder(__file__, p.parse_args(), measure, print_table)


if __name__ == "__main__":
    main()
