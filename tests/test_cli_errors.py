"""A clumsy user's outputs and options: each is refused with exit 2 and one stderr line that names
the path and what to do, and nothing is left behind (no output, temporary file or sidecar)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gnerv.cli import main
from gnerv.media.video import save_frames

N, H, W = 8, 36, 64
CLIP = ["--frames", "0:2", "--resize", f"{H}x{W}"]
SMALL = ["--c0", "8", "--min-channels", "8"]
TRAIN = ["--epochs", "1", "--device", "cpu", "--quiet"]
# Words of the advice that follows the path (one of them must be there).
FIXES = ("fix ", "give ", "write ", "choose ", "check ", "free ", "remove ", "use ")


def cli(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def usage(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str]:
    """(exit code, stderr) of a command line argparse refuses (main may return or exit)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    return rc, capsys.readouterr().err


def listing(folder: Path) -> set[str]:
    """Every path under `folder`, relative (hidden temporaries included)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def inputs(tiny_cockatoo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A frames file, a fitted model folder and its .gnerv layer, outside the tests' folders."""
    frames, meta = tiny_cockatoo
    root = tmp_path_factory.mktemp("inputs")
    save_frames(root / "frames.npy", frames, meta)
    assert main(["fit", str(root / "frames.npy"), "-o", str(root / "model"), *SMALL, *TRAIN]) == 0
    assert main(["compress", str(root / "model"), "-o", str(root / "layer.gnerv")]) == 0
    return {"frames": root / "frames.npy", "model": root / "model", "layer": root / "layer.gnerv"}


def _mount_readonly(folder: Path) -> str | None:
    for cmd in (
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
        ["chattr", "+i", str(folder)],
    ):
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return cmd[0]
    return None


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody can write to, even root: a read-only tmpfs, else an immutable folder."""
    folder = tmp_path / "ro"
    folder.mkdir()
    how = _mount_readonly(folder)
    if how is None:
        pytest.skip("cannot make a read-only folder here (neither mount nor chattr +i works)")
    try:
        probe = folder / "probe"
        with contextlib.suppress(OSError):
            probe.write_bytes(b"")
        if probe.exists():
            pytest.skip(f"{how} did not make {folder} read-only")
        yield folder
    finally:
        undo = ["umount", str(folder)] if how == "mount" else ["chattr", "-i", str(folder)]
        subprocess.run(undo, capture_output=True, timeout=10)


# --------------------------------------------------------------------------------------------
# Bad output paths
# --------------------------------------------------------------------------------------------

# command -> (output suffix, argv before -o given the inputs and the clip)
COMMANDS = {
    "extract": ".npy",
    "fit": "",
    "compress": ".gnerv",
    "encode": ".gnerv",
    "decode": ".npy",
}


def command_argv(command: str, inputs: dict[str, Path], clip: Path) -> list[object]:
    return {
        "extract": ["extract", clip, *CLIP],
        "fit": ["fit", inputs["frames"], *SMALL, *TRAIN],
        "compress": ["compress", inputs["model"]],
        "encode": ["encode", clip, *CLIP, *SMALL, *TRAIN],
        "decode": ["decode", inputs["layer"], "--device", "cpu"],
    }[command]


def assert_refused(
    capsys: pytest.CaptureFixture, folder: Path, names: str, argv: list[object]
) -> str:
    """Exit 2, one stderr line naming `names` and a fix, and `folder` unchanged."""
    before = listing(folder)
    rc, _, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert rc == 2, err
    line = lines[-1]
    assert line.startswith(f"gnerv {argv[0]}: error: "), err
    assert names in line, f"{names!r} not named in {line!r}"
    assert any(fix in line for fix in FIXES), f"no advice in {line!r}"
    assert listing(folder) == before, listing(folder) - before
    assert len(lines) == 1, err  # and so no training either: its log lines would come first
    return line


@pytest.mark.parametrize("command", list(COMMANDS))
def test_output_under_a_file(command, inputs, cockatoo_path, tmp_path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    out = afile / ("model" if command == "fit" else f"x{COMMANDS[command]}")
    argv = [*command_argv(command, inputs, cockatoo_path), "-o", out]
    assert_refused(capsys, tmp_path, str(afile), argv)
    assert afile.read_text() == "not a folder"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_output_that_is_a_folder(command, inputs, cockatoo_path, tmp_path, capsys) -> None:
    if command == "fit":  # fit writes a folder: an existing file in its place is the mistake
        out = tmp_path / "adir"
        out.write_text("a file")
    else:
        out = tmp_path / f"adir{COMMANDS[command]}"
        out.mkdir()
    argv = [*command_argv(command, inputs, cockatoo_path), "-o", out]
    assert_refused(capsys, tmp_path, str(out), argv)
    assert out.is_dir() or out.read_text() == "a file"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_output_in_a_read_only_folder(
    command, inputs, cockatoo_path, readonly_dir, tmp_path, capsys
) -> None:
    out = readonly_dir / ("model" if command == "fit" else f"x{COMMANDS[command]}")
    argv = [*command_argv(command, inputs, cockatoo_path), "-o", out]
    line = assert_refused(capsys, tmp_path, str(readonly_dir), argv)
    assert ".tmp" not in line, f"names a temporary file: {line}"


def test_a_bad_output_through_the_executable(inputs, tmp_path) -> None:
    """The real `gnerv` process: one line, exit 2, no traceback."""
    afile = tmp_path / "afile"
    afile.write_text("")
    gnerv = Path(sys.executable).with_name("gnerv")
    done = subprocess.run(
        [str(gnerv), "decode", str(inputs["layer"]), "-o", str(afile / "x.npy")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"gnerv decode: error: {afile}"), done.stderr
    assert listing(tmp_path) == {"afile"}


# --------------------------------------------------------------------------------------------
# Bad options: refused before any work
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["render", "decode"])
def test_batch_zero_is_a_usage_error(command, inputs, tmp_path, capsys) -> None:
    source = inputs["model"] if command == "render" else inputs["layer"]
    rc, err = usage(capsys, command, source, "-o", tmp_path / "x.npy", "--batch", "0")
    assert rc == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"gnerv {command}: error: argument --batch: ")
    assert "--batch 0" in err or "got 0" in err, err
    assert listing(tmp_path) == set()


@pytest.mark.parametrize("bits", ["0", "1", "17"])
def test_encode_refuses_bad_bits_before_training(bits, cockatoo_path, tmp_path, capsys) -> None:
    t0 = time.perf_counter()
    rc, err = usage(capsys, "encode", cockatoo_path, "-o", tmp_path / "x.gnerv", "--bits", bits)
    assert rc == 2, err
    assert err.strip().splitlines()[-1].startswith("gnerv encode: error: argument --bits: ")
    assert "2..16" in err and "Traceback" not in err
    assert time.perf_counter() - t0 < 5  # no frames read, no training
    assert listing(tmp_path) == set()  # no output, no x.work


def test_fit_refuses_a_model_the_format_cannot_hold(inputs, tmp_path, capsys) -> None:
    t0 = time.perf_counter()
    rc, _, err = cli(capsys, "fit", inputs["frames"], "-o", tmp_path / "m", "--size", "1G", *TRAIN)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith("gnerv fit: error: ") and "could not hold" in lines[0]
    assert time.perf_counter() - t0 < 20  # refused before building or training the model
    assert listing(tmp_path) == set()


def test_extract_past_the_end_says_how_many_frames_it_took(
    realshort_path, tmp_path, capsys
) -> None:
    out = tmp_path / "f.npy"
    rc, _, err = cli(
        capsys, "extract", realshort_path, "-o", out, "--frames", "0:100000", "--resize", "24x32"
    )
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "took frames 0:36 (36 frames)" in warnings[0], err
    assert listing(tmp_path) == {"f.npy", "f.json"}
