"""Progressive stages: residual targets from decoded layers, PSNR rising layer by layer, prefixes
decoding to the encoder's figures, and refusals of broken chains."""

import json
import re

import numpy as np
import pytest
import torch

from gnerv.cli import main
from gnerv.codec import bitstream as bs
from gnerv.codec.config import SYMMETRIC_SCHEME, GNeRVConfig, count_params
from gnerv.codec.decode import build_model, decode_layers, load_layers
from gnerv.encoder.config import TrainConfig
from gnerv.encoder.progressive import (
    StageSpec,
    check_stages,
    compute_residual,
    encode_progressive,
    respective_sizes,
    stage_model_config,
)
from gnerv.encoder.residual import load_residual, residual_target
from gnerv.evaluation.evaluate import evaluate_layers
from gnerv.evaluation.metrics import mean_psnr
from gnerv.media.video import read_video
from gnerv.runtime.errors import GnervError

# Stage 1 is kept short so that residual stages have something to fix; residual stages use a
# higher lr than the paper's 2e-4 so that a few epochs show the effect.
STAGES = [
    StageSpec(c0=8, epochs=15),
    StageSpec(c0=8, epochs=20, lr=5e-3),
    StageSpec(c0=8, epochs=20, lr=5e-3),
]


@pytest.fixture(scope="module")
def progressive_run(tiny_cockatoo, tmp_path_factory):
    frames, meta = tiny_cockatoo
    out = tmp_path_factory.mktemp("progressive")
    _, h, w, _ = frames.shape
    figures = encode_progressive(
        frames,
        meta,
        STAGES,
        GNeRVConfig(h, w, c0=8, min_channels=8),
        TrainConfig(),
        out,
        progress=False,
    )
    layers = [out / f"stage{j}.gnerv" for j in (1, 2, 3)]
    return frames, layers, figures


def test_psnr_rises_stage_by_stage_after_quantization(progressive_run):
    frames, layers, _ = progressive_run
    points = evaluate_layers(frames, layers)["points"]
    psnr = [p["psnr"] for p in points]
    assert psnr[1] > psnr[0] and psnr[2] > psnr[1], psnr
    bpp = [p["bpp"] for p in points]
    assert bpp[0] < bpp[1] < bpp[2]
    sizes = [f.stat().st_size for f in layers]
    assert points[2]["bpp"] == pytest.approx(8 * sum(sizes) / frames[..., 0].size)


def test_each_prefix_decodes_to_the_encoders_figure(progressive_run):
    frames, layers, figures = progressive_run
    assert figures[0]["psnr_quantized"] == pytest.approx(
        mean_psnr(frames, decode_layers(load_layers(layers[:1]), range(len(frames)))), abs=0
    )
    points = evaluate_layers(frames, layers)["points"]
    for j in (1, 2, 3):
        decoded = decode_layers(load_layers(layers[:j]), list(range(len(frames))))
        assert mean_psnr(frames, decoded) == pytest.approx(points[j - 1]["psnr"], abs=1e-9)


def test_residual_is_computed_from_the_decoded_layers(progressive_run, tmp_path):
    frames, layers, _ = progressive_run
    compute_residual(frames, layers[:2], 50.0, tmp_path / "r3.npy")
    residual, meta = load_residual(tmp_path / "r3.npy")
    assert residual.dtype == np.float32 and residual.shape == frames.shape
    assert meta["stage"]["index"] == 3 and meta["residual_scale"] == 50.0
    from gnerv.codec.decode import decode_float

    recon = decode_float(load_layers(layers[:2]), range(len(frames))).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(residual, residual_target(frames, recon, 50.0), rtol=0, atol=0)
    assert np.abs(residual).max() > 1.0  # not clipped to the pixel range


def test_mismatched_and_out_of_order_layers_are_refused(progressive_run, tiny_realshort, tmp_path):
    frames, layers, _ = progressive_run
    with pytest.raises(GnervError, match="out of order|refines"):
        load_layers([layers[0], layers[2]])
    with pytest.raises(GnervError, match="not a base layer"):
        load_layers([layers[1]])
    # a base from another video of the same size
    other = frames[::-1].copy()
    _, h, w, _ = frames.shape
    encode_progressive(
        other,
        {"fps": 20.0},
        STAGES[:1],
        GNeRVConfig(h, w, c0=8, min_channels=8),
        TrainConfig(),
        tmp_path,
        progress=False,
    )
    with pytest.raises(GnervError):
        load_layers([tmp_path / "stage1.gnerv", layers[1]])
    with pytest.raises(GnervError, match="not the video"):
        compute_residual(frames, [tmp_path / "stage1.gnerv"], 100.0, tmp_path / "r.npy")
    assert not (tmp_path / "r.npy").exists()


@pytest.mark.parametrize(
    "stages, message",
    [
        ([], "empty"),
        ([StageSpec(c0=0)], "zero or negative"),
        ([StageSpec(c0=8), StageSpec(size=0)], "zero or negative"),
        ([StageSpec(c0=8), StageSpec(c0=8, residual_scale=0)], "positive"),
        ([StageSpec(c0=8), StageSpec(c0=8, residual_scale=-100)], "positive"),
        ([StageSpec(c0=8), StageSpec()], "no size"),
    ],
)
def test_bad_stage_lists(stages, message):
    with pytest.raises(GnervError, match=message):
        check_stages(stages)


def test_respective_sizes_match_progressive_totals():
    base = GNeRVConfig(36, 64, c0=8, min_channels=8)
    totals = respective_sizes(STAGES, base)
    per_stage = [count_params(stage_model_config(s, base, j)) for j, s in enumerate(STAGES, 1)]
    assert totals == list(np.cumsum(per_stage))


def test_cli_progressive_encode_and_prefix_decode(tiny_cockatoo, cockatoo_path, tmp_path, capsys):
    out = tmp_path / "layers"
    args = [
        "encode",
        str(cockatoo_path),
        "-o",
        str(out),
        "--frames",
        "0:8",
        "--resize",
        "36x64",
        "--stages",
        "2",
        "--stage-sizes",
        "12k,12k",
        "--stage-epochs",
        "4,4",
        "--min-channels",
        "8",
        "--quiet",
    ]
    assert main(args) == 0
    assert (out / "stage1.gnerv").exists() and (out / "stage2.gnerv").exists()
    assert (
        main(
            [
                "decode",
                str(out / "stage1.gnerv"),
                str(out / "stage2.gnerv"),
                "-o",
                str(tmp_path / "top.npy"),
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "top.npy").shape == (8, 36, 64, 3)
    np.save(tmp_path / "f.npy", tiny_cockatoo[0])
    capsys.readouterr()
    # residual without its base; out-of-order layers; a zero scale: one-line errors, no output
    assert (
        main(
            [
                "residual",
                str(tmp_path / "f.npy"),
                "--layers",
                str(out / "stage2.gnerv"),
                "-o",
                str(tmp_path / "r.npy"),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "decode",
                str(out / "stage2.gnerv"),
                str(out / "stage1.gnerv"),
                "-o",
                str(tmp_path / "bad.npy"),
            ]
        )
        == 2
    )
    assert main(args[:-1] + ["--residual-scale", "0", "-o", str(tmp_path / "z")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "not a base layer" in err[0]
    assert len(err) == 3 and all(line.startswith("gnerv ") for line in err)
    assert not (tmp_path / "r.npy").exists() and not (tmp_path / "bad.npy").exists()
    assert not (tmp_path / "z").exists()


def test_evaluate_cli_writes_metrics(progressive_run, tmp_path):
    frames, layers, _ = progressive_run
    np.save(tmp_path / "frames.npy", frames)
    out = tmp_path / "metrics.json"
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "frames.npy"),
                "--layers",
                *map(str, layers),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    points = json.loads(out.read_text())["points"]
    assert [p["stage"] for p in points] == [1, 2, 3]
    assert all(p["ms_ssim"] is None for p in points)  # 36x64 is below MS-SSIM's 161 px


def test_prepared_models_decode_the_same_bits(progressive_run):
    from gnerv.codec.decode import prepare_layers

    frames, layers, _ = progressive_run
    files = load_layers(layers)
    models = prepare_layers(files, "cpu")
    idx = list(range(len(frames)))
    np.testing.assert_array_equal(
        decode_layers(files, idx, "cpu", models=models), decode_layers(files, idx, "cpu")
    )
    with pytest.raises(GnervError, match="prepared models"):
        decode_layers(files, idx, "cpu", models=models[:1])


def test_encode_to_a_target(cockatoo_path, tmp_path, capsys):
    """--target-psnr stops adding stages once the decoded prefix reaches it, and says when the
    stage limit came first; --target-bpp keeps the stages that fit and drops the one that would
    not (or refuses when stage 1 alone is over). The prefix figures are the decoder's."""

    def encode(out, *target):
        return main(
            ["encode", str(cockatoo_path), "-o", str(out), "--frames", "0:8", "--resize", "36x64",
             "--stages", "3", "--stage-sizes", "12k,12k,12k", "--stage-epochs", "4,4,4",
             "--min-channels", "8", "--auto-resume", "--quiet", *target]
        )  # fmt: skip

    out = tmp_path / "psnr"
    assert encode(out, "--target-psnr", "5") == 0
    said = capsys.readouterr().out
    assert "target 5 dB met" in said and "after 1 stage(s)" in said
    assert (out / "stage1.gnerv").exists() and not (out / "stage2.gnerv").exists()

    assert encode(out, "--target-psnr", "99") != 0
    said, err = capsys.readouterr()
    assert "target 99 dB not met" in err and "after all 3 stage(s)" in err
    assert [line for line in err.splitlines() if not line.startswith("fit: ")] == [
        err.strip().splitlines()[-1]
    ]  # one error line (beside the fits' progress lines)
    layers = [out / f"stage{j}.gnerv" for j in (1, 2, 3)]
    assert all(p.exists() for p in layers)
    prefix = [float(v) for v in re.findall(r"decoded: [0-9.]+ dB, ([0-9.]+) bpp", said)]
    psnrs = [float(v) for v in re.findall(r"decoded: ([0-9.]+) dB", said)]
    assert len(prefix) == 3 and prefix == sorted(prefix)
    frames = read_video(cockatoo_path, frame_range=(0, 8), resize=(36, 64), progress=False)[0]
    top = decode_layers(load_layers(layers), range(8), "cpu")
    assert mean_psnr(frames, top) == pytest.approx(psnrs[-1], abs=0.01)

    # a rate between stage 1+2 and 1+2+3: stage 3 is left out (training resumes from the work)
    assert encode(out, "--target-bpp", f"{(prefix[1] + prefix[2]) / 2:.6f}") == 0
    said = capsys.readouterr().out
    assert "with 2 stage(s); stage 3 would exceed it" in said
    assert not (out / "stage3.gnerv").exists() and (out / "stage2.gnerv").exists()
    assert encode(out, "--target-bpp", "100") == 0
    assert "the stage limit was hit first" in capsys.readouterr().out

    assert encode(tmp_path / "small", "--target-bpp", f"{prefix[0] / 2:.6f}") != 0
    err = capsys.readouterr().err
    assert "stage 1 alone takes" in err and "give a smaller base" in err
    assert not (tmp_path / "small" / "stage1.gnerv").exists()


def test_cli_progressive_encode_takes_the_rate_path(cockatoo_path, tmp_path, capsys):
    """`encode --stages N` with the rate path's switches codes every layer with them (the
    residual stage's fine-tune fits its own residual), and the chain decodes."""
    out = tmp_path / "layers"
    args = ["encode", str(cockatoo_path), "-o", str(out), "--frames", "0:8", "--resize", "36x64"]
    args += ["--stages", "2", "--stage-sizes", "12k,12k", "--stage-epochs", "4,4"]
    args += ["--min-channels", "8", "--quiet", "--scheme", "symmetric", "--bits", "5"]
    assert main([*args, "--qat-epochs", "2", "--prune", "0.2"]) == 0, capsys.readouterr().err
    files = [bs.read_gnerv(out / f"stage{j}.gnerv") for j in (1, 2)]
    assert [(f.scheme, f.bits) for f in files] == [(SYMMETRIC_SCHEME, 5)] * 2
    for j in (1, 2):  # each stage was fine-tuned (pruned zeros are kept through the file)
        assert (out / f"stage{j}.work" / "finetune" / "fit.json").is_file()
        weight = build_model(files[j - 1]).state_dict()["blocks.0.conv1.weight"]
        assert float((weight == 0).float().mean()) >= 0.2
    top = tmp_path / "top.npy"
    assert (
        main(["decode", str(out / "stage1.gnerv"), str(out / "stage2.gnerv"), "-o", str(top)]) == 0
    )
    assert np.load(top).shape == (8, 36, 64, 3)


def test_warm_start_begins_each_stage_from_the_one_before(cockatoo_path, tmp_path, capsys):
    """--warm-start (beyond the paper): stage 2's fit starts from stage 1's weights with a zero
    head, so before any training it adds nothing and already has stage 1's features; the
    layers decode as a chain. Unequal stage sizes are refused with the fix named."""
    from gnerv.encoder.progressive import warm_start_weights
    from gnerv.encoder.train import model_from_checkpoint

    out = tmp_path / "warm"
    args = ["encode", str(cockatoo_path), "-o", str(out), "--frames", "0:8", "--resize", "36x64"]
    args += ["--stages", "2", "--stage-epochs", "3,2", "--min-channels", "8", "--quiet"]
    assert main([*args, "--stage-sizes", "12k,12k", "--warm-start"]) == 0, capsys.readouterr()
    base, _ = model_from_checkpoint(out / "stage1.work" / "checkpoint.pt")
    second = base.cfg.__class__(**{**base.cfg.to_dict(), "residual": True})
    init = warm_start_weights(out / "stage1.work", second, 2)
    for name, value in base.state_dict().items():
        expected = torch.zeros_like(value) if name.startswith("head.") else value
        assert torch.equal(init[name], expected.contiguous()), name
    fitted, _ = model_from_checkpoint(out / "stage2.work" / "checkpoint.pt")
    embedding = fitted.state_dict()["embedding"]
    assert not torch.equal(embedding, base.state_dict()["embedding"])  # it trained from there
    files = [str(out / f"stage{j}.gnerv") for j in (1, 2)]
    assert main(["decode", *files, "-o", str(tmp_path / "d.npy")]) == 0
    assert main([*args, "-o", str(tmp_path / "x"), "--stage-sizes", "12k,6k", "--warm-start"]) != 0
    assert "give equal --stage-sizes" in capsys.readouterr().err
