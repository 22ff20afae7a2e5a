"""Seeded fuzzing of the real CLI: `gnerv decode` / `gnerv info` on corrupted layers.

A tiny 3-layer chain (4 frames of 36x64) is encoded once with `gnerv encode --stages 3`. Each
case corrupts one layer of it (the base, layer 2 or layer 3) and decodes a prefix of the chain
that holds the corrupted layer (or runs `gnerv info` on it). Mutants:

- raw: bit flips, truncations, insertions, deletions, byte runs, appended bytes; the CRC-32
  trailer is left alone, so every real change must be refused;
- crc: the same edits on the prefix, header or body, with the CRC-32 recomputed, so the header
  JSON, the min/max tables and the entropy blobs are attacked past the checksum;
- header: a JSON value replaced, removed or added, re-serialized, with length and CRC fixed.

Each case must end with exit 0 (the mutant is still a valid chain: the output exists and has the
shape its header says) or exit 2 with exactly one stderr line ``gnerv <cmd>: error: ...``; no
traceback, no output and no temporary file left on failure, peak memory under MAX_RSS_BYTES.

Cases run many per process (tests/cli_fuzz_driver.py runs `gnerv.cli.main` on each in turn),
plus a few true one-process-per-case runs of the `gnerv` executable. Knobs (environment):
GNERV_FUZZ_CASES (default 300), GNERV_FUZZ_SEED, GNERV_FUZZ_ONLY (comma list of case numbers,
to replay failures). A failure names its seed and case numbers.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run_measured

from gnerv.codec import bitstream as bs
from gnerv.codec.decode import load_layers
from gnerv.runtime.errors import GnervError

N_CASES = int(os.environ.get("GNERV_FUZZ_CASES", "300"))
SEED = int(os.environ.get("GNERV_FUZZ_SEED", "20261130"))
ONLY = [int(x) for x in os.environ.get("GNERV_FUZZ_ONLY", "").split(",") if x.strip()]
CASES_PER_PROCESS = 2500
N_EXEC = 3  # cases also run as one `gnerv` process each
MAX_RSS_BYTES = 1_500_000_000
N, H, W = 4, 36, 64
PREFIX = struct.Struct("<4sHI")  # magic, format version, header length
DRIVER = Path(__file__).with_name("cli_fuzz_driver.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": ""}

INTERESTING = [
    None, True, False, 0, 1, -1, 2, 7, 8, 16, 17, 255, 2**31, 2**63, 10**30, -(2**31), 0.0,
    0.5, 1e-300, 1e300, "", "x", "ab" * 32, [], [0], [1, 2], [1] * 20, {}, {"a": 1},
]  # fmt: skip


@pytest.fixture(scope="module")
def chain(cockatoo_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The bytes of stage1.gnerv, stage2.gnerv, stage3.gnerv of a tiny progressive encode."""
    out = tmp_path_factory.mktemp("fuzz_chain") / "chain"
    argv = [
        *("encode", str(cockatoo_path), "-o", str(out), "--stages", "3"),
        *("--stage-sizes", "4k,3k,3k", "--stage-epochs", "2,1,1", "--frames", f"0:{N}"),
        *("--resize", f"{H}x{W}", "--min-channels", "8", "--device", "cpu", "--quiet"),
    ]
    code = "import sys; from gnerv.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return [(out / f"stage{k}.gnerv").read_bytes() for k in (1, 2, 3)]


# --------------------------------------------------------------------------------------------
# Mutators: (rng, bytes) -> (bytes, description)
# --------------------------------------------------------------------------------------------


def edit(rng: random.Random, data: bytes, lo: int = 0, hi: int | None = None) -> tuple[bytes, str]:
    """One raw edit at a position in [lo, hi)."""
    b = bytearray(data)
    hi = len(b) if hi is None else hi
    at = rng.randrange(lo, max(hi, lo + 1))
    op = rng.choice(["flip", "truncate", "insert", "delete", "run", "append"])
    if op == "flip":
        bits = [rng.randrange(lo * 8, max(hi, lo + 1) * 8) for _ in range(rng.randint(1, 4))]
        for bit in bits:
            if bit // 8 < len(b):
                b[bit // 8] ^= 1 << (bit % 8)
        return bytes(b), f"flip bits {bits}"
    if op == "truncate":
        return bytes(b[:at]), f"truncate to {at}"
    if op == "insert":
        extra = rng.randbytes(rng.randint(1, 16))
        b[at:at] = extra
        return bytes(b), f"insert {extra.hex()} at {at}"
    if op == "delete":
        n = rng.randint(1, 16)
        del b[at : at + n]
        return bytes(b), f"delete {n} at {at}"
    if op == "run":
        n = rng.randint(1, 64)
        value = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        b[at : at + n] = bytes([value]) * len(b[at : at + n])
        return bytes(b), f"run of {n} x {value:#04x} at {at}"
    extra = rng.randbytes(rng.randint(1, 8))
    return bytes(b) + extra, f"append {extra.hex()}"


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def mutate_raw(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    return edit(rng, data)


def mutate_crc(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """An edit of the prefix, the header JSON or the tables/blobs, then a valid CRC again."""
    hlen = PREFIX.unpack_from(data)[2]
    end = len(data) - 4
    where = rng.choices(["prefix", "header", "body"], weights=[1, 3, 4])[0]
    lo, hi = {"prefix": (0, PREFIX.size), "header": (PREFIX.size, PREFIX.size + hlen)}.get(
        where, (PREFIX.size + hlen, end)
    )
    mutant, what = edit(rng, data[:end], lo, hi)
    return with_crc(mutant), f"{where}: {what}, CRC fixed"


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def mutate_header(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """A JSON value replaced, removed or added; header length and CRC fixed."""
    magic, version, hlen = PREFIX.unpack_from(data)
    header = json.loads(data[PREFIX.size : PREFIX.size + hlen])
    body = data[PREFIX.size + hlen : -4]
    path = rng.choice(_paths(header)[1:])
    parent = header
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    op = rng.randrange(4)
    if op == 0 and isinstance(parent, dict):
        del parent[key]
        what = f"delete {path}"
    elif op == 1 and isinstance(parent, list):
        parent.insert(key, parent[key])
        what = f"repeat {path}"
    elif op == 2 and isinstance(parent[key], int) and not isinstance(parent[key], bool):
        parent[key] = parent[key] * rng.choice([-1, 2, 1000, 2**20]) + rng.choice([0, 1, -1])
        what = f"{path} = {parent[key]}"
    else:
        parent[key] = rng.choice(INTERESTING)
        what = f"{path} = {parent[key]!r}"
    raw = bs.canonical_json(header)
    return with_crc(PREFIX.pack(magic, version, len(raw)) + raw + body), f"header: {what}"


MUTATORS = {"raw": mutate_raw, "crc": mutate_crc, "header": mutate_header}


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    number: int
    command: str  # decode | info
    argv: list[str]
    files: list[Path]  # the layers given (decode) or the one file (info)
    target: int  # which layer is corrupted: 1, 2, 3
    what: str
    frames: tuple[int, int]
    changed: bool  # the mutant differs from the original

    def replay(self) -> str:
        return (
            f"case {self.number} (GNERV_FUZZ_SEED={SEED} GNERV_FUZZ_ONLY={self.number} "
            f"pytest -q tests/test_fuzz_cli.py): {' '.join(self.argv)}; layer {self.target}: "
            f"{self.what}"
        )


def make_case(number: int, chain: list[bytes], in_dir: Path, out_dir: Path) -> Case:
    rng = random.Random(f"{SEED}:{number}")
    target = rng.choice([1, 1, 2, 2, 3])  # base and layer 2 twice as often
    family = rng.choices(list(MUTATORS), weights=[2, 5, 3])[0]
    mutant, what = MUTATORS[family](rng, chain[target - 1])
    path = in_dir / f"case{number}_layer{target}.gnerv"
    path.write_bytes(mutant)
    layers = [in_dir / f"stage{k}.gnerv" for k in (1, 2, 3)]
    layers[target - 1] = path
    frames = (0, N)
    if rng.random() < 0.15:
        command, files = "info", [path]
        argv = ["info", str(path)] + (["--json"] if rng.random() < 0.5 else [])
    else:
        command = "decode"
        files = layers[: rng.randint(target, 3)]
        argv = ["decode", *map(str, files), "-o", str(out_dir / "out.npy"), "--device", "cpu"]
        if rng.random() < 0.3:
            a = rng.randrange(N)
            frames = (a, rng.randint(a + 1, N))
            argv += ["--frames", f"{frames[0]}:{frames[1]}"]
        if rng.random() < 0.3:
            argv += ["--batch", str(rng.randint(1, 5))]
    changed = mutant != chain[target - 1]
    return Case(number, command, argv, files, target, f"{family} {what}", frames, changed)


def expected_shape(case: Case) -> tuple[int, ...] | None:
    """The decoded shape if the chain is valid (read in this process), else None."""
    try:
        if case.command == "decode":
            files = load_layers(case.files)
        else:  # info reads the header and tables only, as `gnerv info` does
            files = [bs.read_gnerv(case.files[0], decode=False)]
    except GnervError:
        return None
    v = files[0].video
    a, b = case.frames
    return (b - a if case.frames != (0, N) else int(v["n_frames"]), v["height"], v["width"], 3)


def problems(case: Case, result: dict) -> list[str]:
    """What is wrong with one case's outcome ([] when it is fine)."""
    rc, err, left = result["rc"], result["stderr"], result["left"]
    lines = err.splitlines()
    found = []
    if result.get("crash"):
        found.append(f"crashed: {result['crash'].strip().splitlines()[-1]}")
    if "Traceback" in err:
        found.append("traceback on stderr")
    if rc == 0:
        want = expected_shape(case)
        if want is None:
            found.append("exit 0 for a chain this process refuses")
        elif case.command == "decode" and result["shape"] != list(want):
            found.append(f"exit 0 but output shape {result['shape']}, expected {list(want)}")
        if case.command == "decode" and [n for n in left if n != "out.npy"]:
            found.append(f"left {left}")
    elif rc == 2:
        prefix = f"gnerv {case.command}: error: "
        if len(lines) != 1 or not lines[0].startswith(prefix):
            found.append(f"stderr is not one line starting {prefix!r}: {err!r}")
        if left:
            found.append(f"left {left} after a failure")
    else:
        found.append(f"exit code {rc}, stderr {err[-500:]!r}")
    if not case.changed and rc != 0:
        found.append("the unchanged chain was refused")
    if result["maxrss_kib"] * 1024 > MAX_RSS_BYTES:
        found.append(f"peak memory {result['maxrss_kib'] // 1024} MiB")
    return found


def run_driver(cases: list[Case], out_dir: Path, work: Path) -> dict[int, dict]:
    """Run the cases in as few processes as CASES_PER_PROCESS allows; results by case number."""
    results: dict[int, dict] = {}
    for start in range(0, len(cases), CASES_PER_PROCESS):
        chunk = cases[start : start + CASES_PER_PROCESS]
        spec = work / f"cases{start}.json"
        spec.write_text(
            json.dumps(
                [
                    {
                        "id": c.number,
                        "argv": c.argv,
                        "out_dir": str(out_dir) if c.command == "decode" else None,
                    }
                    for c in chunk
                ]
            )
        )
        out = work / f"results{start}.jsonl"
        done = subprocess.run(  # through a small parent, so the driver's peak memory is its own
            [sys.executable, "-S", "-c", SPAWN, sys.executable, str(DRIVER), str(spec), str(out)],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120 + 5 * len(chunk),
        )
        got = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        results.update({r["id"]: r for r in got})
        if done.returncode != 0:
            dead = chunk[len(got)] if len(got) < len(chunk) else None
            where = dead.replay() if dead else "after the last case"
            pytest.fail(f"driver died ({done.returncode}) at {where}: {done.stderr[-3000:]}")
    return results


# A child forked from pytest counts pytest's pages in its peak memory (Linux keeps the pre-exec
# high-water mark): the driver is started by this small process instead.
SPAWN = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def run_executable(case: Case, timeout: float = 120.0) -> dict:
    """One `gnerv` process for the case; its own peak memory (conftest.run_measured)."""
    gnerv = shutil.which("gnerv", path=os.path.dirname(sys.executable)) or "gnerv"
    with tempfile.TemporaryDirectory() as tmp:
        err_path = Path(tmp) / "stderr.txt"
        with open(os.devnull, "wb") as devnull, err_path.open("wb") as err_file:
            got = run_measured(
                [gnerv, *case.argv], Path(tmp) / "figures.json", stdout=devnull,
                stderr=err_file, env=ENV, timeout=timeout,
            )  # fmt: skip
        err = err_path.read_text("utf-8", "replace")
    return {"rc": got["rc"], "stderr": err, "maxrss_kib": got["maxrss_bytes"] // 1024}


def check_out_dir(out_dir: Path, case: Case, result: dict) -> None:
    import numpy as np

    result["left"] = sorted(p.name for p in out_dir.iterdir())
    result["shape"] = None
    if result["rc"] == 0 and case.command == "decode" and (out_dir / "out.npy").exists():
        result["shape"] = list(np.load(out_dir / "out.npy").shape)
    for p in out_dir.iterdir():
        p.unlink()


def test_cli_survives_corrupted_layers(chain: list[bytes], tmp_path: Path) -> None:
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    for k, data in enumerate(chain, start=1):
        (in_dir / f"stage{k}.gnerv").write_bytes(data)
    numbers = ONLY or range(N_CASES)
    cases = [make_case(i, chain, in_dir, out_dir) for i in numbers]
    control = Case(
        -1,
        "decode",
        ["decode", *(str(in_dir / f"stage{k}.gnerv") for k in (1, 2, 3)), "-o"]
        + [str(out_dir / "out.npy"), "--device", "cpu"],
        [in_dir / f"stage{k}.gnerv" for k in (1, 2, 3)],
        1,
        "unchanged chain",
        (0, N),
        False,
    )
    t0 = time.perf_counter()
    results = run_driver([control, *cases], out_dir, tmp_path)
    driver_seconds = time.perf_counter() - t0
    assert results[-1]["rc"] == 0 and results[-1]["shape"] == [N, H, W, 3], results[-1]

    failures = []
    for case in cases:
        result = results.get(case.number)
        if result is None:
            failures.append(f"{case.replay()}: no result")
            continue
        found = problems(case, result)
        if found:
            failures.append(f"{case.replay()}: {'; '.join(found)}")

    t1 = time.perf_counter()
    for case in cases[:N_EXEC]:
        result = run_executable(case)
        check_out_dir(out_dir, case, result)
        found = problems(case, result)
        if found:
            failures.append(f"[own process] {case.replay()}: {'; '.join(found)}")
    exec_seconds = time.perf_counter() - t1

    refused = sum(1 for c in cases if results.get(c.number, {}).get("rc") == 2)
    print(
        f"fuzz seed {SEED}: {len(cases)} cases in {driver_seconds:.1f} s in-process "
        f"({refused} refused, {len(cases) - refused} decoded), {min(N_EXEC, len(cases))} "
        f"as own processes in {exec_seconds:.1f} s; peak RSS "
        f"{max(r['maxrss_kib'] for r in results.values()) // 1024} MiB"
    )
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(
        failures[:40]
    )
