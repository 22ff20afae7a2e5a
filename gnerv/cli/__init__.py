"""`gnerv` command line: argument parsing and one-line error messages, nothing else.

One module per command group, each with a ``register(sub)``; options shared by several commands
are defined once in :mod:`gnerv.cli.common`. Expected mistakes raise GnervError; :func:`main`
prints ``gnerv <command>: error: <message>`` and exits with 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence

from gnerv.cli import ablations, codec, frames, layers, track
from gnerv.runtime.errors import GnervError
from gnerv.runtime.process import prepare_process

EXIT_USER_ERROR = 2
# What to do about the OS errors a user's paths provoke (anything else: the OS's own words).
OS_ERROR_FIXES = {
    errno.EACCES: "permission denied: choose a folder you can write to (or read, for inputs)",
    errno.EPERM: "not permitted: choose a folder you can write to",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.ENOTDIR: "a part of the path is a file, not a folder: fix the path",
    errno.EISDIR: "is a folder: give a file name",
    errno.EEXIST: "exists and is not a folder: fix the path",
    errno.ENOSPC: "no space left on the device: free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere",
    errno.EFBIG: "file too large for this file system or its limits: write elsewhere",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ENAMETOOLONG: "the name is too long: shorten the path",
}
# Command groups, in the order `gnerv --help` lists them.
GROUPS = (frames, codec, layers, track, ablations)
# The commands that train or render: they set up the process's threads and heap
# (gnerv.runtime.process) before torch is imported. The others only read, write or log files.
COMPUTE_COMMANDS = frozenset(
    {"fit", "render", "compress", "finetune", "encode", "decode", "residual", "evaluate", "report",
     "ablation"}
)  # fmt: skip


class UsageError(Exception):
    """A command line argparse refuses (it would print usage and exit); main makes it one line."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors, like every other error of the CLI."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="gnerv", description="GNeRV neural video codec: fit, code and decode videos."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(e, file=sys.stderr)
        return EXIT_USER_ERROR
    if args.command in COMPUTE_COMMANDS:
        prepare_process()
    try:
        args.func(args)
    except GnervError as e:
        print(f"gnerv {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (MemoryError, RuntimeError) as e:
        text = str(e).lower()
        if (
            not isinstance(e, MemoryError)
            and "out of memory" not in text
            and "can't allocate" not in text
        ):
            raise
        print(
            f"gnerv {args.command}: error: ran out of memory ({text.splitlines()[0][:120]}): "
            "use a smaller --size/--c0, --batch or --resize",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    except BrokenPipeError:  # `gnerv info x.gnerv | head`: the reader left, nothing to say
        sys.stderr.close()
        return 0
    except OSError as e:  # a path the OS refuses: one line naming it and the fix
        print(f"gnerv {args.command}: error: {os_error_message(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"gnerv {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def os_error_message(e: OSError) -> str:
    """'<path>: <what is wrong and what to do>' for an OSError raised on a user's path."""
    where = e.filename if e.filename is not None else "output"
    if e.filename2 is not None:
        where = f"{e.filename} -> {e.filename2}"
    fix = OS_ERROR_FIXES.get(e.errno, e.strerror or str(e))
    return f"{where}: {fix}"


if __name__ == "__main__":
    sys.exit(main())
