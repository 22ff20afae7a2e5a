"""gnerv.threads: the OpenMP wait policy is set before torch starts, and changes no decoded bit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from gnerv import bitstream as bs
from gnerv.model import GNeRV, GNeRVConfig

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
