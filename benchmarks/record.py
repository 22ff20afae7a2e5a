"""The JSON record every benchmark writes: its figures, with the machine, date and command."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any


def write_record(out: str | os.PathLike, **figures: Any) -> None:
    """Write `figures` to `out` as JSON beside the machine, the date and the command line."""
    record = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        **figures,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")
