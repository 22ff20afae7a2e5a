"""Golden bitstreams: files written by earlier formats keep decoding to the very same frames.

tests/expected/golden-v1.gnerv was written by format 1's code (tests/expected/make_golden.py, run
at that commit); golden-v1.json records what that code decoded it to and what ``gnerv info``
reported. The reader must agree exactly. Never regenerate a golden file with the code of a later
format: add a new one for a new format instead.

tests/expected/golden-v2.gnerv is format 2 (the paper's scheme, as written for render 1) and
golden-v3.gnerv format 3 (the symmetric scheme's compact float-table modes, made by the code that
wrote format 3).

tests/expected/golden-v4.gnerv is format 4 (the symmetric scheme, its parametric blobs in the
integer-table modes LAPLACE_T / GAUSSIAN_T); its JSON also records the SHA-256 of the decoded
symbols and dequantized weights, which every platform must reproduce bit for bit.

tests/expected/golden-v5.gnerv (symmetric) and golden-v5-minmax.gnerv (the paper's scheme) are
format 5, render 2; golden-v5-render3.gnerv and golden-v5-render3-minmax.gnerv format 5, render 3:
what every encode writes. The frames of renders 2 and 3 do not depend on the batch size or the
thread count, so they must decode to the recorded frames with any of them.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from gnerv.codec.bitstream import file_info, read_gnerv
from gnerv.codec.decode import decode_layers

EXPECTED = Path(__file__).resolve().parent / "expected"
INVARIANT = ["golden-v5", "golden-v5-minmax", "golden-v5-render3", "golden-v5-render3-minmax"]
GOLDEN = ["golden-v1", "golden-v2", "golden-v3", "golden-v4", *INVARIANT]
# symbols and weights recorded
DIGESTED = GOLDEN[1:]


def record(name: str) -> dict:
    return json.loads((EXPECTED / f"{name}.json").read_text())


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_file_is_the_one_recorded(name: str) -> None:
    want = record(name)
    data = (EXPECTED / want["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == want["file_sha256"], "the golden file was changed"
    _, version, _ = struct.unpack_from("<4sHI", data)
    assert version == want["format"]


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_file_decodes_to_the_recorded_frames(name: str) -> None:
    want = record(name)
    f = read_gnerv(EXPECTED / want["file"])
    decode = want["decode"]
    frames = decode_layers([f], range(f.n_frames), decode["device"], decode["batch_size"])
    assert list(frames.shape) == want["frames_shape"] and frames.dtype == np.uint8
    sums = [int(s) for s in frames.reshape(len(frames), -1).sum(axis=1, dtype=np.int64)]
    got = hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()
    # Frame sums off by a unit or two: a value within float noise of a rounding boundary went the
    # other way on this CPU (see make_golden.py). Far off: the decoder reads the file differently.
    assert got == want["frames_sha256"], f"frame sums {sums}, recorded {want['frame_sums']}"


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_file_info_figures(name: str) -> None:
    golden = record(name)
    want = golden["info"]
    info = file_info(read_gnerv(EXPECTED / golden["file"], decode=False))
    assert info["params"] == want["params"] and info["bits"] == want["bits"]
    assert info["format"] == golden["format"]  # the file's own version, not the writer's
    assert info["sizes"] == want["sizes"]
    keys = ("name", "mode", "minmax_bytes", "table_bytes", "payload_bytes")
    assert [{k: t[k] for k in keys} for t in info["tensors"]] == want["tensors"]


def _make_golden_module():  # tests/expected/make_golden.py's digests, the same code that made them
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_golden", EXPECTED / "make_golden.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", DIGESTED)
def test_golden_symbols_and_weights_are_the_recorded_ones(name: str) -> None:
    want = record(name)
    f = read_gnerv(EXPECTED / want["file"])
    assert f.version == want["format"] and f.scheme == want["scheme"]
    modes = {r.blob[0] for r in f.records if r.blob}
    if f.scheme == "uniform-symmetric-per-channel" and f.version == 3:
        assert {6, 7} <= modes  # format 3's compact float-table modes
    elif f.scheme == "uniform-symmetric-per-channel":
        assert {8, 9} <= modes  # both integer-table modes are exercised
        assert not modes & {3, 4, 6, 7}  # and no float-table one
    else:
        assert modes <= {0, 1, 2} and 2 in modes  # counted tables, as the paper's files
    mg = _make_golden_module()
    assert mg.symbols_sha256(f) == want["symbols_sha256"]
    assert mg.weights_sha256(f) == want["weights_sha256"]


@pytest.mark.parametrize("name", INVARIANT)
def test_golden_frames_with_any_batch_or_thread_count(name: str) -> None:
    import torch

    want = record(name)
    f = read_gnerv(EXPECTED / want["file"])
    assert f.render == want["render"] == (3 if "render3" in name else 2)
    before = torch.get_num_threads()
    try:
        for threads, batch in ((1, 1), (3, 7), (2, 32), (4, 2)):
            torch.set_num_threads(threads)
            frames = decode_layers([f], range(f.n_frames), "cpu", batch)
            got = hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()
            assert got == want["frames_sha256"], (threads, batch)
    finally:
        torch.set_num_threads(before)


def _with_version(data: bytes, version: int) -> bytes:
    out = bytearray(data[:-4])
    struct.pack_into("<H", out, 4, version)
    return bytes(out) + struct.pack("<I", zlib.crc32(out))


def test_format_4_modes_are_refused_in_a_format_3_header() -> None:
    from gnerv.codec.bitstream import FORMAT_VERSION, unpack
    from gnerv.runtime.errors import GnervError

    data = (EXPECTED / "golden-v4.gnerv").read_bytes()
    assert unpack(_with_version(data, 4), "same.gnerv").version == 4
    with pytest.raises(GnervError, match=r"mode byte [89] does not exist in format 3"):
        unpack(_with_version(data, 3), "relabelled.gnerv")
    # a reader refuses a newer format's whole file up front, by its version
    with pytest.raises(GnervError, match="newer gnerv"):
        unpack(_with_version(data, FORMAT_VERSION + 1), "future.gnerv")
