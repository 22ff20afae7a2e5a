"""Write-then-rename, so a killed or failed command never leaves a half-written output; and the
package's one JSON reader and writer."""

from __future__ import annotations

import contextlib
import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gnerv.errors import GnervError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files of `path` left by a killed process (its pid no longer runs)."""
    prefix = f".{path.stem}.tmp"
    try:
        candidates = list(path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(path.suffix)}"))
    except OSError:
        return
    for tmp in candidates:
        pid_text = tmp.name[len(prefix) : len(tmp.name) - len(path.suffix)]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the suffix (ffmpeg and numpy pick the format from it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = False) -> None:
    """Write `obj` as indented JSON to `path` atomically; numpy values and paths are allowed."""
    try:
        text = json.dumps(obj, indent=2, sort_keys=sort_keys, default=_json_default) + "\n"
    except (TypeError, ValueError) as err:
        raise GnervError(f"{path}: cannot be written as JSON ({err})") from None
    write_bytes_atomic(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike, what: str = "a JSON file") -> Any:
    """The JSON value in `path`; `what` says what the file should be (e.g. "what `gnerv evaluate`
    writes") for the one-line error when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GnervError(f"{path}: not found; expected {what}")
    except OSError as err:
        raise GnervError(f"{path}: not readable ({err.strerror}); expected {what}")
    except ValueError as err:  # bad UTF-8 or bad JSON
        raise GnervError(f"{path}: not valid JSON ({err}); expected {what}")
