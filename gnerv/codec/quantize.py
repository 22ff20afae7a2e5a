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

That is the paper's scheme (``MINMAX_SCHEME``, the default). ``SYMMETRIC_SCHEME`` (format 2) uses
the same channels on a zero-centred grid: channel ``c`` has step ``s_c`` (one float32 ``unit`` per
tensor and a logarithmic step code per channel, :func:`symmetric_steps`), a value becomes
``clip(round_half_even(x / s_c), -L, L)`` with ``L = 2**(bits - 1) - 1``, stored plus
:func:`zero_symbol`, and decodes to ``q * s_c``: zero is exact, and the weights peak at the
centre symbol, which the entropy coder turns into saved bits. :func:`fake_quantize` is the same
rule in torch for quantization-aware fine-tuning.

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

from gnerv.codec.config import (
    DEFAULT_BITS,
    DEFAULT_SCHEME,
    MAX_BITS,
    MIN_BITS,
    MINMAX_SCHEME,
    SYMMETRIC_SCHEME,
    check_scheme,
)
from gnerv.runtime.errors import GnervError

# Symmetric scheme: channel c's step is ``unit * 2**(-code_c / STEP_CODES_PER_OCTAVE)``, with
# ``unit`` (a bfloat16 value, one per tensor: 2 bytes in format 3, a float32 in format 2's
# files) the step of the tensor's widest channel and
# ``code_c`` in 0..STEP_CODE_MAX (one byte, entropy coded).
STEP_CODES_PER_OCTAVE = 4
STEP_CODE_MAX = 255
# 2**(-j/4) for j = 0..3, correctly rounded to float32: steps are exact products of these,
# np.ldexp and the float32 unit, so encoder and decoder agree bit for bit on every platform.
_STEP_FRACTIONS = np.array(
    [2.0 ** (-j / STEP_CODES_PER_OCTAVE) for j in range(STEP_CODES_PER_OCTAVE)], dtype=np.float32
)


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
    # SYMMETRIC_SCHEME only (mins/maxs are then empty): the tensor's unit step and one step code
    # per channel; symbols are ``q + zero_symbol(bits)`` for integer multiples q of the step.
    scheme: str = MINMAX_SCHEME
    unit: float = 0.0
    step_codes: np.ndarray | None = None

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


def _as_float32_array(name: str, t: torch.Tensor) -> np.ndarray:
    """``t`` as a float32 numpy array; refuses non-float tensors and non-finite values."""
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        kind = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
        raise GnervError(f"tensor {name!r} is {kind}; only floating-point tensors are quantized")
    x = t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    if not np.isfinite(x).all():
        raise GnervError(f"tensor {name!r} has non-finite values (NaN/inf); cannot quantize it")
    return x


def quantize_tensor(name: str, t: torch.Tensor, bits: int = DEFAULT_BITS) -> QuantizedTensor:
    """Quantize one floating-point tensor per channel (:func:`num_channels`; see the module
    docstring). The result keeps ``t``'s shape."""
    _check_bits(bits)
    x = _as_float32_array(name, t)
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
    return QuantizedTensor(
        name=name, shape=shape, bits=int(bits), symbols=symbols, mins=mins, maxs=maxs
    )


def zero_symbol(bits: int) -> int:
    """Symbol of the value 0 in the symmetric scheme: ``2**(bits - 1)`` (symbols
    ``1..2**bits - 1`` hold the multiples ``-L..L`` of the step, ``L = 2**(bits - 1) - 1``)."""
    return 1 << (bits - 1)


def symmetric_steps(unit: float, codes: np.ndarray) -> np.ndarray:
    """Step per channel of the symmetric scheme, in float32: ``unit * 2**(-code / 4)``.

    Shared by encoder and decoder: the only place the step is computed (exact float32 products
    of tabled constants and powers of two, so every platform gets the same bits)."""
    codes = np.asarray(codes, dtype=np.int64)
    frac = _STEP_FRACTIONS[codes % STEP_CODES_PER_OCTAVE]
    scaled = np.ldexp(frac, -(codes // STEP_CODES_PER_OCTAVE)).astype(np.float32)
    return (scaled * np.float32(unit)).astype(np.float32)


def bfloat16_ceil(x: float) -> float:
    """The smallest bfloat16 (a float32 whose low 16 bits are 0) >= x >= 0: the symmetric
    scheme's unit step, which format 3 stores in 2 bytes. Integer operations on the float32's
    bits: exact on every platform."""
    f = np.float32(x)
    if f < x:  # float32 rounded down: step up one float32
        f = np.nextafter(f, np.float32(np.inf))
    b = int(np.array([f], dtype=np.float32).view(np.uint32)[0])
    if b & 0xFFFF:
        b = (b | 0xFFFF) + 1
    return float(np.array([b], dtype=np.uint32).view(np.float32)[0])


def symmetric_step_codes(amax: np.ndarray, bits: int) -> tuple[float, np.ndarray]:
    """The symmetric scheme's (unit, step codes) for channels with largest magnitudes ``amax``:
    the widest channel gets code 0, every other one the finest step that still covers its
    range (an all-zero channel gets code 0; its symbols are all zero anyway)."""
    levels = (1 << (bits - 1)) - 1
    amax = np.asarray(amax, dtype=np.float64)
    unit = bfloat16_ceil(amax.max() / levels) if amax.size else 0.0
    codes = np.zeros(amax.size, dtype=np.int32)
    live = amax > 0
    if unit > 0 and live.any():
        octaves = np.log2(unit * levels / amax[live])
        codes[live] = np.clip(np.floor(octaves * STEP_CODES_PER_OCTAVE), 0, STEP_CODE_MAX)
    return unit, codes


def quantize_tensor_symmetric(
    name: str, t: torch.Tensor, bits: int = DEFAULT_BITS
) -> QuantizedTensor:
    """Quantize one tensor on a zero-centred grid (SYMMETRIC_SCHEME): channel c (see
    :func:`num_channels`) has step ``s_c`` (:func:`symmetric_steps`) and a value x becomes
    ``clip(round_half_even(x / s_c), -L, L)`` (stored plus :func:`zero_symbol`); 0 decodes to
    exactly 0, so pruned weights cost the peak symbol."""
    _check_bits(bits)
    x = _as_float32_array(name, t)
    shape = tuple(int(s) for s in x.shape)
    channels = num_channels(shape)
    x2 = x.reshape(channels, -1) if channels else x.reshape(0, 0)
    amax = np.abs(x2).max(axis=1) if x2.size else np.zeros(channels, dtype=np.float32)
    unit, codes = symmetric_step_codes(amax, bits)
    steps = symmetric_steps(unit, codes)
    levels = (1 << (bits - 1)) - 1
    q = np.zeros(x2.shape, dtype=np.float64)
    live = steps > 0
    if live.any():
        s64 = np.where(live, steps, 1).astype(np.float64)[:, None]
        q = np.clip(np.rint(x2.astype(np.float64) / s64), -levels, levels)
        q[~live] = 0
    symbols = (q.astype(np.int32) + np.int32(zero_symbol(bits))).reshape(-1)
    empty = np.zeros(0, dtype=np.float32)
    return QuantizedTensor(
        name=name,
        shape=shape,
        bits=int(bits),
        symbols=symbols,
        mins=empty,
        maxs=empty,
        scheme=SYMMETRIC_SCHEME,
        unit=unit,
        step_codes=codes,
    )


def fake_quantize(t: torch.Tensor, bits: int) -> torch.Tensor:
    """The symmetric scheme's quantize-dequantize of ``t`` (in its coding shape) in torch, with a
    straight-through gradient: what quantization-aware fine-tuning trains through. Same rule as
    :func:`quantize_tensor_symmetric`, in the tensor's own dtype and device."""
    levels = (1 << (bits - 1)) - 1
    x2, steps = channel_rows_and_steps(t, bits)
    with torch.no_grad():
        safe = torch.where(steps > 0, steps, torch.ones_like(steps))[:, None]
        q = torch.clamp(torch.round(x2 / safe), -levels, levels) * steps[:, None]
    return (x2 + (q - x2).detach()).reshape(t.shape)


def channel_rows_and_steps(t: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``t`` as (channels, -1) rows of its coding shape, and each channel's step on the
    symmetric grid at ``bits`` (detached: computed as the file computes it)."""
    x = t.reshape(coding_shape(tuple(t.shape)))
    x2 = x.reshape(num_channels(tuple(x.shape)), -1)
    with torch.no_grad():
        amax = x2.abs().amax(dim=1).detach().cpu().numpy()
        unit, codes = symmetric_step_codes(amax, bits)
        steps = torch.from_numpy(symmetric_steps(unit, codes)).to(t.device, t.dtype)
    return x2, steps


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
    if q.scheme == SYMMETRIC_SCHEME:
        codes = np.asarray(q.step_codes) if q.step_codes is not None else None
        if (
            codes is None
            or codes.shape != (channels,)
            or not np.issubdtype(codes.dtype, np.integer)
        ):
            raise GnervError(f"tensor {q.name!r}: expected {channels} integer step codes")
        if codes.size and (codes.min() < 0 or codes.max() > STEP_CODE_MAX):
            raise GnervError(f"tensor {q.name!r}: step code outside 0..{STEP_CODE_MAX}")
        if not (math.isfinite(q.unit) and q.unit >= 0):
            raise GnervError(f"tensor {q.name!r}: unit step must be finite and >= 0")
        if symbols.size and symbols.min() < 1:
            raise GnervError(f"tensor {q.name!r}: symbol 0 is not used by the symmetric scheme")
        return
    if q.scheme != MINMAX_SCHEME:
        raise GnervError(f"tensor {q.name!r}: unknown quantization scheme {q.scheme!r}")
    mins = np.asarray(q.mins, dtype=np.float32)
    maxs = np.asarray(q.maxs, dtype=np.float32)
    if mins.shape != (channels,) or maxs.shape != (channels,):
        raise GnervError(
            f"tensor {q.name!r}: expected {channels} channel min/max pairs, "
            f"got {mins.shape} and {maxs.shape}"
        )
    if not (np.isfinite(mins).all() and np.isfinite(maxs).all()):
        raise GnervError(f"tensor {q.name!r}: non-finite channel min/max")
    if (maxs < mins).any():
        raise GnervError(f"tensor {q.name!r}: channel max below channel min")


def dequantize_tensor(q: QuantizedTensor) -> torch.Tensor:
    """Rebuild the float32 tensor (``min + q * scale``, or ``(q - zero) * step`` in the
    symmetric scheme) with the original shape."""
    _validate(q)
    channels = num_channels(q.shape)
    if q.scheme == SYMMETRIC_SCHEME:
        steps = symmetric_steps(q.unit, np.asarray(q.step_codes))
        sym2 = np.asarray(q.symbols).reshape(channels, -1) - np.int32(zero_symbol(q.bits))
        out = (sym2.astype(np.float32) * steps[:, None]).astype(np.float32)
        return torch.from_numpy(out.reshape(q.shape).copy())
    mins = np.asarray(q.mins, dtype=np.float32)
    scales = channel_scales(mins, q.maxs, q.bits)
    sym2 = np.asarray(q.symbols).reshape(channels, -1) if channels else np.zeros((0, 0))
    out = _reconstruct(sym2, mins, scales)
    return torch.from_numpy(out.reshape(q.shape).copy())


def quantize_model(
    model: torch.nn.Module,
    bits: int | dict[str, int] = DEFAULT_BITS,
    scheme: str = DEFAULT_SCHEME,
) -> list[QuantizedTensor]:
    """Quantize every state-dict tensor of ``model`` in its :func:`coding_shape`, model order,
    with ``scheme`` at ``bits`` (one depth, or one per tensor name: a bit allocation).

    Every entry must be floating point: a non-float entry raises GnervError rather than being
    silently dropped from the bitstream. The model is not changed.
    """
    check_scheme(scheme)
    state = model.state_dict()
    per_tensor = bits if isinstance(bits, dict) else dict.fromkeys(state, bits)
    if set(per_tensor) != set(state):
        raise GnervError("a bit allocation must give bits for every tensor of the model")
    quantize = quantize_tensor_symmetric if scheme == SYMMETRIC_SCHEME else quantize_tensor
    out = []
    for name, t in state.items():
        _check_bits(per_tensor[name])
        out.append(quantize(name, t.detach().reshape(coding_shape(t.shape)), per_tensor[name]))
    return out


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
