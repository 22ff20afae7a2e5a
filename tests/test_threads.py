"""gnerv.runtime.threads: the commands set OpenMP's waiting before torch starts (importing the
package sets nothing), and it changes no decoded bit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gnerv.codec import bitstream as bs
from gnerv.codec.config import GNeRVConfig
from gnerv.codec.model import GNeRV
from gnerv.runtime.threads import THREAD_SETTINGS, one_thread, prepare_threads

DECODE = """
import hashlib, sys, gnerv, torch
from gnerv.codec.decode import decode_float, load_layers
floats = decode_float(load_layers([sys.argv[1]]), range(12), "cpu", 4)
print(hashlib.sha256(floats.numpy().tobytes()).hexdigest())
"""


# Every module of the package imported, as a library user or Snakemake's own process would.
IMPORT_ALL = """
import os, pkgutil, importlib, gnerv
for m in pkgutil.walk_packages(gnerv.__path__, "gnerv."):
    importlib.import_module(m.name)
print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"))
"""
THREAD_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def test_importing_the_package_sets_no_thread_variable() -> None:
    clean = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], env=clean, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["None", "None"]


def test_commands_set_the_thread_settings_unless_the_user_did() -> None:
    env: dict[str, str] = {}
    assert prepare_threads(env) == THREAD_SETTINGS
    assert env == THREAD_SETTINGS
    for name, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "1")):
        env = {name: value}
        assert prepare_threads(env) == {}  # the user's choice stays, alone
        assert env == {name: value}


def test_a_computing_command_applies_them_before_torch_loads(tmp_path: Path) -> None:
    """`gnerv decode` in a fresh process: the settings are in its environment by the time torch
    (and its OpenMP runtime) is imported."""
    probe = (
        "import os, sys, builtins\n"
        "seen = {}\n"
        "real = builtins.__import__\n"
        "def spy(name, *a, **k):\n"
        "    if name == 'torch' and 'torch' not in sys.modules and not seen:\n"
        "        seen.update({v: os.environ.get(v) for v in %r})\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = spy\n"
        "from gnerv.cli import main\n"
        "main(['decode', sys.argv[1], '-o', sys.argv[2]])\n"
        "print(seen)\n"
    ).replace("%r", repr(THREAD_VARIABLES))
    clean = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "missing.gnerv"), str(tmp_path / "o.npy")],
        env=clean, capture_output=True, text=True, check=True,
    )  # fmt: skip
    seen = eval(done.stdout.strip().splitlines()[-1])  # a dict literal printed by the probe
    assert {k: v for k, v in seen.items() if v is not None} == THREAD_SETTINGS


def test_the_wait_policy_changes_no_decoded_bit(tmp_path: Path) -> None:
    """Sleeping or spinning threads do the same arithmetic: the decoder's float sums (what an
    encoder computes residuals from) are the same bits under either policy."""
    torch.manual_seed(3)
    model = GNeRV(GNeRVConfig(48, 80, c0=8, min_channels=8))
    facts = bs.video_facts(12, 48, 80, 25.0)
    layer = tmp_path / "base.gnerv"
    bs.write_gnerv(layer, bs.compress_model(model, 8, facts, bs.base_stage("cd" * 32)))
    digests = set()
    for policy in ("PASSIVE", "ACTIVE"):
        done = subprocess.run(
            [sys.executable, "-c", DECODE, str(layer)],
            env={**os.environ, "OMP_WAIT_POLICY": policy, "OMP_NUM_THREADS": "2"},
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(done.stdout.strip())
    assert len(digests) == 1


@pytest.mark.parametrize("branch", ["ds", "ds+m", "m"])
def test_decoded_floats_do_not_depend_on_the_thread_count(tmp_path: Path, branch: str) -> None:
    """An encoder computes a residual from what the decoder shows, and the two may run with
    different thread counts (a Snakemake job's `threads` on a cluster node, a user's laptop):
    the decoder's float sums are the same bits with 1 to 4 threads (the time path's small matrix
    products run on one thread: gnerv.runtime.threads.one_thread). The count is set in the
    process, so more threads than the machine has cores are tested too."""
    from gnerv.codec.decode import decode_float, load_layers

    torch.manual_seed(5)
    model = GNeRV(GNeRVConfig(48, 80, c0=8, min_channels=8, time_branch=branch))
    facts = bs.video_facts(12, 48, 80, 25.0)
    layer = tmp_path / "base.gnerv"
    bs.write_gnerv(layer, bs.compress_model(model, 8, facts, bs.base_stage("ab" * 32)))
    layers = load_layers([str(layer)])
    before = torch.get_num_threads()
    decoded = []
    try:
        for threads in (1, 2, 3, 4):
            torch.set_num_threads(threads)
            decoded.append(decode_float(layers, range(12), "cpu", 8))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(decoded[0], other) for other in decoded[1:])


def test_one_thread_restores_the_count() -> None:
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
