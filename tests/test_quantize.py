"""Per-channel uniform quantization: error bound, channel layout, edge cases, whole models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnerv.codec.entropy import decode_symbols, encode_symbols
from gnerv.codec.quantize import (
    QuantizedTensor,
    channel_scales,
    coding_shape,
    dequantize_tensor,
    dequantized_state_dict,
    num_channels,
    quantize_model,
    quantize_tensor,
)
from gnerv.runtime.errors import GnervError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _max_err_ok(x: torch.Tensor, q: QuantizedTensor) -> None:
    """|x - dequant(q)| <= scale/2 per element (plus float32 rounding of the reconstruction)."""
    y = dequantize_tensor(q)
    assert y.dtype == torch.float32 and tuple(y.shape) == tuple(x.shape)
    channels = q.mins.size
    scales = channel_scales(q.mins, q.maxs, q.bits).astype(np.float64)
    err = (x.double() - y.double()).abs().numpy().reshape(channels, -1)
    mag = np.maximum(np.abs(q.mins), np.abs(q.maxs)).astype(np.float64)
    bound = scales / 2 * (1 + 1e-6) + 4 * np.finfo(np.float32).eps * mag
    assert (err <= bound[:, None]).all(), float((err - bound[:, None]).max())


@pytest.mark.parametrize("shape", [(8, 4, 3, 3), (16, 32), (4, 9, 16), (5,), ()])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_error_within_half_step(shape: tuple[int, ...], bits: int) -> None:
    x = torch.randn(shape, generator=_gen(1)) * 0.3 + 0.1
    q = quantize_tensor("w", x, bits)
    assert q.symbols.dtype == np.int32 and q.symbols.shape == (x.numel(),)
    assert q.symbols.min() >= 0 and q.symbols.max() <= 2**bits - 1
    assert q.mins.dtype == np.float32 and q.maxs.dtype == np.float32
    _max_err_ok(x, q)


def test_conv_weight_min_max_per_output_channel() -> None:
    x = torch.randn(8, 4, 3, 3, generator=_gen(2))
    x[3] *= 10  # one channel with a much wider range must not widen the others
    q = quantize_tensor("conv.weight", x)
    assert q.mins.shape == (8,) and q.maxs.shape == (8,)
    np.testing.assert_array_equal(q.mins, x.amin(dim=(1, 2, 3)).numpy())
    np.testing.assert_array_equal(q.maxs, x.amax(dim=(1, 2, 3)).numpy())
    sym = q.symbols.reshape(8, -1)
    assert (sym.min(axis=1) == 0).all() and (sym.max(axis=1) == 255).all()
    _max_err_ok(x, q)


def test_bias_and_scalar_are_one_channel() -> None:
    b = torch.linspace(-1, 3, 17)
    q = quantize_tensor("bias", b)
    assert q.mins.shape == (1,) and q.mins[0] == -1 and q.maxs[0] == 3
    assert q.symbols[0] == 0 and q.symbols[-1] == 255
    s = quantize_tensor("scalar", torch.tensor(2.5))
    assert s.shape == () and s.mins.shape == (1,)
    assert dequantize_tensor(s).shape == () and float(dequantize_tensor(s)) == 2.5


def test_constant_channel_is_exact_and_symbol_zero() -> None:
    x = torch.randn(3, 10, generator=_gen(3))
    x[1] = 0.7
    q = quantize_tensor("w", x)
    assert (q.symbols.reshape(3, -1)[1] == 0).all()
    y = dequantize_tensor(q)
    assert (y[1] == torch.tensor(0.7, dtype=torch.float32)).all()
    assert torch.isfinite(y).all()
    z = quantize_tensor("zeros", torch.zeros(4, 5))
    assert (z.symbols == 0).all() and (dequantize_tensor(z) == 0).all()


def test_empty_tensors() -> None:
    for shape in [(0,), (0, 3), (3, 0)]:
        q = quantize_tensor("e", torch.zeros(shape))
        assert q.symbols.size == 0 and tuple(dequantize_tensor(q).shape) == shape


@pytest.mark.parametrize("bits", range(2, 17))
def test_all_bit_depths(bits: int) -> None:
    x = torch.randn(4, 50, generator=_gen(bits))
    q = quantize_tensor("w", x, bits)
    assert q.symbols.max() == 2**bits - 1 and q.alphabet_size == 2**bits
    _max_err_ok(x, q)


@pytest.mark.parametrize("bits", [0, 1, 17, 32, True, 8.0, "8"])
def test_bad_bits(bits: object) -> None:
    with pytest.raises(GnervError, match="bits"):
        quantize_tensor("w", torch.zeros(3), bits)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_names_tensor(bad: float) -> None:
    x = torch.zeros(2, 3)
    x[1, 2] = bad
    with pytest.raises(GnervError, match="blocks.3.conv.weight"):
        quantize_tensor("blocks.3.conv.weight", x)


def test_non_float_refused() -> None:
    with pytest.raises(GnervError, match="num_batches_tracked"):  # an integer buffer
        quantize_model(torch.nn.BatchNorm1d(2))


def test_float64_and_half_inputs() -> None:
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        x = torch.randn(6, 7, generator=_gen(4)).to(dtype)
        q = quantize_tensor("w", x)
        _max_err_ok(x.float(), q)


def test_deterministic() -> None:
    x = torch.randn(8, 4, 3, 3, generator=_gen(5))
    a, b = quantize_tensor("w", x), quantize_tensor("w", x.clone())
    np.testing.assert_array_equal(a.symbols, b.symbols)
    assert torch.equal(dequantize_tensor(a), dequantize_tensor(b))


def test_state_dict_round_trip_keeps_order() -> None:
    net = torch.nn.ModuleDict(
        {
            "z": torch.nn.ParameterDict({"weight": torch.randn(4, 3)}),
            "a": torch.nn.ParameterDict({"bias": torch.randn(4)}),
            "m": torch.nn.ParameterDict({"emb": torch.randn(2, 5, 5)}),
        }
    )
    sd = net.state_dict()
    assert list(sd) == ["z.weight", "a.bias", "m.emb"]
    qs = quantize_model(net)
    assert [q.name for q in qs] == list(sd)
    shapes = [tuple(t.shape) for t in sd.values()]
    out = dequantized_state_dict(qs, shapes)
    assert list(out) == list(sd)
    for k in sd:
        _max_err_ok(sd[k], qs[list(sd).index(k)])
    with pytest.raises(GnervError, match="twice"):
        dequantized_state_dict(qs + qs[:1], shapes + shapes[:1])


def _net() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.GELU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.GELU(),
        torch.nn.Conv2d(8, 3, 1),
    )


def test_quantize_model_and_load_it_back() -> None:
    net = _net()
    x = torch.randn(2, 3, 16, 16, generator=_gen(6))
    with torch.no_grad():
        before = net(x)
    weight_id = net[0].weight.data_ptr()
    qs = quantize_model(net, 8)
    shapes = [tuple(t.shape) for t in net.state_dict().values()]
    rebuilt = dequantized_state_dict(qs, shapes)
    net.load_state_dict(rebuilt)
    assert net[0].weight.data_ptr() == weight_id  # same storage, changed values
    with torch.no_grad():
        after = net(x)
    rel = (after - before).norm() / before.norm()
    assert 0 < rel < 0.02
    # the model now holds exactly what a decoder rebuilds from the quantized tensors
    for name, t in net.state_dict().items():
        assert torch.equal(t, rebuilt[name]), name
    # re-quantizing the quantized weights gives the same symbols
    again = quantize_model(net, 8)
    for a, b in zip(qs, again, strict=True):
        np.testing.assert_array_equal(a.symbols, b.symbols)
        np.testing.assert_allclose(a.maxs, b.maxs, rtol=1e-6)


def test_through_entropy_coder_is_bit_exact() -> None:
    x = torch.randn(16, 8, 3, 3, generator=_gen(7)) * 0.05
    q = quantize_tensor("w", x)
    blob = encode_symbols(q.symbols, q.alphabet_size)
    sym = decode_symbols(blob, q.numel, q.alphabet_size)
    q2 = QuantizedTensor(q.name, q.shape, q.bits, sym, q.mins.copy(), q.maxs.copy())
    assert torch.equal(dequantize_tensor(q), dequantize_tensor(q2))


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("symbols", np.zeros(5, np.int32), "symbols for shape"),
        ("symbols", np.full(12, 256, np.int32), "outside"),
        ("symbols", np.zeros(12, np.float32), "integers"),
        ("mins", np.zeros(2, np.float32), "min/max pairs"),
        ("maxs", np.full(3, -1.0, np.float32), "below"),
        ("mins", np.array([0, np.nan, 0], np.float32), "non-finite"),
        ("bits", 20, "bits"),
    ],
)
def test_dequantize_refuses_inconsistent(field: str, value: object, match: str) -> None:
    q = quantize_tensor("w", torch.randn(3, 4, generator=_gen(8)))
    setattr(q, field, value)
    with pytest.raises(GnervError, match=match):
        dequantize_tensor(q)


def test_global_embedding_is_quantized_per_embedding_channel() -> None:
    emb = torch.randn(1, 6, 9, 16) * torch.arange(1, 7).view(1, 6, 1, 1)
    q = quantize_tensor("embedding", emb, 8)
    assert num_channels((1, 6, 9, 16)) == 6 and q.mins.shape == (6,)
    np.testing.assert_allclose(q.mins, emb.amin(dim=(0, 2, 3)).numpy())
    assert dequantize_tensor(q).shape == emb.shape


def test_coding_shape_drops_only_a_leading_singleton_of_3d_and_more() -> None:
    assert coding_shape((1, 6, 9, 16)) == (6, 9, 16) and num_channels((1, 6, 9, 16)) == 6
    assert coding_shape((1, 9, 16)) == (9, 16) and num_channels((1, 9, 16)) == 9
    for shape in [(1, 5), (1,), (), (8, 4, 3, 3), (2, 1, 3)]:
        assert coding_shape(shape) == shape
    assert [num_channels(s) for s in [(1, 5), (1,), (), (8, 4, 3, 3)]] == [1, 1, 1, 8]


def test_quantize_model_codes_the_embedding_in_its_coding_shape() -> None:
    net = torch.nn.Module()
    net.embedding = torch.nn.Parameter(torch.randn(1, 6, 9, 16, generator=_gen(9)))
    (q,) = quantize_model(net, 8)
    assert q.shape == (6, 9, 16) and q.mins.shape == (6,)
    (back,) = dequantized_state_dict([q], [(1, 6, 9, 16)]).values()
    assert back.shape == (1, 6, 9, 16)
    _max_err_ok(net.embedding.detach()[0], q)
