"""Candidate arithmetics for a faster exact render, timed beside render 2 and the eager forward.

    python benchmarks/render_candidates.py --repeats 7

Render 2 (gnerv.codec.kernels.fused_forward) defines the frames of files of `render` 2 (render
3, what the encoder writes, is render 2 with the head computed by taps). A faster exact decoder
needs a new render version (other sums give other last bits), and a version is a lasting part of
the format, so a candidate earns one only if it pays. Each candidate is render 2 with one step
computed another way:

  subpixel_head   the head applied before the last block's pixel shuffle: the 3x3 head on the
                  shuffled map is a 3x3 conv on the low-resolution map with r*r times its output
                  channels (each output sub-pixel's window rewritten in the shuffle's grid), then
                  a shuffle of those 3*r*r channels. The wide map is never shuffled, and the conv
                  has 12 outputs instead of oneDNN's poorly served 3, at 4x the multiply-adds
  one_pass_shift  the distribution shift's mean and variance from one pass of sums (of x and of
                  x^2, each in render 2's fixed pairwise order), applied as one multiply-add
  both            the two together
  winograd        the widest convolution (the last block's 30 -> 120, 40 % of a render-2 frame
                  at batch 8) by Winograd's F(2x2, 3x3): 16 multiplies per 2x2 outputs and input
                  channel instead of 36, in torch's own operations (transforms, a batched matrix
                  product) frame by frame: whether fewer multiply-adds pay without a native kernel

A model of about --size parameters (random weights) is coded into a .gnerv and rebuilt from it,
as benchmarks/bench_decode.py does. Per batch size, in one process set up as `gnerv decode`
sets itself up, the paths alternating: the median ms per frame of each, its speed against the
eager forward (the decoding targets' reference: 1.5x at batch 1, 2.0x at batch 8), and how far
its frames are from render 2's (largest float difference, 8-bit values that differ; for the eager
forward, the model rebuilt from the file, as training renders it).
Writes benchmarks/out/render_candidates.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from decode_budget import TARGETS, decoder_arguments, decoder_model, run_as_decoder

from gnerv.codec import kernels
from gnerv.codec.model import frame_times


def subpixel_head(head: torch.nn.Conv2d, r: int) -> torch.nn.Conv2d:
    """The head as a conv on the map before a PixelShuffle(r) whose input channels are listed
    (i, j, c) (kernels.blocked_weights' order). Output channels are listed (o, a, b), so torch's
    pixel_shuffle of the result is the head's output."""
    w = head.weight.detach()
    outs, chans, k, _ = w.shape
    p = k // 2
    lo, hi = -((p + r - 1) // r), (r - 1 + p) // r  # the low-resolution offsets a window reaches
    size = hi - lo + 1
    new = torch.zeros(outs, r, r, r, r, chans, size, size)
    for a in range(r):
        for b in range(r):
            for dy in range(-p, p + 1):
                for dx in range(-p, p + 1):
                    ky, i = divmod(a + dy, r)
                    kx, j = divmod(b + dx, r)
                    new[:, a, b, i, j, :, ky - lo, kx - lo] += w[:, :, dy + p, dx + p]
    conv = torch.nn.Conv2d(r * r * chans, outs * r * r, size, padding=size // 2)
    with torch.no_grad():
        conv.weight.copy_(new.reshape(conv.weight.shape))
        conv.bias.copy_(head.bias.detach().repeat_interleave(r * r))
    return conv


def one_pass_shift(
    f: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Eq. 1 with the spatial mean and variance from the sums of f and f^2 (one pass each, in
    kernels.sum_of_halves' order), applied as f * a + b."""
    n, c, h, w = f.shape
    flat = f.permute(0, 2, 3, 1).reshape(n, h * w, c)
    m1 = kernels.sum_of_halves(flat) / (h * w)
    m2 = kernels.sum_of_halves(flat * flat) / (h * w)
    scale = std / ((m2 - m1 * m1).clamp_min(0) + eps).sqrt()
    return torch.addcmul((mean - m1 * scale)[:, :, None, None], f, scale[:, :, None, None])


# Winograd's F(2x2, 3x3): a 2x2 output tile from a 4x4 input tile d is A^T [(G g G^T) * (B^T d B)] A
# (Lavin and Gray, 2016). Each transform is applied along rows, then along columns.
WINOGRAD_G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def winograd_weights(conv: torch.nn.Conv2d, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """conv's blocked weights (kernels.blocked_weights) transformed: (16, C, O), and its bias."""
    w, b = kernels.blocked_weights(conv, factor)
    g = WINOGRAD_G.double()
    u = torch.einsum("ak,ockl,bl->aboc", g, w.detach().double(), g)  # (4, 4, O, C)
    return u.reshape(16, *u.shape[2:]).transpose(1, 2).float().contiguous(), b.detach()


def winograd_frame(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """GELU(conv3x3(x) + bias), zero padding 1, for one NHWC frame x (H, W, C) -> (H, W, O)."""
    h, w, _ = x.shape
    hp, wp = h + h % 2, w + w % 2  # whole 2x2 tiles
    xp = torch.nn.functional.pad(x, (0, 0, 1, 1 + w % 2, 1, 1 + h % 2))
    r = [xp[k : k + hp : 2] for k in range(4)]  # B^T along rows
    rows = torch.stack([r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]])
    c = [rows[:, :, k : k + wp : 2] for k in range(4)]  # and along columns
    v = torch.stack([c[0] - c[2], c[1] + c[2], c[2] - c[1], c[1] - c[3]], dim=1)
    m = torch.bmm(v.reshape(16, -1, v.shape[-1]), u).view(4, 4, hp // 2, wp // 2, -1)
    out = torch.empty(hp // 2, 2, wp // 2, 2, m.shape[-1])
    for a, ma in enumerate((m[0] + m[1] + m[2], m[1] - m[2] - m[3])):  # A^T along rows
        torch.add(ma[0] + ma[1], ma[2], out=out[:, a, :, 0])  # and along columns
        torch.sub(ma[1] - ma[2], ma[3], out=out[:, a, :, 1])
    out = out.view(hp, wp, -1)[:h, :w]
    return torch.nn.functional.gelu(out + bias)


def winograd_conv_shuffle(
    weights: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, factor: int
) -> torch.Tensor:
    """kernels.fused_conv(conv, x, "gelu", factor) with the conv by winograd_frame, on the
    conv's winograd_weights (made once, before the timing)."""
    u, bias = weights
    frames = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
    y = torch.stack([winograd_frame(f, u, bias) for f in frames]).permute(0, 3, 1, 2)
    return kernels.shuffle_blocked(y, factor)


def candidate_forward(
    model,
    t: torch.Tensor,
    head: torch.nn.Conv2d | None,
    shift_one_pass: bool,
    winograd: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """kernels.fused_forward with the candidate steps (head: subpixel_head's conv, or None for
    render 2's head; winograd: the last block's second conv's winograd_weights, to compute it by
    winograd_conv_shuffle, or None)."""
    x, stats = kernels.per_frame_time_path(model, t)
    x = x.contiguous(memory_format=torch.channels_last)
    shift = one_pass_shift if shift_one_pass else kernels.shift_fixed_order
    last = len(model.blocks) - 1
    for j, block in enumerate(model.blocks):
        if stats is not None:
            x = shift(x, stats[j][0], 1.0 + stats[j][1])
        if head is not None and j == last:  # shrinking block: conv1, conv2, then the shuffle
            r = block.shuffle.upscale_factor
            x = kernels.fused_conv(block.conv1, x, "gelu")
            x = kernels.fused_conv_blocked(block.conv2, x, "gelu", r)
        elif winograd is not None and j == last:
            x = kernels.fused_conv(block.conv1, x, "gelu")
            x = winograd_conv_shuffle(winograd, x, block.shuffle.upscale_factor)
        else:
            x = kernels.fused_block(block, x)
    if head is None:
        return kernels.fused_conv(model.head, x, "sigmoid")
    y = kernels.fused_conv_blocked(head, x, "sigmoid")
    return torch.nn.functional.pixel_shuffle(y, model.blocks[-1].shuffle.upscale_factor)


def measure(args) -> list[dict]:
    _, (model, _), eager, params = decoder_model(args)
    last = model.blocks[-1]
    if last.grows or model.cfg.residual or not kernels.has_fused_conv():
        raise SystemExit(
            f"--shape {args.shape} --size {args.size}: the candidates need a model whose last "
            "block shrinks its channels, on a torch with oneDNN; keep the defaults or pick a "
            "larger size (180x320 from 0.05M, 90x160 from 0.1M)"
        )
    head = subpixel_head(model.head, last.shuffle.upscale_factor).eval()
    wino = winograd_weights(last.conv2, last.shuffle.upscale_factor)
    paths = {
        "eager": lambda t: eager(t),
        "render 2": lambda t: kernels.fused_forward(model, t),
        "subpixel_head": lambda t: candidate_forward(model, t, head, False),
        "one_pass_shift": lambda t: candidate_forward(model, t, None, True),
        "both": lambda t: candidate_forward(model, t, head, True),
        "winograd": lambda t: candidate_forward(model, t, None, False, winograd=wino),
    }
    rows = []
    with torch.inference_mode():
        every = frame_times(torch.arange(args.frames), args.frames)
        render2 = kernels.fused_forward(model, every)
        differ = {}
        for name, fn in paths.items():  # eager: the same weights as the file's, as training runs
            y = model(every) if name == "eager" else fn(every)
            differ[name] = {
                "max_abs_diff": float((y - render2).abs().max()),
                "bytes_differ": int(
                    ((y * 255).round().clamp(0, 255) != (render2 * 255).round().clamp(0, 255)).sum()
                ),
                "values": render2.numel(),
            }
        for batch in args.batches:
            n = max(batch, args.frames // batch * batch)
            times = [
                frame_times(torch.arange(i, i + batch), args.frames) for i in range(0, n, batch)
            ]
            runs: dict[str, list[float]] = {name: [] for name in paths}
            for fn in paths.values():  # warm-up: oneDNN's kernel choice, the kept heap
                for t in times:
                    fn(t)
            for _ in range(args.repeats):
                for name, fn in paths.items():
                    t0 = time.perf_counter()
                    for t in times:
                        fn(t)
                    runs[name].append((time.perf_counter() - t0) * 1e3 / n)
            eager_ms = statistics.median(runs["eager"])
            for name in paths:
                ms = statistics.median(runs[name])
                rows.append(
                    {"shape": args.shape, "size": args.size, "params": params, "batch": batch,
                     "path": name, "ms_per_frame": ms, "rounds_ms": runs[name],
                     "x_eager": eager_ms / ms, "target_x_eager": TARGETS.get(batch),
                     **differ[name]}
                )  # fmt: skip
                print(
                    f"batch {batch} {name:15s} {ms:6.2f} ms/frame  {eager_ms / ms:.2f}x eager  "
                    f"max diff {differ[name]['max_abs_diff']:.1e}, "
                    f"{differ[name]['bytes_differ']} of {differ[name]['values']} bytes differ",
                    flush=True,
                )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    decoder_arguments(p, "render_candidates.json", repeats=7)
    run_as_decoder(__file__, p.parse_args(), measure)


if __name__ == "__main__":
    main()
