"""What the benchmarks share: the JSON record each writes (its figures, with the machine, date and
command), the `gnerv` CLI as a subprocess, and NAME=FLAGS arguments."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The CPU features that decide which kernels run (vector width, native bfloat16, AMX).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """Which of CPU_FLAGS this CPU has (Linux's /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return [f for f in CPU_FLAGS if f in flags]


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


ROOT = Path(__file__).resolve().parent.parent


def portable(value: Any) -> Any:
    """`value` with every absolute path in it written as a reader can follow it: relative to
    the repository when inside it, else the file's name alone (a record names no machine's
    folders)."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v) for v in value]
    if isinstance(value, os.PathLike) or (isinstance(value, str) and os.path.isabs(value)):
        path = Path(value).absolute()
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    return value


def command_line() -> str:
    """This benchmark's command line as a reader can rerun it (no machine's folders)."""
    return shlex.join([Path(sys.argv[0]).name, *portable(sys.argv[1:])])


def write_record(out: str | os.PathLike, **figures: Any) -> None:
    """Write `figures` to `out` as JSON beside the machine, the date and the command line."""
    record = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "flags": cpu_flags()},
        "date": time.strftime("%Y-%m-%d"),
        "command": command_line(),
        **portable(figures),
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")


GNERV = str(Path(sys.executable).parent / "gnerv")


def gnerv(*args: str) -> None:
    """Run one `gnerv` command; its error tail ends the benchmark."""
    done = subprocess.run([GNERV, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"gnerv {shlex.join(args)} failed:\n{done.stderr[-2000:]}")


def named_flags(items: list[str], built_in: dict[str, str], what: str) -> dict[str, list[str]]:
    """`NAME=FLAGS` arguments (or a built-in NAME) as name -> flag list."""
    out = {}
    for item in items:
        name, sep, flags = item.partition("=")
        if not sep:
            if name not in built_in:
                raise SystemExit(f"{what} {name!r}: use {', '.join(built_in)} or NAME=FLAGS")
            flags = built_in[name]
        out[name] = shlex.split(flags)
    return out
