"""x264/x265 baseline points (gnerv.evaluation.baselines), checked against an independent decode."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from gnerv.evaluation import baselines
from gnerv.evaluation.baselines import CODECS, encode_point, run_baselines
from gnerv.runtime.atomic import read_json, write_json
from gnerv.runtime.errors import GnervError

KEYS = {
    "codec",
    "crf",
    "preset",
    "bytes",
    "bpp",
    "psnr",
    "ms_ssim",
    "ssim",
    "psnr_per_frame",
    "encode_seconds",
    "decode_seconds",
    "pix_fmt",
}
# Fast presets keep the test quick; the measurement does not depend on the preset.
PRESET = "veryfast"


def _decode(stream: Path, muxer: str, height: int, width: int) -> np.ndarray:
    """Decode a raw elementary stream with the ffmpeg binary directly, to uint8 RGB frames."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin"]
    cmd += ["-f", muxer, "-i", str(stream), "-fps_mode", "passthrough"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3)


def _numpy_psnr(ref: np.ndarray, dec: np.ndarray) -> float:
    """Mean over frames of 10 log10(255^2 / MSE of the frame)."""
    diff = ref.astype(np.float64) - dec.astype(np.float64)
    mse = (diff**2).reshape(len(ref), -1).mean(axis=1)
    return float(np.mean(10.0 * np.log10(255.0**2 / mse)))


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_point_matches_independent_decode(
    codec: str, tiny_realshort: tuple[np.ndarray, dict], tmp_path: Path
) -> None:
    frames, meta = tiny_realshort
    n, h, w, _ = frames.shape
    stream = tmp_path / f"kept.{CODECS[codec][1]}"
    point = encode_point(frames, meta["fps"], codec, 28, preset=PRESET, keep_stream=stream)

    assert KEYS <= point.keys()
    assert (point["codec"], point["crf"], point["preset"]) == (codec, 28, PRESET)
    assert point["pix_fmt"] == "yuv420p"
    assert point["bytes"] == stream.stat().st_size > 0
    assert point["bpp"] == 8 * point["bytes"] / (n * h * w)
    assert point["ms_ssim"] is None  # 48x64 is below MS-SSIM's minimum size
    assert 0.0 < point["ssim"] <= 1.0
    assert point["encode_seconds"] > 0 and point["decode_seconds"] > 0

    decoded = _decode(stream, CODECS[codec][1], h, w)
    assert decoded.shape == frames.shape
    assert point["psnr"] == pytest.approx(_numpy_psnr(frames, decoded), abs=1e-6)
    assert len(point["psnr_per_frame"]) == n
    # Nothing but the kept stream is left behind.
    assert [p.name for p in tmp_path.iterdir()] == [stream.name]


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_lower_crf_more_bytes_higher_psnr(codec: str, tiny_cockatoo: tuple[np.ndarray, dict]):
    frames, meta = tiny_cockatoo
    fine = encode_point(frames, meta["fps"], codec, 18, preset=PRESET)
    coarse = encode_point(frames, meta["fps"], codec, 38, preset=PRESET)
    assert fine["bytes"] > coarse["bytes"]
    assert fine["psnr"] > coarse["psnr"]


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_odd_size_uses_yuv444(codec: str, tiny_cockatoo: tuple[np.ndarray, dict], tmp_path: Path):
    frames = np.ascontiguousarray(tiny_cockatoo[0][:4, :35, :63])
    stream = tmp_path / "odd.stream"
    point = encode_point(frames, 20.0, codec, 23, preset=PRESET, keep_stream=stream)
    assert point["pix_fmt"] == "yuv444p"
    assert "odd" in point["pix_fmt_note"]
    decoded = _decode(stream, CODECS[codec][1], 35, 63)
    assert decoded.shape == frames.shape
    assert point["psnr"] == pytest.approx(_numpy_psnr(frames, decoded), abs=1e-6)
    assert point["psnr"] > 30.0


def test_info_sei_dropped_by_default(tiny_realshort: tuple[np.ndarray, dict]) -> None:
    frames = tiny_realshort[0][:2]
    lean = encode_point(frames, 30.0, "x264", 30, preset=PRESET)
    full = encode_point(frames, 30.0, "x264", 30, preset=PRESET, drop_info_sei=False)
    assert lean["info_sei_dropped"] and not full["info_sei_dropped"]
    assert lean["bytes"] < full["bytes"]  # the version/options string is gone...
    assert lean["psnr"] == full["psnr"]  # ...and the pictures are the same


def test_unknown_codec(tiny_realshort: tuple[np.ndarray, dict]) -> None:
    with pytest.raises(GnervError, match="x264, x265"):
        encode_point(tiny_realshort[0], 30.0, "vp9", 28)


def test_bad_arguments(tiny_realshort: tuple[np.ndarray, dict]) -> None:
    frames = tiny_realshort[0]
    with pytest.raises(GnervError, match="CRF"):
        encode_point(frames, 30.0, "x264", 60)
    with pytest.raises(GnervError, match="preset"):
        encode_point(frames, 30.0, "x264", 28, preset="warp")
    with pytest.raises(GnervError, match="fps"):
        encode_point(frames, 0.0, "x264", 28)
    with pytest.raises(GnervError, match="uint8"):
        encode_point(frames.astype(np.float32), 30.0, "x264", 28)


def test_ffmpeg_failure_is_gnerv_error(
    tiny_realshort: tuple[np.ndarray, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real ffmpeg failure: an encoder this ffmpeg does not have.
    monkeypatch.setitem(baselines.CODECS, "bogus", ("libnosuchencoder", "h264"))
    work = tmp_path / "work"
    kept = tmp_path / "kept.h264"
    with pytest.raises(GnervError, match="ffmpeg failed.*Encoder not found"):
        encode_point(tiny_realshort[0], 30.0, "bogus", 28, workdir=work, keep_stream=kept)
    assert not kept.exists()
    assert list(work.iterdir()) == []  # the temporary folder is gone


def test_x265_too_small_is_gnerv_error() -> None:
    # x265 refuses pictures this small; the encoder's reason is in the message.
    with pytest.raises(GnervError, match="too small"):
        encode_point(np.zeros((2, 8, 8, 3), dtype=np.uint8), 25.0, "x265", 28, preset=PRESET)


def test_run_baselines_and_json(tiny_realshort: tuple[np.ndarray, dict], tmp_path: Path) -> None:
    frames = tiny_realshort[0][:3]
    with pytest.raises(GnervError, match="unknown codec"):  # checked before any encoding
        run_baselines(frames, 30.0, ["x264", "av2"], [30])
    points = run_baselines(frames, 30.0, ["x264", "x265"], [26, 34], preset=PRESET, progress=False)
    assert [(p["codec"], p["crf"]) for p in points] == [
        ("x264", 26),
        ("x264", 34),
        ("x265", 26),
        ("x265", 34),
    ]
    out = tmp_path / "eval" / "baselines.json"
    write_json(out, {"points": points, "array": np.arange(3), "scalar": np.float32(0.5)})
    loaded = json.loads(out.read_text())
    assert loaded["points"][0]["bytes"] == points[0]["bytes"]
    assert loaded["array"] == [0, 1, 2] and loaded["scalar"] == 0.5
    assert [p.name for p in out.parent.iterdir()] == ["baselines.json"]
    with pytest.raises(GnervError, match="JSON"):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()


def test_read_json_round_trip_and_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    write_json(path, {"b": 1, "a": [np.int64(2)]}, sort_keys=True)
    assert path.read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    assert read_json(path) == {"a": [2], "b": 1}
    with pytest.raises(GnervError, match=r"nope.json: not found; expected what `gnerv e`"):
        read_json(tmp_path / "nope.json", "what `gnerv e` writes")
    path.write_text("{not json")
    with pytest.raises(GnervError, match=r"x.json: not valid JSON \(.*\); expected a JSON file$"):
        read_json(path)
