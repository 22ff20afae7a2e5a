"""encode -> .gnerv -> decode through the CLI: exact figures, determinism, layers, bad input."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from gnerv.cli import main
from gnerv.codec import bitstream as bs
from gnerv.codec.config import GNeRVConfig, count_params
from gnerv.codec.decode import build_model, decode_float, decode_layers
from gnerv.codec.kernels import NEWEST_RENDER, RENDER_KERNELS
from gnerv.codec.model import GNeRV, for_inference, render, to_uint8
from gnerv.codec.quantize import dequantized_state_dict, quantize_model
from gnerv.encoder.config import TrainConfig
from gnerv.encoder.encode import encode_single
from gnerv.encoder.train import CHECKPOINT_NAME, load_checkpoint, model_from_checkpoint
from gnerv.evaluation.metrics import mean_psnr
from gnerv.media.video import read_video, save_frames, video_fingerprint

EPOCHS = 6
N, H, W = 8, 36, 64
CLIP_ARGS = ["--frames", "0:8", "--resize", "36x64"]
SMALL_MODEL = ["--c0", "8", "--min-channels", "8"]
TRAIN_ARGS = ["--epochs", str(EPOCHS), "--device", "cpu", "--quiet"]
PAPER_CODING = ["--scheme", "minmax"]  # alone: 8-bit min/max, nothing fine-tuned


def small_cfg(residual: bool = False) -> GNeRVConfig:
    return GNeRVConfig(H, W, c0=8, min_channels=8, residual=residual)


@pytest.fixture(scope="module")
def encoded(tiny_cockatoo, tmp_path_factory) -> tuple[Path, dict, np.ndarray]:
    """The tiny cockatoo clip encoded by the library at 8 bits (the paper's coding, which the
    CLI codes with --scheme minmax): (file, figures, source frames)."""
    frames, meta = tiny_cockatoo
    out = tmp_path_factory.mktemp("encoded") / "clip.gnerv"
    fig = encode_single(
        frames, meta, small_cfg(), TrainConfig(epochs=EPOCHS, device="cpu"), out, progress=False
    )
    return out, fig, frames


def cli(capsys: pytest.CaptureFixture, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def refused(capsys: pytest.CaptureFixture, output: Path, fragment: str, *argv) -> None:
    """The command exits 2 with one line on stderr and leaves nothing behind."""
    before = set(output.parent.iterdir()) if output.parent.exists() else set()
    rc, _, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and fragment in lines[0], err
    assert not output.exists()
    after = set(output.parent.iterdir()) if output.parent.exists() else set()
    assert after == before, after - before


def decode_cli(capsys, tmp_path: Path, *files, extra=()) -> np.ndarray:
    out = tmp_path / "out.npy"
    rc, stdout, err = cli(capsys, "decode", *files, "-o", out, "--device", "cpu", *extra)
    assert rc == 0, err
    assert "frames from" in stdout
    return np.load(out)


# --------------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------------


def test_decoded_psnr_equals_the_encoders_and_frames_equal_the_quantized_model(
    encoded, tmp_path, capsys
) -> None:
    path, fig, frames = encoded
    decoded = decode_cli(capsys, tmp_path, path)
    assert decoded.dtype == np.uint8 and decoded.shape == (N, H, W, 3)
    assert mean_psnr(frames, decoded) == fig["psnr_quantized"]

    model, _ = model_from_checkpoint(Path(fig["workdir"]) / CHECKPOINT_NAME)
    shapes = [tuple(v.shape) for v in model.state_dict().values()]
    model.load_state_dict(dequantized_state_dict(quantize_model(model, 8), shapes))
    f = bs.read_gnerv(path)  # the arithmetic the file names (render 3: the tapped kernel)
    kernel = RENDER_KERNELS[f.render]
    assert f.render == NEWEST_RENDER == 3 and kernel == "tapped"
    rendered = to_uint8(render(for_inference(model, "cpu"), torch.arange(N), N, kernel=kernel))
    rendered = rendered.numpy()
    np.testing.assert_array_equal(decoded, rendered)
    assert fig["psnr_float"] == pytest.approx(fig["fit_psnr"], abs=1e-6)
    assert fig["bytes"] == path.stat().st_size
    assert fig["bpp"] == 8 * path.stat().st_size / (N * H * W)


def test_encode_cli_is_deterministic(cockatoo_path, encoded, tmp_path, capsys) -> None:
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.gnerv"
        rc, stdout, err = cli(
            capsys, "encode", cockatoo_path, "-o", out, *CLIP_ARGS, *SMALL_MODEL, *TRAIN_ARGS,
            *PAPER_CODING,
        )  # fmt: skip
        assert rc == 0, err
        assert "bpp" in stdout and "dB after" in stdout
        assert (tmp_path / f"{name}.work" / CHECKPOINT_NAME).is_file()  # default workdir
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == encoded[0].read_bytes()


def test_encode_resumes_from_its_workdir(cockatoo_path, encoded, tmp_path, capsys) -> None:
    path, fig, _ = encoded
    out = tmp_path / "again.gnerv"
    argv = ["encode", cockatoo_path, "-o", out, *CLIP_ARGS, *SMALL_MODEL, *TRAIN_ARGS]
    rc, _, err = cli(capsys, *argv, *PAPER_CODING, "--workdir", fig["workdir"], "--resume")
    assert rc == 0, err
    assert out.read_bytes() == path.read_bytes()


def test_info_matches_the_file(encoded, capsys) -> None:
    path, fig, _ = encoded
    rc, out, _ = cli(capsys, "info", path, "--json")
    assert rc == 0
    info = json.loads(out)
    size = path.stat().st_size
    assert info["video"]["n_frames"] == N and info["video"]["fps"] == 20.0
    assert (info["video"]["height"], info["video"]["width"]) == (H, W)
    assert info["params"] == count_params(small_cfg()) == fig["params"]
    assert info["bpp"] == 8 * size / (N * H * W)
    assert info["sizes"]["total"] == size
    assert info["stage"]["index"] == 1 and info["stage"]["parent_sha256"] is None
    assert len(info["tensors"]) == 17 and info["bits"] == 8
    rc, out, _ = cli(capsys, "info", path)
    assert rc == 0 and "base layer" in out and f"{info['bpp']:.4f} bpp" in out


def test_frame_ranges_equal_slices_of_the_full_decode(encoded, tmp_path, capsys) -> None:
    path = encoded[0]
    full = decode_cli(capsys, tmp_path, path)
    np.testing.assert_array_equal(
        decode_cli(capsys, tmp_path, path, extra=["--frames", "2:7"]), full[2:7]
    )
    np.testing.assert_array_equal(
        decode_cli(capsys, tmp_path, path, extra=["--frames", "5:"]), full[5:]
    )
    np.testing.assert_array_equal(
        decode_cli(capsys, tmp_path, path, extra=["--frames", "1:4", "--batch", "3"]),
        decode_layers([bs.read_gnerv(path)], range(1, 4), "cpu", batch_size=3),
    )


def test_mkv_output_is_lossless(encoded, tmp_path, capsys) -> None:
    path = encoded[0]
    full = decode_cli(capsys, tmp_path, path)
    rc, _, err = cli(capsys, "decode", path, "-o", tmp_path / "out.mkv", "--device", "cpu")
    assert rc == 0, err
    back, _ = read_video(tmp_path / "out.mkv", progress=False)
    np.testing.assert_array_equal(back, full)


def test_compress_a_fitted_model(encoded, tmp_path, capsys) -> None:
    path, fig, frames = encoded
    out = tmp_path / "c.gnerv"
    # encode fitted a video, not a frames file: the default coding's fine-tune needs the frames
    refused(capsys, out, "--frames-file", "compress", fig["workdir"], "-o", out)
    rc, stdout, err = cli(capsys, "compress", fig["workdir"], "-o", out, *PAPER_CODING)
    assert rc == 0, err  # the paper's coding needs no frames
    assert out.read_bytes() == path.read_bytes() and "dB" not in stdout and "bpp" in stdout
    save_frames(tmp_path / "frames.npy", frames, {"fps": 20.0})
    out2 = tmp_path / "c2.gnerv"
    rc, stdout, err = cli(
        capsys, "compress", fig["workdir"], "-o", out2, "--frames-file", tmp_path / "frames.npy",
        *PAPER_CODING,
    )  # fmt: skip
    assert rc == 0, err
    assert out2.read_bytes() == path.read_bytes()
    assert f"{fig['psnr_quantized']:.2f} dB after" in stdout

    other = frames.copy()
    other[0, 0, 0, 0] ^= 1
    save_frames(tmp_path / "other.npy", other, {"fps": 20.0})
    bad = tmp_path / "bad.gnerv"
    workdir = fig["workdir"]
    refused(
        capsys,
        bad,
        "not the video",
        "compress",
        workdir,
        "-o",
        bad,
        "--frames-file",
        tmp_path / "other.npy",
    )
    refused(capsys, bad, "bits must be in 2..16", "compress", workdir, "-o", bad, "--bits", "1")
    refused(capsys, bad, "not found", "compress", tmp_path / "nope", "-o", bad)
    refused(capsys, bad, "must end in .gnerv", "compress", workdir, "-o", tmp_path / "x.npy")


def test_fit_records_the_video_fingerprint(tiny_cockatoo, tmp_path, capsys) -> None:
    frames, meta = tiny_cockatoo
    save_frames(tmp_path / "frames.npy", frames, meta)
    rc, _, err = cli(
        capsys,
        "fit",
        tmp_path / "frames.npy",
        "-o",
        tmp_path / "m",
        *SMALL_MODEL,
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
    )
    assert rc == 0, err
    ckpt = load_checkpoint(tmp_path / "m" / CHECKPOINT_NAME)
    assert ckpt["video"]["video_id"] == video_fingerprint(frames)
    rc, _, err = cli(capsys, "compress", tmp_path / "m", "-o", tmp_path / "m.gnerv")
    assert rc == 0, err
    assert bs.read_gnerv(tmp_path / "m.gnerv").stage["video_id"] == video_fingerprint(frames)


def test_decoder_imports_nothing_from_training(encoded) -> None:
    code = (
        "import sys\n"
        "from gnerv.codec.decode import decode_layers, load_layers\n"
        f"files = load_layers([{str(encoded[0])!r}])\n"
        "assert decode_layers(files, [0, 5], 'cpu').shape == (2, 36, 64, 3)\n"
        "bad = [m for m in ('gnerv.encoder.train', 'gnerv.encoder.encode',"
        " 'gnerv.evaluation.metrics') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


def residual_layer(parent: bs.GnervFile, seed: int, scale: float = 0.5, **stage) -> bytes:
    torch.manual_seed(seed)
    model = GNeRV(small_cfg(residual=True))
    # residual heads start at zero (adding nothing); give this one an output to add up
    torch.nn.init.normal_(model.head.weight, std=0.2)
    return bs.compress_model(model, 8, parent.video, {**bs.next_stage(parent, scale), **stage})


def test_layers_add_up_and_bad_chains_are_refused(encoded, tmp_path, capsys) -> None:
    base_path = encoded[0]
    base = bs.read_gnerv(base_path)
    l2 = tmp_path / "l2.gnerv"
    bs.write_gnerv(l2, residual_layer(base, 1))
    layer2 = bs.read_gnerv(l2)
    got = decode_cli(capsys, tmp_path, base_path, l2)
    idx = torch.arange(N)
    want = (
        render(for_inference(build_model(base), "cpu"), idx, N, kernel="tapped")
        + render(for_inference(build_model(layer2), "cpu"), idx, N, kernel="tapped") / 0.5
    )
    np.testing.assert_array_equal(got, to_uint8(want).numpy())
    np.testing.assert_array_equal(
        decode_float([base, layer2], range(N), "cpu").numpy(), want.numpy()
    )
    unclipped = decode_float([base, layer2], range(N), "cpu")
    assert unclipped.min() < 0 or unclipped.max() > 1
    assert np.abs(got.astype(int) - decode_cli(capsys, tmp_path, base_path)).max() > 0

    l3 = tmp_path / "l3.gnerv"
    bs.write_gnerv(l3, residual_layer(layer2, 2))
    other_base = tmp_path / "other.gnerv"
    bs.write_gnerv(other_base, bs.compress_model(build_model(base), 6, base.video, base.stage))
    l2_other = tmp_path / "l2_other.gnerv"
    bs.write_gnerv(l2_other, residual_layer(bs.read_gnerv(other_base), 3))
    l2_video = tmp_path / "l2_video.gnerv"
    bs.write_gnerv(l2_video, residual_layer(base, 4, video_id="cd" * 32))
    out = tmp_path / "bad.npy"
    for files, fragment in [
        ([l2], "not a base layer"),
        ([base_path, l3], "out of order"),
        ([base_path, l2, l2], "out of order"),
        (
            [base_path, l2_other],
            f"refines {bs.read_gnerv(other_base).sha256[:8]}, not the given base {base.sha256[:8]}",
        ),
        ([base_path, l2_video], "from a different video"),
    ]:
        refused(capsys, out, fragment, "decode", *files, "-o", out)
    assert decode_cli(capsys, tmp_path, base_path, l2, l3).shape == (N, H, W, 3)


# --------------------------------------------------------------------------------------------
# Bad input through the CLI: exit 2, one line, nothing written
# --------------------------------------------------------------------------------------------


def corrupt(kind: str, data: bytes) -> bytes:
    if kind == "empty":
        return b""
    if kind == "truncated":
        return data[: len(data) // 2]
    if kind == "flipped":
        return data[:200] + bytes([data[200] ^ 1]) + data[201:]
    if kind == "other-format":
        return b"\x00\x00\x00\x20ftypisom" + bytes(200)
    if kind == "future-version":
        body = data[:4] + struct.pack("<H", 7) + data[6:-4]
        return body + struct.pack("<I", zlib.crc32(body))
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("empty", "empty file"),
        ("truncated", "checksum mismatch"),
        ("flipped", "checksum mismatch"),
        ("other-format", "not a .gnerv file"),
        ("future-version", "written by a newer gnerv (format 7); upgrade"),
    ],
)
@pytest.mark.parametrize("command", ["decode", "info"])
def test_corrupt_files_are_refused(encoded, tmp_path, capsys, kind, fragment, command) -> None:
    bad = tmp_path / f"{kind}.gnerv"
    bad.write_bytes(corrupt(kind, encoded[0].read_bytes()))
    out = tmp_path / "out" / "frames.npy"
    argv = ["decode", bad, "-o", out] if command == "decode" else ["info", bad]
    refused(capsys, out, f"{bad}: {fragment}", *argv)


def test_bad_requests_are_refused(encoded, tmp_path, capsys) -> None:
    path = encoded[0]
    out = tmp_path / "out.npy"
    refused(capsys, out, "outside", "decode", path, "-o", out, "--frames", "5:9")
    refused(capsys, out, "outside", "decode", path, "-o", out, "--frames", "8:")
    refused(capsys, out, "bad frame range", "decode", path, "-o", out, "--frames", "x")
    refused(capsys, out, "no such file", "decode", tmp_path / "missing.gnerv", "-o", out)
    refused(capsys, out, "--batch 0", "decode", path, "-o", out, "--batch", "0")
    avi = tmp_path / "out.avi"
    refused(capsys, avi, "must end in", "decode", path, "-o", avi)
    gnerv = tmp_path / "x.gnerv"
    refused(capsys, gnerv, "no such file", "encode", tmp_path / "none.mp4", "-o", gnerv)


def test_bf16_is_opt_in_lossy_and_close(encoded, tmp_path, capsys) -> None:
    """--precision bf16 renders in bfloat16 where the CPU has it: said in the report, within a
    few hundredths of a dB of the exact decode here; where the CPU lacks it, a one-line refusal."""
    import gnerv.codec.decode as decode_module

    path, _, frames = encoded
    exact = decode_cli(capsys, tmp_path, path)
    if not decode_module.bf16_supported(torch.device("cpu")):
        pytest.skip("this CPU has no native bfloat16")
    out = tmp_path / "bf16.npy"
    rc, stdout, _ = cli(capsys, "decode", path, "-o", out, "--device", "cpu", "--precision", "bf16")
    assert rc == 0 and "lossy" in stdout
    lossy = np.load(out)
    assert lossy.shape == exact.shape and not np.array_equal(lossy, exact)
    assert abs(mean_psnr(frames, lossy) - mean_psnr(frames, exact)) < 0.5
    assert mean_psnr(exact, lossy) > 40  # bf16 against fp32: close, not equal


def test_bf16_refused_where_the_cpu_lacks_it(encoded, tmp_path, capsys, monkeypatch) -> None:
    import gnerv.codec.decode as decode_module

    path, _, _ = encoded
    monkeypatch.setattr(decode_module, "bf16_supported", lambda device: False)
    out = tmp_path / "no.npy"
    argv = ("decode", path, "-o", out, "--device", "cpu", "--precision", "bf16")
    refused(capsys, out, "no native bfloat16", *argv)
