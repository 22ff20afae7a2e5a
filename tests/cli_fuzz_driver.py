"""Run `gnerv.cli.main` on many argument lists in this one process (for tests/test_fuzz_cli.py).

Usage: python tests/cli_fuzz_driver.py CASES.json RESULTS.jsonl

CASES.json is a list of {"id": ..., "argv": [...], "out_dir": folder or null}. For each case in
turn the driver runs main(argv) with stdout and stderr captured, under a wall-clock alarm, then
appends one JSON line to RESULTS.jsonl (flushed at once, so a crash still leaves the cases before
it): the exit code, stderr, a traceback if main raised, the files in out_dir afterwards, and the
process's peak resident memory so far. A successful decode's output is read back (its shape) and
deleted, so the next case starts with an empty out_dir.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

CASE_SECONDS = 60.0  # a decode of the tiny fuzz chain takes milliseconds


class Hang(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise Hang


def run_case(main: Any, case: dict) -> dict:
    import numpy as np

    err, out = io.StringIO(), io.StringIO()
    crash = None
    t0 = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(case["argv"])
    except Hang:
        rc, crash = None, f"hung for more than {CASE_SECONDS} s"
    except SystemExit as e:  # argparse
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - a crash is what the fuzz looks for
        rc, crash = None, traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - t0
    left: list[str] = []
    shape = None
    if case.get("out_dir"):
        out_dir = Path(case["out_dir"])
        left = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
        for name in left:
            path = out_dir / name
            if rc == 0 and name.endswith(".npy") and not name.startswith("."):
                with contextlib.suppress(Exception):
                    shape = list(np.load(path, allow_pickle=False).shape)
            if path.is_file():
                path.unlink()
    return {
        "id": case["id"],
        "rc": rc,
        "stderr": err.getvalue(),
        "crash": crash,
        "left": left,
        "shape": shape,
        "seconds": seconds,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main_driver(cases_path: str, results_path: str) -> int:
    from gnerv.cli import main

    cases = json.loads(Path(cases_path).read_text())
    signal.signal(signal.SIGALRM, _alarm)
    with open(results_path, "a", encoding="utf-8") as results:
        for case in cases:
            results.write(json.dumps(run_case(main, case)) + "\n")
            results.flush()
            os.fsync(results.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main_driver(sys.argv[1], sys.argv[2]))
