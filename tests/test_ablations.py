"""The paper's ablations (section 4.3): the M time branch, masking, and their commands."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnerv.cli import main
from gnerv.codec import bitstream as bs
from gnerv.codec.config import (
    TIME_BRANCHES,
    GNeRVConfig,
    check_mask,
    count_params,
    ds_branch_params,
    m_branch_params,
)
from gnerv.codec.model import GNeRV, positional_encoding
from gnerv.media.video import save_frames
from gnerv.runtime.errors import GnervError

# The paper's Table 4 models (1280x720, paper layout): C0 -> parameters.
PAPER_C0 = (20, 40, 80, 152, 223, 304)


def small(time_branch: str, c0: int = 8) -> GNeRVConfig:
    return GNeRVConfig(36, 64, c0=c0, min_channels=8, time_branch=time_branch)


@pytest.mark.parametrize("time_branch", TIME_BRANCHES)
def test_every_branch_builds_counts_and_renders(time_branch: str) -> None:
    torch.manual_seed(0)
    cfg = small(time_branch)
    model = GNeRV(cfg)
    assert sum(p.numel() for p in model.parameters()) == count_params(cfg)
    assert model(torch.tensor([0.0, 0.5, 1.0])).shape == (3, 3, 36, 64)
    assert hasattr(model, "m_branch") == cfg.has_m
    assert hasattr(model, "ds_heads") == cfg.has_ds


def test_m_branch_maps_the_time_vector_to_the_embedding_shape() -> None:
    cfg = small("ds+m", c0=12)
    branch = GNeRV(cfg).m_branch
    pe = positional_encoding(torch.tensor([0.0, 0.3]), cfg.pe_base, cfg.pe_levels)
    h, w = cfg.embedding_hw
    assert branch.to_map.out_features == h * w  # the time vector reshaped to (1, h, w)
    assert branch.conv1.in_channels == 1 and branch.conv2.out_channels == cfg.c0
    assert branch(pe).shape == (2, cfg.c0, h, w)


@pytest.mark.parametrize("c0", PAPER_C0)
def test_m_branch_has_the_ds_branch_parameter_count(c0: int) -> None:
    # Paper 4.3: "We control the parameter number of DS-branch and that of M-branch the same".
    cfg = GNeRVConfig(720, 1280, c0=c0, layout="paper", time_branch="ds+m")
    ds, m = ds_branch_params(cfg), m_branch_params(cfg, cfg.m_hidden)
    assert abs(m - ds) / ds < 0.01
    # the nearest width: one channel more or fewer is further off
    for other in (cfg.m_hidden - 1, cfg.m_hidden + 1):
        assert abs(m - ds) <= abs(m_branch_params(cfg, other) - ds)
    counted = count_params(cfg) - count_params(GNeRVConfig(720, 1280, c0=c0, layout="paper"))
    assert counted == m


def test_masking_a_branch_changes_the_output() -> None:
    torch.manual_seed(0)
    model = GNeRV(small("ds+m")).eval()
    t = torch.tensor([0.0, 0.5, 1.0])
    with torch.no_grad():
        direct, no_m, no_ds = model(t), model(t, mask="m"), model(t, mask="ds")
    assert not torch.allclose(direct, no_m)
    assert not torch.allclose(direct, no_ds)
    assert not torch.allclose(no_m, no_ds)


def test_masking_ds_in_a_ds_only_model_is_refused() -> None:
    model = GNeRV(small("ds"))
    with pytest.raises(GnervError, match=r"cannot mask DS: .* has only the DS branch"):
        model(torch.tensor([0.0]), mask="ds")
    with pytest.raises(GnervError, match="cannot mask M"):
        check_mask(small("ds"), "m")
    with pytest.raises(GnervError, match="cannot mask M: .* only the M branch"):
        check_mask(small("m"), "m")
    with pytest.raises(GnervError, match="not one of"):
        check_mask(small("ds+m"), "x")


def test_time_branch_is_recorded_in_the_file() -> None:
    torch.manual_seed(0)
    model = GNeRV(small("ds+m")).eval()
    facts = bs.video_facts(4, 36, 64, 25.0)
    packed = bs.compress_model(model, 8, facts, bs.base_stage("ab" * 32))
    assert bs.unpack(packed, "m.gnerv").model_config == model.cfg


def test_cli_refuses_masking_ds_of_a_ds_model_in_one_line(tmp_path, capsys) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (4, 36, 64, 3), dtype=np.uint8)
    save_frames(tmp_path / "f.npy", frames, {"fps": 25.0})
    fit = ["fit", str(tmp_path / "f.npy"), "--c0", "8", "--min-channels", "8", "--epochs", "1"]
    assert main([*fit, "-o", str(tmp_path / "ds"), "--quiet", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert (
        main(["ablation", "psnr", str(tmp_path / "f.npy"), str(tmp_path / "ds"), "--mask", "ds"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("gnerv ablation: error: cannot mask DS")
    assert "time_branch ds+m" in err
