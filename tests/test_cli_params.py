"""`--params params.yaml --stage J`: a command's settings from the workflow's parameters, explicit
flags over them, the dataclasses' defaults under both (one default per setting)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gnerv.cli import build_parser, main
from gnerv.cli.common import model_config, resolve_settings, train_config
from gnerv.codec.config import DEFAULT_BITS, GNeRVConfig
from gnerv.encoder.config import RESIDUAL_ALPHA, RESIDUAL_LR, TrainConfig
from gnerv.pipeline import results
from gnerv.pipeline.params import command_params, command_settings, load_params
from gnerv.runtime.errors import GnervError

ROOT = Path(__file__).resolve().parent.parent
PARAMS = {
    "model": {"upscale_factors": "auto", "min_channels": 12, "pe_levels": 10},
    "train": {"batch": 2, "warmup": 0.1, "seed": 7, "device": "cpu"},
    "stages": [
        {"c0": 8, "epochs": 5, "lr": 5.0e-3, "alpha": 0.6},
        {"size": "20k", "epochs": 3, "residual_scale": 50},
    ],
    "quant": {"bits": 6},
}


@pytest.fixture()
def params_file(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(PARAMS))
    return path


def fit_settings(*argv: str):
    args = build_parser().parse_args(["fit", "frames.npy", "-o", "out", *argv])
    return resolve_settings(args, "fit"), args


def test_fit_reads_its_stage_and_flags_override(params_file: Path) -> None:
    settings, args = fit_settings("--params", str(params_file), "--stage", "1", "--epochs", "9")
    cfg = model_config(settings, 36, 64, residual=False)
    train = train_config(settings, args, residual=False)
    assert (cfg.c0, cfg.min_channels, cfg.pe_levels) == (8, 12, 10)
    assert cfg.pe_base == GNeRVConfig.__dataclass_fields__["pe_base"].default  # not in the file
    assert (train.batch_size, train.warmup_fraction, train.seed, train.device) == (2, 0.1, 7, "cpu")
    assert (train.lr, train.loss_alpha) == (5e-3, 0.6)
    assert train.epochs == 9  # the explicit flag wins over the file's 5


def test_residual_stage_takes_the_papers_residual_recipe_unless_set(params_file: Path) -> None:
    settings, args = fit_settings("--params", str(params_file), "--stage", "2")
    train = train_config(settings, args, residual=True)
    assert (train.lr, train.loss_alpha, train.epochs) == (RESIDUAL_LR, RESIDUAL_ALPHA, 3)
    assert "residual_scale" not in settings  # residual's setting, not fit's
    cfg = model_config(settings, 36, 64, residual=True)
    assert cfg.residual and cfg.min_channels == 12
    # an explicit --c0 replaces the file's size
    settings, _ = fit_settings("--params", str(params_file), "--stage", "2", "--c0", "3")
    assert model_config(settings, 36, 64, residual=True).c0 == 3


def test_without_params_the_dataclass_defaults_apply() -> None:
    settings, args = fit_settings()
    assert settings == {}
    train = train_config(settings, args, residual=False)
    defaults = TrainConfig()
    assert (train.lr, train.batch_size, train.epochs) == (
        defaults.lr,
        defaults.batch_size,
        defaults.epochs,
    )
    args = build_parser().parse_args(["compress", "m", "-o", "x.gnerv"])
    assert resolve_settings(args, "compress").get("bits", DEFAULT_BITS) == DEFAULT_BITS


def test_compress_and_residual_read_their_keys(params_file: Path) -> None:
    args = build_parser().parse_args(
        ["compress", "m", "-o", "x.gnerv", "--params", str(params_file), "--stage", "2"]
    )
    assert resolve_settings(args, "compress")["bits"] == 6
    args = build_parser().parse_args(
        ["residual", "f.npy", "--layers", "a.gnerv", "-o", "r.npy", "--params", str(params_file),
         "--stage", "2", "--scale", "10"]
    )  # fmt: skip
    assert resolve_settings(args, "residual")["residual_scale"] == 10.0
    assert command_settings(PARAMS, "residual", 2) == {"residual_scale": 50}


def test_dvc_params_are_exactly_what_the_command_reads() -> None:
    keys = command_params(PARAMS, "fit", 2)
    assert "stages.1.size" in keys and "stages.1.residual_scale" not in keys
    assert "train.batch" in keys and "model.min_channels" in keys
    assert not any(k.startswith("stages.0") for k in keys)
    assert command_params(PARAMS, "compress", 1) == ["quant.bits"]
    assert command_params(PARAMS, "residual", 2) == ["stages.1.residual_scale"]


def test_a_missing_stage_is_one_line(params_file: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["fit", str(params_file), "-o", "o", "--params", str(params_file), "--stage", "3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--stage 3" in err and "1..2" in err and len(err.splitlines()) == 1
    with pytest.raises(GnervError, match="not found"):
        load_params([params_file.parent / "nope.yaml"])


def test_results_layout_is_the_workflows() -> None:
    assert results.layer("cockatoo", 2) == "results/cockatoo/stage2/stage2.gnerv"
    assert results.layer("{video}", "{stage}") == "results/{video}/stage{stage}/stage{stage}.gnerv"
    assert results.fit_summary("v", 1) == "results/v/stage1/fit.json"
    assert results.report_files("v")["rd"] == "results/v/eval/rd.png"
    dvc = (ROOT / "dvc.yaml").read_text()
    assert results.layer("cockatoo", 3) in dvc and results.metrics("cockatoo") in dvc


# A value for each coding option that differs from its default (and passes validate()).
CODING_VALUES = {
    "scheme": "symmetric",
    "target_psnr_drop": 0.5,
    "max_bytes": 12345,
    "qat_epochs": 3,
    "qat_share": 0.25,
    "qat_lr": 1e-4,
    "qat_loss": "fit",
    "prune": 0.2,
    "rate_lambda": 0.01,
}


def test_every_coding_option_is_a_flag_a_params_key_and_in_the_schema(tmp_path: Path) -> None:
    """One CompressConfig field makes its CLI flag, its params.yaml key and its schema: the same
    value given either way reaches the same CompressConfig, and the schema checks the key."""
    import jsonschema

    from gnerv.cli.common import compress_config
    from gnerv.encoder.config import CodingOption, CompressConfig, coding_options

    options = coding_options()
    assert set(options) == set(CODING_VALUES), "a new coding option needs a value here"
    argv = []
    for name, value in CODING_VALUES.items():
        argv += [CodingOption.flag(name), str(value)]
    args = build_parser().parse_args(["compress", "model", "-o", "x.gnerv", *argv])
    from_flags = compress_config(resolve_settings(args, "compress"), note=False)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**PARAMS, "compress": CODING_VALUES}))
    args = build_parser().parse_args(
        ["compress", "model", "-o", "x.gnerv", "--params", str(path), "--stage", "1"]
    )
    from_params = compress_config(resolve_settings(args, "compress"), note=False)
    assert from_flags == from_params
    for name in CODING_VALUES:
        assert getattr(from_flags, name) != getattr(CompressConfig(), name) or name == "scheme"
    assert sorted(command_params(load_params([path]), "compress", 1)) == sorted(
        ["quant.bits"] + [f"compress.{name}" for name in CODING_VALUES]
    )
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "params.schema.yaml").read_text())
    section = schema["properties"]["compress"]
    assert set(section["properties"]) == set(options)
    validator = jsonschema.Draft202012Validator(section)
    assert not list(validator.iter_errors(CODING_VALUES))
    assert list(validator.iter_errors({"prune": -1}))  # the option's schema checks the value
    assert list(validator.iter_errors({"no_such_option": 1}))


def test_a_bad_coding_value_is_one_line(tmp_path: Path) -> None:
    from gnerv.cli import UsageError

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**PARAMS, "compress": {"qat_epochs": "many"}}))
    args = build_parser().parse_args(
        ["compress", "model", "-o", "x.gnerv", "--params", str(path), "--stage", "1"]
    )
    with pytest.raises(GnervError, match="compress.qat_epochs: 'many' is not an integer"):
        resolve_settings(args, "compress")
    with pytest.raises(UsageError, match="argument --scheme: scheme 'zip': use one of minmax"):
        build_parser().parse_args(["compress", "model", "-o", "x.gnerv", "--scheme", "zip"])
