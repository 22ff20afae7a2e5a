"""Per-channel uniform quantization of model weights, and its exact inverse.

The paper quantizes "tensor by tensor", with "channelwise maximum and minimum values of each tensor
along the 0th dimension", 8 bits by default. Here a tensor is first viewed in its
:func:`coding_shape`, which drops the leading singleton dimension of a >= 3-d tensor (the global
embedding ``(1, C0, h, w)`` is coded as ``(C0, h, w)``); then:

- A tensor with 2 or more dimensions (conv / linear weights, the global embedding C0 x h x w) gets
  one ``(min, max)`` pair per index along dim 0.
- A 0-d or 1-d tensor (biases, norm scales, 1-d vectors) is ONE channel with one ``(min, max)``
  pair. Taking "channels along dim 0" literally would give every element of a bias its own
  ``min == max == value`` stored in float32, i.e. store the bias unquantized and save nothing.

:func:`num_channels` states this rule; it is the only place it is stated.

For a channel with ``mins[c] < maxs[c]`` the step is ``scale = (max - min) / (2**bits - 1)`` and a
value ``x`` becomes the symbol ``q = round_half_even((x - min) / scale)``, clipped to
``[0, 2**bits - 1]``; a constant channel (``max == min``) gets scale 0 and symbols 0. The value
decoded is ``min + q * scale``.

Encoder and decoder must agree bit for bit, so the tensor is first cast to float32 (the min/max
stored are then exact values of the tensor), the step is computed from the stored float32
min/max by one helper (:func:`channel_scales`), and the reconstruction by another
(:func:`_reconstruct`), both in float32 numpy with separate multiply and add (no fused ops).
A model loaded with :func:`dequantized_state_dict` of :func:`quantize_model` therefore renders
exactly what the decoder of the bitstream will render.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gnerv.errors import GnervError

MIN_BITS = 2
MAX_BITS = 16
DEFAULT_BITS = 8  # the paper's 8-bit quantization


@dataclass
class QuantizedTensor:
    """One quantized tensor: its symbols and the per-channel ranges needed to rebuild it.

    ``symbols`` is int32, flattened in C order, values in ``[0, 2**bits - 1]``; ``mins`` and
    ``maxs`` are float32 with one entry per channel (see :func:`num_channels`).
    """

    name: str
    shape: tuple[int, ...]
    bits: int
    symbols: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray

    @property
    def numel(self) -> int:
        """Number of elements of the tensor."""
        return math.prod(self.shape)

    @property
    def alphabet_size(self) -> int:
        """Number of possible symbols, ``2**bits``."""
        return 1 << self.bits


def coding_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape a tensor is quantized in: a >= 3-d tensor loses a leading singleton dimension.

    The global embedding (1, C0, h, w) is quantized as (C0, h, w): one range per embedding
    channel. Every other GNeRV tensor keeps its shape (channels = output rows / channels).
    """
    shape = tuple(int(s) for s in shape)
    return shape[1:] if len(shape) >= 3 and shape[0] == 1 else shape


def num_channels(shape: tuple[int, ...]) -> int:
    """Channels with their own (min, max): ``coding_shape(shape)[0]`` when the coding shape has
    2 or more dimensions, else 1."""
    shape = coding_shape(shape)
    return shape[0] if len(shape) >= 2 else 1


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer):
        raise GnervError(f"quantization bits must be an integer, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise GnervError(f"quantization bits must be in {MIN_BITS}..{MAX_BITS}, got {bits}")


def channel_scales(mins: np.ndarray, maxs: np.ndarray, bits: int) -> np.ndarray:
    """Quantization step per channel, in float32, from the stored float32 min/max.

    Shared by encoder and decoder: the only place the step is computed.
    """
    mins32 = np.asarray(mins, dtype=np.float32)
    maxs32 = np.asarray(maxs, dtype=np.float32)
    levels = np.float32((1 << bits) - 1)
    return ((maxs32 - mins32) / levels).astype(np.float32)


def _reconstruct(symbols2d: np.ndarray, mins: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``min + q * scale`` in float32 for a (channels, per_channel) symbol array."""
    prod = symbols2d.astype(np.float32) * scales.astype(np.float32)[:, None]
    return (prod + mins.astype(np.float32)[:, None]).astype(np.float32)


def quantize_tensor(name: str, t: torch.Tensor, bits: int = DEFAULT_BITS) -> QuantizedTensor:
    """Quantize one floating-point tensor per channel (:func:`num_channels`; see the module
    docstring). The result keeps ``t``'s shape."""
    _check_bits(bits)
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        kind = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
        raise GnervError(f"tensor {name!r} is {kind}; only floating-point tensors are quantized")
    x = t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    if not np.isfinite(x).all():
        raise GnervError(f"tensor {name!r} has non-finite values (NaN/inf); cannot quantize it")
    shape = tuple(int(s) for s in x.shape)
    channels = num_channels(shape)
    x2 = x.reshape(channels, -1) if channels else x.reshape(0, 0)
    if x2.size:
        mins = x2.min(axis=1).astype(np.float32)
        maxs = x2.max(axis=1).astype(np.float32)
    else:
        mins = np.zeros(channels, dtype=np.float32)
        maxs = np.zeros(channels, dtype=np.float32)
    scales = channel_scales(mins, maxs, bits)
    levels = (1 << bits) - 1
    live = scales > 0
    q = np.zeros(x2.shape, dtype=np.float64)
    if live.any():
        s64 = np.where(live, scales, 1).astype(np.float64)[:, None]
        q = np.rint((x2.astype(np.float64) - mins.astype(np.float64)[:, None]) / s64)
        q[~live] = 0
    symbols = np.clip(q, 0, levels).astype(np.int32).reshape(-1)
    return QuantizedTensor(name=name, shape=shape, bits=int(bits), symbols=symbols,
                           mins=mins, maxs=maxs)


def _validate(q: QuantizedTensor) -> None:
    """Refuse a QuantizedTensor that could not have come from :func:`quantize_tensor`."""
    _check_bits(q.bits)
    if any(int(s) < 0 for s in q.shape):
        raise GnervError(f"tensor {q.name!r}: negative dimension in shape {q.shape}")
    channels = num_channels(q.shape)
    symbols = np.asarray(q.symbols)
    if symbols.ndim != 1 or symbols.size != q.numel:
        raise GnervError(f"tensor {q.name!r}: {symbols.size} symbols for shape {q.shape}")
    if not np.issubdtype(symbols.dtype, np.integer):
        raise GnervError(f"tensor {q.name!r}: symbols must be integers, got {symbols.dtype}")
    if symbols.size and (symbols.min() < 0 or symbols.max() >= q.alphabet_size):
        raise GnervError(f"tensor {q.name!r}: symbol outside 0..{q.alphabet_size - 1}")
    mins = np.asarray(q.mins, dtype=np.float32)
    maxs = np.asarray(q.maxs, dtype=np.float32)
    if mins.shape != (channels,) or maxs.shape != (channels,):
        raise GnervError(f"tensor {q.name!r}: expected {channels} channel min/max pairs, "
                         f"got {mins.shape} and {maxs.shape}")
    if not (np.isfinite(mins).all() and np.isfinite(maxs).all()):
        raise GnervError(f"tensor {q.name!r}: non-finite channel min/max")
    if (maxs < mins).any():
        raise GnervError(f"tensor {q.name!r}: channel max below channel min")


def dequantize_tensor(q: QuantizedTensor) -> torch.Tensor:
    """Rebuild the float32 tensor ``min + q * scale`` with the original shape."""
    _validate(q)
    channels = num_channels(q.shape)
    mins = np.asarray(q.mins, dtype=np.float32)
    scales = channel_scales(mins, q.maxs, q.bits)
    sym2 = np.asarray(q.symbols).reshape(channels, -1) if channels else np.zeros((0, 0))
    out = _reconstruct(sym2, mins, scales)
    return torch.from_numpy(out.reshape(q.shape).copy())


def quantize_model(model: torch.nn.Module, bits: int = DEFAULT_BITS) -> list[QuantizedTensor]:
    """Quantize every state-dict tensor of ``model`` in its :func:`coding_shape`, model order.

    Every entry must be floating point: a non-float entry raises GnervError rather than being
    silently dropped from the bitstream. The model is not changed.
    """
    _check_bits(bits)
    return [
        quantize_tensor(name, t.detach().reshape(coding_shape(t.shape)), bits)
        for name, t in model.state_dict().items()
    ]


def dequantized_state_dict(
    tensors: list[QuantizedTensor], shapes: list[tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """name -> float32 tensor in its model shape (the inverse of :func:`quantize_model`)."""
    out: dict[str, torch.Tensor] = {}
    for q, shape in zip(tensors, shapes, strict=True):
        if q.name in out:
            raise GnervError(f"tensor name {q.name!r} appears twice")
        out[q.name] = dequantize_tensor(q).reshape(shape)
    return out
