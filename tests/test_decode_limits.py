"""Decode limits: checksum-valid bombs are refused by `gnerv decode` and `gnerv info` in one
line, fast and small; honest files (a 1080p 12M model of 600 frames) pass; --max-* raise them."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_measured

from gnerv.codec import bitstream as bs
from gnerv.codec import limits as lim
from gnerv.codec.config import DEFAULT_BATCH, MIN_BITS, GNeRVConfig, count_params
from gnerv.codec.model import GNeRV
from gnerv.runtime.errors import GnervError
from gnerv.runtime.sizes import parse_bytes

ROOT = Path(__file__).resolve().parents[1]
VIDEO_ID = "cd" * 32
PREFIX = struct.Struct("<4sHI")
# CPU seconds beyond interpreter start-up (`gnerv --help`): a guard against hangs only. Refused
# bombs cost what start-up costs (about 2.5 s here), but on a loaded 2-core CI machine CPU time
# itself wanders by more than a second (a CI run measured 2.3 s start-up and 3.6 s for a
# refusal); the unbounded decodes these files ask for would take minutes. That the refusal
# comes before any weight or frame is decoded is pinned exactly, in process, below.
MAX_EXTRA_SECONDS = 15.0
MAX_RSS_BYTES = 500 << 20
GNERV = str(Path(sys.executable).with_name("gnerv"))  # the installed command line


def random_model(cfg: GNeRVConfig, seed: int = 0) -> GNeRV:
    """GNeRV(cfg) with Laplacian weights (they look trained, so the tensors are ANS coded)."""
    with torch.device("meta"):
        model = GNeRV(cfg)
    rng = np.random.default_rng(seed)
    sd = {
        k: torch.from_numpy(rng.laplace(0.0, 0.05, tuple(v.shape)).astype(np.float32))
        for k, v in model.state_dict().items()
    }
    model.load_state_dict(sd, assign=True)
    return model.eval()


def packed(cfg: GNeRVConfig, n_frames: int) -> bytes:
    """A layer written by the project's own writer (every field and the CRC valid)."""
    video = bs.video_facts(n_frames, cfg.height, cfg.width, 25.0)
    return bs.compress_model(random_model(cfg), 8, video, bs.base_stage(VIDEO_ID))


def with_model_field(data: bytes, key: str, value: object) -> bytes:
    """``data`` with header field model.<key> set to ``value`` and a valid CRC (by the layout)."""
    _, version, hlen = PREFIX.unpack_from(data)
    header = json.loads(data[10 : 10 + hlen])
    header["model"][key] = value
    raw = bs.canonical_json(header)
    out = PREFIX.pack(b"GNRV", version, len(raw)) + raw + data[10 + hlen : -4]
    return out + struct.pack("<I", zlib.crc32(out))


SMALL = GNeRVConfig(36, 64, c0=8, min_channels=8)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("limits")
    small = packed(SMALL, 4)
    # Frame pixels from a few thousand parameters: 16384x16384 from c0 = min_channels = 1.
    huge = GNeRVConfig(16384, 16384, c0=1, min_channels=1, ds_hidden=4, pe_levels=4)
    frame_bytes = 1 + len(small) // 2  # frames per byte 2: above the default 1, below 3
    contents = {
        "small": small,
        "frames": packed(SMALL, 1_000_000),
        "pixels": packed(huge, 1),
        "kernel": with_model_field(small, "kernel_size", 63),
        "pe_base": with_model_field(small, "pe_base", 1e9),
        "borderline": packed(SMALL, 4 * frame_bytes),
    }
    paths = {}
    for name, data in contents.items():
        paths[name] = d / f"{name}.gnerv"
        paths[name].write_bytes(data)
    return paths


def run_cli(*args: str, cwd: Path) -> tuple[int, str, float, int]:
    """`gnerv ARGS`, a real process: (exit code, stderr, CPU seconds, peak RSS bytes).

    CPU time (user + system), not wall time: it measures the work the process did, whatever
    else the machine is doing (tests share 2 cores); both figures are the process's own
    (conftest.run_measured)."""
    out, err = cwd / "stdout.txt", cwd / "stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # no spinning threads in the CPU time
    with out.open("wb") as fo, err.open("wb") as fe:
        got = run_measured([GNERV, *args], cwd / "figures.json", stdout=fo, stderr=fe, env=env)
    return got["rc"], err.read_text(), got["cpu_seconds"], got["maxrss_bytes"]


@pytest.fixture(scope="module")
def startup(tmp_path_factory: pytest.TempPathFactory) -> float:
    """CPU seconds of `gnerv --help`: interpreter and import start-up (the less of two runs)."""
    d = tmp_path_factory.mktemp("help")
    return min(run_cli("--help", cwd=d)[2] for _ in range(2))


BOMBS = {
    "frames": "frames per byte of file",
    "pixels": "frame pixels (H x W) per byte of file",
    "kernel": "model.kernel_size = 63 outside 1..7",
    "pe_base": "model.pe_base",
}


@pytest.mark.parametrize("command", ["decode", "info"])
@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_bombs_refused_in_one_line_fast_and_small(
    files: dict[str, Path], startup: float, tmp_path: Path, command: str, bomb: str
) -> None:
    extra = ["-o", str(tmp_path / "out.npy"), "--device", "cpu"] if command == "decode" else []
    rc, err, seconds, rss = run_cli(command, str(files[bomb]), *extra, cwd=tmp_path)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gnerv {command}: error: "), err
    assert BOMBS[bomb] in err and str(files[bomb]) in err, err
    assert seconds - startup < MAX_EXTRA_SECONDS, (seconds, startup)
    assert rss < MAX_RSS_BYTES, rss
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("command", ["decode", "info"])
@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_bombs_refused_before_any_weight_or_frame_is_decoded(
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    bomb: str,
) -> None:
    """The work a bomb gets is parsing its header: decoding a weight tensor (the entropy coder)
    or rendering a frame (the model's forward) fails this test if it happens."""
    from gnerv.cli import main
    from gnerv.codec.model import GNeRV

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("decoded before the limits were checked")

    monkeypatch.setattr(bs, "decode_symbols", forbidden)
    monkeypatch.setattr(GNeRV, "forward", forbidden)
    extra = ["-o", str(tmp_path / "out.npy"), "--device", "cpu"] if command == "decode" else []
    assert main([command, str(files[bomb]), *extra]) == 2
    assert BOMBS[bomb] in capsys.readouterr().err
    assert not (tmp_path / "out.npy").exists()


def test_refusal_names_the_limit_the_figure_and_the_flag(files: dict[str, Path]) -> None:
    with pytest.raises(GnervError) as info:
        bs.read_gnerv(files["frames"])
    msg = str(info.value)
    assert "frames per byte of file" in msg and "exceeds the decode limit 1" in msg, msg
    assert "--max-frames-per-byte" in msg and "\n" not in msg, msg


def test_small_file_decodes_and_info_reports_the_cost(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.npy"
    rc, err, _, _ = run_cli(
        "decode", str(files["small"]), "-o", str(out), "--device", "cpu", cwd=tmp_path
    )
    assert rc == 0, err
    assert np.load(out).shape == (4, 36, 64, 3)
    rc, err, _, _ = run_cli("info", str(files["small"]), cwd=tmp_path)
    text = (tmp_path / "stdout.txt").read_text()
    assert rc == 0 and "decode:" in text and "estimated peak memory" in text, err + text
    info = bs.file_info(bs.read_gnerv(files["small"], decode=False), DEFAULT_BATCH)
    cost = info["decode_cost"]
    assert cost["total_macs"] == 4 * cost["macs_per_frame"] == 4 * info["macs_per_frame"]
    assert cost["batch"] == 4 and cost["output_bytes"] == 4 * 36 * 64 * 3
    assert cost["peak_memory"] > 0


def test_flag_raises_a_limit_for_a_borderline_file(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.npy"
    args = ("decode", str(files["borderline"]), "-o", str(out), "--frames", "0:2")
    rc, err, _, _ = run_cli(*args, "--device", "cpu", cwd=tmp_path)
    assert rc == 2 and "--max-frames-per-byte" in err, err
    rc, err, _, _ = run_cli(*args, "--device", "cpu", "--max-frames-per-byte", "3", cwd=tmp_path)
    assert rc == 0, err
    assert np.load(out).shape == (2, 36, 64, 3)


def test_memory_limit_depends_on_the_batch_and_its_flag(
    files: dict[str, Path], tmp_path: Path
) -> None:
    f = bs.read_gnerv(files["small"], decode=False)
    at_1 = lim.decode_cost(f.model_config, f.n_frames, 1)["peak_memory"]
    at_4 = lim.decode_cost(f.model_config, f.n_frames, 4)["peak_memory"]
    assert at_4 > at_1
    limits = lim.DecodeLimits(max_memory=(at_1 + at_4) // 2)
    lim.check_decode_cost(f, 1, limits)
    with pytest.raises(GnervError, match="--max-memory .* \\(or lower --batch\\)"):
        lim.check_decode_cost(f, 4, limits)
    out = tmp_path / "out.npy"
    args = ("decode", str(files["small"]), "-o", str(out), "--device", "cpu", "--batch", "4")
    rc, err, _, _ = run_cli(*args, "--max-memory", f"{(at_1 + at_4) // 2}", cwd=tmp_path)
    assert rc == 2 and "estimated peak memory at batch 4" in err and "--max-memory" in err, err
    rc, err, _, _ = run_cli(*args, "--max-memory", "4G", cwd=tmp_path)
    assert rc == 0, err


@pytest.mark.parametrize("layout", ["paper", "wide"])
def test_1080p_12m_model_of_600_frames_passes_the_defaults(layout: str) -> None:
    from gnerv.codec.config import c0_for_size

    c0 = c0_for_size(12_000_000, height=1080, width=1920, layout=layout)
    cfg = GNeRVConfig(1080, 1920, c0=c0, layout=layout)
    params = count_params(cfg)
    f = bs.GnervFile(
        name="uvg.gnerv",
        video=bs.video_facts(600, 1080, 1920, 120.0),
        model_config=cfg,
        bits=8,
        stage=bs.base_stage(VIDEO_ID),
        records=[],
        sha256="00" * 32,
        sizes={"total": params // 2},  # half a byte per parameter: smaller than any 8-bit file
        encoder="test",
    )
    lim.check_decode_cost(f, DEFAULT_BATCH, lim.DEFAULT_LIMITS)
    cost = lim.decode_cost(cfg, 600, DEFAULT_BATCH)
    limits = lim.DEFAULT_LIMITS
    assert 2 * cost["peak_memory"] < limits.max_memory  # room
    assert 4 * cost["macs_per_frame"] < limits.max_macs_per_frame
    assert 4 * cost["output_bytes"] < limits.max_output_bytes
    assert 4 * params < limits.max_params
    # docs/bitstream.md ("Decode limits") quotes these figures of both layouts
    text = " ".join((ROOT / "docs" / "bitstream.md").read_text().split())
    for figure in (
        f"c0 {c0}",
        f"{cost['macs_per_frame']:.2g}",
        f"{cost['total_macs']:.2g}",
        f"{cost['peak_memory'] / 1e9:.1f} GB",
        f"{cost['output_bytes'] / 1e9:.1f} GB",
    ):
        assert figure.replace("e+", "e") in text, figure


@pytest.mark.parametrize(("height", "width"), [(1080, 1920), (2160, 3840)])
def test_the_smallest_model_at_2_bits_passes_the_per_byte_limits(height: int, width: int) -> None:
    """The per-byte limits leave room for the smallest file the encoder writes: c0 1, channel
    floor 1, 2 bits, 600 frames (docs/bitstream.md, "Decode limits")."""
    cfg = GNeRVConfig(height, width, c0=1, min_channels=1)
    data = bs.compress_model(
        random_model(cfg), MIN_BITS, bs.video_facts(600, height, width, 25.0),
        bs.base_stage(VIDEO_ID),
    )  # fmt: skip
    limits = lim.DEFAULT_LIMITS
    lim.check_cost(cfg, 600, 1, len(data), limits, "smallest.gnerv")
    assert 2.5 * height * width / len(data) < limits.max_pixels_per_byte
    assert 8 * 600 / len(data) < limits.max_frames_per_byte


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("kernel_size", 9, "at most 7"),
        ("pe_base", 1e9, "(1, 4]"),
        ("pe_base", 1.0, "(1, 4]"),
        ("pe_levels", 80, "pe_levels"),
        ("upscale_factors", (9, 4), "at most 7"),
        ("min_channels", 5000, "at most 1024"),
        ("ds_hidden", 5000, "at most 1024"),
    ],
)
def test_config_ranges_refused_by_writer_and_reader(
    field: str, value: object, fragment: str
) -> None:
    kwargs = {"height": 36, "width": 36, "c0": 8, "min_channels": 8, field: value}
    with pytest.raises(GnervError, match=fragment.replace("(", "\\(").replace("]", "\\]")):
        GNeRVConfig(**kwargs)


@pytest.mark.parametrize(
    "name", ["params.yaml", *sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))]
)
def test_package_configs_inside_the_ranges(name: str) -> None:
    """Every shipped config's model, merged into params.yaml as Snakemake merges it (a config
    may leave the model section to params.yaml)."""
    from gnerv.pipeline.params import load_params

    files = [ROOT / "params.yaml"] + ([] if name == "params.yaml" else [ROOT / "configs" / name])
    model = load_params(files)["model"]
    fields = {k: v for k, v in model.items() if k != "upscale_factors" and v is not None}
    GNeRVConfig(1080, 1920, c0=8, **fields)
    GNeRVConfig(36, 64, c0=8, **fields)
    defaults = GNeRVConfig(720, 1280, c0=8)
    assert defaults.kernel_size == 3 and defaults.pe_base == 1.25


@pytest.mark.parametrize(
    ("text", "value"),
    [("4G", 4 << 30), ("500M", 500 << 20), ("1.5K", 1536), ("64GiB", 64 << 30), ("1000", 1000)],
)
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


def test_a_model_the_decoder_would_refuse_is_refused_before_training() -> None:
    """The encoder checks the decode limits (file size estimated at a byte per parameter) before
    any training, so a long fit never ends in a file nobody can decode with the defaults."""
    from gnerv.codec.config import GNeRVConfig
    from gnerv.codec.limits import check_encodable

    tiny = GNeRVConfig(height=1080, width=1920, c0=1, min_channels=1, ds_hidden=1, pe_levels=1)
    check_encodable(tiny, 100)  # 730 parameters for 100 frames: fine
    with pytest.raises(GnervError, match="frames per byte of file"):
        check_encodable(tiny, 5000)


@pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc/self/clear_refs"
)
@pytest.mark.parametrize(("kernel", "batch"), [(3, 8), (7, 1)])
def test_the_memory_estimate_bounds_a_real_decode(tmp_path: Path, kernel: int, batch: int) -> None:
    """`gnerv decode` of a 180x320 model in a fresh process: its peak resident memory (above the
    interpreter's) stays below decode_cost's estimate, which --max-memory bounds; at batch 8
    with 3x3 convolutions, and at batch 1 with 7x7 ones, where one frame's head tap planes (147
    of the frame's size) outgrow its largest feature map (benchmarks/decode_memory.py measures
    the larger frame sizes)."""
    out = tmp_path / "memory.json"
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "benchmarks" / "decode_memory.py"),
            "--cases", "180x320:0.3M", "--kernels", str(kernel), "--batches", str(batch),
            "--out", str(out),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["layout"] for r in rows} == {"wide", "paper"}
    for r in rows:
        assert 0 < r["peak_bytes"] < r["estimate_bytes"], r
