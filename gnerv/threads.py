"""CPU threads that share a busy machine fairly.

One setting, made only where the user has not made it: OpenMP's wait policy. By default an
OpenMP thread that finishes its share of a parallel region spins, waiting for its siblings; when
a sibling has been descheduled by another process, the spinning burns the very core it needs:
training beside one busy process took 2.3-2.5x its idle time on the 2-core dev VM. PASSIVE
threads sleep instead (1.4-1.5x). The policy must be in the environment before OpenMP starts
(when torch is imported): `gnerv/__init__.py` calls `prepare_environment` first thing. It changes
no result. Its cost: idle, a CPU fit takes about 10 % longer on that VM (threads fall asleep
between the many small parallel regions); docs/performance.md has the figures.
OMP_WAIT_POLICY=ACTIVE in the environment takes it back.

The thread count itself is left as torch sets it (OMP_NUM_THREADS, Snakemake's `threads`, else
every core). Training results depend on it (gradients are summed across threads); what a decoder
shows does not: the only decode-side sums a thread count split were the time path's small
matrix products (from 3 threads on), which `one_thread` runs on one thread (gnerv.model), so an
encoder's residual is computed from the very floats a decoder with any thread count shows
(tests/test_threads.py). Choosing the count from the load would still change a fit's bits.

GNERV_THREADS=plain leaves the policy to torch (the behaviour before, for
benchmarks/bench_load.py's comparison).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

PLAIN_ENV = "GNERV_THREADS"
WAIT_POLICY = "PASSIVE"


def plain() -> bool:
    return os.environ.get(PLAIN_ENV, "").strip().lower() == "plain"


def prepare_environment() -> None:
    """Set OMP_WAIT_POLICY=PASSIVE unless the user set it (call before torch is imported)."""
    if not plain():
        os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one CPU thread, then restore the count (about 0.5 us)."""
    import torch

    count = torch.get_num_threads()
    if count == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(count)
