"""Bit allocation per tensor (``--bits auto``): the fewest bytes at a PSNR budget, or the best
PSNR at a byte budget, measured on the dequantized model as the decoder rebuilds it.

Greedy by dD/dR: every tensor starts at ``max_bits``; each round takes away one bit from the
tensor whose next bit costs the least PSNR per byte saved, while the budget holds. A tensor's
bytes (its ranges record and entropy blob) do not depend on the others', so rates are counted
per tensor exactly; the PSNR of each candidate move is measured with the current allocation of
the others and re-measured only for the tensor that moved (the usual greedy approximation).
Tensors of fewer than ``MIN_ALLOCATED`` elements stay at ``max_bits``: they cost a few bytes at
any depth, and measuring them would cost more time than they could save.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from gnerv.codec.bitstream import symmetric_ranges_record
from gnerv.codec.config import DEFAULT_BITS, MIN_BITS, SYMMETRIC_SCHEME
from gnerv.codec.entropy import encode_symbols
from gnerv.codec.model import GNeRV, render, to_uint8
from gnerv.codec.quantize import (
    coding_shape,
    dequantize_tensor,
    quantize_tensor,
    quantize_tensor_symmetric,
)
from gnerv.encoder.config import DEFAULT_TARGET_PSNR_DROP
from gnerv.evaluation.metrics import mean_psnr
from gnerv.runtime.errors import GnervError

MIN_ALLOCATED = 1024  # smaller tensors keep max_bits
DEFAULT_MIN_AUTO_BITS = 3


@dataclass
class Allocation:
    bits: dict[str, int]  # name -> bits, every tensor of the model
    psnr: float  # of the dequantized model
    psnr_float: float
    tensor_bytes: int  # sum of the tensors' ranges and blobs (the header comes on top)
    steps: list[dict]  # the moves taken: tensor, bits, psnr, bytes


def allocate_bits(
    model: GNeRV,
    frames: np.ndarray,
    scheme: str = SYMMETRIC_SCHEME,
    target_psnr_drop: float | None = DEFAULT_TARGET_PSNR_DROP,
    max_bytes: int | None = None,
    min_bits: int = DEFAULT_MIN_AUTO_BITS,
    max_bits: int = DEFAULT_BITS,
    batch_size: int = 8,
) -> Allocation:
    """Choose each tensor's bits for ``model`` (on the CPU) against ``frames`` (uint8 N,H,W,3).

    ``max_bytes`` (the tensors' bytes; the header adds about a kilobyte) takes precedence over
    ``target_psnr_drop`` (dB below the float model's PSNR)."""
    if max_bytes is None and target_psnr_drop is None:
        raise GnervError("bit allocation needs a target: a PSNR drop or a byte budget")
    if not MIN_BITS <= min_bits <= max_bits:
        raise GnervError(f"bit allocation range {min_bits}..{max_bits} is invalid")
    model = copy.deepcopy(model).cpu().eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    quantize = quantize_tensor_symmetric if scheme == SYMMETRIC_SCHEME else quantize_tensor
    n = frames.shape[0]
    indices = list(range(n))
    cache: dict[tuple[str, int], tuple[torch.Tensor, int]] = {}

    def coded(name: str, bits: int) -> tuple[torch.Tensor, int]:
        """The tensor as decoded at ``bits``, and its bytes in the file."""
        if (name, bits) not in cache:
            t = state[name]
            q = quantize(name, t.reshape(coding_shape(tuple(t.shape))), bits)
            parametric = scheme == SYMMETRIC_SCHEME
            ranges = symmetric_ranges_record(q) if parametric else b"\0" * (8 * q.mins.size)
            size = len(ranges) + len(encode_symbols(q.symbols, q.alphabet_size, parametric))
            cache[name, bits] = (dequantize_tensor(q).reshape(t.shape), size)
        return cache[name, bits]

    def psnr_of(alloc: dict[str, int]) -> float:
        model.load_state_dict({k: coded(k, b)[0] for k, b in alloc.items()})
        out = to_uint8(render(model, indices, n, batch_size)).numpy()
        return mean_psnr(frames, out)

    def size_of(alloc: dict[str, int]) -> int:
        return sum(coded(k, b)[1] for k, b in alloc.items())

    model.load_state_dict(state)
    psnr_float = mean_psnr(frames, to_uint8(render(model, indices, n, batch_size)).numpy())
    alloc = dict.fromkeys(state, max_bits)
    psnr, size = psnr_of(alloc), size_of(alloc)
    floor = psnr_float - target_psnr_drop if target_psnr_drop is not None else -np.inf
    movable = {k for k, v in state.items() if v.numel() >= MIN_ALLOCATED}
    trial: dict[str, float] = {}  # name -> PSNR with that tensor one bit lower
    steps: list[dict] = []
    while movable:
        if max_bytes is not None and size <= max_bytes:
            break
        for name in movable - set(trial):
            trial[name] = psnr_of({**alloc, name: alloc[name] - 1})

        costs = {}
        for k in sorted(movable):
            saved = coded(k, alloc[k])[1] - coded(k, alloc[k] - 1)[1]
            costs[k] = (psnr - trial[k]) / max(saved, 1)
        name = min(costs, key=costs.__getitem__)
        new_alloc = {**alloc, name: alloc[name] - 1}
        new_psnr = psnr_of(new_alloc)
        if max_bytes is None and new_psnr < floor:
            movable.discard(name)  # this tensor's next bit costs too much; try the others
            continue
        alloc, psnr, size = new_alloc, new_psnr, size_of(new_alloc)
        steps.append({"tensor": name, "bits": alloc[name], "psnr": psnr, "bytes": size})
        trial.pop(name)
        if alloc[name] <= min_bits:
            movable.discard(name)
    return Allocation(alloc, psnr, psnr_float, size, steps)
