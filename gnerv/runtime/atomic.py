"""Write-then-rename, so a killed or failed command never leaves a half-written output; and the
package's one JSON reader and writer."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gnerv.runtime.errors import GnervError


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
    check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:  # name the user's path, not the temporary one
        if err.filename is not None and os.fspath(err.filename) == os.fspath(tmp):
            err.filename = os.fspath(path)
            if err.filename2 is not None and os.fspath(err.filename2) == os.fspath(path):
                err.filename2 = None
        raise
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                tmp.unlink()


def check_output_path(path: str | os.PathLike) -> None:
    """Refuse, before anything is written, an output that is a folder or lies under a file.

    Raises IsADirectoryError / NotADirectoryError naming `path` (the CLI turns them into one
    line with the fix)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fspath(path))
            break


def check_writable(path: str | os.PathLike, folder: bool = False) -> None:
    """Refuse, before any work, an output that could not be written: a folder where a file is
    wanted (a file where a folder is, with `folder`), a path under a file, or a place the
    process may not write to (probed with a temporary file in the nearest existing folder).
    Raises OSError naming `path` (the CLI turns it into one line with the fix)."""
    path = Path(path)
    if not folder:
        check_output_path(path)
    elif path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fspath(path))
    candidates = [path, *path.parents] if folder else list(path.parents)
    existing = next((p for p in candidates if p.exists()), Path("."))
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fspath(path))
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise type(e)(e.errno, e.strerror, os.fspath(path)) from None


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
