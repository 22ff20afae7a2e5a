"""gnerv.threads: the OpenMP wait policy is set before torch starts, and changes no decoded bit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gnerv import bitstream as bs
from gnerv.model import GNeRV, GNeRVConfig
from gnerv.threads import one_thread

DECODE = """
import hashlib, sys, gnerv, torch
from gnerv.decode import decode_float, load_layers
floats = decode_float(load_layers([sys.argv[1]]), range(12), "cpu", 4)
print(hashlib.sha256(floats.numpy().tobytes()).hexdigest())
"""


def wait_policy(**env: str) -> str:
    """OMP_WAIT_POLICY as a fresh interpreter sees it after `import gnerv`."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GNERV_THREADS")}
    done = subprocess.run(
        [sys.executable, "-c", "import os, gnerv; print(os.environ.get('OMP_WAIT_POLICY'))"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_import_sets_a_passive_wait_policy_unless_told_otherwise() -> None:
    assert wait_policy() == "PASSIVE"
    assert wait_policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"  # the user's choice stays
    assert wait_policy(GNERV_THREADS="plain") == "None"


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
    the decoder's float sums are the same bits with 1 to 4 threads. Before
    gnerv.threads.one_thread the time path's small matrix products differed from 3 threads on.
    (Set in the process: this 2-core VM caps OMP_NUM_THREADS at its cores.)"""
    from gnerv.decode import decode_float, load_layers

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
