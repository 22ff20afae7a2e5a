"""CPU threads that share a busy machine fairly.

By default an OpenMP thread that finishes its share of a parallel region spins a long while,
waiting for its siblings; when a sibling has been descheduled by another process, the spinning
burns the very core it needs: a fit beside one busy process took 2.8x its idle time. Sleeping at
once (OMP_WAIT_POLICY=PASSIVE, :data:`THREAD_SETTINGS`) keeps it under 2x; bounded spins
(GOMP_SPINCOUNT 10,000 and 30,000) did not (2.6x, 3.9x). Its price on an idle machine, whose
threads fall asleep between the many small parallel regions of a training step, was 2 % of a
fit on the CPU measured (other CPUs may differ); a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT
takes it back. The figures are benchmarks/records/load.json's (benchmarks/bench_load.py,
docs/performance.md).

The settings must be in the environment before OpenMP starts (when torch is imported), so
:func:`prepare_threads` is called by the commands that train or decode
(gnerv.runtime.process), never on import; a variable the user set is left as it is. They change
no result.

The thread count itself is left as torch sets it (OMP_NUM_THREADS, Snakemake's `threads`, else
every core). Training results depend on it (gradients are summed across threads); what a decoder
shows is the subject of docs/bitstream.md, "What a decoder promises". The time path's small
matrix products (split by thread count from 3 threads on) run on one thread (`one_thread`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

# libgomp (the OpenMP runtime of torch's Linux wheels) spins GOMP_SPINCOUNT times before it
# sleeps: 300,000 by default, 0 under OMP_WAIT_POLICY=PASSIVE.
THREAD_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE"}


def prepare_threads(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Put THREAD_SETTINGS into the environment where the user has not set them (call before
    torch is imported); returns what was set."""
    env = os.environ if environ is None else environ
    user_set = any(name in env for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"))
    if user_set:
        return {}
    env.update(THREAD_SETTINGS)
    return dict(THREAD_SETTINGS)


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
