"""Golden bitstreams: files written by earlier formats keep decoding to the very same frames.

tests/expected/golden-v1.gnerv was written by format 1's code (tests/expected/make_golden.py, run
at that commit); golden-v1.json records what that code decoded it to and what ``gnerv info``
reported. Today's reader must agree exactly. Never regenerate a golden file with today's code:
add a new one for a new format instead.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from gnerv.codec.bitstream import file_info, read_gnerv
from gnerv.codec.decode import decode_layers

EXPECTED = Path(__file__).resolve().parent / "expected"
GOLDEN = ["golden-v1"]


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
