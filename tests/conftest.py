"""Shared fixtures: paths to the committed sample clips and small cached frame sets.

The frame fixtures are session-scoped and shared by every test: treat them as read-only and
copy before changing them (they stay writable so that torch.from_numpy does not warn).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gnerv.media.video import read_video

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def cockatoo_path(repo_root: Path) -> Path:
    """data/raw/cockatoo.mp4: 280 frames, 1280x720, 20 fps."""
    path = repo_root / "data" / "raw" / "cockatoo.mp4"
    assert path.is_file(), f"missing sample clip {path}"
    return path


@pytest.fixture(scope="session")
def realshort_path(repo_root: Path) -> Path:
    """data/raw/realshort.mp4: 36 frames, 320x240, 30 fps."""
    path = repo_root / "data" / "raw" / "realshort.mp4"
    assert path.is_file(), f"missing sample clip {path}"
    return path


@pytest.fixture(scope="session")
def tiny_cockatoo(cockatoo_path: Path) -> tuple[np.ndarray, dict]:
    """Cockatoo frames 0:8 resized to 36x64 (16:9, 9x16 embedding): uint8 (8, 36, 64, 3), meta."""
    frames, meta = read_video(cockatoo_path, frame_range=(0, 8), resize=(36, 64), progress=False)
    return frames, meta


@pytest.fixture(scope="session")
def tiny_realshort(realshort_path: Path) -> tuple[np.ndarray, dict]:
    """Realshort frames 0:6 resized to 48x64 (4:3, 3x4 embedding): uint8 (6, 48, 64, 3), meta."""
    frames, meta = read_video(realshort_path, frame_range=(0, 6), resize=(48, 64), progress=False)
    return frames, meta


# Run a command and measure ITS peak memory and CPU time. A child forked from pytest starts with
# pytest's resident pages counted in its ru_maxrss (Linux records the pre-exec high-water mark),
# so the command is started by a tiny launcher process whose own footprint is small, and the
# launcher reports the command's wait4 figures.
_LAUNCHER = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "maxrss_bytes": usage.ru_maxrss * 1024,
               "cpu_seconds": usage.ru_utime + usage.ru_stime}, f)
"""


def run_measured(argv: list[str], figures: Path, **popen: Any) -> dict:
    """Run argv (stdout/stderr/env/cwd as for subprocess.run) through the launcher; returns
    {"rc", "maxrss_bytes", "cpu_seconds"} of the command itself."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(figures), *map(str, argv)], **popen)
    import json

    return json.loads(figures.read_text())
