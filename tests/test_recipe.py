"""The best path by default, the paper one switch away: recipes, the rate path's flags, a fitted
model that knows its frames, stages from one size, targets without --stages, encode --params."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from gnerv.cli import main
from gnerv.codec import bitstream as bs
from gnerv.codec.config import MINMAX_SCHEME, SYMMETRIC_SCHEME
from gnerv.encoder.config import (
    DEFAULT_CODING_BITS,
    CompressConfig,
    TrainConfig,
    fine_tunes,
    recipe_settings,
)
from gnerv.media.video import save_frames

TINY = ["--c0", "8", "--min-channels", "8", "--device", "cpu", "--quiet"]
CLIP = ["data/raw/cockatoo.mp4", "--frames", "0:4", "--resize", "36x64"]  # what encode reads


@pytest.fixture(scope="module")
def frames_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, 36, 64, 3))
    frames = np.clip(base + rng.integers(-8, 9, (4, 36, 64, 3)), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("clip") / "frames.npy"
    save_frames(path, frames, {"fps": 25.0})
    return path


def run(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def fitted(tmp_path: Path, frames_file: Path, capsys, *extra: str) -> Path:
    out = tmp_path / "fit"
    rc, err = run(capsys, "fit", frames_file, "-o", out, "--epochs", "4", *TINY, *extra)
    assert rc == 0, err
    return out


def test_the_default_coding_is_the_rate_path_and_paper_is_one_switch() -> None:
    d = CompressConfig()
    assert (d.scheme, d.bits, d.fine_tunes) == (SYMMETRIC_SCHEME, DEFAULT_CODING_BITS, True)
    paper = CompressConfig(**recipe_settings("paper", "coding"))
    assert (paper.scheme, paper.bits, paper.fine_tunes) == (MINMAX_SCHEME, 8, False)
    assert d.finetune_epochs(100) == 10 and paper.finetune_epochs(100) == 0
    assert CompressConfig(qat_epochs=3).finetune_epochs(100) == 3
    assert recipe_settings("paper", "frames")["lr"] == 2e-3
    assert recipe_settings("paper", "residuals")["lr"] == 2e-4
    with pytest.raises(Exception, match="recipe 'fast' is not one of"):
        TrainConfig(recipe="fast").validate()


def test_the_workflow_fine_tunes_as_the_cli_codes(tmp_path: Path) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    assert fine_tunes(params)  # the demo: the default recipe's fine-tune
    assert not fine_tunes({**params, "recipe": "paper"})
    assert fine_tunes({**params, "recipe": "paper", "compress": {"qat_epochs": 3}})
    assert not fine_tunes({**params, "compress": {"scheme": "minmax"}})


def test_a_fitted_model_knows_its_frames(tmp_path: Path, frames_file: Path, capsys) -> None:
    """fit records the frames file; compress fine-tunes from it without --frames-file; a moved or
    edited file is refused with one line naming the flag that overrides."""
    frames = tmp_path / "frames.npy"
    shutil.copy(frames_file, frames)
    shutil.copy(frames_file.with_suffix(".json"), frames.with_suffix(".json"))
    model = fitted(tmp_path, frames, capsys)
    record = json.loads((model / "source.json").read_text())
    assert record["path"] == str(frames.resolve()) and record["kind"] == "frames"
    rc, err = run(capsys, "compress", model, "-o", tmp_path / "a.gnerv", "--device", "cpu")
    assert rc == 0, err
    f = bs.read_gnerv(tmp_path / "a.gnerv")
    assert f.scheme == SYMMETRIC_SCHEME and f.bits == DEFAULT_CODING_BITS
    assert (tmp_path / "a.finetune" / "finetune.json").exists()  # it fine-tuned
    moved = tmp_path / "moved.npy"
    frames.rename(moved)
    rc, err = run(capsys, "compress", model, "-o", tmp_path / "b.gnerv")
    assert rc == 2 and err.count("\n") == 1, err
    assert "is gone" in err and "--frames-file" in err
    np.save(frames, np.load(moved)[::-1])  # the same shape, other frames
    rc, err = run(capsys, "compress", model, "-o", tmp_path / "b.gnerv")
    assert rc == 2 and err.count("\n") == 1 and "has changed" in err and "--frames-file" in err
    assert not (tmp_path / "b.gnerv").exists()
    rc, err = run(capsys, "compress", model, "-o", tmp_path / "c.gnerv", "--frames-file", moved)
    assert rc == 0, err


def test_one_flag_selects_the_rate_path(tmp_path: Path, frames_file: Path, capsys) -> None:
    model = fitted(tmp_path, frames_file, capsys)
    out = tmp_path / "q.gnerv"
    rc, err = run(capsys, "compress", model, "-o", out, "--recipe", "paper", "--qat-epochs", 1)
    assert rc == 0, err
    assert "note: --qat-epochs select the symmetric scheme (the paper recipe" in err
    assert bs.read_gnerv(out).scheme == SYMMETRIC_SCHEME
    rc, err = run(capsys, "compress", model, "-o", out, "--scheme", "minmax", "--prune", "0.2")
    assert rc == 2 and err.count("\n") == 1 and "drop --scheme minmax" in err
    rc, err = run(capsys, "compress", model, "-o", tmp_path / "m.gnerv", "--scheme", "minmax")
    assert rc == 0, err  # min/max alone: the paper's coding, nothing to fine-tune
    f = bs.read_gnerv(tmp_path / "m.gnerv")
    assert (f.scheme, f.bits) == (MINMAX_SCHEME, 8)


def test_recipe_paper_codes_as_the_paper_flags_did(
    tmp_path: Path, frames_file: Path, capsys
) -> None:
    """`--recipe paper` gives the files the paper's values gave flag by flag (the paper configs'
    way before the recipe): the same coded bytes, the header differing only in its encoder
    field, which names the recipe (`gnerv info` shows it)."""
    common = ["encode", *CLIP, "--epochs", "3", *TINY]
    flags = ["--layout", "paper", "--lr", "2e-3", "--embedding-std", "1", "--precision", "fp32"]
    flags += ["--scheme", "minmax", "--bits", "8", "--qat-epochs", "0"]
    by_flags, by_recipe = tmp_path / "flags.gnerv", tmp_path / "recipe.gnerv"
    assert run(capsys, *common, "-o", by_flags, *flags)[0] == 0
    assert run(capsys, *common, "-o", by_recipe, "--recipe", "paper")[0] == 0
    a, b = bs.read_gnerv(by_flags), bs.read_gnerv(by_recipe)
    assert a.model_config == b.model_config and a.model_config.layout == "paper"
    assert a.encoder != b.encoder
    assert coded_body(by_flags) == coded_body(by_recipe)
    assert bs.recipe_of(b.encoder) == "paper" and bs.recipe_of(a.encoder) == "default"
    capsys.readouterr()
    assert main(["info", str(by_recipe)]) == 0
    assert "recipe: paper" in capsys.readouterr().out
    # a file whose encoder field names no recipe (written through bs.compress_model without one)
    golden = Path(__file__).resolve().parent / "expected" / "golden-v5-render3.gnerv"
    assert bs.recipe_of(bs.read_gnerv(golden).encoder) is None
    assert main(["info", str(golden)]) == 0
    assert "recipe: not recorded (the encoder field names none)" in capsys.readouterr().out


def coded_body(path: Path) -> bytes:
    """A file's bytes between its header and its CRC: every coded tensor."""
    data = path.read_bytes()
    header_bytes = int.from_bytes(data[6:10], "little")  # after the magic and the version
    return data[10 + header_bytes : -4]


def test_stages_from_one_size(tmp_path: Path, frames_file: Path, capsys) -> None:
    out = tmp_path / "layers"
    args = ["encode", *CLIP, "-o", out, "--stages", "2", "--size", "0.02M", "--epochs", "2"]
    rc, err = run(capsys, *args, "--min-channels", "8", "--device", "cpu", "--quiet")
    assert rc == 0, err
    sizes = [bs.read_gnerv(out / f"stage{j}.gnerv").model_config.c0 for j in (1, 2)]
    assert sizes[0] == sizes[1]


def test_a_target_without_stages_plans_a_stated_limit(
    tmp_path: Path, frames_file: Path, capsys
) -> None:
    out = tmp_path / "target"
    args = ["encode", *CLIP, "-o", out, "--target-psnr", "5", "--epochs", "2", *TINY]
    rc, err = run(capsys, *args)
    assert rc == 0, err
    assert "without --stages: up to 4 stages" in err
    assert sorted(p.name for p in out.glob("*.gnerv")) == ["stage1.gnerv"]  # met at once


def test_encode_params_applies_the_coding_sections(
    tmp_path: Path, frames_file: Path, capsys
) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["compress"]["scheme"] = "minmax"
    params["quant"]["bits"] = 7
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    out = tmp_path / "p.gnerv"
    rc, err = run(capsys, "encode", *CLIP, "-o", out, "--params", path, "--epochs", 2, *TINY)
    assert rc == 0, err
    f = bs.read_gnerv(out)
    assert (f.scheme, f.bits) == (MINMAX_SCHEME, 7)
