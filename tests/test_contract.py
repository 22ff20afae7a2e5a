"""The decoder's contract (docs/bitstream.md, "What a decoder promises"), as far as one machine can
check it: entropy decoding and dequantization give the very same bits in a fresh process whatever
its thread count and whichever of numpy's SIMD kernels it may use. (Other platforms, libms and
ISAs are covered by the pinned SHA-256s of tests/test_entropy.py and tests/test_golden.py, which
every platform that runs the tests must reproduce.)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gnerv.codec import entropy as E
from gnerv.codec.bitstream import read_gnerv
from gnerv.codec.quantize import dequantize_tensor

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ROOT / "tests" / "expected"
GOLDEN = ("golden-v1.gnerv", "golden-v4.gnerv", "golden-v5.gnerv", "golden-v5-minmax.gnerv")

# Decodes the blobs of an .npz (blob_<name>, count_<name>, alphabet_<name>) and the golden files,
# and prints the SHA-256 of every result as JSON.
CHILD = r"""
import hashlib, json, sys
import numpy as np
import torch
threads = int(sys.argv[3])
torch.set_num_threads(threads)
from gnerv.codec.bitstream import read_gnerv
from gnerv.codec.entropy import decode_symbols
from gnerv.codec.quantize import dequantize_tensor
out = {}
with np.load(sys.argv[1]) as z:
    for key in sorted(k for k in z.files if k.startswith("blob_")):
        name = key[5:]
        sym = decode_symbols(z[key].tobytes(), int(z["count_" + name]), int(z["alphabet_" + name]))
        out[name] = hashlib.sha256(sym.astype("<i4").tobytes()).hexdigest()
for path in sys.argv[2].split(","):
    f = read_gnerv(path)
    s, w = hashlib.sha256(), hashlib.sha256()
    for q in f.tensors:
        s.update(np.asarray(q.symbols, dtype="<i4").tobytes())
        w.update(np.ascontiguousarray(dequantize_tensor(q).numpy(), dtype="<f4").tobytes())
    out[path + ":symbols"], out[path + ":weights"] = s.hexdigest(), w.hexdigest()
print(json.dumps(out))
"""


def _blobs() -> dict[str, tuple[bytes, int, int]]:
    """name -> (blob, count, alphabet): every entropy mode, old and new."""
    rng = np.random.default_rng(31)
    lap = (np.clip(np.rint(rng.laplace(0, 2.5, 4000)), -60, 60) + 64).astype(np.int32)
    gau = (np.clip(np.rint(rng.normal(0, 9.0, 4000)), -60, 60) + 64).astype(np.int32)
    wide = (np.clip(np.rint(rng.laplace(0, 900.0, 3000)), -30000, 30000) + 32768).astype(np.int32)
    lo, hi = int(lap.min()), int(lap.max())
    counts = np.bincount(lap - lo)
    scaled, _ = E._scaled_table(counts)
    blobs = {
        "const": (E.encode_symbols(np.full(50, 7, np.int32), 16), 50, 16),
        "raw": (E.encode_symbols(rng.integers(0, 16, 999).astype(np.int32), 16), 999, 16),
        "ans": (E._encode_ans(lap, lo, counts), lap.size, 128),
        "ans_scaled": (E._encode_ans(lap, lo, scaled, E.MODE_ANS_SCALED), lap.size, 128),
        "float_format2_laplace": (E._encode_parametric(lap, lo, hi), lap.size, 128),
        "float_format2_gaussian": (
            E._encode_parametric(gau, int(gau.min()), int(gau.max())),
            gau.size,
            128,
        ),
        "float_q_laplace": (E._encode_compact(lap, lo, hi, tabled=False), lap.size, 128),
        "float_q_gaussian": (
            E._encode_compact(gau, int(gau.min()), int(gau.max()), tabled=False),
            gau.size,
            128,
        ),
        "table_laplace": (E.encode_symbols(lap, 128, parametric=True), lap.size, 128),
        "table_gaussian": (E.encode_symbols(gau, 128, parametric=True), gau.size, 128),
        "table_wide": (E.encode_symbols(wide, 65536, parametric=True), wide.size, 65536),
    }
    return blobs


def _digests(blobs: dict[str, tuple[bytes, int, int]]) -> dict[str, str]:
    out = {}
    for name, (blob, count, alphabet) in blobs.items():
        sym = E.decode_symbols(blob, count, alphabet)
        out[name] = hashlib.sha256(sym.astype("<i4").tobytes()).hexdigest()
    for path in (str(EXPECTED / g) for g in GOLDEN):
        f = read_gnerv(path)
        s, w = hashlib.sha256(), hashlib.sha256()
        for q in f.tensors:
            s.update(np.asarray(q.symbols, dtype="<i4").tobytes())
            w.update(np.ascontiguousarray(dequantize_tensor(q).numpy(), dtype="<f4").tobytes())
        out[path + ":symbols"], out[path + ":weights"] = s.hexdigest(), w.hexdigest()
    return out


def _simd_features_to_disable() -> str:
    """numpy's dispatchable SIMD targets that this CPU has (disabling them makes numpy use its
    baseline kernels); empty where numpy does not say."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:
        return ""
    return " ".join(f for f in __cpu_dispatch__ if __cpu_features__.get(f))


@pytest.fixture(scope="module")
def blobs() -> dict[str, tuple[bytes, int, int]]:
    return _blobs()


def test_the_blobs_cover_every_mode(blobs: dict[str, tuple[bytes, int, int]]) -> None:
    modes = {blob[0] for blob, _, _ in blobs.values()}
    assert modes == set(range(10)), sorted(modes)


@pytest.mark.parametrize(
    "threads, env",
    [
        (1, {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}),
        (2, {"OMP_NUM_THREADS": "2", "NPY_DISABLE_CPU_FEATURES": "<simd>"}),
    ],
)
def test_fresh_process_decodes_the_same_bits(
    blobs: dict[str, tuple[bytes, int, int]], tmp_path: Path, threads: int, env: dict[str, str]
) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name, (blob, count, alphabet) in blobs.items():
        arrays[f"blob_{name}"] = np.frombuffer(blob, dtype=np.uint8)
        arrays[f"count_{name}"] = np.array(count)
        arrays[f"alphabet_{name}"] = np.array(alphabet)
    npz = tmp_path / "blobs.npz"
    np.savez(npz, **arrays)
    child_env = {k: v for k, v in os.environ.items() if k != "NPY_DISABLE_CPU_FEATURES"}
    child_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    for key, value in env.items():
        value = _simd_features_to_disable() if value == "<simd>" else value
        if value:
            child_env[key] = value
    paths = ",".join(str(EXPECTED / g) for g in GOLDEN)
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(npz), paths, str(threads)],
        capture_output=True, text=True, env=child_env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == _digests(blobs)


def test_golden_v4_digests_are_the_recorded_ones_in_this_process() -> None:
    want = json.loads((EXPECTED / "golden-v4.json").read_text())
    got = _digests({})
    path = str(EXPECTED / "golden-v4.gnerv")
    assert got[path + ":symbols"] == want["symbols_sha256"]
    assert got[path + ":weights"] == want["weights_sha256"]
