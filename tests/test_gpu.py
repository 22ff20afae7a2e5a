"""CUDA-only checks (marker `gpu`; skipped without a GPU): bf16 training, device-held targets,
exact resume, and GPU decoding against CPU decoding.

Run them on a lent GPU with `pytest -m gpu tests/test_gpu.py` (benchmarks/gpu_check.sh does).
Everything is tiny (36x64 frames), so the whole file takes seconds once CUDA is up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import gnerv.encoder.train as train_mod
from gnerv.codec.bitstream import base_stage, compress_model, video_facts, write_gnerv
from gnerv.codec.config import GNeRVConfig
from gnerv.codec.decode import decode_float, decode_layers, load_layers
from gnerv.codec.model import GNeRV, frame_times
from gnerv.encoder.config import TrainConfig
from gnerv.encoder.train import fit, load_checkpoint, stage_loss
from gnerv.evaluation.metrics import mean_psnr
from gnerv.media.video import video_fingerprint
from gnerv.runtime.device import seed_everything

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

N, H, W = 8, 36, 64

# GPU against CPU decoding. With TF32 on (PyTorch's default for cuDNN convs) a conv keeps ~10
# mantissa bits, so float outputs may differ by up to DECODE_TF32_ATOL, and uint8 frames by at
# most DECODE_MAX_LEVELS levels with a PSNR of at least DECODE_MIN_PSNR dB between them. With TF32
# off both sides are fp32 and differ only in summation order: DECODE_FP32_ATOL.
DECODE_TF32_ATOL = 2e-2
DECODE_MAX_LEVELS = 3
DECODE_MIN_PSNR = 40.0
DECODE_FP32_ATOL = 5e-4


def clip() -> np.ndarray:
    """uint8 (N, H, W, 3): moving ramps over a checkerboard."""
    y, x = np.mgrid[0:H, 0:W]
    frames = [
        np.stack(
            [(x + 3 * i) % W * 4, (y + 2 * i) % H * 7, ((x // 8 + y // 8 + i) % 2) * 200 + 20], -1
        )
        for i in range(N)
    ]
    return np.stack(frames).astype(np.uint8)


def small_cfg() -> GNeRVConfig:
    return GNeRVConfig(H, W, c0=8, min_channels=8)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def deterministic_cudnn() -> Iterator[None]:
    """cuDNN picks the same (deterministic) algorithms on every call, then settings return."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


@pytest.fixture
def no_tf32() -> Iterator[None]:
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_bf16_training_step_on_cuda():
    """One step as fit takes it: the forward runs in bf16, the loss is finite, weights move."""
    device = torch.device("cuda")
    seed_everything(0)
    model = GNeRV(small_cfg()).to(device).to(memory_format=torch.channels_last)
    before = weights(model)
    data = train_mod._as_device_target(clip(), device)
    idx = torch.arange(4)
    gt = train_mod._batch(data, idx.to(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.999))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        pred = model(frame_times(idx, N).to(device))
    assert pred.dtype == torch.bfloat16  # autocast really ran the convs in bf16
    loss = stage_loss(pred.float(), gt, alpha=0.7, distortion="l1", data_range=1.0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer.step()
    after = weights(model)
    assert all(torch.isfinite(v).all() for v in after.values())
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(moved) == len(before), f"unchanged after a step: {set(before) - set(moved)}"


def test_fit_on_cuda_with_bf16_learns(tmp_path):
    frames = clip()
    result = fit(
        frames, small_cfg(), TrainConfig(epochs=3, device="cuda"), tmp_path, progress=False
    )
    h = result.history
    assert all(np.isfinite(r["loss"]) for r in h)
    assert h[-1]["loss"] < h[0]["loss"]
    assert np.isfinite(result.psnr)
    assert next(result.model.parameters()).device.type == "cuda"


def test_targets_are_held_on_the_device():
    device = torch.device("cuda")
    frames = clip()
    data = train_mod._as_device_target(frames, device)
    assert data.device.type == "cuda" and data.dtype == torch.uint8  # 4x smaller than float
    assert data.shape == frames.shape
    batch = train_mod._batch(data, torch.tensor([1, 5], device=device))
    assert batch.device.type == "cuda" and batch.dtype == torch.float32
    assert batch.shape == (2, 3, H, W)
    expected = torch.from_numpy(frames[[1, 5]]).permute(0, 3, 1, 2)
    # CUDA divides by a scalar through its reciprocal (1 ulp from the CPU's quotient): the
    # pixel values are the contract, the last bit of the float is not
    assert torch.equal(batch.cpu().mul(255).round().to(torch.uint8), expected)
    torch.testing.assert_close(batch.cpu(), expected.float() / 255, rtol=1e-6, atol=0)
    residual = (frames.astype(np.float32) - 128) * 0.37
    held = train_mod._as_device_target(residual, device)
    assert held.device.type == "cuda" and held.dtype == torch.float32  # residuals keep precision
    assert torch.equal(
        train_mod._batch(held, torch.tensor([2], device=device)).cpu()[0],
        torch.from_numpy(residual[2]).permute(2, 0, 1),
    )


def test_resume_on_gpu_matches_an_unbroken_run(tmp_path, deterministic_cudnn):
    frames = clip()
    cfg = TrainConfig(epochs=4, checkpoint_every=2, seed=3, device="cuda")
    full = weights(fit(frames, small_cfg(), cfg, tmp_path / "full", progress=False).model)

    def killer(epoch: int, _record: dict) -> None:
        if epoch == 3:  # dies after the epoch-2 checkpoint, losing epoch 3's work
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(frames, small_cfg(), cfg, tmp_path / "killed", progress=False, on_epoch=killer)
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["epoch"] == 2
    resumed = fit(frames, small_cfg(), cfg, tmp_path / "killed", resume=True, progress=False)
    got = weights(resumed.model)
    diffs = {k: float((full[k] - got[k]).abs().max()) for k in full}
    assert all(torch.equal(full[k], got[k]) for k in full), f"max |diff| per tensor: {diffs}"


def _write_layer(path: Path) -> None:
    """A seeded tiny model written with the package's own writer (8-bit, entropy coded)."""
    frames = clip()
    seed_everything(5)
    model = GNeRV(small_cfg()).eval()
    data = compress_model(
        model, 8, video_facts(N, H, W, 25.0), base_stage(video_fingerprint(frames))
    )
    write_gnerv(path, data)


def test_decode_on_gpu_matches_cpu(tmp_path):
    path = tmp_path / "tiny.gnerv"
    _write_layer(path)
    files = load_layers([path])
    idx = list(range(N))
    cpu = decode_layers(files, idx, "cpu")
    gpu = decode_layers(files, idx, "cuda")
    assert gpu.shape == cpu.shape == (N, H, W, 3) and gpu.dtype == np.uint8
    levels = int(np.abs(gpu.astype(np.int16) - cpu).max())
    assert levels <= DECODE_MAX_LEVELS
    assert mean_psnr(cpu, gpu) >= DECODE_MIN_PSNR
    float_diff = (decode_float(files, idx, "cuda") - decode_float(files, idx, "cpu")).abs().max()
    assert float(float_diff) <= DECODE_TF32_ATOL


def test_decode_on_gpu_matches_cpu_in_fp32(tmp_path, no_tf32):
    path = tmp_path / "tiny.gnerv"
    _write_layer(path)
    files = load_layers([path])
    idx = [0, 3, 7]
    diff = (decode_float(files, idx, "cuda") - decode_float(files, idx, "cpu")).abs().max()
    assert float(diff) <= DECODE_FP32_ATOL
    one = decode_layers(files, [2], "cuda", batch_size=4)
    every = decode_layers(files, list(range(N)), "cuda", batch_size=4)
    assert np.array_equal(one[0], every[2])  # a frame decodes the same in any range asked for
