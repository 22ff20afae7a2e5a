"""Fast inference paths for the GNeRV network: the speed tricks, kept out of the model's file.

One small interface: :func:`forward` renders frame times with one of :data:`KERNELS`:

- ``reference``: ``GNeRV.forward`` itself, the paper's network as training runs it.
- ``lean`` (the decoder's exact path): the same arithmetic with GELU, the distribution shift and
  the sigmoid in place, and an NHWC pixel shuffle without torch's strided gather (the conv lists
  its output channels in shuffle order). Only buffers and the order values are listed in change:
  the same bits as ``reference`` (tests/test_model.py).
- ``fused`` (render 2, named by files of format 5 with ``render`` 2): each conv fused with
  its GELU (or the head's sigmoid) in one oneDNN kernel, the shift's statistics summed in a fixed
  pairwise order, the time path computed frame by frame. Every value is computed the same way
  whatever the batch size or thread count (tests/test_render.py): other last bits than ``lean``,
  and faster (benchmarks/bench_decode.py).
- ``tapped`` (render 3, what the encoder writes): render 2 up to the head, and the head (a conv
  to 3 channels, which oneDNN computes 16 outputs wide) as one matrix product per frame giving
  every tap's contribution as a plane, then the shifted planes added in a fixed order. The same
  invariance as render 2; other last bits than render 2 in the head's output.
- ``bf16`` (opt-in, lossy: ``--precision bf16`` on CPUs with AVX-512 BF16 or AMX): each conv fused
  with its GELU (or the head's sigmoid) in one oneDNN kernel on bf16 weights made once, the shift
  as one statistics pass and one multiply-add. The time path stays fp32.

Private torch APIs appear in this module only, each behind a capability check
(:func:`has_blocked_conv`, :func:`has_fused_bf16`); where one is missing the path falls back to
the reference (``lean``) or is refused (``bf16``, by the decoder's precision check).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
from torch import nn

from gnerv.codec.limits import tap_frames
from gnerv.runtime.errors import GnervError
from gnerv.runtime.threads import one_thread

# The model's types, as this module sees them: any module with GNeRV's parts (gnerv.codec.model
# imports this module, so it is not imported back).
GNeRV = ConvUpBlock = nn.Module

KERNELS = ("reference", "lean", "fused", "tapped", "bf16")
DEFAULT_KERNEL = "lean"

# Render versions: the arithmetic a file's frames are defined by (its header's "render"; absent:
# 1), and the kernel that computes each. A new arithmetic is a new version; old ones stay.
RENDER_KERNELS = {1: "lean", 2: "fused", 3: "tapped"}
NEWEST_RENDER = max(RENDER_KERNELS)
INVARIANT_RENDERS = (2, 3)  # whose frames depend on neither the batch size nor the thread count

# The libraries a render runs on (oneDNN's convolutions, torch's own kernels, MKL's matrix
# products) each pick their code by the CPU's vector extensions, and each can be capped below it
# by a variable set before it loads: the environment of a process that decodes as a CPU with
# fewer extensions would (docs/bitstream.md, "What a decoder promises").
ISA_CAPS = {
    "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "SSE4.1": {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default",
               "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}  # fmt: skip


@cache
def has_blocked_conv() -> bool:
    """Whether this torch has what the lean path's blocked shuffle uses: a conv on given weights
    (``nn.Conv2d._conv_forward``) and tensor version counters (``Tensor._version``)."""
    return hasattr(nn.Conv2d, "_conv_forward") and hasattr(torch.Tensor, "_version")


@cache
def has_fused_conv() -> bool:
    """Whether oneDNN's fused conv + pointwise kernel is available (render 2 on a CPU)."""
    return torch.backends.mkldnn.is_available() and hasattr(
        torch.ops.mkldnn, "_convolution_pointwise"
    )


@cache
def has_fused_bf16() -> bool:
    """Whether oneDNN's fused conv + pointwise kernel and native CPU bfloat16 are available."""
    mkldnn = torch.ops.mkldnn
    try:
        return hasattr(mkldnn, "_convolution_pointwise") and mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


def forward(
    model: GNeRV, t: torch.Tensor, kernel: str = DEFAULT_KERNEL, mask: str | None = None
) -> torch.Tensor:
    """model's output for frame times t, computed by `kernel` (one of KERNELS).

    With autograd on (training), every kernel is the reference: the fast paths work in place."""
    if kernel not in KERNELS:
        raise GnervError(f"kernel {kernel!r} is not one of: {', '.join(KERNELS)}")
    if kernel == "reference" or torch.is_grad_enabled():
        return model(t, mask=mask)
    if kernel == "bf16":
        if mask is not None:
            raise GnervError("the bf16 render masks no branch: use the fp32 render")
        return bf16_forward(model, t)
    if kernel == "fused":
        return fused_forward(model, t, mask)
    if kernel == "tapped":
        return tapped_forward(model, t, mask)
    return lean_forward(model, t, mask)


# --------------------------------------------------------------------------------------------
# The lean exact path
# --------------------------------------------------------------------------------------------


def lean_forward(model: GNeRV, t: torch.Tensor, mask: str | None = None) -> torch.Tensor:
    """GNeRV.forward with each step in place where the reference makes a new tensor."""
    x, stats = model.time_path(t, mask)
    for j, block in enumerate(model.blocks):
        if stats is not None:
            mean, std = stats[j]
            x = shift_inplace(x, mean, 1.0 + std)
        x = lean_block(block, x)
    out = model.head(x)
    return out if model.cfg.residual else out.sigmoid_()


def shift_inplace(
    f: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """gnerv.codec.model.distribution_shift's four element-wise steps in one buffer."""
    mu = f.mean(dim=(2, 3), keepdim=True)
    sigma = (f.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return (f - mu).mul_(std[:, :, None, None]).div_(sigma).add_(mean[:, :, None, None])


def lean_block(block: ConvUpBlock, x: torch.Tensor) -> torch.Tensor:
    """ConvUpBlock.forward with GELU in place and the blocked shuffle."""
    gelu = torch.ops.aten.gelu_  # the same kernel as nn.GELU, in place
    if block.grows:
        x = gelu(_conv_shuffle(block, block.conv1, x))
        return gelu(block.conv2(x))
    x = gelu(block.conv1(x))
    return gelu(_conv_shuffle(block, block.conv2, x))


def _conv_shuffle(block: ConvUpBlock, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """shuffle(conv(x)); by conv_shuffle_nhwc on NHWC CPU tensors where torch allows it."""
    if (
        x.device.type != "cpu"
        or not has_blocked_conv()
        or not x.is_contiguous(memory_format=torch.channels_last)
        or not conv.weight.is_contiguous(memory_format=torch.channels_last)
    ):
        return block.shuffle(conv(x))
    return conv_shuffle_nhwc(conv, x, block.shuffle.upscale_factor)


def _kept(
    conv: nn.Conv2d, name: str, factor: int | None, make: Callable
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """make(conv, factor) -> (weight, bias), kept on the module under `name` until the weight
    changes (inference only: renders reuse it batch after batch)."""
    key = (conv.weight.data_ptr(), conv.weight._version, factor)
    cached = conv.__dict__.get(name)
    if cached is None or cached[0] != key:
        cached = (key, *make(conv, factor))
        conv.__dict__[name] = cached
    return cached[1], cached[2]


def _reorder(conv: nn.Conv2d, factor: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    order = torch.arange(conv.out_channels, device=conv.weight.device)
    order = order.view(-1, factor * factor).t().reshape(-1)
    return conv.weight[order], None if conv.bias is None else conv.bias[order]


def blocked_weights(conv: nn.Conv2d, factor: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """conv's weight and bias with output channels (c, i, j) listed as (i, j, c); kept."""
    return _kept(conv, "_blocked", factor, _reorder)


def conv_shuffle_nhwc(conv: nn.Conv2d, x: torch.Tensor, factor: int) -> torch.Tensor:
    """PixelShuffle(factor)(conv(x)) for an NHWC (channels_last) x, without torch's NHWC pixel
    shuffle, which gathers single floats at a stride of factor^2 (a third of a decode's time).

    The conv computes its output channels in the order (i, j, c) instead of (c, i, j): the same
    dot products, listed in another order. In NHWC memory each pixel's factor * C values of one
    output row i then lie side by side, and the shuffle is a copy of such blocks. Pure data
    movement on both sides: the same bits as the plain path (tests/test_model.py)."""
    weight, bias = blocked_weights(conv, factor)
    return shuffle_blocked(conv._conv_forward(x, weight, bias), factor)


def shuffle_blocked(y: torch.Tensor, factor: int) -> torch.Tensor:
    """PixelShuffle of an NHWC y whose channels are listed (i, j, c): a copy of r * C blocks."""
    n, _, h, w = y.shape
    y = y.permute(0, 2, 3, 1).reshape(n, h, w, factor, -1)  # a view: (n, h, w, i, [j c])
    y = y.transpose(2, 3).contiguous()  # (n, h, i, w, [j c]): the copy
    return y.view(n, h * factor, w * factor, -1).permute(0, 3, 1, 2)  # NCHW view, NHWC memory


# --------------------------------------------------------------------------------------------
# Render 2: the same network, each value computed in one way whatever the batch or thread count.
# torch's own kernels split their work by thread and by tensor size, and their vector loops and
# scalar tails round differently (GELU, reductions, small matrix products): render 1's frames
# change in last bits with --batch and the thread count. Here the pointwise steps run inside
# oneDNN's convolution (one vector code for every value), the shift's statistics are sums of
# halves (elementwise adds: the order is fixed by the frame's size alone), and the time path runs
# one frame at a time.
# --------------------------------------------------------------------------------------------


def fused_forward(model: GNeRV, t: torch.Tensor, mask: str | None = None) -> torch.Tensor:
    """GNeRV.forward in render 2's arithmetic. Returns fp32 (B, 3, H, W)."""
    x = fused_body(model, t, mask)
    return fused_conv(model.head, x, "none" if model.cfg.residual else "sigmoid")


def fused_body(model: GNeRV, t: torch.Tensor, mask: str | None = None) -> torch.Tensor:
    """Render 2 up to the head: the last block's output, NHWC memory."""
    x, stats = per_frame_time_path(model, t, mask)
    x = x.contiguous(memory_format=torch.channels_last)
    for j, block in enumerate(model.blocks):
        if stats is not None:
            mean, std = stats[j]
            x = shift_fixed_order(x, mean, 1.0 + std)
        x = fused_block(block, x)
    return x


def per_frame_time_path(
    model: GNeRV, t: torch.Tensor, mask: str | None = None
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]] | None]:
    """GNeRV.time_path one frame at a time, stacked: each frame's values as in a batch of one
    (a matrix product's sums can depend on how many rows it has)."""
    parts = [model.time_path(t[k : k + 1], mask) for k in range(len(t))]
    x = torch.cat([p[0] for p in parts])
    if parts[0][1] is None:
        return x, None
    stats = [
        (torch.cat([p[1][j][0] for p in parts]), torch.cat([p[1][j][1] for p in parts]))
        for j in range(len(parts[0][1]))
    ]
    return x, stats


def sum_of_halves(x: torch.Tensor) -> torch.Tensor:
    """(B, L, C) -> (B, C): the sum over L, as x[:, :L//2] + x[:, L//2:2*(L//2)] (plus the odd
    row, added to row 0) repeated until one row is left; elementwise adds only, so each sum is
    done in an order fixed by L alone."""
    while x.shape[1] > 1:
        half = x.shape[1] // 2
        s = x[:, :half] + x[:, half : 2 * half]
        if x.shape[1] % 2:
            s[:, 0] += x[:, 2 * half]
        x = s
    return x[:, 0]


def shift_fixed_order(
    f: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Eq. 1 (gnerv.codec.model.distribution_shift) with the spatial mean and variance (two
    passes: the mean, then the mean square of f - mean) summed by sum_of_halves."""
    n, c, h, w = f.shape

    def spatial_mean(y: torch.Tensor) -> torch.Tensor:
        flat = y.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view of NHWC memory
        return sum_of_halves(flat) / (h * w)

    d = f - spatial_mean(f)[:, :, None, None]
    sigma = (spatial_mean(d * d) + eps).sqrt()
    return d.mul_((std / sigma)[:, :, None, None]).add_(mean[:, :, None, None])


def fused_block(block: ConvUpBlock, x: torch.Tensor) -> torch.Tensor:
    """The block with each conv fused with its GELU (fused_conv)."""
    r = block.shuffle.upscale_factor
    if block.grows:
        return fused_conv(block.conv2, fused_conv(block.conv1, x, "gelu", r), "gelu")
    return fused_conv(block.conv2, fused_conv(block.conv1, x, "gelu"), "gelu", r)


def fused_conv(
    conv: nn.Conv2d, x: torch.Tensor, post: str, factor: int | None = None
) -> torch.Tensor:
    """post(conv(x)) (post: "gelu" (erf), "sigmoid" or "none") in one oneDNN kernel on a CPU,
    then PixelShuffle(factor) when given (both are per element, so they commute). Elsewhere
    (a GPU, a torch without oneDNN) the conv and torch's activation, one after the other: the
    same function, not the same last bits."""
    y = fused_conv_blocked(conv, x, post, factor)
    return shuffle_blocked(y, factor) if factor else y


def fused_conv_blocked(
    conv: nn.Conv2d, x: torch.Tensor, post: str, factor: int | None = None
) -> torch.Tensor:
    """fused_conv before its shuffle: post(conv(x)) in NHWC memory, with its output channels
    listed (i, j, c) when a factor is given (blocked_weights)."""
    w, b = blocked_weights(conv, factor) if factor else (conv.weight, conv.bias)
    x = x.contiguous(memory_format=torch.channels_last)  # shuffle_blocked takes NHWC memory
    if x.device.type == "cpu" and has_fused_conv():
        return torch.ops.mkldnn._convolution_pointwise(
            x, w, b, conv.padding, conv.stride, conv.dilation, conv.groups,
            post, [], "none" if post == "gelu" else "",
        )  # fmt: skip
    y = conv._conv_forward(x, w, b)
    if post == "gelu":
        return torch.nn.functional.gelu(y)
    return y.sigmoid() if post == "sigmoid" else y


# --------------------------------------------------------------------------------------------
# Render 3: render 2 with the head computed by taps. The head maps C channels to 3 at the full
# frame size; oneDNN computes a conv's outputs 16 wide, so the head's 3 cost as much as 16 would.
# Written as taps, a k x k conv is out[y, x] = bias + sum over (ky, kx) of
# W[:, :, ky, kx] @ in[y + ky - k//2, x + kx - k//2] (zero outside the frame): one matrix product
# (k*k*3 rows of weights against the frame's pixels) gives every tap's contribution as a plane,
# and the output is the sum of those planes, each shifted by its tap's offset. The product runs per
# frame, so its shape is the frame's alone; the planes are added in a fixed order (the centre tap
# with the bias, then the others row by row), so every value is computed one way whatever the
# batch size or thread count.
# --------------------------------------------------------------------------------------------


def tapped_forward(model: GNeRV, t: torch.Tensor, mask: str | None = None) -> torch.Tensor:
    """GNeRV.forward in render 3's arithmetic. Returns fp32 (B, 3, H, W)."""
    y = tapped_conv(model.head, fused_body(model, t, mask))
    return y if model.cfg.residual else sigmoid_per_frame_(y)


def sigmoid_per_frame_(y: torch.Tensor) -> torch.Tensor:
    """y.sigmoid_() one frame at a time on one thread. torch's sigmoid rounds its vector loop and
    its scalar tail differently, and threads split the tensor between them: so, the split is
    fixed by the frame's size alone."""
    with one_thread():
        for frame in y:
            frame.sigmoid_()
    return y


def _tap_matrix(conv: nn.Conv2d, factor: None) -> tuple[torch.Tensor, None]:
    out, chans, k, _ = conv.weight.shape
    return conv.weight.detach().permute(2, 3, 0, 1).reshape(k * k * out, chans).contiguous(), None


def tap_matrix(conv: nn.Conv2d) -> torch.Tensor:
    """conv's weight as (k*k*O, C): rows listed (ky, kx, o); kept."""
    return _kept(conv, "_taps", None, _tap_matrix)[0]


def tapped_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv(x) for a stride-1 conv padded by k // 2 (the head), by taps, on a CPU. Returns
    contiguous (B, O, H, W). On a GPU, the conv itself (cuDNN: the same function, not the same
    last bits, as render 2's convs there).

    The matrix product runs frame by frame (its sums could depend on how many columns it has);
    the plane additions run over several frames at once: an addition of two floats rounds the
    same way in any split, so each value is the same as frame by frame. The planes of at most
    as many frames as fit in the memory of x are held at once."""
    if x.device.type != "cpu":
        return conv(x).contiguous()
    n, chans, h, w = x.shape
    out_chans, k = conv.out_channels, conv.kernel_size[0]
    p = k // 2
    taps = tap_matrix(conv)
    x = x.contiguous(memory_format=torch.channels_last)  # each frame an (H*W, C) matrix
    out = torch.empty(n, out_chans, h, w, device=x.device, dtype=x.dtype)
    chunk = tap_frames(n, chans, len(taps))  # frames whose planes are held at once
    planes = torch.empty(chunk, len(taps), h * w, device=x.device, dtype=x.dtype)
    for first in range(0, n, chunk):
        m = min(chunk, n - first)
        for i in range(m):
            pixels = x[first + i].permute(1, 2, 0).reshape(h * w, chans)
            torch.mm(taps, pixels.t(), out=planes[i])
        tap = planes[:m].view(m, k, k, out_chans, h, w)
        acc = out[first : first + m]
        if conv.bias is None:
            acc.copy_(tap[:, p, p])
        else:
            torch.add(tap[:, p, p], conv.bias.detach()[:, None, None], out=acc)
        for ky in range(k):
            for kx in range(k):
                if ky == p and kx == p:
                    continue
                dy, dx = ky - p, kx - p  # out[y, x] takes in[y + dy, x + dx]
                y0, y1 = max(0, -dy), h - max(0, dy)
                x0, x1 = max(0, -dx), w - max(0, dx)
                if y1 > y0 and x1 > x0:
                    shifted = tap[:, ky, kx, :, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
                    acc[..., y0:y1, x0:x1] += shifted
    return out


# --------------------------------------------------------------------------------------------
# The bf16 render (lossy, opt-in). Free of the exact path's constraint, it fuses what oneDNN
# can. The time path stays fp32.
# --------------------------------------------------------------------------------------------


def bf16_forward(model: GNeRV, t: torch.Tensor) -> torch.Tensor:
    """As GNeRV.forward, in bfloat16 from the first block on, convs fused with their activations.
    Returns fp32 (B, 3, H, W)."""
    if not has_fused_bf16():
        raise GnervError(
            "the bf16 render needs a CPU with native bfloat16 (AVX-512 BF16 or AMX) and "
            "oneDNN's fused convolutions: use --precision fp32"
        )
    x, stats = model.time_path(t)
    x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    for j, block in enumerate(model.blocks):
        if stats is not None:
            mean, std = stats[j]
            x = distribution_shift_bf16(x, mean, 1.0 + std)
        x = block_bf16(block, x)
    return conv_bf16(model.head, x, "none" if model.cfg.residual else "sigmoid").float()


def block_bf16(block: ConvUpBlock, x: torch.Tensor) -> torch.Tensor:
    """The block in bf16, each conv fused with its GELU (see conv_bf16)."""
    r = block.shuffle.upscale_factor
    if block.grows:
        return conv_bf16(block.conv2, conv_bf16(block.conv1, x, "gelu", r), "gelu")
    return conv_bf16(block.conv2, conv_bf16(block.conv1, x, "gelu"), "gelu", r)


def _to_bf16(conv: nn.Conv2d, factor: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    w, b = blocked_weights(conv, factor) if factor else (conv.weight, conv.bias)
    w = w.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    return w, None if b is None else b.to(torch.bfloat16)


def bf16_weights(conv: nn.Conv2d, factor: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """conv's weight (NHWC) and bias in bfloat16, channels (i, j, c) with a factor; kept."""
    return _kept(conv, "_bf16", factor, _to_bf16)


def conv_bf16(
    conv: nn.Conv2d, x: torch.Tensor, post: str, factor: int | None = None
) -> torch.Tensor:
    """post(conv(x)) in one oneDNN kernel (post: "gelu", "sigmoid" or "none"), bf16 NHWC; then
    PixelShuffle(factor) when given (GELU commutes with it: both are per element)."""
    w, b = bf16_weights(conv, factor)
    y = torch.ops.mkldnn._convolution_pointwise(
        x, w, b, conv.padding, conv.stride, conv.dilation, conv.groups,
        post, [], "none" if post == "gelu" else "",
    )  # fmt: skip
    return shuffle_blocked(y, factor) if factor else y


def distribution_shift_bf16(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Eq. 1 as x * a + b on an NHWC bf16 x: the spatial sums of x and x^2 in fp32 (one pass
    each, far faster than torch's bf16 var_mean over NHWC), per-channel a and b, one addcmul."""
    n, c, h, w = x.shape
    flat = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # NHWC memory: a view
    mu = flat.sum(1, dtype=torch.float32) / (h * w)
    var = ((flat * flat).sum(1, dtype=torch.float32) / (h * w) - mu * mu).clamp_min(0)
    a = std / (var + eps).sqrt()
    b = mean - mu * a
    return torch.addcmul(b[:, :, None, None].to(x.dtype), x, a[:, :, None, None].to(x.dtype))
