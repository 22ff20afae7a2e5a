"""The core commands (extract, fit, render) end to end, and their one-line errors."""

import numpy as np
import pytest

from gnerv.cli import main
from gnerv.media.video import load_frames


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, cockatoo_path):
    d = tmp_path_factory.mktemp("cli")
    assert (
        main(
            [
                "extract",
                str(cockatoo_path),
                "-o",
                str(d / "f.npy"),
                "--frames",
                "0:6",
                "--resize",
                "36x64",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "fit",
                str(d / "f.npy"),
                "-o",
                str(d / "m"),
                "--c0",
                "8",
                "--min-channels",
                "8",
                "--epochs",
                "3",
                "--quiet",
            ]
        )
        == 0
    )
    return d


def test_extract_fit_render(fitted, capsys, tmp_path):
    frames, meta = load_frames(fitted / "f.npy")
    assert frames.shape == (6, 36, 64, 3) and meta["fps"] == 20
    for out in ("r.npy", "r.mkv", "r.mp4"):
        code, stdout, _ = run(capsys, "render", str(fitted / "m"), "-o", str(tmp_path / out))
        assert code == 0 and "6 frames" in stdout
    rendered = np.load(tmp_path / "r.npy")
    assert rendered.shape == frames.shape and rendered.dtype == np.uint8
    lossless, _ = load_frames(tmp_path / "r.mkv")
    np.testing.assert_array_equal(lossless, rendered)
    code, _, _ = run(
        capsys, "render", str(fitted / "m"), "-o", str(tmp_path / "p.npy"), "--frames", "2:4"
    )
    assert code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), rendered[2:4])


def test_fit_prints_psnr(fitted, capsys):
    code, out, _ = run(
        capsys,
        "fit",
        str(fitted / "f.npy"),
        "-o",
        str(fitted / "m"),
        "--c0",
        "8",
        "--min-channels",
        "8",
        "--epochs",
        "3",
        "--quiet",
        "--resume",
    )
    assert code == 0 and "PSNR" in out and "dB" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["extract", "{d}/missing.mp4", "-o", "{t}/x.npy"], "no such file"),
        (["extract", "{c}", "-o", "{t}/x.npy", "--frames", "400:500"], "only"),
        (["fit", "{d}/f.npy", "-o", "{t}/m", "--epochs", "0"], "epochs"),
        (["fit", "{d}/f.npy", "-o", "{t}/m", "--batch", "-1"], "batch"),
        (["fit", "{d}/f.npy", "-o", "{t}/m", "--upscale-factors", "5,5"], "does not divide"),
        (["fit", "{d}/f.npy", "-o", "{t}/m", "--c0", "100000"], "could not hold this model"),
        (["fit", "{d}/f.npy", "-o", "{t}/m", "--size", "1k"], "min_channels"),
        (["fit", "{d}/missing.npy", "-o", "{t}/m"], "missing.npy"),
        (["render", "{d}/m", "-o", "{t}/x.npy", "--frames", "4:9"], "outside"),
        (["render", "{d}/m", "-o", "{t}/x.avi"], "avi"),
        (["render", "{t}/nomodel", "-o", "{t}/x.npy"], "not found"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(
    fitted, cockatoo_path, capsys, tmp_path, args, message
):
    args = [a.format(d=fitted, t=tmp_path, c=cockatoo_path) for a in args]
    code, _, err = run(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert list(tmp_path.iterdir()) == []


def test_help_imports_no_torch() -> None:
    """`gnerv --help` and every command's --help read only torch-free modules (the defaults
    come from the torch-free config dataclasses), so they answer at once."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from gnerv.cli import build_parser\n"
        "parser = build_parser()\n"
        "commands = parser._subparsers._group_actions[0].choices\n"
        "for name, sub in commands.items():\n"
        "    sub.format_help()\n"
        "parser.format_help()\n"
        "print(len(commands), 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    count, torch_loaded = done.stdout.split()
    assert int(count) >= 10 and torch_loaded == "False"
