"""The paper's structure: embedding from gcd, factors, channel schedule, blocks, DS branch."""

import math

import pytest
import torch

from gnerv.codec import kernels
from gnerv.codec.config import (
    PAPER_COUNTS,
    GNeRVConfig,
    c0_for_size,
    count_params,
    embedding_geometry,
    macs_per_frame,
    prime_factors,
)
from gnerv.codec.kernels import distribution_shift_bf16
from gnerv.codec.model import (
    GNeRV,
    distribution_shift,
    for_inference,
    frame_times,
    positional_encoding,
    render,
    to_uint8,
)
from gnerv.runtime.errors import GnervError
from gnerv.runtime.sizes import parse_param_count


@pytest.mark.parametrize(
    "hw, emb, factors",
    [
        ((720, 1280), (9, 16), (5, 2, 2, 2, 2)),  # paper 4.1, 720p
        ((1080, 1920), (9, 16), (5, 3, 2, 2, 2)),  # paper 4.1, 1080p
        ((480, 640), (3, 4), (5, 2, 2, 2, 2, 2)),
        ((576, 720), (4, 5), (3, 3, 2, 2, 2, 2)),
        ((240, 320), (3, 4), (5, 2, 2, 2, 2)),
        ((90, 160), (9, 16), (5, 2)),
        ((36, 64), (9, 16), (2, 2)),
    ],
)
def test_embedding_shape_and_factors_follow_gcd(hw, emb, factors):
    (h, w), f = embedding_geometry(*hw)
    assert (h, w) == emb
    assert f == factors
    assert math.prod(f) == math.gcd(*hw)
    assert list(f) == sorted(f, reverse=True)


def test_prime_factors_largest_first():
    assert prime_factors(80) == [5, 2, 2, 2, 2]
    assert prime_factors(120) == [5, 3, 2, 2, 2]
    assert prime_factors(1) == []


def test_user_factors_override_and_must_divide():
    (h, w), f = embedding_geometry(720, 1280, (4, 4, 5))
    assert (h, w) == (9, 16) and f == (4, 4, 5)
    with pytest.raises(GnervError, match="does not divide"):
        embedding_geometry(720, 1280, (3, 3))


def test_bad_geometry_suggests_a_crop():
    with pytest.raises(GnervError, match=r"721x529.*crop or resize to 720x528"):
        embedding_geometry(721, 529)


def test_channel_schedule_doubles_then_halves_with_floor():
    cfg = GNeRVConfig(720, 1280, c0=128)
    assert cfg.channels == [128, 256, 128, 64, 32, 30]
    cfg = GNeRVConfig(720, 1280, c0=128, min_channels=40)
    assert cfg.channels == [128, 256, 128, 64, 40, 40]


def test_block_structures():
    model = GNeRV(GNeRVConfig(720, 1280, c0=32))
    grow, shrink = model.blocks[0], model.blocks[1]
    # Conv-PixelShuffle-Conv when channels grow (32 -> 64, factor 5)
    assert grow.grows
    assert grow.conv1.weight.shape[:2] == (32 * 25, 32)
    assert grow.conv2.weight.shape[:2] == (64, 32)
    # Conv-Conv-PixelShuffle when they shrink (64 -> 32, factor 2)
    assert not shrink.grows
    assert shrink.conv1.weight.shape[:2] == (32, 64)
    assert shrink.conv2.weight.shape[:2] == (32 * 4, 32)
    assert model.embedding.shape == (1, 32, 9, 16)
    assert model.head.weight.shape[:2] == (3, 30)


def test_ds_branch_shapes():
    cfg = GNeRVConfig(720, 1280, c0=32)
    model = GNeRV(cfg)
    assert model.ds_shared.weight.shape == (40, 40)  # shared 40 -> 40
    assert [h.weight.shape for h in model.ds_heads] == [
        (2 * c, 40) for c in cfg.channels[:-1]
    ]  # per block 40 -> 2 * C_in (mean and std)


def test_positional_encoding_values():
    t = torch.tensor([0.0, 0.5, 1.0])
    pe = positional_encoding(t, base=1.25, levels=20)
    assert pe.shape == (3, 40)
    for i in range(20):
        arg = 1.25**i * math.pi * 0.5
        assert pe[1, 2 * i].item() == pytest.approx(math.sin(arg), abs=1e-5)
        assert pe[1, 2 * i + 1].item() == pytest.approx(math.cos(arg), abs=1e-5)
    assert torch.allclose(pe[0, 0::2], torch.zeros(20))
    assert torch.allclose(pe[0, 1::2], torch.ones(20))


def test_distribution_shift_sets_channel_mean_and_std():
    f = torch.randn(2, 5, 7, 9) * 3 + 4
    mean = torch.randn(2, 5)
    std = torch.rand(2, 5) + 0.5
    out = distribution_shift(f, mean, std)
    assert torch.allclose(out.mean(dim=(2, 3)), mean, atol=1e-4)
    assert torch.allclose(out.std(dim=(2, 3), unbiased=False), std, atol=1e-3)


def test_bf16_shift_is_eq1_too():
    """The bf16 render's shift (sums of x and x^2, then x * a + b) gives Eq. 1's result; in
    fp32 it agrees with the exact one to rounding, on NHWC input as the render feeds it."""
    f = (torch.randn(2, 5, 7, 9) * 3 + 4).contiguous(memory_format=torch.channels_last)
    mean = torch.randn(2, 5)
    std = torch.rand(2, 5) + 0.5
    out = distribution_shift_bf16(f, mean, std)
    assert torch.allclose(out, distribution_shift(f, mean, std), atol=1e-4)
    assert out.is_contiguous(memory_format=torch.channels_last)


def bf16_cpu() -> bool:
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


@pytest.mark.skipif(not bf16_cpu(), reason="the CPU has no native bfloat16 (AVX-512 BF16/AMX)")
@pytest.mark.parametrize(
    ("time_branch", "residual"), [("ds", False), ("ds+m", False), ("m", False), ("ds", True)]
)
def test_bf16_render_is_the_model_to_bf16_rounding(time_branch, residual):
    """The bf16 kernel (fused oneDNN kernels in bfloat16) renders what forward renders, to
    bf16's rounding: for every time branch, for frames and for residual heads."""
    cfg = GNeRVConfig(height=36, width=64, c0=16, time_branch=time_branch, residual=residual)
    torch.manual_seed(5)
    model = GNeRV(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model = for_inference(model, "cpu")
    t = frame_times(torch.arange(5), 5)
    with torch.inference_mode():
        exact, lossy = model(t), kernels.forward(model, t, "bf16")
    assert lossy.dtype == torch.float32 and lossy.shape == exact.shape
    err = (lossy - exact).abs()
    scale = exact.abs().max().item()
    assert 0 < err.max().item() < 0.05 * scale  # not the fp32 path, and close to it
    assert err.mean().item() < 0.005 * scale


def test_time_enters_only_through_ds_and_changes_the_frame():
    model = GNeRV(GNeRVConfig(36, 64, c0=8))
    out = model(torch.tensor([0.0, 0.5]))
    assert out.shape == (2, 3, 36, 64)
    assert 0 <= out.min() and out.max() <= 1  # sigmoid head for frames
    assert not torch.allclose(out[0], out[1])


def test_residual_head_is_signed():
    model = GNeRV(GNeRVConfig(36, 64, c0=8, residual=True))
    with torch.no_grad():
        model.head.bias.fill_(-5.0)
    assert model(torch.tensor([0.3])).max() < 0


@pytest.mark.parametrize("layout", ["wide", "paper"])
@pytest.mark.parametrize("hw", [(720, 1280), (1080, 1920), (480, 640), (576, 720), (240, 320)])
def test_param_and_mac_counts_match_the_built_model(hw, layout):
    cfg = GNeRVConfig(*hw, c0=24, layout=layout)
    model = GNeRV(cfg)
    assert count_params(cfg) == sum(p.numel() for p in model.parameters())
    macs = 0

    def hook(mod, _inp, out):
        nonlocal macs
        if isinstance(mod, torch.nn.Conv2d):
            macs += mod.weight.numel() * out.shape[2] * out.shape[3]
        elif isinstance(mod, torch.nn.Linear):
            macs += mod.weight.numel()

    for m in model.modules():
        m.register_forward_hook(hook)
    if hw[0] <= 480:  # full forward pass only on the smaller sizes, to stay fast
        out = model(torch.tensor([0.5]))
        assert out.shape == (1, 3, *hw)
        assert macs == macs_per_frame(cfg)


def test_model_size_picks_c0():
    target = parse_param_count("0.5M")
    assert target == 500_000
    c0 = c0_for_size(target, height=720, width=1280)
    cfg = GNeRVConfig(720, 1280, c0=c0)
    assert abs(count_params(cfg) - target) <= abs(
        count_params(GNeRVConfig(720, 1280, c0=c0 + 1)) - target
    )
    assert (
        count_params(GNeRVConfig(720, 1280, c0=c0 - 1))
        < target
        < count_params(GNeRVConfig(720, 1280, c0=c0 + 1))
    )


def test_size_below_the_floor_names_min_channels():
    with pytest.raises(GnervError, match="min_channels=30"):
        c0_for_size(50_000, height=720, width=1280)
    # a lower floor reaches it
    c0_for_size(50_000, height=720, width=1280, min_channels=8)


@pytest.mark.parametrize("text", ["abc", "-1M", "0", "1.5X"])
def test_bad_size_text(text):
    with pytest.raises(GnervError):
        parse_param_count(text)


def test_config_round_trips_through_dict():
    cfg = GNeRVConfig(90, 160, c0=12, min_channels=10, residual=True)
    assert GNeRVConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(GnervError, match="unknown"):
        GNeRVConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_render_batches_and_uint8():
    model = GNeRV(GNeRVConfig(36, 64, c0=8)).eval()
    a = render(model, [0, 1, 2, 3, 4], n_frames=5, batch_size=2)
    b = model(frame_times(torch.arange(5), 5)).detach()
    assert torch.allclose(a, b, atol=1e-6)
    u = to_uint8(a)
    assert u.dtype == torch.uint8 and u.shape == (5, 36, 64, 3)


# --------------------------------------------------------------------------------------------
# The paper's layout: its parameter counts (Tables 3 and 4) and MACs (Table 3)
# --------------------------------------------------------------------------------------------

# (height, width, C0, parameters in M) as the paper prints them (gnerv.codec.config).
PAPER_SIZES = [(h, w, c0, params_m) for _, h, w, c0, params_m, _ in PAPER_COUNTS]


@pytest.mark.parametrize("height, width, c0, params_m", PAPER_SIZES)
def test_paper_layout_has_the_papers_parameter_counts(height, width, c0, params_m):
    cfg = GNeRVConfig(height, width, c0=c0, layout="paper")
    assert count_params(cfg) / 1e6 == pytest.approx(params_m, rel=0.01)
    with torch.device("meta"):
        model = GNeRV(cfg)
    assert sum(p.numel() for p in model.parameters()) == count_params(cfg)


def test_paper_layout_has_the_papers_macs_at_1080p():
    # Table 3: 54.80 GMACs per frame for C0 = 160. Ours leave out the distribution shift's own
    # per-element work, about 2 x 37M operations here, which is the remaining -0.14 %.
    cfg = GNeRVConfig(1080, 1920, c0=160, layout="paper")
    assert macs_per_frame(cfg) / 1e9 == pytest.approx(54.80, rel=0.005)


@pytest.mark.parametrize("hw", [(720, 1280), (90, 160), (36, 64)])
@pytest.mark.parametrize("c0", [4, 7, 20, 33])
def test_count_params_is_the_built_models_in_both_layouts(hw, c0):
    for layout in ("wide", "paper"):
        cfg = GNeRVConfig(*hw, c0=c0, min_channels=8, layout=layout)
        with torch.device("meta"):
            model = GNeRV(cfg)
        assert count_params(cfg) == sum(p.numel() for p in model.parameters())


def test_paper_layout_structure():
    cfg = GNeRVConfig(720, 1280, c0=40, layout="paper")
    assert cfg.channels == [40, 80, 40, 30, 30, 30]  # same schedule and floor as "wide"
    model = GNeRV(cfg)
    grow, shrink, floor = model.blocks[0], model.blocks[2], model.blocks[3]
    # growing: Conv(C_in -> (C_in // 4) r^2), PixelShuffle, Conv(C_in // 4 -> C_out)
    assert grow.grows
    assert grow.conv1.weight.shape[:2] == (10 * 25, 40)
    assert grow.conv2.weight.shape[:2] == (80, 10)
    # shrinking: as in "wide"
    assert not shrink.grows
    assert shrink.conv1.weight.shape[:2] == (30, 40)
    assert shrink.conv2.weight.shape[:2] == (30 * 4, 30)
    # channels that stay at the floor take the growing form: 30 -> 30 // 4 = 7 -> 30
    assert floor.grows
    assert floor.conv1.weight.shape[:2] == (7 * 4, 30)
    assert floor.conv2.weight.shape[:2] == (30, 7)
    assert model.head.weight.shape == (3, 30, 1, 1)
    linears = [m for m in model.ds_shared.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.weight.shape for m in linears] == [(40, 40), (40, 40)]  # PE -> 40 -> 40


def test_paper_layout_forward_gives_frames():
    cfg = GNeRVConfig(240, 320, c0=8, min_channels=8, layout="paper")
    assert cfg.channels == [8, 16, 8, 8, 8, 8]  # growing, shrinking and equal-channel blocks
    model = GNeRV(cfg)
    out = model(torch.tensor([0.0, 0.5, 1.0]))
    assert out.shape == (3, 3, 240, 320)
    assert 0 <= out.min() and out.max() <= 1
    assert not torch.allclose(out[0], out[2])


def test_model_size_picks_c0_in_the_paper_layout():
    target = parse_param_count("4.66M")
    assert c0_for_size(target, height=1080, width=1920, layout="paper") == 160
    c0 = c0_for_size(500_000, height=720, width=1280, layout="paper")
    counts = [count_params(GNeRVConfig(720, 1280, c0=c, layout="paper")) for c in (c0 - 1, c0 + 1)]
    assert counts[0] < 500_000 < counts[1]
    with pytest.raises(GnervError, match="at c0=4"):
        c0_for_size(1_000, height=720, width=1280, layout="paper")


def test_layout_is_checked_and_round_trips():
    with pytest.raises(GnervError, match="layout 'narrow' is not one of: wide, paper"):
        GNeRVConfig(90, 160, c0=8, layout="narrow")
    with pytest.raises(GnervError, match="paper layout needs both >= 4"):
        GNeRVConfig(90, 160, c0=3, layout="paper")
    assert GNeRVConfig(90, 160, c0=8).layout == "wide"
    cfg = GNeRVConfig(90, 160, c0=8, min_channels=8, layout="paper")
    assert GNeRVConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("layout", "residual", "hw"),
    [("wide", False, (90, 160)), ("paper", False, (36, 64)), ("wide", True, (36, 64))],
)
def test_inference_shuffle_gives_the_same_bits(monkeypatch, layout, residual, hw):
    """The lean inference forward (conv_shuffle_nhwc, in-place GELU, shift and sigmoid) reorders
    data and reuses buffers only: a decode shows the very floats of the forward as in training,
    so old files decode as before."""
    cfg = GNeRVConfig(height=hw[0], width=hw[1], c0=16, layout=layout, residual=residual)
    torch.manual_seed(3)
    model = GNeRV(cfg)
    with torch.no_grad():  # away from the residual head's zero start
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model = for_inference(model, "cpu")
    t = frame_times(torch.arange(6), 6)
    calls = []
    fast = kernels.conv_shuffle_nhwc
    monkeypatch.setattr(kernels, "conv_shuffle_nhwc", lambda *a: calls.append(1) or fast(*a))
    with torch.inference_mode():
        plain = kernels.forward(model, t, "reference")
        assert not calls
        blocked = kernels.forward(model, t, "lean")
    assert len(calls) == len(cfg.upscale_factors)  # every block took the blocked shuffle
    assert torch.equal(plain, blocked)
    assert blocked.is_contiguous(memory_format=torch.channels_last)
    # The blocked weights are kept between calls; a weight that changes is picked up.
    with torch.no_grad():
        model.blocks[-1].conv2.weight.mul_(1.5)
    with torch.inference_mode():
        plain = kernels.forward(model, t, "reference")
        assert torch.equal(plain, kernels.forward(model, t, "lean"))
    # Where torch lacks the private conv entry point, the lean path falls back to torch's own
    # shuffle: the same bits again.
    monkeypatch.setattr(kernels, "has_blocked_conv", lambda: False)
    calls.clear()
    with torch.inference_mode():
        assert torch.equal(plain, kernels.forward(model, t, "lean"))
    assert not calls
