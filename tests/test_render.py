"""Render versions: what a decoder promises about the frames (docs/bitstream.md, "What a decoder
promises").

Renders 2 (kernels.fused_forward) and 3 (kernels.tapped_forward, written by every encode) compute
each value one way, whatever the batch size, the thread count or the frames asked for: the float
sums a decoder shows are the same bits in every such setting, in this process and in another one.
Across instruction sets they stay within the bound the contract states. Render 1 files (format 1
to 4) keep their arithmetic (tests/test_golden.py pins their frames).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gnerv.codec import bitstream as bs
from gnerv.codec.config import GNeRVConfig, c0_for_size
from gnerv.codec.decode import decode_float, decode_layers, load_layers
from gnerv.codec.kernels import (
    INVARIANT_RENDERS,
    ISA_CAPS,
    NEWEST_RENDER,
    RENDER_KERNELS,
    has_fused_conv,
)
from gnerv.codec.model import GNeRV, to_uint8

ROOT = Path(__file__).resolve().parent.parent
H, W, N = 90, 160, 12
INVARIANT = list(INVARIANT_RENDERS)
# Across instruction sets (AVX-512 / AVX2 / SSE4.1 kernels of oneDNN and torch), renders 2 and 3's
# floats may differ in their last bits; the decoded bytes by at most one level on at most this
# share of the values (docs/bitstream.md states the same bound).
ISA_MAX_LEVELS = 1
ISA_MAX_SHARE = 1e-3
ISA_MAX_FLOAT = 1e-5

# argv: frame count, torch threads, layer files; prints the float sums as a .npy (batch 5)
DECODE = """
import sys, numpy as np, torch
from gnerv.codec.decode import decode_float, load_layers
torch.set_num_threads(int(sys.argv[2]))
x = decode_float(load_layers(sys.argv[3:]), range(int(sys.argv[1])), "cpu", 5)
np.save(sys.stdout.buffer, x.numpy())
"""


def laplace_model(cfg: GNeRVConfig, seed: int) -> GNeRV:
    """A model with trained-like (Laplacian) weights and a head that outputs something."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = GNeRV(cfg)
    with torch.no_grad():
        for p in model.parameters():
            b = float(p.std()) / np.sqrt(2) + 1e-3
            p.copy_(torch.from_numpy(rng.laplace(0.0, b, tuple(p.shape)).astype(np.float32)))
    return model.eval()


@pytest.fixture(scope="module")
def chains(tmp_path_factory) -> dict[int, list[Path]]:
    """render -> [base, residual layer] of the same two models, coded with that render."""
    tmp = tmp_path_factory.mktemp("render")
    c0 = c0_for_size("0.05M", height=H, width=W)
    base = laplace_model(GNeRVConfig(H, W, c0=c0), 0)
    residual = laplace_model(GNeRVConfig(H, W, c0=c0, residual=True), 1)
    facts = bs.video_facts(N, H, W, 25.0)
    out = {}
    for render in RENDER_KERNELS:
        paths = [tmp / f"r{render}-base.gnerv", tmp / f"r{render}-layer2.gnerv"]
        data = bs.compress_model(base, 8, facts, bs.base_stage("ab" * 32), render=render)
        bs.write_gnerv(paths[0], data)
        parent = bs.unpack(data)
        stage = bs.next_stage(parent, 4.0)
        bs.write_gnerv(paths[1], bs.compress_model(residual, 8, facts, stage, render=render))
        out[render] = paths
    return out


def floats(paths: list[Path], batch: int, indices=range(N)) -> torch.Tensor:
    return decode_float(load_layers(paths), indices, "cpu", batch)


def in_child(paths: list[Path], threads: int, env: dict[str, str] | None = None) -> np.ndarray:
    """decode_float in a fresh process (batch 5, `threads` torch threads, `env` added)."""
    import io

    done = subprocess.run(
        [sys.executable, "-c", DECODE, str(N), str(threads), *map(str, paths)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        check=True,
    )
    return np.load(io.BytesIO(done.stdout))


def test_files_are_written_with_the_newest_render(chains) -> None:
    assert NEWEST_RENDER == 3 and RENDER_KERNELS == {1: "lean", 2: "fused", 3: "tapped"}
    for render, paths in chains.items():
        files = load_layers(paths)
        assert [f.render for f in files] == [render, render]
        assert files[0].version == bs.written_format(bs.MINMAX_SCHEME, render)


@pytest.mark.parametrize("render", INVARIANT)
def test_render_is_the_same_for_every_batch_thread_count_and_range(chains, render: int) -> None:
    paths = chains[render]
    want = floats(paths, 8)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3, 4):
            torch.set_num_threads(threads)
            for batch in (1, 7, 8, 32):
                got = floats(paths, batch)
                assert torch.equal(got, want), (threads, batch, int((got != want).sum()))
            part = floats(paths, 3, range(5, 11))
            assert torch.equal(part, want[5:11]), threads
            odd = floats(paths, 4, [9, 2, 7])  # out of order
            assert torch.equal(odd, want[[9, 2, 7]]), threads
    finally:
        torch.set_num_threads(before)
    decoded = decode_layers(load_layers(paths), range(N), "cpu", 1)
    assert np.array_equal(decoded, to_uint8(want).numpy())


@pytest.mark.parametrize("render", INVARIANT)
def test_render_in_another_process_with_another_thread_count(chains, render: int) -> None:
    want = floats(chains[render], 8).numpy()
    for threads in (1, 3):
        assert np.array_equal(in_child(chains[render], threads, {"OMP_NUM_THREADS": "1"}), want)


@pytest.mark.parametrize("render", INVARIANT)
def test_render_across_instruction_sets_stays_within_the_stated_bound(chains, render: int) -> None:
    """oneDNN, torch and MKL pick their kernels by the CPU's vector extensions, and each can be
    capped below it (kernels.ISA_CAPS): the same decode with AVX2 and with SSE4.1 kernels (on an
    AVX2-only CPU the first is the native one) differs from the native decode by no more than
    the bound."""
    want = floats(chains[render], 8)
    u8 = to_uint8(want).numpy().astype(int)
    for isa, env in ISA_CAPS.items():
        got = torch.from_numpy(in_child(chains[render], 2, env))
        assert float((got - want).abs().max()) <= ISA_MAX_FLOAT, isa
        diff = np.abs(to_uint8(got).numpy().astype(int) - u8)
        assert diff.max() <= ISA_MAX_LEVELS, isa
        assert (diff > 0).mean() <= ISA_MAX_SHARE, (isa, int((diff > 0).sum()))


@pytest.mark.parametrize("pair", [(1, 2), (2, 3), (1, 3)])
def test_renders_draw_the_same_frames_up_to_rounding(chains, pair: tuple[int, int]) -> None:
    one, two = floats(chains[pair[0]], 8), floats(chains[pair[1]], 8)
    assert not torch.equal(one, two)  # other arithmetic ...
    assert float((one - two).abs().max()) <= ISA_MAX_FLOAT  # ... of the same network
    diff = np.abs(to_uint8(one).numpy().astype(int) - to_uint8(two).numpy().astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() <= ISA_MAX_SHARE


def test_each_file_renders_in_its_own_arithmetic(chains) -> None:
    for render, paths in chains.items():
        files = load_layers(paths)
        named = decode_layers(files, range(N), "cpu", 8)
        forced = decode_layers(files, range(N), "cpu", 8, kernel=RENDER_KERNELS[render])
        assert np.array_equal(named, forced), render


@pytest.mark.parametrize("render", INVARIANT)
def test_render_without_onednn_is_the_same_function(chains, monkeypatch, render: int) -> None:
    """Where oneDNN's fused kernel is missing (a GPU, a torch built without it) renders 2 and 3 run
    each conv and then torch's activation: the same frames up to rounding, not the same bits."""
    from gnerv.codec import kernels

    fused = floats(chains[render], 8)
    monkeypatch.setattr(kernels, "has_fused_conv", lambda: False)
    apart = floats(chains[render], 8)
    assert float((apart - fused).abs().max()) <= ISA_MAX_FLOAT
    diff = np.abs(to_uint8(apart).numpy().astype(int) - to_uint8(fused).numpy().astype(int))
    assert diff.max() <= ISA_MAX_LEVELS and (diff > 0).mean() <= ISA_MAX_SHARE


@pytest.mark.skipif(not has_fused_conv(), reason="the candidates run on oneDNN's fused convs")
def test_render_candidates_compute_render_2s_frames(tmp_path: Path) -> None:
    """benchmarks/render_candidates.py times other arithmetics of the same network: each (the
    head rewritten before the last shuffle, the one-pass shift, the Winograd convolution) shows
    render 2's frames to float rounding, so its timings compare like with like."""
    out = tmp_path / "candidates.json"
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "benchmarks" / "render_candidates.py"),
            "--shape", "90x160", "--size", "0.1M", "--frames", "4", "--batches", "1",
            "--repeats", "1", "--out", str(out),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["path"]: r for r in json.loads(out.read_text())["rows"]}
    candidates = ("subpixel_head", "one_pass_shift", "both", "winograd")
    assert set(rows) == {"eager", "render 2", *candidates}
    assert rows["render 2"]["max_abs_diff"] == 0
    for name in candidates:
        r = rows[name]
        assert r["max_abs_diff"] < ISA_MAX_FLOAT and r["bytes_differ"] <= 1e-3 * r["values"], r


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("size", [(12, 16), (1, 7), (5, 1), (9, 13)])
def test_tapped_conv_is_the_conv(k: int, size: tuple[int, int]) -> None:
    """Render 3's head by taps is the zero-padded conv, frame by frame, to float rounding, with
    or without a bias, down to frames narrower than the kernel; and each frame is as in a batch
    of one, whatever share of the batch its planes are added with (9 frames of 6 channels: all
    at once for k = 1, in twos and a one for k = 3, one by one for k = 5)."""
    from gnerv.codec.kernels import tapped_conv

    torch.manual_seed(k)
    n = 9
    for bias in (True, False):
        conv = torch.nn.Conv2d(6, 3, k, padding=k // 2, bias=bias)
        x = torch.randn(n, 6, *size)
        with torch.inference_mode():
            want = conv(x)
            got = tapped_conv(conv, x)
            alone = torch.cat([tapped_conv(conv, x[i : i + 1]) for i in range(n)])
        assert got.shape == want.shape and got.is_contiguous()
        assert float((got - want).abs().max()) <= 1e-5, (k, size, bias)
        assert torch.equal(got, alone)  # each frame as in a batch of one


@pytest.mark.skipif(not has_fused_conv(), reason="the renders' convs run on oneDNN")
@pytest.mark.parametrize("render", INVARIANT)
def test_decode_budget_takes_each_render_apart(tmp_path: Path, render: int) -> None:
    """benchmarks/decode_budget.py times a render step by step: its steps compute that render's
    frames bit for bit (it refuses to time them otherwise), render 3's head as taps."""
    out = tmp_path / "budget.json"
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "benchmarks" / "decode_budget.py"), "--render",
            str(render), "--shape", "90x160", "--size", "0.1M", "--frames", "4", "--batches", "1",
            "--repeats", "1", "--out", str(out),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["render"] == render
    heads = [k for k in row["steps_ms"] if k.startswith("head")]
    want = ["head 30->3 (conv)"] if render == 2 else ["head 30->3 (taps)", "head sigmoid"]
    assert heads == want
