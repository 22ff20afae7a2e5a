"""A fitted model knows its target: `gnerv fit` records the frames (or residual) file it was
fitted to, by path and SHA-256, in the model folder; `compress` and `finetune` use it when no
--frames-file (or --target-file) is given, and refuse a file that is gone or has changed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from gnerv.pipeline.results import SOURCE_NAME
from gnerv.runtime.atomic import write_json
from gnerv.runtime.errors import GnervError


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_source(model_dir: str | os.PathLike, target: str | os.PathLike, residual: bool) -> None:
    """Write MODEL_DIR/source.json: the target file's absolute path, SHA-256 and kind."""
    write_json(
        Path(model_dir) / SOURCE_NAME,
        {
            "path": str(Path(target).resolve()),
            "sha256": file_sha256(target),
            "kind": "residual" if residual else "frames",
        },
    )


def recorded_source(model_dir: str | os.PathLike) -> tuple[Path, bool]:
    """(the target file the model in model_dir was fitted to, whether it is a residual),
    checked against its recorded SHA-256; GnervError naming the flag that overrides."""
    record_path = Path(model_dir) / SOURCE_NAME
    flag = "--frames-file (or --target-file for a residual stage)"
    try:
        record = json.loads(record_path.read_text())
        path, sha, kind = Path(record["path"]), str(record["sha256"]), str(record["kind"])
    except OSError:
        raise GnervError(
            f"{record_path} not found: this model folder does not record its frames; give {flag}"
        )
    except (ValueError, KeyError, TypeError):
        raise GnervError(f"{record_path} is unreadable: give {flag}")
    if kind == "residual":
        flag = "--target-file"
    elif kind == "frames":
        flag = "--frames-file"
    if not path.is_file():
        raise GnervError(
            f"{path}, the file the model in {model_dir} was fitted to, is gone: give {flag}"
        )
    if file_sha256(path) != sha:
        raise GnervError(
            f"{path} has changed since the model in {model_dir} was fitted to it (SHA-256 "
            f"differs): give {flag} with the frames it was fitted to"
        )
    return path, kind == "residual"
