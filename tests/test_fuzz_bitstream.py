"""Seeded fuzzing of the .gnerv reader: corrupt files give GnervError, never anything else.

Three families of mutants of one real small file:

- raw: truncations, byte flips, inserted / deleted / overwritten bytes. The CRC must catch
  every one of them, so only a no-op mutation may parse;
- header: the JSON header mutated (values of other types, out-of-range numbers, keys removed or
  added, list items dropped or repeated), re-serialized and given a valid CRC again, so the
  parser's own validation is exercised beyond the checksum;
- body: min/max arrays and entropy blobs mutated, with a valid CRC again.

Each attempt parses, entropy-decodes and builds the model (the first successes also render a
frame), under a wall-clock alarm so a hang fails the test instead of stalling it.
"""

from __future__ import annotations

import copy
import json
import random
import signal
import struct
import time
import zlib
from collections.abc import Callable

import numpy as np
import pytest
import torch

from gnerv.codec import bitstream as bs
from gnerv.codec.config import GNeRVConfig
from gnerv.codec.decode import build_model
from gnerv.codec.model import GNeRV, render
from gnerv.runtime.errors import GnervError

SEED = 20261129
N_RAW, N_HEADER, N_BODY = 2000, 1200, 500
MAX_RENDERS = 20  # renders per family (mutated ranges can be denormal floats: slow, not wrong)
ATTEMPT_SECONDS = 5.0  # one parse + decode + build + render of this tiny file takes milliseconds
PREFIX = struct.Struct("<4sHI")

INTERESTING = [
    None, True, False, 0, 1, -1, 2, 3, 7, 8, 16, 17, 255, 2**31, 2**63, 10**30, -(2**31),
    0.0, -0.0, 0.5, 1.5, 1e-300, 1e300, "", "x", "8", "ab" * 32, "AB" * 32, [], [0], [1, 2],
    [2, 2], [1] * 20, {}, {"a": 1},
]  # fmt: skip


class Hang(Exception):
    pass


def _alarm(_signum, _frame):
    raise Hang


def small_file(scheme: str = bs.QUANT_SCHEME) -> bytes:
    """A real layer with trained-looking (Laplacian) weights: ANS, raw and const blobs (and
    Laplace-model blobs and step-code records in the symmetric scheme)."""
    with torch.device("meta"):
        model = GNeRV(GNeRVConfig(36, 64, c0=16, min_channels=8))
    rng = np.random.default_rng(0)
    sd = {}
    for k, v in model.state_dict().items():
        sd[k] = torch.from_numpy(rng.laplace(0.0, 0.05, tuple(v.shape)).astype(np.float32))
    sd["head.bias"] = torch.zeros(3)  # a constant tensor
    model.load_state_dict(sd, assign=True)
    video = bs.video_facts(8, 36, 64, 25.0)
    return bs.compress_model(model, 8, video, bs.base_stage("ab" * 32), scheme=scheme)


def split(data: bytes) -> tuple[dict, bytes]:
    _, _, hlen = PREFIX.unpack_from(data)
    return json.loads(data[10 : 10 + hlen]), data[10 + hlen : -4]


def with_crc(raw: bytes) -> bytes:
    return raw + struct.pack("<I", zlib.crc32(raw))


def join(header: bytes, body: bytes, version: int = bs.FORMAT_VERSION) -> bytes:
    return with_crc(PREFIX.pack(b"GNRV", version, len(header)) + header + body)


# --------------------------------------------------------------------------------------------
# Mutators
# --------------------------------------------------------------------------------------------


def mutate_raw(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    op = rng.randrange(6)
    if op == 0:  # truncate
        return bytes(b[: rng.randrange(len(b))])
    if op == 1:  # flip 1..4 bytes
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= rng.randint(1, 255)
    elif op == 2:  # insert
        at = rng.randrange(len(b) + 1)
        b[at:at] = rng.randbytes(rng.randint(1, 16))
    elif op == 3:  # delete a range
        at = rng.randrange(len(b))
        del b[at : at + rng.randint(1, 16)]
    elif op == 4:  # overwrite a range
        at = rng.randrange(len(b))
        n = rng.randint(1, 32)
        b[at : at + n] = rng.randbytes(len(b[at : at + n]))
    else:  # append
        b += rng.randbytes(rng.randint(1, 8))
    return bytes(b)


def _paths(node, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(node, path):
    for key in path:
        node = node[key]
    return node


def _new_value(rng: random.Random, old, header: dict):
    choice = rng.randrange(4)
    if choice == 0 and isinstance(old, int) and not isinstance(old, bool):
        return old + rng.choice([-1, 1, -old, old, 2**32])
    if choice == 1 and isinstance(old, str) and old:
        i = rng.randrange(len(old))
        return old[:i] + rng.choice("0aZ._ ") + old[i + 1 :]
    if choice == 2:  # a value from elsewhere in the header
        return copy.deepcopy(_get(header, rng.choice(_paths(header))))
    return copy.deepcopy(rng.choice(INTERESTING))


def mutate_header(rng: random.Random, data: bytes) -> bytes:
    header, body = split(data)
    header = copy.deepcopy(header)
    for _ in range(rng.randint(1, 3)):
        paths = _paths(header)[1:]
        if rng.random() < 0.5:  # the tensor table has most paths: give the rest a fair share
            paths = [p for p in paths if p[0] != "tensors"] or paths
        path = rng.choice(paths)
        parent, key = _get(header, path[:-1]), path[-1]
        op = rng.randrange(5)
        if op == 0 and isinstance(parent, dict):
            del parent[key]
        elif op == 1 and isinstance(parent, dict):
            parent[rng.choice(["extra", "n_frames", "name", "z"])] = rng.choice(INTERESTING)
        elif op == 2 and isinstance(parent, list):
            if rng.random() < 0.5:
                del parent[key]
            else:
                parent.insert(key, copy.deepcopy(parent[key]))
        else:
            parent[key] = _new_value(rng, parent[key], header)
    raw = bs.canonical_json(header)
    r = rng.random()
    if r < 0.05:
        raw = json.dumps(header).encode()  # not canonical
    elif r < 0.1:  # a valid header with a length field that lies
        prefix = PREFIX.pack(b"GNRV", bs.FORMAT_VERSION, len(raw) + rng.randint(-20, 20))
        return with_crc(prefix + raw + body)
    elif r < 0.12:
        return join(raw, body, version=rng.choice([0, 1, bs.FORMAT_VERSION + 1, 65535]))
    return join(raw, body)


def mutate_body(rng: random.Random, data: bytes) -> bytes:
    header, body = split(data)
    b = bytearray(body)
    op = rng.randrange(4)
    if op == 0:
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif op == 1:
        at = rng.randrange(len(b))
        b[at : at + 4] = rng.choice([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\xff" * 4])
    elif op == 2:
        at = rng.randrange(len(b))
        b[at : at + 1] = bytes([rng.choice([0, 1, 2, 3, 0x7F, 0x80, 0xFF])])
    else:
        at = rng.randrange(len(b))
        b[at:at] = rng.randbytes(rng.randint(1, 4))
        del b[rng.randrange(len(b))]
    return join(bs.canonical_json(header), bytes(b))


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def attempt(data: bytes, render_frame: bool = True) -> bool:
    """True when the file parses and builds (and renders a frame if asked); False on
    GnervError; anything else propagates."""
    try:
        f = bs.unpack(data, "fuzz.gnerv")
        model = build_model(f)
        if render_frame:
            render(model, [0], f.n_frames)
        return True
    except GnervError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith("fuzz.gnerv: "), msg
        return False


def run(
    mutator: Callable[[random.Random, bytes], bytes],
    n: int,
    seed: int,
    scheme: str = bs.QUANT_SCHEME,
) -> dict:
    data = small_file(scheme)
    assert attempt(data)
    rng = random.Random(seed)
    old = signal.signal(signal.SIGALRM, _alarm)
    stats = {"ok": 0, "refused": 0, "noop_ok": 0, "slowest": 0.0}
    try:
        for i in range(n):
            mutant = mutator(rng, data)
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, ATTEMPT_SECONDS)
            try:
                ok = attempt(mutant, render_frame=stats["ok"] < MAX_RENDERS)
            except Hang:
                pytest.fail(f"{mutator.__name__} mutant {i} hung for {ATTEMPT_SECONDS} s")
            except Exception as e:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{mutator.__name__} mutant {i}: {type(e).__name__}: {e}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            stats["slowest"] = max(stats["slowest"], time.perf_counter() - t0)
            if ok and mutant == data:
                stats["noop_ok"] += 1
            elif ok:
                stats["ok"] += 1
            else:
                stats["refused"] += 1
    finally:
        signal.signal(signal.SIGALRM, old)
    return stats


def test_raw_mutations_never_get_past_the_checksum() -> None:
    stats = run(mutate_raw, N_RAW, SEED)
    assert stats["ok"] == 0, stats  # every real change is refused
    assert stats["refused"] >= N_RAW - 10


def test_header_mutations_with_a_valid_checksum() -> None:
    stats = run(mutate_header, N_HEADER, SEED + 1)
    assert stats["refused"] > 0.8 * N_HEADER, stats  # most changes break a check


def test_body_mutations_with_a_valid_checksum() -> None:
    stats = run(mutate_body, N_BODY, SEED + 2)
    assert stats["refused"] > 0, stats
    assert stats["ok"] > 0, stats  # some payload changes decode to other (valid) weights


def test_symmetric_scheme_mutations_with_a_valid_checksum() -> None:
    """The symmetric scheme's records (ranges_bytes, unit, step codes, Laplace blobs)."""
    scheme = "uniform-symmetric-per-channel"
    data = small_file(scheme)
    header, _ = split(data)
    assert header["quantization"]["scheme"] == scheme
    assert {"laplace"} <= {r.mode for r in bs.unpack(data).records}
    stats = run(mutate_header, N_HEADER // 2, SEED + 3, scheme)
    assert stats["refused"] > 0.8 * (N_HEADER // 2), stats
    stats = run(mutate_body, N_BODY, SEED + 4, scheme)
    assert stats["refused"] > 0 and stats["ok"] > 0, stats
