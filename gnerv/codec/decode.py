"""Decoding: ``.gnerv`` layers -> frames, any frame range, any prefix of the layer chain.

Needs nothing but the files: the models are rebuilt from their headers and weights
(:func:`build_model`); nothing from training is imported.

A chain is ``[base, layer 2, layer 3, ...]``: layer ``k`` names the SHA-256 of layer ``k - 1``'s
file, and all layers come from the same video. Each layer renders on its own, in float; residual
layers are divided by their ``residual_scale``; the sum is clipped to [0, 1] only at the end.

Precision: "fp32" (the default) is exact, the very floats the encoder computed its residuals
from, in the arithmetic the file names (its render version: gnerv.codec.kernels.RENDER_KERNELS;
the frames of renders 2 and 3 do not depend on the batch size or the thread count).
"bf16" (opt-in, CPUs with AVX-512 BF16 or AMX, and GPUs) renders in bfloat16 (on a CPU
gnerv.codec.kernels, convs fused with their activations; on a GPU torch.autocast): faster, and
lossy against fp32 (docs/performance.md states by how much); the encoder never uses it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from gnerv.codec import kernels
from gnerv.codec.bitstream import GnervFile, read_gnerv
from gnerv.codec.config import DEFAULT_BATCH, DEFAULT_PRECISION, PRECISIONS
from gnerv.codec.limits import check_decode_cost
from gnerv.codec.model import GNeRV, for_inference, frame_times, to_uint8
from gnerv.codec.quantize import dequantized_state_dict
from gnerv.runtime.device import select_device
from gnerv.runtime.errors import GnervError


def bf16_supported(device: torch.device) -> bool:
    """Whether the device computes in bfloat16 natively (CPU: oneDNN's AVX-512 BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot run (one line naming what to do)."""
    if precision not in PRECISIONS:
        raise GnervError(f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}")
    if precision == "bf16" and not bf16_supported(device):
        raise GnervError(
            f"--precision bf16: this {device.type.upper()} has no native bfloat16 (a CPU needs "
            "AVX-512 BF16 or AMX); decode with --precision fp32"
        )


def build_model(f: GnervFile) -> GNeRV:
    """GNeRV(config) with the file's dequantized weights, on the CPU, in eval mode."""
    sd = dequantized_state_dict(f.tensors, [r.shape for r in f.records])
    with torch.device("meta"):
        model = GNeRV(f.model_config)
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval()


def _short(sha: str | None) -> str:
    return (sha or "none")[:8]


def check_chain(files: Sequence[GnervFile]) -> None:
    """Refuse layers that are not a prefix chain of one video (raises GnervError)."""
    if not files:
        raise GnervError("no layers given: pass the base layer (stage 1) first")
    base = files[0]
    if base.index != 1:
        raise GnervError(
            f"{base.name} is layer {base.index}, not a base layer: give the base (stage 1) first"
        )
    for k, f in enumerate(files[1:], start=1):
        if f.stage["video_id"] != base.stage["video_id"] or f.video != base.video:
            raise GnervError(
                f"layer {k + 1} ({f.name}) is from a different video than the base ({base.name})"
            )
        if f.index != k + 1:
            raise GnervError(
                f"{f.name} is layer {f.index} but was given as layer {k + 1}: layers out of "
                "order; give them as base, layer 2, layer 3, ..."
            )
        prev = files[k - 1]
        if f.stage["parent_sha256"] != prev.sha256:
            what = "base" if k == 1 else f"layer {k}"
            raise GnervError(
                f"layer {k + 1} ({f.name}) refines {_short(f.stage['parent_sha256'])}, not the "
                f"given {what} {_short(prev.sha256)} ({prev.name})"
            )


def load_layers(paths: Sequence[str | os.PathLike]) -> list[GnervFile]:
    """Read, check and chain-check layer files (base first)."""
    files = [read_gnerv(p) for p in paths]
    check_chain(files)
    return files


def _check_indices(indices: Sequence[int], n_frames: int) -> torch.Tensor:
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    if idx.ndim != 1 or len(idx) == 0:
        raise GnervError("no frames to decode")
    if int(idx.min()) < 0 or int(idx.max()) >= n_frames:
        raise GnervError(
            f"frame {int(idx.max()) if int(idx.max()) >= n_frames else int(idx.min())} is "
            f"outside the video (0:{n_frames})"
        )
    return idx


Layers = list[tuple[GNeRV, float | None]]


def prepare_layers(files: Sequence[GnervFile], device: str | torch.device = "auto") -> Layers:
    """Rebuild each layer's model on the device, with its residual scale (None for the base).

    Pass the result to decode_layers / decode_float as `models` to decode many times (or to time
    rendering alone) without rebuilding."""
    dev = device if isinstance(device, torch.device) else select_device(device)
    return _models(files, dev)


def _models(files: Sequence[GnervFile], device: torch.device) -> Layers:
    return [
        (for_inference(build_model(f), device), f.stage["residual_scale"] if f.index > 1 else None)
        for f in files
    ]


def _batches(
    files: Sequence[GnervFile],
    indices: Sequence[int],
    device: str | torch.device,
    batch_size: int,
    models: Layers | None = None,
    precision: str = DEFAULT_PRECISION,
    kernel: str | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (positions in ``indices``, float layer sums (B, 3, H, W) on the device).

    Frames are rendered in aligned blocks ``[k * batch_size, (k + 1) * batch_size)`` of the whole
    video, whatever is asked for: a frame is always computed in the same batch, so it decodes to
    the same bits for any frame range (CPU matrix products differ in the last bit with the
    batch's size).
    """
    check_chain(files)
    if batch_size < 1:
        raise GnervError(f"batch size {batch_size} must be >= 1")
    for f in files:  # before any allocation: the limits each file was read with
        check_decode_cost(f, batch_size)
    n = files[0].n_frames
    idx = _check_indices(indices, n)
    dev = device if isinstance(device, torch.device) else select_device(device)
    check_precision(precision, dev)
    if models is None:
        models = _models(files, dev)
    elif len(models) != len(files):
        raise GnervError(f"{len(models)} prepared models for {len(files)} layers")
    # Positions grouped by block (ascending within a block); blocks rendered in the order
    # ``indices`` first needs them (ascending for a range).
    order = torch.argsort(idx // batch_size, stable=True)
    blocks, counts = torch.unique_consecutive((idx // batch_size)[order], return_counts=True)
    groups = list(zip(blocks.tolist(), torch.split(order, counts.tolist()), strict=True))
    groups.sort(key=lambda group: int(group[1][0]))
    # On a GPU the layers render concurrently, one CUDA stream each; on a CPU they run one after
    # the other (each already uses every core). The sum is the same in both cases.
    streams = (
        [torch.cuda.Stream(dev) for _ in models] if dev.type == "cuda" and len(models) > 1 else None
    )
    # bf16 on a CPU: the fused oneDNN render (gnerv.codec.kernels); on a GPU: autocast.
    fused_bf16 = precision == "bf16" and dev.type == "cpu"
    autocast = precision == "bf16" and not fused_bf16
    # Each layer in the arithmetic its file names, unless a kernel is forced (benchmarks).
    layer_kernels = (
        ["bf16"] * len(files)
        if fused_bf16
        else [kernel or kernels.RENDER_KERNELS[f.render] for f in files]
    )
    with torch.inference_mode(), torch.autocast(dev.type, torch.bfloat16, enabled=autocast):
        for block, positions in groups:
            lo = block * batch_size
            t = frame_times(torch.arange(lo, min(lo + batch_size, n)), n).to(dev)
            outs = _render_each(models, t, streams, layer_kernels)
            acc = outs[0]
            for out, (_, scale) in zip(outs[1:], models[1:], strict=True):
                acc = acc + out / scale
            rows = idx[positions] - lo
            if len(rows) == len(acc) and torch.equal(rows, torch.arange(len(rows))):
                yield positions, acc  # the whole block in order (a range): no gather copy
            else:
                yield positions, acc[rows.to(dev)]


def _render_each(
    models: Layers,
    t: torch.Tensor,
    streams: list[torch.cuda.Stream] | None,
    layer_kernels: Sequence[str],
) -> list[torch.Tensor]:
    """Each layer's float output for frame times `t`, by its kernel (gnerv.codec.kernels)."""
    if streams is None:
        return [
            kernels.forward(model, t, kernel).float()
            for (model, _), kernel in zip(models, layer_kernels, strict=True)
        ]
    main = torch.cuda.current_stream(t.device)
    outs = []
    for (model, _), stream, kernel in zip(models, streams, layer_kernels, strict=True):
        stream.wait_stream(main)
        with torch.cuda.stream(stream):
            out = kernels.forward(model, t, kernel).float()
        out.record_stream(main)  # used on the main stream: keep its memory until then
        outs.append(out)
    for stream in streams:
        main.wait_stream(stream)
    return outs


def decode_float(
    files: Sequence[GnervFile],
    indices: Sequence[int],
    device: str | torch.device = "auto",
    batch_size: int = DEFAULT_BATCH,
    models: Layers | None = None,
    kernel: str | None = None,
) -> torch.Tensor:
    """The unclipped float sum of the layers: (N, 3, H, W) float32 on the CPU (kernel: as in
    decode_layers)."""
    cfg = files[0].model_config if files else None
    out = None
    for positions, acc in _batches(files, indices, device, batch_size, models, kernel=kernel):
        if out is None:
            out = torch.empty((len(indices), 3, cfg.height, cfg.width), dtype=torch.float32)
        out[positions] = acc.cpu()
    return out


def iter_decoded(
    files: Sequence[GnervFile],
    indices: Sequence[int],
    device: str | torch.device = "auto",
    batch_size: int = DEFAULT_BATCH,
    models: Layers | None = None,
    precision: str = DEFAULT_PRECISION,
    kernel: str | None = None,
) -> Iterator[np.ndarray]:
    """Decoded frames in the order of ``indices``, a batch at a time: uint8 (B, H, W, 3) arrays.

    The same bits as :func:`decode_layers`. Memory holds one aligned block at a time; for
    indices out of order, also the frames decoded before their turn (none for a range).
    """
    pending: dict[int, np.ndarray] = {}
    next_pos = 0
    for positions, acc in _batches(files, indices, device, batch_size, models, precision, kernel):
        frames = to_uint8(acc).cpu().numpy()
        first, last = int(positions[0]), int(positions[-1])
        if not pending and first == next_pos and last - first + 1 == len(positions):
            next_pos = last + 1
            yield frames
            continue
        pending.update(zip(positions.tolist(), frames, strict=True))
        run = []
        while next_pos in pending:
            run.append(pending.pop(next_pos))
            next_pos += 1
        if run:
            yield np.stack(run)


def decode_layers(
    files: Sequence[GnervFile],
    indices: Sequence[int],
    device: str | torch.device = "auto",
    batch_size: int = DEFAULT_BATCH,
    models: Layers | None = None,
    precision: str = DEFAULT_PRECISION,
    kernel: str | None = None,
) -> np.ndarray:
    """Decoded frames: uint8 (N, H, W, 3), the layers' sum clipped and rounded at the end
    (kernel: None renders each layer in its file's render version; a name of
    gnerv.codec.kernels forces one, e.g. "reference" = "lean" = render 1 for benchmarks)."""
    decoded = iter_decoded(files, indices, device, batch_size, models, precision, kernel)
    return np.concatenate(list(decoded))
