"""Entropy coding of integer tensors: exact round trips, efficiency, compact tables, corruption."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gnerv.codec.entropy import (
    MODE_ANS,
    MODE_CONST,
    MODE_RAW,
    BlobInfo,
    blob_info,
    coded_size_bound,
    decode_symbols,
    empirical_entropy_bits,
    encode_symbols,
)
from gnerv.runtime.errors import GnervError


def _laplace(n: int, alphabet: int, scale: float, seed: int = 0) -> np.ndarray:
    """Laplacian-like symbols around the alphabet's middle, like quantized weights."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.laplace(alphabet // 2, scale, n))
    return np.clip(x, 0, alphabet - 1).astype(np.int32)


def _round_trip(x: np.ndarray, alphabet: int) -> bytes:
    blob = encode_symbols(x, alphabet)
    y = decode_symbols(blob, x.size, alphabet)
    assert y.dtype == np.int32 and y.shape == (x.size,)
    np.testing.assert_array_equal(y, x.reshape(-1))
    assert len(blob) <= coded_size_bound(x.size, alphabet)
    return blob


@pytest.mark.parametrize("n", [1, 2, 100, 1_000_000])
@pytest.mark.parametrize("alphabet", [256, 65536])
@pytest.mark.parametrize("scale", [0.3, 4.0, 1e5])
def test_round_trip_sizes_and_skews(n: int, alphabet: int, scale: float) -> None:
    _round_trip(_laplace(n, alphabet, scale * alphabet / 256, seed=n), alphabet)


def test_round_trip_uniform_and_extremes() -> None:
    rng = np.random.default_rng(1)
    for alphabet in (2, 3, 256, 65536):
        _round_trip(rng.integers(0, alphabet, 5000).astype(np.int32), alphabet)
        _round_trip(np.array([0, alphabet - 1] * 50, dtype=np.int32), alphabet)
    # other integer dtypes and shapes are accepted and flattened in C order
    x = rng.integers(0, 256, (4, 5, 6)).astype(np.uint8)
    _round_trip(x, 256)
    _round_trip(x.astype(np.int64), 256)


@pytest.mark.parametrize("alphabet", [1, 256, 65536])
def test_all_same_symbol_has_no_payload(alphabet: int) -> None:
    x = np.full(100_000, alphabet - 1, dtype=np.int32)
    blob = _round_trip(x, alphabet)
    assert blob[0] == MODE_CONST and len(blob) <= 4
    assert blob_info(blob, x.size).payload_bytes == 0


def test_empty() -> None:
    assert encode_symbols(np.zeros(0, np.int32), 256) == b""
    assert decode_symbols(b"", 0, 256).shape == (0,)
    with pytest.raises(GnervError):
        decode_symbols(b"\x00\x00", 0, 256)
    with pytest.raises(GnervError):
        decode_symbols(b"", 3, 256)


@settings(max_examples=300, deadline=None)
@given(
    bits=st.integers(1, 16),
    data=st.data(),
)
def test_round_trip_property(bits: int, data: st.DataObject) -> None:
    alphabet = 1 << bits
    lo = data.draw(st.integers(0, alphabet - 1))
    hi = data.draw(st.integers(lo, min(alphabet - 1, lo + data.draw(st.sampled_from([1, 7, 300])))))
    values = data.draw(st.lists(st.integers(lo, hi), min_size=0, max_size=400))
    _round_trip(np.array(values, dtype=np.int32), alphabet)


def test_payload_close_to_entropy() -> None:
    x = _laplace(1_000_000, 256, 4.0)
    blob = encode_symbols(x, 256)
    info = blob_info(blob, x.size)
    assert info.mode == "ans"
    ideal = empirical_entropy_bits(x, 256)
    assert 8 * info.payload_bytes <= 1.01 * ideal
    assert info.table_bytes < 400


def test_blob_info_splits_every_mode_from_the_head() -> None:
    rng = np.random.default_rng(3)
    raw = encode_symbols(rng.integers(10, 14, 1001).astype(np.int32), 256)
    ans = encode_symbols(_laplace(5000, 256, 2.0), 256)
    const = encode_symbols(np.full(7, 9, np.int32), 256)
    assert blob_info(b"", 0) == BlobInfo("empty", 0, 0)
    assert blob_info(const, 7) == BlobInfo("const", len(const), 0)
    assert blob_info(raw, 1001) == BlobInfo("raw", 3, (1001 * 2 + 7) // 8)  # mode, lo, width
    info = blob_info(ans, 5000)
    assert info.mode == "ans" and info.total_bytes == len(ans)
    assert info.payload_bytes % 4 == 0 and info.payload_bytes > 0
    # only the head is read: a cut payload still splits, a cut head does not
    assert blob_info(raw[:10], 1001) == BlobInfo("raw", 3, 7)
    with pytest.raises(GnervError, match="truncated"):
        blob_info(ans[:3], 5000)
    with pytest.raises(GnervError, match="unknown mode"):
        blob_info(b"\x0a\x00", 5)


def test_small_tensor_pays_little_for_tables() -> None:
    for seed in range(20):
        x = _laplace(50, 256, 4.0, seed)
        blob = _round_trip(x, 256)
        assert len(blob) <= 50 + 4  # never worse than 8-bit raw packing + a few bytes
    x = _laplace(50, 65536, 200.0)
    assert len(_round_trip(x, 65536)) <= 100 + 5


def test_mode_is_the_shorter_one() -> None:
    # near-uniform over a narrow range: bit packing wins; skewed and long: ANS wins
    rng = np.random.default_rng(2)
    assert encode_symbols(rng.integers(0, 4, 1000).astype(np.int32), 256)[0] == MODE_RAW
    assert encode_symbols(_laplace(1000, 256, 2.0), 256)[0] == MODE_ANS


def test_entropy_values() -> None:
    assert empirical_entropy_bits(np.zeros(10, np.int32), 256) == 0.0
    assert empirical_entropy_bits(np.array([0, 1] * 8, np.int32), 2) == pytest.approx(16.0)
    assert empirical_entropy_bits(np.arange(256, dtype=np.int32), 256) == pytest.approx(2048.0)


def test_deterministic_and_golden() -> None:
    x = _laplace(200_000, 256, 3.0)
    assert encode_symbols(x, 256) == encode_symbols(x.copy(), 256)
    # a fixed blob: catches an accidental format change (or a coder default changing)
    base = np.repeat(np.arange(4), [150, 30, 15, 5]).astype(np.int32) + 100
    y = base[(np.arange(200) * 37) % 200]
    golden = bytes.fromhex(
        "02640496011e0f0508b45c7fddcf280e376b0024ea2f5aa330878b4eb9502c3b1d5b9661a220e9c900"
    )
    assert encode_symbols(y, 256) == golden
    np.testing.assert_array_equal(decode_symbols(golden, 200, 256), y)


@pytest.mark.parametrize(
    "args",
    [
        (np.array([0, 256]), 256),
        (np.array([-1, 2]), 256),
        (np.array([0.0, 1.0]), 256),
        (np.array([True, False]), 256),
        (np.array([0, 1]), 0),
        (np.array([0, 1]), 65537),
    ],
)
def test_encode_refuses_bad_input(args: tuple[np.ndarray, int]) -> None:
    with pytest.raises(GnervError):
        encode_symbols(*args)


def test_decode_refuses_bad_parameters() -> None:
    blob = encode_symbols(np.array([1, 2, 3]), 256)
    for count, alphabet in [(2**31 + 1, 256), (-1, 256), (3, 2**16 + 1), (3, 0)]:
        with pytest.raises(GnervError):
            decode_symbols(blob, count, alphabet)


def _ans_blob() -> tuple[bytes, int]:
    x = _laplace(300, 256, 3.0, seed=9)
    blob = encode_symbols(x, 256)
    assert blob[0] == MODE_ANS
    return blob, x.size


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda b: bytes([10]) + b[1:], "mode"),
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b + b"\x00\x00\x00\x00", "trailing"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[:-4], "truncated"),
        (lambda b: b[:3], "truncated"),
    ],
)
def test_decode_refuses_specific_corruptions(mutate: Callable[[bytes], bytes], match: str) -> None:
    blob, n = _ans_blob()
    with pytest.raises(GnervError, match=match):
        decode_symbols(mutate(blob), n, 256)


def test_decode_refuses_inconsistent_tables() -> None:
    _, n = _ans_blob()
    words = b"\x01\x00\x00\x00"
    with pytest.raises(GnervError, match="sum"):  # counts sum to 3, not n
        decode_symbols(bytes([MODE_ANS, 10, 2, 1, 2, 1]) + words, n, 256)
    with pytest.raises(GnervError, match="range"):  # lo + range beyond the alphabet
        decode_symbols(bytes([MODE_ANS, 250, 10]) + b"\x01" * 10 + words, 10, 256)
    with pytest.raises(GnervError, match="range"):  # a one-symbol range is CONST's job
        decode_symbols(bytes([MODE_ANS, 3, 1, 5, 1]) + words, 5, 256)
    with pytest.raises(GnervError, match="zero count"):
        decode_symbols(bytes([MODE_ANS, 3, 2, 0, 5, 1]) + words, 5, 256)
    with pytest.raises(GnervError, match="varint"):  # 6-byte varint
        decode_symbols(bytes([MODE_CONST]) + b"\xff" * 5 + b"\x01", 5, 256)
    with pytest.raises(GnervError, match="outside"):
        decode_symbols(bytes([MODE_CONST, 0x80, 0x02]), 5, 256)  # value 256
    with pytest.raises(GnervError, match="width"):
        decode_symbols(bytes([MODE_RAW, 0, 17]) + b"\x00" * 20, 5, 256)
    with pytest.raises(GnervError, match="outside"):  # raw symbol 0 + 255 + lo 1 = 256
        decode_symbols(bytes([MODE_RAW, 1, 8, 255]), 1, 256)
    with pytest.raises(GnervError, match="padding"):
        decode_symbols(bytes([MODE_RAW, 0, 3, 0b00000001]), 2, 256)
    with pytest.raises(GnervError, match="truncated"):  # huge claimed range, tiny blob
        decode_symbols(bytes([MODE_ANS, 0, 0x80, 0x80, 0x04]), 10, 65536)


def test_mutation_fuzz_only_gnerv_errors() -> None:
    """~2000 corrupt variants: each either raises GnervError or decodes to in-range symbols."""
    rng = np.random.default_rng(1234)
    cases = [
        (_laplace(300, 256, 3.0, seed=9), 256),
        (_laplace(40, 256, 3.0, seed=3), 256),
        (_laplace(200, 65536, 50.0, seed=4), 65536),
        (np.full(10, 5, np.int32), 256),
    ]
    variants = 0
    for x, alphabet in cases:
        blob = encode_symbols(x, alphabet)
        mutated: list[bytes] = [blob[:i] for i in range(len(blob))]  # every truncation
        for _ in range(450):
            b = bytearray(blob)
            kind = rng.integers(0, 4)
            if kind == 0:  # flip some bytes
                for pos in rng.integers(0, len(b), rng.integers(1, 4)):
                    b[pos] ^= int(rng.integers(1, 256))
            elif kind == 1:  # random byte values in the header
                b[int(rng.integers(0, min(len(b), 8)))] = int(rng.integers(0, 256))
            elif kind == 2:  # insert or append garbage
                pos = int(rng.integers(0, len(b) + 1))
                b[pos:pos] = rng.integers(0, 256, rng.integers(1, 9)).astype(np.uint8).tobytes()
            else:  # delete a span
                pos = int(rng.integers(0, len(b)))
                del b[pos : pos + int(rng.integers(1, 5))]
            mutated.append(bytes(b))
        for bad in mutated:
            variants += 1
            try:
                y = decode_symbols(bad, x.size, alphabet)
            except GnervError:
                continue
            assert y.dtype == np.int32 and y.shape == (x.size,)
            assert y.min() >= 0 and y.max() < alphabet
    assert variants >= 1800


# ------------------------------------------- format 4: parametric modes with integer tables

# SHA-256 of parametric_table(mode, lo, n, m, k) as little-endian int64, computed once: any
# change to the tables' arithmetic (or a platform that computes it differently) fails here.
PINNED_TABLES = {
    (8, 0, 2, 0, 0): "4e2f2704e50e1576c5c0fd2e00e42939da91fcb985657767773a8587171e54b5",
    (8, 3, 17, 37, 60): "6f9fdeee4b9e06908b48686f7ea67399d1e63fa4fe49012b8b68602e1a5df1a8",
    (8, 0, 256, 2048, 64): "4ef352854137cfcb3af2fa9cb3a57a63480deb4fa34e3ab990f18ee49c2f3e8d",
    (8, 100, 1000, 7999, 120): "c84eca8fff67f3540fc85ef4fa498ca8f07e68ce4e09e26c7c6a7cce39e39a72",
    (9, 0, 2, 16, 192): "0943c0dad518f979a031fda61fd42b0888d90f4eacd7d9e694b3a6da99925dd7",
    (9, 3, 17, 37, 60): "5458b8382249b17457a320158912164c391f83dc7f020c28d34756a03b6688ad",
    (9, 0, 256, 2041, 40): "c9ab7b72a14081eb58ff8f3f9ea40d4ebbf29ce16498e5e77090ada27373e653",
    (9, 5, 65531, 480003, 150): "b5db7c7b00f353c1ab2c23ad947c4964606165a8c14bf7f02d2ef64f7d4cbd43",
}
# ... and of whole blobs (the table, constriction's quantization of it and its coder) for symbols
# from numpy's PCG64 stream, which numpy keeps stable.
PINNED_BLOBS = {
    "laplace": (8, 2516, "851461a7c24a92107634d7768f24bf751cfa6008679376241f77555ed069d74c"),
    "gaussian": (9, 2912, "f10ada7e555c2670dc593c83ca6ceee670682ce1adaf1ba401db19ae28e0183e"),
}


def _pinned_symbols() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2026)
    lap = np.clip(np.rint(rng.laplace(0, 3.0, 5000)), -40, 40) + 64
    gau = np.clip(np.rint(rng.normal(0, 6.0, 5000)), -40, 40) + 64
    return {"laplace": lap.astype(np.int32), "gaussian": gau.astype(np.int32)}


@pytest.mark.parametrize("case", sorted(PINNED_TABLES))
def test_integer_tables_are_pinned(case: tuple[int, int, int, int, int]) -> None:
    import hashlib

    from gnerv.codec.entropy import TABLE_BITS, parametric_table

    table = parametric_table(*case)
    assert table.dtype == np.int64 and table.shape == (case[2],)
    assert int(table.sum()) == 1 << TABLE_BITS and int(table.min()) >= 1
    digest = hashlib.sha256(table.astype("<i8").tobytes()).hexdigest()
    assert digest == PINNED_TABLES[case]


def test_integer_tables_are_shaped_like_their_densities() -> None:
    from gnerv.codec.entropy import MODE_GAUSSIAN_T, MODE_LAPLACE_T, parametric_table

    for mode in (MODE_LAPLACE_T, MODE_GAUSSIAN_T):
        t = parametric_table(mode, 0, 41, 16 * 20, 8 * 9)  # mean 20, scale 2
        assert int(np.argmax(t)) == 20 and np.array_equal(t[:20], t[21:][::-1])
        assert (np.diff(t[:21]) >= 0).all()
        wide = parametric_table(mode, 0, 41, 16 * 20, 8 * 12)  # scale 16: flatter
        assert wide.max() < t.max()
    # a narrow Laplace: successive entries fall by about exp(-1 / scale)
    t = parametric_table(MODE_LAPLACE_T, 0, 9, 0, 8 * 8).astype(np.float64)  # scale 1
    np.testing.assert_allclose(t[2:6] / t[1:5], np.exp(-1.0), rtol=1e-3)
    # the scale's extremes: everything on one symbol (others 1), or nearly uniform
    sharp = parametric_table(MODE_GAUSSIAN_T, 0, 300, 16 * 7, 0)
    assert (np.delete(sharp, 7) == 1).all()
    flat = parametric_table(MODE_LAPLACE_T, 0, 300, 0, 192)
    assert flat.max() - flat.min() < flat.min() // 100
    with pytest.raises(GnervError):
        parametric_table(MODE_LAPLACE_T, 0, 4, 16 * 3 + 1, 0)  # mean past the top symbol
    with pytest.raises(GnervError):
        parametric_table(MODE_LAPLACE_T, 0, 4, 0, 193)
    with pytest.raises(GnervError):
        parametric_table(6, 0, 4, 0, 0)  # format 3's float mode has no integer table


@pytest.mark.parametrize("kind", sorted(PINNED_BLOBS))
def test_integer_table_blobs_are_pinned_and_round_trip(kind: str) -> None:
    import hashlib

    sym = _pinned_symbols()[kind]
    blob = encode_symbols(sym, 128, parametric=True)
    mode, length, digest = PINNED_BLOBS[kind]
    assert (blob[0], len(blob), hashlib.sha256(blob).hexdigest()) == (mode, length, digest)
    np.testing.assert_array_equal(decode_symbols(blob, sym.size, 128), sym)
    info = blob_info(blob, sym.size)
    assert info.mode == kind and info.table_bytes <= 8 and info.total_bytes == len(blob)


@pytest.mark.parametrize("alphabet", [4, 256, 65536])
@pytest.mark.parametrize("scale", [0.2, 1.5, 30.0])
@pytest.mark.parametrize("gaussian", [False, True])
def test_integer_table_modes_round_trip(alphabet: int, scale: float, gaussian: bool) -> None:
    from gnerv.codec.entropy import MODE_GAUSSIAN_T, MODE_LAPLACE_T, _encode_compact

    rng = np.random.default_rng(int(scale * 10) + alphabet)
    x = rng.normal(0, scale, 3000) if gaussian else rng.laplace(0, scale, 3000)
    sym = np.clip(np.rint(x) + alphabet // 2, 0, alphabet - 1).astype(np.int32)
    lo, hi = int(sym.min()), int(sym.max())
    if lo == hi:
        sym[0] = hi + 1 if hi + 1 < alphabet else lo - 1
        lo, hi = int(sym.min()), int(sym.max())
    blob = _encode_compact(sym, lo, hi)  # the shortest of the tabled Laplace and Gaussian
    assert blob[0] in (MODE_LAPLACE_T, MODE_GAUSSIAN_T)
    np.testing.assert_array_equal(decode_symbols(blob, sym.size, alphabet), sym)
    # as short as format 3's float-table blob, within a few bytes and 1 %, unless clipping piled
    # symbols at the range's ends (format 3's models add the tails' mass to the end symbols)
    if alphabet > 4 * scale * 20:
        old = _encode_compact(sym, lo, hi, tabled=False)
        assert len(blob) <= len(old) * 1.01 + 4


def test_format_3_compact_blobs_still_decode_through_the_float_models() -> None:
    from gnerv.codec.entropy import MODE_GAUSSIAN_Q, MODE_LAPLACE_Q, _encode_compact

    for sym in _pinned_symbols().values():
        lo, hi = int(sym.min()), int(sym.max())
        old = _encode_compact(sym, lo, hi, tabled=False)
        assert old[0] in (MODE_LAPLACE_Q, MODE_GAUSSIAN_Q)
        np.testing.assert_array_equal(decode_symbols(old, sym.size, 128), sym)
        assert blob_info(old, sym.size).mode in ("laplace", "gaussian")


def test_integer_table_blob_refuses_bad_parameters() -> None:
    sym = _pinned_symbols()["laplace"]
    blob = encode_symbols(sym, 128, parametric=True)
    with pytest.raises(GnervError, match="symbol range"):
        decode_symbols(blob, sym.size, 64)  # lo + n past the alphabet
    with pytest.raises(GnervError, match="scale code 200"):
        decode_symbols(bytes([8, 0, 2, 0, 200, 0]), 3, 4)
    with pytest.raises(GnervError, match="mean code 17"):
        decode_symbols(bytes([9, 0, 2, 17, 0, 0]), 3, 4)


def test_integer_table_blob_mutations_only_gnerv_errors() -> None:
    rng = np.random.default_rng(77)
    for sym in _pinned_symbols().values():
        blob = encode_symbols(sym[:400], 128, parametric=True)
        assert blob[0] in (8, 9)
        for i in range(300):
            b = bytearray(blob)
            if i < len(blob) and i < 40:
                bad = bytes(b[:i])  # truncations
            else:
                for pos in rng.integers(0, min(len(b), 12), rng.integers(1, 3)):
                    b[pos] ^= int(rng.integers(1, 256))
                bad = bytes(b)
            try:
                y = decode_symbols(bad, 400, 128)
            except GnervError:
                continue
            assert y.dtype == np.int32 and y.min() >= 0 and y.max() < 128
