"""Streaming decode and the checked video writer: frames go to disk batch by batch, a full disk
is an error (nothing left behind), and memory stays flat in the number of frames."""

from __future__ import annotations

import io
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_measured

from gnerv.cli import main
from gnerv.codec import bitstream as bs
from gnerv.codec.config import GNeRVConfig
from gnerv.codec.decode import decode_layers, iter_decoded, load_layers
from gnerv.codec.model import GNeRV
from gnerv.encoder.train import CHECKPOINT_NAME
from gnerv.media.video import open_video_writer, read_video, write_video
from gnerv.runtime.errors import GnervError

N, H, W = 24, 36, 64
FULL_DISK_FRAMES = 200  # enough output to pass the file-size limit in every format
FSIZE_LIMIT = 4096  # bytes a child process may write to one file
GNERV = str(Path(sys.executable).with_name("gnerv"))  # the installed command line
# One thread: on a busy 2-core machine two threads wait on each other at every small op.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def layer_file(path: Path, n: int, seed: int, **cfg) -> Path:
    """A base layer of `n` frames of an untrained (seeded) model, by the project's writer."""
    torch.manual_seed(seed)
    model = GNeRV(GNeRVConfig(H, W, **cfg))
    data = bs.compress_model(model, 8, bs.video_facts(n, H, W, 25.0), bs.base_stage("ab" * 32))
    bs.write_gnerv(path, data)
    return path


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> list[Path]:
    """A base layer and a residual layer on it (N frames)."""
    folder = tmp_path_factory.mktemp("streaming")
    base = layer_file(folder / "base.gnerv", N, 0, c0=8, min_channels=8)
    torch.manual_seed(1)
    residual = GNeRV(GNeRVConfig(H, W, c0=8, min_channels=8, residual=True))
    torch.nn.init.normal_(residual.head.weight, std=0.2)  # residual heads start at zero
    parent = bs.read_gnerv(base)
    data = bs.compress_model(residual, 8, parent.video, bs.next_stage(parent, 0.5))
    bs.write_gnerv(folder / "layer2.gnerv", data)
    return [base, folder / "layer2.gnerv"]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------------------------
# Streaming decode
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "indices",
    [list(range(N)), list(range(5, 19)), [17, 3, 3, 23, 0, 8, 9, 2]],
    ids=["full", "range", "any-order"],
)
@pytest.mark.parametrize("batch", [8, 5])
def test_iter_decoded_equals_decode_layers(chain, indices, batch) -> None:
    files = load_layers(chain)
    expected = decode_layers(files, indices, "cpu", batch)
    batches = list(iter_decoded(files, indices, "cpu", batch))
    assert all(b.dtype == np.uint8 and b.shape[1:] == (H, W, 3) for b in batches)
    if indices == sorted(indices):  # a range comes one aligned block at a time
        assert max(len(b) for b in batches) <= batch
    np.testing.assert_array_equal(np.concatenate(batches), expected)


@pytest.mark.parametrize("suffix", [".npy", ".mkv"])
@pytest.mark.parametrize("frames", [None, "5:19"])
def test_decode_cli_streams_bit_exact(chain, tmp_path, capsys, suffix, frames) -> None:
    out = tmp_path / f"out{suffix}"
    extra = ["--frames", frames] if frames else []
    rc = main(["decode", *map(str, chain), "-o", str(out), "--device", "cpu", *extra])
    assert rc == 0, capsys.readouterr().err
    indices = range(5, 19) if frames else range(N)
    expected = decode_layers(load_layers(chain), list(indices), "cpu")
    got = np.load(out) if suffix == ".npy" else read_video(out, progress=False)[0]
    np.testing.assert_array_equal(got, expected)
    assert f"{len(indices)} frames from 2 layer(s)" in capsys.readouterr().out
    assert listing(tmp_path) == [out.name]


# --------------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------------


def random_frames(n: int = 10) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, H, W, 3), dtype=np.uint8)


def test_npy_writer_writes_what_np_save_writes(tmp_path) -> None:
    frames = random_frames()
    with open_video_writer(tmp_path / "a.npy", 25.0, H, W, len(frames)) as out:
        for i in range(0, len(frames), 3):
            out.write(frames[i : i + 3])
    expected = io.BytesIO()
    np.save(expected, frames, allow_pickle=False)
    assert (tmp_path / "a.npy").read_bytes() == expected.getvalue()


def test_mkv_writer_in_batches_is_lossless(tmp_path) -> None:
    frames = random_frames()
    with open_video_writer(tmp_path / "a.mkv", 25.0, H, W, len(frames)) as out:
        out.write(frames[:4])
        out.write(frames[4:])
    np.testing.assert_array_equal(read_video(tmp_path / "a.mkv", progress=False)[0], frames)


@pytest.mark.parametrize("suffix", [".npy", ".mkv", ".mp4"])
def test_short_or_failed_writes_leave_nothing(tmp_path, suffix) -> None:
    frames = random_frames()
    path = tmp_path / f"a{suffix}"
    with pytest.raises(GnervError, match="got 4 of the announced 10 frames"):
        with open_video_writer(path, 25.0, H, W, 10) as out:
            out.write(frames[:4])
    with pytest.raises(GnervError, match="more than the announced 10 frames"):
        with open_video_writer(path, 25.0, H, W, 10) as out:
            out.write(frames)
            out.write(frames[:1])
    with pytest.raises(GnervError, match="frames of 35x64"):
        with open_video_writer(path, 25.0, H, W, 10) as out:
            out.write(frames[:, :35])
    with pytest.raises(KeyboardInterrupt):
        with open_video_writer(path, 25.0, H, W, 10) as out:
            out.write(frames[:4])
            raise KeyboardInterrupt
    assert listing(tmp_path) == []
    write_video(path, frames, 25.0)  # and the same path still writes
    assert listing(tmp_path) == [path.name]


# --------------------------------------------------------------------------------------------
# A full disk (a small file-size limit): a non-zero exit, one line, nothing left behind
# --------------------------------------------------------------------------------------------


def _small_fsize_limit() -> None:  # runs in the child before exec; ffmpeg inherits it
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead of a kill


def checkpoint_dir(folder: Path, n: int) -> Path:
    """A MODEL_DIR as `gnerv render` reads it: the model, its settings, the video's fps."""
    folder.mkdir()
    torch.manual_seed(0)
    cfg = GNeRVConfig(H, W, c0=8, min_channels=8)
    ckpt = {
        "model": GNeRV(cfg).state_dict(),
        "settings": {"model": cfg.to_dict(), "target_shape": [n, H, W, 3]},
        "video": {"fps": 25.0},
    }
    torch.save(ckpt, folder / CHECKPOINT_NAME)
    return folder


@pytest.mark.parametrize(
    "command, suffix",
    [("decode", ".mkv"), ("decode", ".mp4"), ("decode", ".npy"), ("render", ".mp4")],
)
def test_a_full_disk_is_an_error_and_leaves_nothing(tmp_path, command, suffix) -> None:
    if command == "decode":
        source = layer_file(tmp_path / "clip.gnerv", FULL_DISK_FRAMES, 2, c0=8, min_channels=8)
    else:
        source = checkpoint_dir(tmp_path / "model", FULL_DISK_FRAMES)
    out_dir = tmp_path / "full"
    out_dir.mkdir()
    out = out_dir / f"out{suffix}"
    run = subprocess.run(
        [GNERV, command, str(source), "-o", str(out), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
        preexec_fn=_small_fsize_limit,
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0, run.stdout
    assert len(lines) == 1, run.stderr
    assert str(out) in lines[0] and "file-size limit" in lines[0], lines[0]
    assert listing(out_dir) == []
    assert "frames" not in run.stdout


# --------------------------------------------------------------------------------------------
# Memory stays flat in the number of frames
# --------------------------------------------------------------------------------------------

# A model cheap per pixel (1x1 kernels, one channel): decoding is fast, frames are the bulk. Its
# per-frame MLP makes the file over 10 KB, so the decoder's frames-per-byte limit lets it pass.
CHEAP_MODEL = dict(c0=2, min_channels=1, kernel_size=1, ds_hidden=160)
LONG, SHORT = 10_000, 100  # 10,000 frames of 36x64: 69 MB when held in memory at once
FLAT_MARGIN_MB = 25


def peak_rss_mb(clip: Path, out: Path, frames: int) -> float:
    """Peak RSS (MB) of a fresh process that decodes `frames` frames of `clip` to `out`."""
    code = (
        "import resource, sys\n"
        "from gnerv.cli import main\n"
        f"rc = main(['decode', {str(clip)!r}, '-o', {str(out)!r}, '--device', 'cpu', "
        f"'--frames', '0:{frames}', '--batch', '16'])\n"
        "assert rc == 0\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    got = run_measured(  # the process's own peak, not pytest's pages (conftest.run_measured)
        [sys.executable, "-c", code], out.with_suffix(".figures.json"), capture_output=True,
        timeout=180, env=ENV,
    )  # fmt: skip
    assert got["rc"] == 0
    return got["maxrss_bytes"] / 2**20


def test_decode_memory_is_flat_in_the_frame_count(tmp_path) -> None:
    clip = layer_file(tmp_path / "long.gnerv", LONG, 3, **CHEAP_MODEL)
    short = peak_rss_mb(clip, tmp_path / "short.npy", SHORT)
    long = peak_rss_mb(clip, tmp_path / "long.npy", LONG)
    assert np.load(tmp_path / "long.npy", mmap_mode="r").shape == (LONG, H, W, 3)
    assert long - short < FLAT_MARGIN_MB, f"peak RSS {short:.0f} MB -> {long:.0f} MB"
