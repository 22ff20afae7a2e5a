"""The rate path beyond the paper: symmetric grid + parametric entropy model (exact round trip,
bounded side information), quantization-aware fine-tuning, pruning, bit allocation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gnerv.codec import bitstream as bs
from gnerv.codec.config import MINMAX_SCHEME, SYMMETRIC_SCHEME, GNeRVConfig
from gnerv.codec.decode import build_model
from gnerv.codec.entropy import blob_info, decode_symbols, empirical_entropy_bits, encode_symbols
from gnerv.codec.model import GNeRV, render, to_uint8
from gnerv.codec.quantize import (
    dequantized_state_dict,
    quantize_model,
    quantize_tensor_symmetric,
    zero_symbol,
)
from gnerv.encoder.allocate import allocate_bits
from gnerv.encoder.config import CompressConfig, TrainConfig, paper_coding
from gnerv.encoder.encode import compress_checkpoint
from gnerv.encoder.qat import finetune, prunable
from gnerv.encoder.train import fit
from gnerv.evaluation.metrics import mean_psnr
from gnerv.media.video import video_fingerprint
from gnerv.runtime.errors import GnervError

SYM = SYMMETRIC_SCHEME


def laplace_model(cfg: GNeRVConfig, seed: int = 0) -> GNeRV:
    """A model with trained-looking (Laplacian, per-channel scaled) weights."""
    model = GNeRV(cfg)
    rng = np.random.default_rng(seed)
    sd = {}
    for k, v in model.state_dict().items():
        scale = rng.uniform(0.2, 1.0, (v.shape[0],) + (1,) * (v.dim() - 1)) if v.dim() else 1.0
        sd[k] = torch.from_numpy((rng.laplace(0.0, 0.05, tuple(v.shape)) * scale).astype("f4"))
    model.load_state_dict(sd)
    return model


def quantized_psnr(model: GNeRV, frames: np.ndarray, bits: int) -> float:
    shapes = [tuple(v.shape) for v in model.state_dict().values()]
    q = GNeRV(model.cfg)
    q.load_state_dict(dequantized_state_dict(quantize_model(model, bits, SYM), shapes))
    q.eval()
    return mean_psnr(frames, to_uint8(render(q, list(range(len(frames))), len(frames))).numpy())


def test_symmetric_grid_keeps_zero_exact_and_peaks_at_the_centre() -> None:
    t = torch.tensor([[0.0, 0.5, -0.25, 1e-4], [0.0, -2.0, 0.3, 2.0]])
    q = quantize_tensor_symmetric("w", t, 6)
    sym = q.symbols.reshape(2, 4)
    assert sym[0, 0] == sym[1, 0] == zero_symbol(6)
    assert sym[0, 3] == zero_symbol(6)  # below half a step: the peak symbol


def test_parametric_entropy_model_round_trips_near_the_entropy() -> None:
    rng = np.random.default_rng(1)
    sym = (np.clip(np.rint(rng.laplace(0, 2.5, 60_000)), -31, 31) + 32).astype(np.int32)
    blob = encode_symbols(sym, 64, parametric=True)
    assert blob_info(blob, sym.size).mode == "laplace"
    assert blob_info(blob, sym.size).table_bytes <= 16  # 8 bytes of parameters + framing
    assert np.array_equal(decode_symbols(blob, sym.size, 64), sym)
    assert len(blob) <= 1.01 * empirical_entropy_bits(sym, 64) / 8 + 16
    assert encode_symbols(sym, 64) == encode_symbols(sym, 64, parametric=False)  # paper's path


def spike_symbols(n: int = 50_000, seed: int = 2) -> np.ndarray:
    """5-bit symbols of a pruned tensor: a third exact zeros (symbol 16), the rest Laplacian."""
    rng = np.random.default_rng(seed)
    sym = np.clip(np.rint(rng.laplace(0, 3.0, n)), -15, 15) + 16
    sym[rng.random(n) < 1 / 3] = 16
    return sym.astype(np.int32)


def test_scaled_table_round_trips_and_costs_less_than_counts() -> None:
    sym = spike_symbols()
    blob = encode_symbols(sym, 32, parametric=True)
    info = blob_info(blob, sym.size)
    assert info.mode == "ans-scaled", info  # a spike: no parametric fit, a cheaper table
    assert np.array_equal(decode_symbols(blob, sym.size, 32), sym)
    exact = encode_symbols(sym, 32)  # the paper's path: occurrences, mode ANS
    assert blob_info(exact, sym.size).mode == "ans" and len(blob) < len(exact)
    assert info.table_bytes < 0.7 * blob_info(exact, sym.size).table_bytes
    assert len(blob) <= empirical_entropy_bits(sym, 32) / 8 + 48  # table + rounding's cost


def test_scaled_table_refuses_zero_ends_and_unknown_modes() -> None:
    from gnerv.codec.entropy import _scaled_table, _varint, _varints

    sym = spike_symbols()
    blob = encode_symbols(sym, 32, parametric=True)
    lo = int(sym.min())
    table, _ = _scaled_table(np.bincount(sym - lo))
    head = bytes([5]) + _varint(lo) + _varint(table.size)
    assert blob.startswith(head + _varints(table))
    rest = blob[len(head) + len(_varints(table)) :]
    for end in (0, -1):
        bad = table.copy()
        bad[end] = 0
        with pytest.raises(GnervError, match="zero count at its ends"):
            decode_symbols(head + _varints(bad) + rest, sym.size, 32)
    with pytest.raises(GnervError, match="unknown mode byte 10"):
        decode_symbols(b"\x0a" + blob[1:], sym.size, 32)


def test_render_1_files_keep_their_formats_and_newer_renders_are_format_5() -> None:
    import struct

    model = laplace_model(GNeRVConfig(36, 64, c0=8, min_channels=8))
    video = bs.video_facts(4, 36, 64, 20.0)
    stage = bs.base_stage("ab" * 32)
    paper = bs.compress_model(model, 8, video, stage, render=1)
    rate = bs.compress_model(model, 5, video, stage, scheme=SYM, render=1)
    assert struct.unpack_from("<H", paper, 4)[0] == 2 and bs.FORMAT_VERSION == 5
    assert struct.unpack_from("<H", rate, 4)[0] == 4
    assert bs.unpack(paper).version == 2 and bs.unpack(rate).version == 4
    assert b'"render"' not in paper and b'"render"' not in rate
    for scheme, bits in ((bs.MINMAX_SCHEME, 8), (SYM, 5)):
        new = bs.compress_model(model, bits, video, stage, scheme=scheme)  # the newest render
        f = bs.unpack(new)
        assert struct.unpack_from("<H", new, 4)[0] == 5 and (f.version, f.render) == (5, 3)
        old = paper if scheme == bs.MINMAX_SCHEME else rate
        assert [r.blob for r in f.records] == [r.blob for r in bs.unpack(old).records]


@pytest.mark.parametrize("corrupt", [b"\x03\x00\x40\x00\x00\xc0\x7f", b"\x03\x05\x03"])
def test_parametric_blob_refuses_bad_parameters(corrupt: bytes) -> None:
    with pytest.raises(GnervError):
        decode_symbols(corrupt + b"\x00" * 8, 10, 64)


def test_symmetric_file_round_trips_exactly_with_bounded_side_information() -> None:
    model = laplace_model(GNeRVConfig(90, 160, c0=15, upscale_factors=(5, 2)))  # 0.1M params
    video = bs.video_facts(32, 90, 160, 20.0)
    for bits in (8, 6, 4):
        data = bs.compress_model(model, bits, video, bs.base_stage("ab" * 32), scheme=SYM)
        f = bs.unpack(data, "x.gnerv")
        assert f.scheme == SYM
        expected = quantize_model(model, bits, SYM)
        for got, want in zip(f.tensors, expected, strict=True):
            assert np.array_equal(got.symbols, want.symbols)
            assert np.array_equal(got.step_codes, want.step_codes) and got.unit == want.unit
        shapes = [tuple(v.shape) for v in model.state_dict().values()]
        ref = dequantized_state_dict(expected, shapes)
        for k, v in build_model(f).state_dict().items():
            assert torch.equal(v, ref[k])
        if len(data) >= 50_000:
            assert f.sizes["table"] < 0.01 * len(data), (bits, f.sizes)
    paper = bs.compress_model(model, 8, video, bs.base_stage("ab" * 32))
    assert bs.unpack(paper).sizes["table"] > 5 * f.sizes["table"]


def test_format_1_files_cannot_name_the_symmetric_scheme() -> None:
    import json
    import struct
    import zlib

    model = laplace_model(GNeRVConfig(36, 64, c0=8, min_channels=8))
    data = bs.compress_model(
        model, 6, bs.video_facts(4, 36, 64, 20.0), bs.base_stage("ab" * 32), scheme=SYM, render=1
    )
    _, _, hlen = struct.unpack_from("<4sHI", data)
    header = json.loads(data[10 : 10 + hlen])
    del header["model"]["layout"]
    raw = bs.canonical_json(header)
    old = struct.pack("<4sHI", b"GNRV", 1, len(raw)) + raw + data[10 + hlen : -4]
    with pytest.raises(GnervError, match="scheme of format 1"):
        bs.unpack(old + struct.pack("<I", zlib.crc32(old)), "old.gnerv")


@pytest.fixture(scope="module")
def fitted(tiny_cockatoo, tmp_path_factory):
    frames, _ = tiny_cockatoo
    out = tmp_path_factory.mktemp("fit")
    cfg = GNeRVConfig(36, 64, c0=8, min_channels=8)
    meta = {"fps": 20.0, "video_id": video_fingerprint(frames)}
    fit(
        frames,
        cfg,
        TrainConfig(epochs=30, lr=5e-3, device="cpu"),
        out,
        video_meta=meta,
        progress=False,
    )
    return frames, out


def test_qat_lowers_the_quantization_loss(fitted, tmp_path) -> None:
    frames, fit_dir = fitted
    from gnerv.encoder.train import model_from_checkpoint

    before = model_from_checkpoint(fit_dir / "checkpoint.pt")[0]
    cfg = TrainConfig(epochs=6, lr=5e-4, warmup_fraction=0.0, device="cpu")
    first = finetune(frames, fit_dir, tmp_path / "qat", cfg, bits=4, progress=False)
    after = first.model.cpu()
    assert quantized_psnr(after, frames, 4) > quantized_psnr(before, frames, 4) + 0.2
    # resumable like fit: a second call finds the finished checkpoint and trains nothing
    again = finetune(frames, fit_dir, tmp_path / "qat", cfg, bits=4, resume=True, progress=False)
    assert again.train_seconds == first.train_seconds
    for k, v in again.model.cpu().state_dict().items():
        assert torch.equal(v, after.state_dict()[k])


def test_pruning_keeps_its_zeros_through_a_decode(fitted, tmp_path) -> None:
    frames, fit_dir = fitted
    cfg = TrainConfig(epochs=2, lr=5e-4, warmup_fraction=0.0, device="cpu")
    finetune(frames, fit_dir, tmp_path / "qat", cfg, bits=5, prune=0.3, progress=False)
    compress_checkpoint(tmp_path / "qat", tmp_path / "p.gnerv", 5, frames, device="cpu", scheme=SYM)
    decoded = build_model(bs.read_gnerv(tmp_path / "p.gnerv"))
    for name, w in decoded.state_dict().items():
        if prunable(name, w):
            assert float((w == 0).float().mean()) >= 0.3, name


def test_bit_allocation_meets_its_target(fitted) -> None:
    frames, fit_dir = fitted
    from gnerv.encoder.train import model_from_checkpoint

    model = model_from_checkpoint(fit_dir / "checkpoint.pt")[0]
    alloc = allocate_bits(model, frames, SYM, target_psnr_drop=0.5)
    assert alloc.psnr >= alloc.psnr_float - 0.5
    assert min(alloc.bits.values()) < 8 and alloc.steps


def test_compress_config_refuses_what_the_paper_scheme_cannot_do() -> None:
    with pytest.raises(GnervError, match="scheme"):
        CompressConfig(scheme=MINMAX_SCHEME, qat_epochs=3).validate()
    with pytest.raises(GnervError, match="fine-tune"):
        CompressConfig(scheme=SYM, prune=0.3, qat_epochs=0).validate()
    CompressConfig().validate()  # the defaults: the rate path
    paper_coding(8).validate()


def test_cli_compress_with_qat_and_auto_bits(fitted, tmp_path, capsys) -> None:
    from gnerv.cli import main

    frames, fit_dir = fitted
    np.save(tmp_path / "frames.npy", frames)
    out = tmp_path / "v.gnerv"
    args = [
        "compress",
        str(fit_dir),
        "-o",
        str(out),
        "--scheme",
        "symmetric",
        "--bits",
        "auto",
        "--target-psnr-drop",
        "0.5",
        "--qat-epochs",
        "2",
        "--prune",
        "0.2",
        "--frames-file",
        str(tmp_path / "frames.npy"),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    f = bs.read_gnerv(out)
    assert f.scheme == SYMMETRIC_SCHEME and (tmp_path / "v.finetune" / "checkpoint.pt").exists()
    assert min(r.bits for r in f.records) < 8
    capsys.readouterr()
    minmax = ["compress", str(fit_dir), "-o", str(tmp_path / "p.gnerv"), "--scheme", "minmax"]
    assert main([*minmax, "--qat-epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--qat-epochs" in err and "drop --scheme minmax" in err


def test_residual_stage_fine_tunes_on_its_own_target(fitted, tmp_path, capsys) -> None:
    """A residual stage's quantization-aware fine-tune fits the residual it was fitted to
    (--target-file): its 4-bit layer reproduces that residual better than the same model
    rounded to 4 bits, and the chain still decodes. Without the target, or with --bits auto
    (which measures PSNR on frames), compress says what to do."""
    from gnerv.cli import main
    from gnerv.encoder.residual import load_residual

    frames, _ = fitted
    np.save(tmp_path / "frames.npy", frames)
    small = ["--c0", "8", "--min-channels", "8", "--device", "cpu", "--quiet"]

    def gnerv(*args: str) -> None:
        assert main([str(a) for a in args]) == 0, capsys.readouterr().err

    gnerv("fit", tmp_path / "frames.npy", "-o", tmp_path / "s1", "--epochs", 8, *small)
    gnerv(
        "compress",
        tmp_path / "s1",
        "-o",
        tmp_path / "stage1.gnerv",
        "--frames-file",
        tmp_path / "frames.npy",
    )
    residual = tmp_path / "r2.npy"
    gnerv(
        "residual", tmp_path / "frames.npy", "--layers", tmp_path / "stage1.gnerv", "-o", residual
    )
    gnerv("fit", residual, "-o", tmp_path / "s2", "--epochs", 20, "--lr", "5e-3", *small)
    coded = ["--scheme", "symmetric", "--bits", "4", "--frames-file", tmp_path / "frames.npy"]
    gnerv("compress", tmp_path / "s2", "-o", tmp_path / "plain.gnerv", *coded, "--qat-epochs", 0)
    gnerv(
        "compress",
        tmp_path / "s2",
        "-o",
        tmp_path / "qat.gnerv",
        *coded,
        "--qat-epochs",
        6,
        "--qat-lr",
        "5e-4",
        "--target-file",
        residual,
    )

    target = load_residual(residual)[0]
    base = bs.read_gnerv(tmp_path / "stage1.gnerv")

    def residual_error(layer: str) -> float:
        f = bs.read_gnerv(tmp_path / layer)
        out = render(build_model(f).eval(), list(range(len(frames))), len(frames))
        return float(((out.permute(0, 2, 3, 1).numpy() - target) ** 2).mean())

    assert residual_error("qat.gnerv") < residual_error("plain.gnerv")
    from gnerv.codec.decode import check_chain

    check_chain([base, bs.read_gnerv(tmp_path / "qat.gnerv")])
    gnerv("decode", tmp_path / "stage1.gnerv", tmp_path / "qat.gnerv", "-o", tmp_path / "d.npy")

    for extra, message in (
        ([], "pass --target-file"),
        (["--target-file", residual, "--bits", "auto"], "fixed --bits"),
    ):
        assert (
            main(
                [
                    str(a)
                    for a in [
                        "compress",
                        tmp_path / "s2",
                        "-o",
                        tmp_path / "x.gnerv",
                        *coded,
                        "--qat-epochs",
                        1,
                        *extra,
                    ]
                ]
            )
            != 0
        )
        assert message in capsys.readouterr().err
        assert not (tmp_path / "x.gnerv").exists()


def test_finetune_command_then_compress_trains_and_allocates_once(
    fitted, tmp_path, capsys, monkeypatch
) -> None:
    """`gnerv finetune` (the workflow's rule finetune) runs the allocation and the fine-tune;
    `gnerv compress --finetune-dir` with the same settings then codes the result without
    measuring or training again, and gives the same file as compress doing it all."""
    import gnerv.encoder.encode
    import gnerv.encoder.train
    from gnerv.cli import main

    frames, fit_dir = fitted
    np.save(tmp_path / "frames.npy", frames)
    rate = ["--scheme", "symmetric", "--bits", "auto", "--target-psnr-drop", "0.5"]
    rate += ["--qat-epochs", "2", "--frames-file", str(tmp_path / "frames.npy"), "--device", "cpu"]
    ft = tmp_path / "ft"
    assert main(["finetune", str(fit_dir), "-o", str(ft), *rate, "--quiet"]) == 0
    assert "fine-tuned 2 epochs" in capsys.readouterr().out
    record = json.loads((ft / "finetune.json").read_text())
    assert record["key"]["compress"]["qat_epochs"] == 2 and min(record["bits"].values()) < 8
    trained = (ft / "checkpoint.pt").read_bytes()

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("measured or trained again")

    monkeypatch.setattr(gnerv.encoder.encode, "allocate_bits", forbidden)
    monkeypatch.setattr(gnerv.encoder.train, "_train_epoch", forbidden)
    out = tmp_path / "coded.gnerv"
    assert main(["compress", str(fit_dir), "-o", str(out), "--finetune-dir", str(ft), *rate]) == 0
    assert (ft / "checkpoint.pt").read_bytes() == trained
    assert {r.name: r.bits for r in bs.read_gnerv(out).records} == record["bits"]
    monkeypatch.undo()
    at_once = tmp_path / "at_once.gnerv"
    assert main(["compress", str(fit_dir), "-o", str(at_once), *rate]) == 0
    assert at_once.read_bytes() == out.read_bytes()  # same settings + seed: same bitstream

    capsys.readouterr()
    no_finetune = ["--bits", "6", "--qat-epochs", "0"]
    assert main(["finetune", str(fit_dir), "-o", str(tmp_path / "no"), *no_finetune]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gnerv finetune: error: ") and "nothing to fine-tune" in err, err
    assert not (tmp_path / "no").exists()


def test_rate_term_shrinks_the_file(fitted, tmp_path) -> None:
    """The fine-tune's rate term (rate_lambda > 0) trades distortion for bits: the same model
    fine-tuned with it codes to a smaller file than without; 0 leaves the run as it was."""
    frames, fit_dir = fitted
    cfg = TrainConfig(epochs=30, lr=2e-3, warmup_fraction=0.0, device="cpu")
    sizes = {}
    for lam in (0.0, 3.0):
        out = tmp_path / f"rate{lam:g}"
        finetune(frames, fit_dir, out, cfg, bits=6, rate_lambda=lam, progress=False)
        fig = compress_checkpoint(out, tmp_path / f"r{lam:g}.gnerv", 6, frames, scheme=SYM)
        sizes[lam] = fig["bytes"]
    assert sizes[3.0] < 0.97 * sizes[0.0], sizes
    with pytest.raises(GnervError, match="rate term trains in the fine-tune"):
        CompressConfig(scheme=SYM, rate_lambda=1.0, qat_epochs=0).validate()


def test_format_2_parametric_blobs_still_decode() -> None:
    """Format 2 wrote LAPLACE / GAUSSIAN blobs with float32 parameters (8 bytes); formats 3 and
    4 write compact forms (2-3 bytes; format 4's with integer tables) and still read the old
    ones exactly."""
    from gnerv.codec.entropy import _encode_parametric

    rng = np.random.default_rng(3)
    sym = (np.clip(np.rint(rng.normal(0, 4.0, 20_000)), -31, 31) + 32).astype(np.int32)
    lo, hi = int(sym.min()), int(sym.max())
    old = _encode_parametric(sym, lo, hi)
    assert old[0] in (3, 4) and np.array_equal(decode_symbols(old, sym.size, 64), sym)
    new = encode_symbols(sym, 64, parametric=True)
    assert new[0] in (8, 9) and np.array_equal(decode_symbols(new, sym.size, 64), sym)
    assert blob_info(new, sym.size).table_bytes <= blob_info(old, sym.size).table_bytes - 5


@pytest.mark.parametrize("loss", ["mse", "fit"])
def test_the_fine_tune_trains_on_mse_unless_asked_for_the_fits_loss(fitted, tmp_path, loss) -> None:
    """The default fine-tune's loss is MSE (what PSNR measures); --qat-loss fit keeps the fit's
    own a*L1 + (1-a)*(1-SSIM). The fine-tune's record says which it trained on."""
    import json

    from gnerv.cli import main

    frames, fit_dir = fitted
    np.save(tmp_path / "frames.npy", frames)
    args = ["compress", str(fit_dir), "-o", str(tmp_path / "v.gnerv"), "--qat-epochs", "2"]
    args += ["--frames-file", str(tmp_path / "frames.npy"), "--device", "cpu"]
    assert main([*args, *(["--qat-loss", "fit"] if loss == "fit" else [])]) == 0
    trained = json.loads((tmp_path / "v.finetune" / "fit.json").read_text())["train"]
    fitted_with = json.loads((fit_dir / "fit.json").read_text())["train"]
    if loss == "mse":
        assert (trained["loss_alpha"], trained["distortion"]) == (1.0, "mse")
    else:
        assert trained["loss_alpha"] == fitted_with["loss_alpha"] == 0.7
        assert trained["distortion"] == fitted_with["distortion"] == "l1"
