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
shows nearly does not: the time path's small matrix products (split by thread count from 3
threads on) run on one thread (`one_thread`, gnerv.model; tests/test_threads.py). Left: torch's
GELU on NHWC tensors of some shapes changes a few last bits with the thread split (a 0.1M model
at 180x320, batch 1: 7 of 5.5 million decoded bytes differed by one between 1 and 2 threads;
docs/performance.md). Choosing the count from the load would also change a fit's bits.

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
