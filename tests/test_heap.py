"""gnerv/runtime/heap.py: large CPU buffers freed by one batch are reused by the next, not
re-faulted."""

from __future__ import annotations

import subprocess
import sys

import pytest

# In a fresh process (every module of the package imported; the heap kept only where argv says
# so, as the computing commands do through gnerv.runtime.process): allocate, touch and free 64 MB,
# ten
# rounds (torch's 64-byte aligned allocations settle into reused chunks after a few: the heap
# stops growing), then count the minor page faults of five more rounds.
PROBE = """
import importlib, pkgutil, resource, sys
import gnerv, torch
for m in pkgutil.walk_packages(gnerv.__path__, "gnerv."):
    importlib.import_module(m.name)
if sys.argv[1] == "kept":
    from gnerv.runtime.process import prepare_process
    prepare_process(threads=False)
def touch():
    x = torch.empty(16 * 2**20, dtype=torch.float32)  # 64 MB: above glibc's mmap threshold
    x.fill_(1.0)
    return float(x[-1])
for _ in range(10):
    touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 5 * 64 * 2**20 // 4096  # fresh mappings of 5 x 64 MB fault once per 4 KB page


def last_round_faults(heap: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, heap], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_buffers_are_reused_not_refaulted() -> None:
    kept, system = last_round_faults("kept"), last_round_faults("import only")
    assert system > PAGES // 2, f"importing gnerv should leave the heap alone ({system} faults)"
    assert kept < PAGES // 20, f"gnerv's heap should reuse the freed pages ({kept} faults)"
