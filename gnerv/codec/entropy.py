"""Entropy coding of one tensor's integer symbols with a static, counted-frequency model.

Per tensor, the symbol counts are stored in a compact table and the symbols are coded with
constriction's ANS coder under ``Categorical(counts / total, perfect=False)``. Tensors for which
that does not pay (small or near-uniform ones) are bit-packed instead, and constant tensors cost
no payload at all: :func:`encode_symbols` builds the candidates and keeps the shortest.

Blob layout (``count`` and ``alphabet_size`` are known to the caller and are not stored; varints
are unsigned LEB128, at most 5 bytes, minimal length)::

    count == 0:  empty blob (zero bytes)
    CONST  (0):  u8 0 | varint value                                  every symbol == value
    RAW    (1):  u8 1 | varint lo | u8 width (1..16) | ceil(count * width / 8) bytes
                 symbol = lo + next `width` bits, MSB first; padding bits are zero
    ANS    (2):  u8 2 | varint lo | varint n (>= 2) | n x varint count_i | varint n_words
                 | n_words x u32 little-endian (constriction AnsCoder.get_compressed())
                 count_i = occurrences of symbol lo + i; count_0 and count_{n-1} are > 0;
                 sum(count_i) == count; lo + n <= alphabet_size.
                 Model: Categorical(count_i / sum as float64, perfect=False), symbols shifted by
                 -lo, encoded with encode_reverse so that decode() yields them in order.
    LAPLACE (3): u8 3 | varint lo | varint n (>= 2) | f32 mean | f32 scale | varint n_words
                 | n_words x u32 little-endian
                 A parametric model in place of the frequency table (8 bytes instead of n
                 counts): QuantizedLaplace(lo, lo + n - 1, mean, scale) over the symbols
                 themselves; lo <= mean <= lo + n - 1, scale in [2**-8, 2**16], both finite;
                 lo + n <= alphabet_size. Symbols outside the range cannot be coded.
    GAUSSIAN (4): as LAPLACE with QuantizedGaussian(lo, lo + n - 1, mean, scale = std).
    LAPLACE_Q (6): u8 6 | varint lo | varint n (>= 2) | varint m | u8 k | varint n_words
                 | n_words x u32 little-endian
                 LAPLACE with its two parameters coded in 2-3 bytes instead of 8: mean =
                 lo + m / 16 (m <= 16 * (n - 1)), scale = 2**(k / 8 - 8) (k <= 192, so the
                 scale is in [2**-8, 2**16]), computed exactly from tabled constants
                 (:func:`compact_scale`). Written by format 3 (format 4 writes LAPLACE_T /
                 GAUSSIAN_T instead).
    GAUSSIAN_Q (7): as LAPLACE_Q with QuantizedGaussian.
    LAPLACE_T (8): u8 8 | varint lo | varint n (>= 2) | varint m | u8 k | varint n_words
                 | n_words x u32 little-endian
                 LAPLACE_Q's parameters (mean lo + m / 16, scale 2**(k / 8 - 8)), but the model
                 is an integer frequency table that this module computes in int64 fixed point
                 (:func:`parametric_table`: no float, no platform's exp/erf), summing to
                 2**TABLE_BITS with every entry >= 1, coded as
                 Categorical(table / 2**TABLE_BITS, perfect=False) over symbol - lo (those floats
                 are exact, and constriction's quantization of them is IEEE + - * / and
                 truncation only). Written by format 4.
    GAUSSIAN_T (9): as LAPLACE_T with the Gaussian table.
    ANS_SCALED (5): as ANS, but the n counts are the frequencies at a lower precision: any
                 non-negative integers (count_0 and count_{n-1} > 0) whose ratios are the
                 model, not occurrences (so no sum check). The encoder scales the occurrences
                 to at most 2**p - 1 (every present symbol at least 1), p chosen to minimise
                 table + payload: a table of mostly one-byte entries, at a payload cost of the
                 rounding's KL divergence. Written by format 3 (the rate path) only.

Every blob is self-delimiting given ``count``, so blobs can be concatenated without framing; the
decoder insists on the exact length. Corrupt input raises :class:`GnervError` (never another
exception, a hang, or an allocation larger than ``count`` symbols / the blob); a corrupt ANS
payload may still decode to wrong symbols, which the bitstream's CRC catches.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import constriction
import numpy as np

from gnerv.runtime.errors import GnervError

MODE_CONST = 0
MODE_RAW = 1
MODE_ANS = 2
MODE_LAPLACE = 3
MODE_GAUSSIAN = 4
MODE_ANS_SCALED = 5
MODE_LAPLACE_Q = 6
MODE_GAUSSIAN_Q = 7
MODE_LAPLACE_T = 8
MODE_GAUSSIAN_T = 9
# The parametric modes: mode byte -> (name, constriction model class name).
_PARAMETRIC = {
    MODE_LAPLACE: ("laplace", "QuantizedLaplace"),
    MODE_GAUSSIAN: ("gaussian", "QuantizedGaussian"),
}
# ... and their compact forms (the parameters as small integer codes), which the encoder writes.
_COMPACT = {
    MODE_LAPLACE_Q: ("laplace", "QuantizedLaplace"),
    MODE_GAUSSIAN_Q: ("gaussian", "QuantizedGaussian"),
}
# ... and their exactly reproducible forms (integer tables, gnerv's own arithmetic), which the
# encoder writes from format 4 on: mode byte -> (name, the compact mode with the same parameters).
_TABLED = {
    MODE_LAPLACE_T: ("laplace", MODE_LAPLACE_Q),
    MODE_GAUSSIAN_T: ("gaussian", MODE_GAUSSIAN_Q),
}
MEAN_STEPS_PER_SYMBOL = 16  # the compact modes' mean resolution
SCALE_CODES_PER_OCTAVE = 8  # ... and their scale's: 2**(1/8) apart
SCALE_CODE_MAX = 192  # 2**16 = PARAMETRIC_MAX_SCALE; code 0 is 2**-8 = PARAMETRIC_MIN_SCALE
# 2**(j/8) for j = 0..7 as float32 constants (written out: no platform's pow() is involved)
_SCALE_FRACTIONS = np.array(
    [1.0, 1.0905077, 1.1892071, 1.2968396, 1.4142135, 1.5422108, 1.6817929, 1.8340081],
    dtype=np.float32,
)
# Their scale bounds, and the scales the encoder tries around the data's spread (mean absolute
# deviation for Laplace, standard deviation for Gaussian; 2**(1/8) apart; the shortest wins).
PARAMETRIC_MIN_SCALE = 2.0**-8
PARAMETRIC_MAX_SCALE = 2.0**16
_PARAMETRIC_TRIES = tuple(2.0 ** (k / 8) for k in range(-4, 5))
# The integer tables of LAPLACE_T / GAUSSIAN_T: fixed-point constants, written out (rounded from
# exact values once; what matters is that they never change, and they are used only in int64
# integer arithmetic, which is the same on every platform).
TABLE_BITS = 24  # the tables sum to 2**24
_LOG2E_Q32 = 6196328019  # round(log2(e) * 2**32)
_LN2_Q30 = 744261118  # round(ln(2) * 2**30)
_INV_SCALE_FRACTIONS_Q32 = (  # round(2**(-j/8) * 2**32) for j = 0..7
    4294967296, 3938502376, 3611622603, 3311872529,
    3037000500, 2784941738, 2553802834, 2341847524,
)  # fmt: skip
# A symbol's weight is the density summed at _BIN_POINTS points evenly spread over its bin
# [x - 1/2, x + 1/2] (the midpoint rule), in 1/32 of a symbol from x.
_BIN_POINTS = 8
_BIN_OFFSETS = np.arange(-_BIN_POINTS + 1, _BIN_POINTS, 2, dtype=np.int64) * (16 // _BIN_POINTS)
_Z_CAP = 1 << 23  # standardized distances beyond the nearest symbol's + 128: weight 0
_EXP_TERMS = 14  # terms of the alternating series of exp(-x), 0 <= x < ln 2, in Q30
_ZERO_WEIGHT_SHIFT = 40  # weights below 2**-40 of the largest are 0 (then 1 in the table)
# Precisions (bits of the largest entry) tried for an ANS_SCALED table.
_SCALED_PRECISIONS = range(2, 15)

MAX_ALPHABET = 1 << 16
MAX_COUNT = 1 << 31
_MAX_VARINT_BYTES = 5


# ----------------------------------------------------------------------------------- varints


def _varint(value: int) -> bytes:
    """Unsigned LEB128 of one non-negative integer."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varints(values: np.ndarray) -> bytes:
    """Unsigned LEB128 of many non-negative integers (< 2**35), vectorized."""
    v = np.asarray(values, dtype=np.uint64)
    if v.size == 0:
        return b""
    nbytes = np.ones(v.size, dtype=np.int64)
    for j in range(1, _MAX_VARINT_BYTES):
        nbytes += v >= np.uint64(1 << (7 * j))
    starts = np.concatenate(([0], np.cumsum(nbytes)[:-1]))
    out = np.zeros(int(nbytes.sum()), dtype=np.uint8)
    for j in range(int(nbytes.max())):
        sel = nbytes > j
        chunk = (v[sel] >> np.uint64(7 * j)) & np.uint64(0x7F)
        cont = (nbytes[sel] > j + 1).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + j] = (chunk | cont).astype(np.uint8)
    return out.tobytes()


class _Reader:
    """Bounds-checked reading of a blob; every failure is a GnervError."""

    def __init__(self, blob: bytes) -> None:
        self.buf = memoryview(blob)
        self.pos = 0

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def u8(self, what: str) -> int:
        if self.pos >= len(self.buf):
            raise GnervError(f"entropy blob truncated while reading {what}")
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or n > self.remaining():
            raise GnervError(
                f"entropy blob truncated: {what} needs {n} bytes, {self.remaining()} left"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self, what: str) -> int:
        value = 0
        for j in range(_MAX_VARINT_BYTES):
            byte = self.u8(what)
            value |= (byte & 0x7F) << (7 * j)
            if not byte & 0x80:
                if byte == 0 and j > 0:
                    raise GnervError(f"entropy blob: non-minimal varint for {what}")
                return value
        raise GnervError(f"entropy blob: varint for {what} longer than {_MAX_VARINT_BYTES} bytes")

    def varints(self, n: int, what: str) -> np.ndarray:
        """``n`` varints as int64, vectorized (the counts table can have 65536 entries)."""
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        # each varint is 1..5 bytes: look at no more than 5 * n bytes
        window = np.frombuffer(
            self.buf[self.pos : self.pos + _MAX_VARINT_BYTES * n], dtype=np.uint8
        )
        ends = np.flatnonzero(window < 0x80)
        if ends.size < n:
            raise GnervError(f"entropy blob truncated in {what} ({ends.size} of {n} entries)")
        ends = ends[:n]
        starts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - starts + 1
        if lengths.max() > _MAX_VARINT_BYTES:
            raise GnervError(
                f"entropy blob: varint in {what} longer than {_MAX_VARINT_BYTES} bytes"
            )
        if ((window[ends] == 0) & (lengths > 1)).any():
            raise GnervError(f"entropy blob: non-minimal varint in {what}")
        values = np.zeros(n, dtype=np.int64)
        for j in range(int(lengths.max())):
            sel = lengths > j
            values[sel] |= (window[starts[sel] + j].astype(np.int64) & 0x7F) << (7 * j)
        self.pos += int(ends[-1]) + 1
        return values


# ----------------------------------------------------------------------------------- helpers


def _check_alphabet(alphabet_size: int) -> None:
    if isinstance(alphabet_size, bool) or not isinstance(alphabet_size, int | np.integer):
        raise GnervError(f"alphabet size must be an integer, got {alphabet_size!r}")
    if not 1 <= alphabet_size <= MAX_ALPHABET:
        raise GnervError(f"alphabet size must be in 1..{MAX_ALPHABET}, got {alphabet_size}")


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int | np.integer):
        raise GnervError(f"symbol count must be an integer, got {count!r}")
    if not 0 <= count <= MAX_COUNT:
        raise GnervError(f"symbol count must be in 0..{MAX_COUNT}, got {count}")


def _as_symbols(symbols: np.ndarray, alphabet_size: int) -> np.ndarray:
    """Flatten to int32 (no copy when already int32) and check the range."""
    s = np.asarray(symbols)
    if s.dtype == np.bool_ or not np.issubdtype(s.dtype, np.integer):
        raise GnervError(f"symbols must be an integer array, got dtype {s.dtype}")
    s = s.reshape(-1)
    _check_count(s.size)
    if s.size and (int(s.min()) < 0 or int(s.max()) >= alphabet_size):
        raise GnervError(
            f"symbols must be in 0..{alphabet_size - 1}, got {int(s.min())}..{int(s.max())}"
        )
    return s.astype(np.int32, copy=False)


def _probabilities(counts: np.ndarray) -> np.ndarray:
    """The model's float64 probabilities from integer counts (same code on both sides)."""
    c = counts.astype(np.float64)
    return c / c.sum()


def _raw_width(lo: int, hi: int) -> int:
    return max(1, (hi - lo).bit_length())


_RAW_CHUNK = 1 << 18  # symbols per step of the generic bit packer (a multiple of 8)


def _pack_bits(values: np.ndarray, width: int) -> bytes:
    """Pack non-negative ints < 2**width, MSB first, zero padding."""
    if width == 8:
        return values.astype(np.uint8).tobytes()
    if width == 16:
        return values.astype(">u2").tobytes()
    shifts = np.arange(width - 1, -1, -1, dtype=np.int32)
    parts = []
    for start in range(0, values.size, _RAW_CHUNK):
        chunk = values[start : start + _RAW_CHUNK]
        bits = ((chunk[:, None] >> shifts) & 1).astype(np.uint8)
        parts.append(np.packbits(bits.reshape(-1)).tobytes())
    return b"".join(parts)


def _unpack_bits(data: memoryview, count: int, width: int) -> np.ndarray:
    """Inverse of :func:`_pack_bits`; rejects non-zero padding bits."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if width == 8:
        return raw.astype(np.int32)
    if width == 16:
        return raw.view(">u2").astype(np.int32)
    out = np.empty(count, dtype=np.int32)
    weights = 1 << np.arange(width - 1, -1, -1, dtype=np.int32)
    step = _RAW_CHUNK * width // 8
    for i, start in enumerate(range(0, count, _RAW_CHUNK)):
        n = min(_RAW_CHUNK, count - start)
        bits = np.unpackbits(raw[i * step : (i + 1) * step])
        if bits[n * width :].any():
            raise GnervError("entropy blob: non-zero padding bits in raw payload")
        out[start : start + n] = bits[: n * width].reshape(n, width).astype(np.int32) @ weights
    return out


def _encode_ans(sym: np.ndarray, lo: int, counts: np.ndarray, mode: int = MODE_ANS) -> bytes:
    model = constriction.stream.model.Categorical(_probabilities(counts), perfect=False)
    coder = constriction.stream.stack.AnsCoder()
    shifted = sym - np.int32(lo) if lo else sym
    coder.encode_reverse(shifted, model)
    words = coder.get_compressed()
    head = (
        bytes([mode]) + _varint(lo) + _varint(counts.size) + _varints(counts) + _varint(words.size)
    )
    return head + words.astype("<u4", copy=False).tobytes()


def _cross_entropy_bytes(counts: np.ndarray, table: np.ndarray) -> float:
    """Ideal payload (bytes) of symbols with occurrences ``counts`` coded under ``table``."""
    present = counts > 0
    q = table[present] / table.sum()
    return float(-(counts[present] * np.log2(q)).sum()) / 8


def _scaled_table(counts: np.ndarray) -> tuple[np.ndarray, float]:
    """The ANS_SCALED table whose table + ideal payload is shortest, and that length."""
    best: tuple[np.ndarray, float] | None = None
    present = counts > 0
    for p in _SCALED_PRECISIONS:
        top = (1 << p) - 1
        table = np.where(present, np.maximum(1, np.rint(counts * (top / counts.max()))), 0)
        table = table.astype(np.int64)
        size = len(_varints(table)) + _cross_entropy_bytes(counts, table)
        if best is None or size < best[1]:
            best = (table, size)
    assert best is not None
    return best


def _parametric_model(mode: int, lo: int, n: int, mean: float, scale: float) -> object:
    cls = getattr(constriction.stream.model, _PARAMETRIC[mode][1])
    return cls(lo, lo + n - 1, mean, scale)


def _encode_parametric(sym: np.ndarray, lo: int, hi: int) -> bytes:
    """The shortest LAPLACE / GAUSSIAN blob over the scales tried around the data's spread;
    the mean is the median (both float32). The blobs of format 2: the encoder writes the
    compact modes; tests use this to make the blobs format-2 files hold."""
    mean = float(np.float32(np.median(sym)))
    dev = sym.astype(np.float64) - mean
    spreads = {MODE_LAPLACE: float(np.abs(dev).mean()), MODE_GAUSSIAN: float(dev.std())}
    best = b""
    for mode, spread in spreads.items():
        for factor in _PARAMETRIC_TRIES:
            scale = min(max(spread * factor, PARAMETRIC_MIN_SCALE), PARAMETRIC_MAX_SCALE)
            scale = float(np.float32(scale))
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(sym, _parametric_model(mode, lo, hi - lo + 1, mean, scale))
            words = coder.get_compressed()
            blob = (
                bytes([mode])
                + _varint(lo)
                + _varint(hi - lo + 1)
                + struct.pack("<ff", mean, scale)
                + _varint(words.size)
                + words.astype("<u4", copy=False).tobytes()
            )
            if not best or len(blob) < len(best):
                best = blob
    return best


def compact_scale(k: int) -> float:
    """The compact modes' scale for code k: 2**(k/8 - 8), exact (a tabled float32 times a power
    of two), so encoder and decoder hand constriction the very same float."""
    frac = float(_SCALE_FRACTIONS[k % SCALE_CODES_PER_OCTAVE])
    return math.ldexp(frac, k // SCALE_CODES_PER_OCTAVE - 8)


def _exp2_neg_q32(y: np.ndarray) -> np.ndarray:
    """2**(-y / 2**32) in Q30 (int64) for int64 ``y`` >= 0, in integer arithmetic only: 2**-i
    as a shift, 2**-f = exp(-f ln 2) for the fraction f by its alternating series (floored terms).
    Exactly 2**30 at y == 0; 0 from y >= 2**32 * _ZERO_WEIGHT_SHIFT."""
    whole = y >> 32
    x = ((y & 0xFFFFFFFF) >> 2) * _LN2_Q30 >> 30  # f * ln 2 in Q30, < 0.7 * 2**30
    term = np.full(y.shape, 1 << 30, dtype=np.int64)
    out = term.copy()
    for j in range(1, _EXP_TERMS):
        term = ((term * x) >> 30) // j
        out = out - term if j % 2 else out + term
    far = whole >= _ZERO_WEIGHT_SHIFT
    return np.where(far, 0, out >> np.where(far, 0, whole))


def parametric_table(mode: int, lo: int, n: int, m: int, k: int) -> np.ndarray:
    """The integer frequency table (int64, n entries, sum 2**TABLE_BITS, each >= 1) of a
    LAPLACE_T / GAUSSIAN_T blob over symbols lo..lo+n-1 with mean code m and scale code k: the
    density exp(-|t - mean| / scale) (Laplace) or exp(-(t - mean)**2 / (2 scale**2)) (Gaussian),
    mean = lo + m / 16, scale = 2**(k / 8 - 8), summed over 8 points t of each symbol x's bin
    (x - 7/16, x - 5/16, ..., x + 7/16: the midpoint rule), in fixed point:

    1. D = |32 (x - lo) + o - 2 m| for the offsets o = -14, -10, ..., 14 (distances in 1/32),
       k = 8 q + j; the standardized distance z = D * round(2**(32 - j/8)) >> (13 + q), Q16.
    2. relative to the nearest point's (whose weight is 2**30 exactly): r = min(z - min(z),
       2**23); the exponent in log2 units, Q32: Laplace y = r * round(log2(e) 2**32) >> 16;
       Gaussian y = min((r (r + 2 min z)) >> 16, 2**24) * round(log2(e) 2**32) >> 17.
    3. each point's weight 2**(-y) in Q30 (:func:`_exp2_neg_q32`; 0 below 2**-40), and the
       symbol's weight w the sum of its 8.
    4. the table: 1 + floor(w * (2**TABLE_BITS - n) / sum(w)) for each symbol, and what is left
       of 2**TABLE_BITS (< n) added to the entry of the first symbol of largest weight.

    Only int64 + - * // and shifts of non-negative values below 2**60: every platform computes
    the same table (tests/test_entropy.py pins some by their SHA-256).
    """
    if mode not in _TABLED:
        raise GnervError(f"entropy: mode {mode} has no integer table")
    if not (2 <= n <= MAX_ALPHABET and 0 <= m <= MEAN_STEPS_PER_SYMBOL * (n - 1)):
        raise GnervError(f"entropy: parametric table for n={n}, mean code {m} invalid")
    if not 0 <= k <= SCALE_CODE_MAX:
        raise GnervError(f"entropy: scale code {k} outside 0..{SCALE_CODE_MAX}")
    q, j = divmod(k, SCALE_CODES_PER_OCTAVE)
    steps = 2 * MEAN_STEPS_PER_SYMBOL  # positions in 1/32 of a symbol
    at = steps * np.arange(n, dtype=np.int64)[:, None] + _BIN_OFFSETS[None, :] - 2 * m
    z = (np.abs(at) * _INV_SCALE_FRACTIONS_Q32[j]) >> (13 + q)
    zmin = z.min()
    r = np.minimum(z - zmin, _Z_CAP)
    if mode == MODE_LAPLACE_T:
        y = (r * _LOG2E_Q32) >> 16
    else:
        y = (np.minimum((r * (r + 2 * zmin)) >> 16, 1 << 24) * _LOG2E_Q32) >> 17
    w = _exp2_neg_q32(y).sum(axis=1)
    free = (1 << TABLE_BITS) - n
    table = (w * free) // w.sum() + 1
    table[int(np.argmax(w))] += (1 << TABLE_BITS) - int(table.sum())
    return table


def _table_model(mode: int, lo: int, n: int, m: int, k: int) -> object:
    """constriction's model of a LAPLACE_T / GAUSSIAN_T blob (symbols shifted by -lo): the
    integer table as exactly representable float64 probabilities (table / 2**24)."""
    probs = parametric_table(mode, lo, n, m, k).astype(np.float64) / float(1 << TABLE_BITS)
    return constriction.stream.model.Categorical(probs, perfect=False)


def _encode_compact(sym: np.ndarray, lo: int, hi: int, tabled: bool = True) -> bytes:
    """The shortest LAPLACE_T / GAUSSIAN_T blob (``tabled``, format 4) or LAPLACE_Q / GAUSSIAN_Q
    blob (format 3's, kept so that tests can make the blobs format-3 files hold): the mean code
    nearest the median, scale codes around the data's spread."""
    n = hi - lo + 1
    m = min(max(round(MEAN_STEPS_PER_SYMBOL * (float(np.median(sym)) - lo)), 0),
            MEAN_STEPS_PER_SYMBOL * (n - 1))  # fmt: skip
    mean = lo + m / MEAN_STEPS_PER_SYMBOL
    dev = sym.astype(np.float64) - mean
    laplace, gaussian = (MODE_LAPLACE_T, MODE_GAUSSIAN_T) if tabled else _COMPACT
    spreads = {laplace: float(np.abs(dev).mean()), gaussian: float(dev.std())}
    shifted = sym - np.int32(lo) if lo else sym
    best = b""
    for mode, spread in spreads.items():
        centre = round(SCALE_CODES_PER_OCTAVE * (math.log2(max(spread, 2.0**-9)) + 8))
        for k in range(centre - 4, centre + 5):
            if not 0 <= k <= SCALE_CODE_MAX:
                continue
            coder = constriction.stream.stack.AnsCoder()
            if tabled:
                coder.encode_reverse(shifted, _table_model(mode, lo, n, m, k))
            else:
                model = getattr(constriction.stream.model, _COMPACT[mode][1])(
                    lo, hi, mean, compact_scale(k)
                )
                coder.encode_reverse(sym, model)
            words = coder.get_compressed()
            blob = (
                bytes([mode]) + _varint(lo) + _varint(n) + _varint(m) + bytes([k])
                + _varint(words.size) + words.astype("<u4", copy=False).tobytes()
            )  # fmt: skip
            if not best or len(blob) < len(best):
                best = blob
    return best


def _read_symbol_range(r: _Reader, alphabet_size: int) -> tuple[int, int]:
    """A coded blob's lowest symbol and symbol count (n >= 2, inside the alphabet), checked."""
    lo = r.varint("lowest symbol")
    n = r.varint("symbol range")
    if n < 2 or lo + n > alphabet_size:
        raise GnervError(
            f"entropy blob: symbol range {lo}..{lo + n - 1} invalid for alphabet "
            f"of size {alphabet_size}"
        )
    return lo, n


def _read_compact_codes(r: _Reader, alphabet_size: int) -> tuple[int, int, int, int]:
    """lo, n, mean code, scale code of a LAPLACE_Q / GAUSSIAN_Q / LAPLACE_T / GAUSSIAN_T blob,
    checked."""
    lo, n = _read_symbol_range(r, alphabet_size)
    m = r.varint("model mean")
    if m > MEAN_STEPS_PER_SYMBOL * (n - 1):
        top = MEAN_STEPS_PER_SYMBOL * (n - 1)
        raise GnervError(f"entropy blob: model mean code {m} outside 0..{top}")
    k = r.u8("model scale")
    if k > SCALE_CODE_MAX:
        raise GnervError(f"entropy blob: model scale code {k} outside 0..{SCALE_CODE_MAX}")
    return lo, n, m, k


def _read_compact_head(r: _Reader, alphabet_size: int) -> tuple[int, int, float, float]:
    """lo, n, mean, scale of a LAPLACE_Q / GAUSSIAN_Q blob, checked."""
    lo, n, m, k = _read_compact_codes(r, alphabet_size)
    return lo, n, lo + m / MEAN_STEPS_PER_SYMBOL, compact_scale(k)


def _read_parametric_head(r: _Reader, alphabet_size: int) -> tuple[int, int, float, float]:
    """lo, n, mean, scale of a LAPLACE / GAUSSIAN blob, checked."""
    lo, n = _read_symbol_range(r, alphabet_size)
    mean, scale = struct.unpack("<ff", r.take(8, "model parameters"))
    if not (math.isfinite(mean) and lo <= mean <= lo + n - 1):
        raise GnervError(f"entropy blob: model mean {mean!r} outside {lo}..{lo + n - 1}")
    if not (math.isfinite(scale) and PARAMETRIC_MIN_SCALE <= scale <= PARAMETRIC_MAX_SCALE):
        raise GnervError(
            f"entropy blob: model scale {scale!r} outside "
            f"{PARAMETRIC_MIN_SCALE:g}..{PARAMETRIC_MAX_SCALE:g}"
        )
    return lo, n, mean, scale


def _decode_parametric(mode: int, r: _Reader, count: int, alphabet_size: int) -> np.ndarray:
    if mode in _TABLED:
        lo, n, m, k = _read_compact_codes(r, alphabet_size)
        model = _table_model(mode, lo, n, m, k)
        n_words = r.varint("payload length")
        words = np.frombuffer(r.take(4 * n_words, "parametric payload"), dtype="<u4")
        out = _ans_decode(words.astype(np.uint32), model, count)
        if lo:
            out += np.int32(lo)
        return out
    if mode in _COMPACT:
        lo, n, mean, scale = _read_compact_head(r, alphabet_size)
        cls = getattr(constriction.stream.model, _COMPACT[mode][1])
        model = cls(lo, lo + n - 1, mean, scale)
    else:
        lo, n, mean, scale = _read_parametric_head(r, alphabet_size)
        model = _parametric_model(mode, lo, n, mean, scale)
    n_words = r.varint("payload length")
    data = r.take(4 * n_words, "parametric payload")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    return _ans_decode(words, model, count)


def _ans_decode(words: np.ndarray, model: object, count: int) -> np.ndarray:
    """``count`` symbols of an ANS payload under ``model``; every failure is a GnervError."""
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        out = coder.decode(model, count)
        empty = coder.is_empty()
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as e:  # constriction raises ValueError, or a PanicException (Base)
        raise GnervError(f"entropy blob: corrupt ANS payload ({type(e).__name__}: {e})") from e
    if not empty:
        raise GnervError("entropy blob: ANS payload not fully consumed (corrupt data)")
    return np.asarray(out, dtype=np.int32)


# ----------------------------------------------------------------------------------- public API


def encode_symbols(symbols: np.ndarray, alphabet_size: int, parametric: bool = False) -> bytes:
    """Code integer symbols in ``[0, alphabet_size)`` as one self-contained blob.

    The shortest of CONST / RAW / ANS (see the module docstring), and with ``parametric`` of
    ANS_SCALED and LAPLACE_T / GAUSSIAN_T too (format 4's modes; format 3's LAPLACE_Q /
    GAUSSIAN_Q are no longer written), is kept; the output is a deterministic function of the
    arguments. (The paper's min/max scheme codes without ``parametric``, as it always has.)
    """
    _check_alphabet(alphabet_size)
    sym = _as_symbols(symbols, alphabet_size)
    if sym.size == 0:
        return b""
    lo, hi = int(sym.min()), int(sym.max())
    if lo == hi:
        return bytes([MODE_CONST]) + _varint(lo)
    width = _raw_width(lo, hi)
    raw_len = 1 + len(_varint(lo)) + 1 + (sym.size * width + 7) // 8
    counts = np.bincount(sym - np.int32(lo) if lo else sym, minlength=hi - lo + 1)
    # ANS can't beat raw if even its table + ideal payload is longer: skip the coding then.
    table_len = 1 + len(_varint(lo)) + len(_varint(counts.size)) + len(_varints(counts)) + 1
    ideal = _entropy_from_counts(counts) / 8
    best = b""
    if table_len + ideal < raw_len:
        best = _encode_ans(sym, lo, counts)
    if parametric:  # the rate path: a table at lower precision when it is shorter overall
        scaled, scaled_len = _scaled_table(counts)
        if scaled_len < len(_varints(counts)) + ideal and not np.array_equal(scaled, counts):
            blob = _encode_ans(sym, lo, scaled, MODE_ANS_SCALED)
            if not best or len(blob) < len(best):
                best = blob
    if parametric and 6 + ideal < min(raw_len, len(best) or raw_len):  # compact head ~6 B
        parametric_blob = _encode_compact(sym, lo, hi)
        if not best or len(parametric_blob) < len(best):
            best = parametric_blob
    if best and len(best) < raw_len:
        return best
    return bytes([MODE_RAW]) + _varint(lo) + bytes([width]) + _pack_bits(sym - lo, width)


def decode_symbols(blob: bytes, count: int, alphabet_size: int) -> np.ndarray:
    """Exact inverse of :func:`encode_symbols`: ``count`` int32 symbols.

    Raises GnervError for any blob that :func:`encode_symbols` could not have produced in a
    detectable way (bad mode, truncated or inconsistent table, wrong length, trailing bytes).
    """
    _check_alphabet(alphabet_size)
    _check_count(count)
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise GnervError(f"entropy blob must be bytes, got {type(blob).__name__}")
    if count == 0:
        if len(blob):
            raise GnervError(f"entropy blob for 0 symbols must be empty, has {len(blob)} bytes")
        return np.zeros(0, dtype=np.int32)
    r = _Reader(bytes(blob))
    mode = r.u8("mode byte")
    if mode == MODE_CONST:
        value = r.varint("constant symbol")
        if value >= alphabet_size:
            raise GnervError(
                f"entropy blob: constant symbol {value} outside alphabet of size {alphabet_size}"
            )
        out = np.full(count, value, dtype=np.int32)
    elif mode == MODE_RAW:
        lo = r.varint("raw lowest symbol")
        width = r.u8("raw bit width")
        if not 1 <= width <= 16:
            raise GnervError(f"entropy blob: raw bit width {width} outside 1..16")
        if lo >= alphabet_size:
            raise GnervError(f"entropy blob: lowest symbol {lo} outside alphabet")
        data = r.take((count * width + 7) // 8, "raw payload")
        out = _unpack_bits(data, count, width)
        if lo:
            out += np.int32(lo)
        if int(out.max()) >= alphabet_size:
            raise GnervError("entropy blob: raw symbol outside alphabet")
    elif mode in (MODE_ANS, MODE_ANS_SCALED):
        out = _decode_ans(r, count, alphabet_size, exact=mode == MODE_ANS)
    elif mode in _PARAMETRIC or mode in _COMPACT or mode in _TABLED:
        out = _decode_parametric(mode, r, count, alphabet_size)
    else:
        raise GnervError(f"entropy blob: unknown mode byte {mode}")
    if r.remaining():
        raise GnervError(f"entropy blob has {r.remaining()} trailing bytes")
    return out


def _decode_ans(r: _Reader, count: int, alphabet_size: int, exact: bool = True) -> np.ndarray:
    """An ANS blob after its mode byte; ``exact``: its table holds the occurrences (mode ANS),
    else frequencies at any scale (ANS_SCALED)."""
    lo, n = _read_symbol_range(r, alphabet_size)
    if n > r.remaining():
        raise GnervError("entropy blob truncated in frequency table")
    counts = r.varints(n, "frequency table")
    if counts[0] == 0 or counts[-1] == 0:
        raise GnervError("entropy blob: frequency table has zero count at its ends")
    if exact and int(counts.sum()) != count:
        raise GnervError(
            f"entropy blob: frequencies sum to {int(counts.sum())}, expected {count} symbols"
        )
    n_words = r.varint("payload length")
    data = r.take(4 * n_words, "ANS payload")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    model = constriction.stream.model.Categorical(_probabilities(counts), perfect=False)
    out = _ans_decode(words, model, count)
    if lo:
        out += np.int32(lo)
    return out


def _entropy_from_counts(counts: np.ndarray) -> float:
    c = counts[counts > 0].astype(np.float64)
    total = c.sum()
    if total == 0:
        return 0.0
    return max(0.0, float(-(c * np.log2(c / total)).sum()))


def empirical_entropy_bits(symbols: np.ndarray, alphabet_size: int) -> float:
    """``count x H``: total bits of an ideal coder with the tensor's own symbol frequencies."""
    _check_alphabet(alphabet_size)
    sym = _as_symbols(symbols, alphabet_size)
    if sym.size == 0:
        return 0.0
    return _entropy_from_counts(np.bincount(sym, minlength=alphabet_size))


@dataclass(frozen=True)
class BlobInfo:
    """What a blob is made of, for reports (``gnerv info``) and efficiency checks."""

    mode: str  # empty | const | raw | ans | ans-scaled | laplace | gaussian
    table_bytes: int  # bytes that are not payload: mode byte, parameters, frequency table
    payload_bytes: int

    @property
    def total_bytes(self) -> int:
        """Length of the whole blob."""
        return self.table_bytes + self.payload_bytes


def blob_info(blob: bytes, count: int) -> BlobInfo:
    """Mode of a blob of ``count`` symbols and the split of its length into table and payload
    bytes, read from its head without decoding the symbols.

    A truncated or malformed head raises GnervError; the rest of the blob is checked only by
    :func:`decode_symbols`. An empty blob is mode ``empty`` (valid for ``count == 0`` only).
    """
    if count == 0 or not blob:
        return BlobInfo("empty", len(blob), 0)
    r = _Reader(bytes(blob))
    mode = r.u8("mode byte")
    if mode == MODE_CONST:
        return BlobInfo("const", len(blob), 0)
    if mode == MODE_RAW:
        r.varint("raw lowest symbol")
        r.u8("raw bit width")
        return BlobInfo("raw", r.pos, len(blob) - r.pos)
    if mode in (MODE_ANS, MODE_ANS_SCALED):
        r.varint("lowest symbol")
        n = r.varint("symbol range")
        if n > r.remaining():
            raise GnervError("entropy blob truncated in frequency table")
        r.varints(n, "frequency table")
        r.varint("payload length")
        return BlobInfo("ans" if mode == MODE_ANS else "ans-scaled", r.pos, len(blob) - r.pos)
    if mode in _PARAMETRIC:
        r.varint("lowest symbol")
        r.varint("symbol range")
        r.take(8, "model parameters")
        r.varint("payload length")
        return BlobInfo(_PARAMETRIC[mode][0], r.pos, len(blob) - r.pos)
    if mode in _COMPACT or mode in _TABLED:
        r.varint("lowest symbol")
        r.varint("symbol range")
        r.varint("model mean")
        r.u8("model scale")
        r.varint("payload length")
        return BlobInfo((_COMPACT | _TABLED)[mode][0], r.pos, len(blob) - r.pos)
    raise GnervError(f"entropy blob: unknown mode byte {mode}")


def coded_size_bound(count: int, alphabet_size: int) -> int:
    """Largest blob :func:`encode_symbols` can produce for ``count`` symbols (raw worst case)."""
    _check_alphabet(alphabet_size)
    _check_count(count)
    if count == 0:
        return 0
    width = max(1, math.ceil(math.log2(alphabet_size))) if alphabet_size > 1 else 1
    return 1 + _MAX_VARINT_BYTES + 1 + (count * width + 7) // 8
