"""gnerv.media.video on the committed sample clips: reading, selecting, resizing, writing,
errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from gnerv.media.video import (
    load_frames,
    parse_range,
    probe_video,
    read_video,
    save_frames,
    video_fingerprint,
    write_video,
)
from gnerv.runtime.errors import GnervError
from gnerv.runtime.sizes import parse_hw


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def realshort_full(realshort_path: Path) -> tuple[np.ndarray, dict]:
    return read_video(realshort_path, progress=False)


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text, expected", [("90x160", (90, 160)), ("720X1280", (720, 1280)), (" 9 x 16 ", (9, 16))]
)
def test_parse_hw(text: str, expected: tuple[int, int]) -> None:
    assert parse_hw(text) == expected


@pytest.mark.parametrize(
    "text", ["", "90", "90x", "x160", "0x160", "90x0", "-9x16", "9x16x3", "axb"]
)
def test_parse_hw_rejects(text: str) -> None:
    with pytest.raises(GnervError, match="size"):
        parse_hw(text)


@pytest.mark.parametrize(
    "text, expected",
    [("0:32", (0, 32)), (":32", (0, 32)), ("10:", (10, -1)), (":", (0, -1)), ("5:6", (5, 6))],
)
def test_parse_range(text: str, expected: tuple[int, int]) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["", "5", "a:b", "-1:5", "5:5", "8:4", "1:2:3", "1.5:3"])
def test_parse_range_rejects(text: str) -> None:
    with pytest.raises(GnervError, match="range"):
        parse_range(text)


# ---------------------------------------------------------------- reading


def test_probe(cockatoo_path: Path, realshort_path: Path) -> None:
    info = probe_video(cockatoo_path)
    assert (info["height"], info["width"], info["fps"]) == (720, 1280, 20.0)
    assert info["n_frames"] == 280
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv444p"
    exact = probe_video(realshort_path, exact=True)
    assert (exact["n_frames"], exact["height"], exact["width"]) == (36, 240, 320)
    assert exact["fps"] == pytest.approx(30.0, abs=0.1)


def test_read_full(realshort_full: tuple[np.ndarray, dict], realshort_path: Path) -> None:
    frames, meta = realshort_full
    assert frames.shape == (36, 240, 320, 3)
    assert frames.dtype == np.uint8 and frames.flags.c_contiguous
    assert meta["source"] == str(realshort_path)
    assert (meta["height"], meta["width"]) == (240, 320)
    assert (meta["source_height"], meta["source_width"]) == (240, 320)
    assert meta["frame_range"] == [0, 36] and meta["stride"] == 1 and meta["n_frames"] == 36
    assert meta["fps"] == pytest.approx(30.0, abs=0.1)
    assert frames.std() > 10  # real content, not a flat frame
    json.dumps(meta)  # meta is plain JSON


@pytest.mark.parametrize(
    "frame_range, stride, expected",
    [
        ((0, 8), 1, range(0, 8)),
        ((5, 20), 3, range(5, 20, 3)),
        ((30, -1), 1, range(30, 36)),
        ((0, -1), 7, range(0, 36, 7)),
        ((34, 100), 1, range(34, 36)),  # an end past the clip is clipped
        ((35, 36), 1, range(35, 36)),
    ],
)
def test_range_and_stride(
    realshort_full: tuple[np.ndarray, dict],
    realshort_path: Path,
    frame_range: tuple[int, int],
    stride: int,
    expected: range,
) -> None:
    full, full_meta = realshort_full
    frames, meta = read_video(realshort_path, frame_range, stride=stride, progress=False)
    np.testing.assert_array_equal(frames, full[list(expected)])
    assert meta["n_frames"] == len(expected)
    assert meta["stride"] == stride
    assert meta["frame_range"] == [expected.start, min(expected.stop, 36)]
    assert meta["fps"] == pytest.approx(full_meta["fps"] / stride)


def test_range_stops_early(cockatoo_path: Path) -> None:
    # Only the first frames of a 280-frame 720p clip: must not decode the rest.
    frames, meta = read_video(cockatoo_path, (0, 3), progress=False)
    assert frames.shape == (3, 720, 1280, 3)
    assert meta["frame_range"] == [0, 3]


def test_resize(realshort_path: Path, realshort_full: tuple[np.ndarray, dict]) -> None:
    frames, meta = read_video(realshort_path, (0, 4), resize=(48, 64), progress=False)
    assert frames.shape == (4, 48, 64, 3) and frames.flags.c_contiguous
    assert (meta["height"], meta["width"]) == (48, 64)
    assert (meta["source_height"], meta["source_width"]) == (240, 320)
    # Area filter: each output pixel is about the mean of a 5x5 block of the full frame.
    full = realshort_full[0][:4].astype(np.float64)
    blocks = full.reshape(4, 48, 5, 64, 5, 3).mean(axis=(2, 4))
    assert psnr(frames, np.clip(np.rint(blocks), 0, 255).astype(np.uint8)) > 30
    odd, _ = read_video(realshort_path, (0, 2), resize=(37, 51), progress=False)
    assert odd.shape == (2, 37, 51, 3)


def test_fixtures(tiny_cockatoo: tuple[np.ndarray, dict], tiny_realshort: tuple[np.ndarray, dict]):
    frames, meta = tiny_cockatoo
    assert frames.shape == (8, 36, 64, 3) and frames.dtype == np.uint8
    assert meta["fps"] == 20.0 and meta["frame_range"] == [0, 8]
    frames, meta = tiny_realshort
    assert frames.shape == (6, 48, 64, 3) and frames.dtype == np.uint8
    assert meta["frame_range"] == [0, 6]


@pytest.mark.parametrize(
    "suffix, codec_args",
    [
        (".y4m", ["-pix_fmt", "yuv420p"]),
        (".avi", ["-c:v", "mjpeg", "-q:v", "2"]),
        (".mov", ["-c:v", "libx264", "-crf", "10"]),
    ],
)
def test_other_containers(
    tmp_path: Path,
    realshort_path: Path,
    realshort_full: tuple[np.ndarray, dict],
    suffix: str,
    codec_args: list[str],
) -> None:
    out = tmp_path / f"clip{suffix}"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(realshort_path), "-an"]
    subprocess.run([*cmd, *codec_args, "-frames:v", "10", str(out)], check=True)
    frames, meta = read_video(out, (2, 8), stride=2, progress=False)
    assert frames.shape == (3, 240, 320, 3)
    assert meta["frame_range"] == [2, 8]
    assert psnr(frames, realshort_full[0][[2, 4, 6]]) > 30
    loaded, _ = load_frames(out)  # a video path goes through read_video
    assert loaded.shape == (10, 240, 320, 3)


# ---------------------------------------------------------------- writing


def test_mkv_round_trip_bit_exact(
    tmp_path: Path, tiny_cockatoo: tuple[np.ndarray, dict], tiny_realshort: tuple[np.ndarray, dict]
) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(3, 17, 23, 3), dtype=np.uint8)  # odd sizes, every value
    for i, frames in enumerate([tiny_cockatoo[0], tiny_realshort[0], noise]):
        path = tmp_path / f"clip{i}.mkv"
        write_video(path, frames, fps=20.0)
        back, meta = read_video(path, progress=False)
        np.testing.assert_array_equal(back, frames)
        assert meta["fps"] == pytest.approx(20.0)
    assert listing(tmp_path) == ["clip0.mkv", "clip1.mkv", "clip2.mkv"]


def test_npy_round_trip(tmp_path: Path, tiny_cockatoo: tuple[np.ndarray, dict]) -> None:
    frames = tiny_cockatoo[0]
    path = tmp_path / "frames.npy"
    write_video(path, frames, fps=20.0)
    back = np.load(path, allow_pickle=False)
    np.testing.assert_array_equal(back, frames)
    loaded, meta = load_frames(path)  # no sidecar: a minimal meta
    np.testing.assert_array_equal(loaded, frames)
    assert meta["fps"] == 25.0 and meta["n_frames"] == 8
    assert (meta["height"], meta["width"]) == (36, 64)
    assert listing(tmp_path) == ["frames.npy"]


# Even sizes: yuv420p; odd: yuv444p. Not tiny sizes: there 4:2:0 chroma alone costs ~5 dB.
@pytest.mark.parametrize("size", [(240, 320), (121, 161)])
def test_mp4_playable(tmp_path: Path, realshort_path: Path, size: tuple[int, int]) -> None:
    frames, _ = read_video(realshort_path, (0, 12), resize=size, progress=False)
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=30.0)
    back, meta = read_video(path, progress=False)
    assert back.shape == frames.shape
    assert meta["fps"] == pytest.approx(30.0)
    assert psnr(back, frames) > 35
    assert listing(tmp_path) == ["clip.mp4"]
    info = probe_video(path)
    assert info["codec"] == "h264"
    assert info["pix_fmt"] == ("yuv420p" if size[0] % 2 == 0 else "yuv444p")


def test_save_load_frames(tmp_path: Path, tiny_realshort: tuple[np.ndarray, dict]) -> None:
    frames, meta = tiny_realshort
    path = tmp_path / "out" / "frames.npy"
    save_frames(path, frames, {**meta, "note": np.float32(1.5)})
    assert listing(path.parent) == ["frames.json", "frames.npy"]
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["n_frames"] == 6 and side["note"] == 1.5
    back, back_meta = load_frames(path)
    np.testing.assert_array_equal(back, frames)
    assert back.dtype == np.uint8 and back.shape == (6, 48, 64, 3)
    for key in ("source", "fps", "frame_range", "stride", "height", "width", "n_frames"):
        assert back_meta[key] == meta[key], key


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GnervError, match="no such file"):
        read_video(tmp_path / "nope.mp4")
    with pytest.raises(GnervError, match="no such file"):
        probe_video(tmp_path / "nope.mp4")
    with pytest.raises(GnervError, match="no such file"):
        load_frames(tmp_path / "nope.npy")
    with pytest.raises(GnervError, match="not a file"):
        read_video(tmp_path)


def test_not_a_video(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are not frames\n" * 50)
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    for path in (fake, empty):
        with pytest.raises(GnervError, match="cannot read it as a video") as err:
            read_video(path, progress=False)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(GnervError):
            probe_video(path)


def test_audio_only_is_not_a_video(tmp_path: Path) -> None:
    audio = tmp_path / "tone.wav"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi"]
    subprocess.run([*cmd, "-i", "sine=duration=0.2", str(audio)], check=True)
    with pytest.raises(GnervError, match="cannot read it as a video"):
        read_video(audio, progress=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"frame_range": (36, -1)}, "only 36 frames"),
        ({"frame_range": (100, 200)}, "only 36 frames"),
        ({"frame_range": (-1, 5)}, "bad frame range"),
        ({"frame_range": (5, 5)}, "bad frame range"),
        ({"frame_range": (8, 3)}, "bad frame range"),
        ({"stride": 0}, "bad stride"),
        ({"stride": -2}, "bad stride"),
        ({"resize": (0, 64)}, "bad resize"),
        ({"resize": (48, -4)}, "bad resize"),
    ],
)
def test_bad_read_arguments(realshort_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(GnervError, match=message) as err:
        read_video(realshort_path, progress=False, **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv", "clip.npy"])
@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((2, 8, 8, 3), dtype=np.float32),
        np.zeros((2, 8, 8, 3), dtype=np.uint16),
        np.zeros((8, 8, 3), dtype=np.uint8),
        np.zeros((2, 8, 8, 4), dtype=np.uint8),
        np.zeros((0, 8, 8, 3), dtype=np.uint8),
        [[[[0, 0, 0]]]],
    ],
    ids=["float32", "uint16", "3d", "rgba", "empty", "list"],
)
def test_write_rejects_bad_frames(tmp_path: Path, name: str, frames: np.ndarray) -> None:
    with pytest.raises(GnervError, match="frames"):
        write_video(tmp_path / name, frames, fps=25.0)
    with pytest.raises(GnervError, match="frames"):
        save_frames(tmp_path / "frames.npy", frames, {})
    assert listing(tmp_path) == []


def test_write_rejects_bad_suffix_and_fps(tmp_path: Path) -> None:
    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(GnervError, match=r"\.npy, \.mp4, \.mkv"):
        write_video(tmp_path / "clip.gif", frames, fps=25.0)
    with pytest.raises(GnervError, match=".npy"):
        save_frames(tmp_path / "frames.bin", frames, {})
    for fps in (0, -5, float("nan"), "fast"):
        with pytest.raises(GnervError, match="fps"):
            write_video(tmp_path / "clip.mp4", frames, fps=fps)  # type: ignore[arg-type]
    with pytest.raises(GnervError, match="JSON"):
        save_frames(tmp_path / "frames.npy", frames, {"bad": object()})
    assert listing(tmp_path) == []


def test_load_rejects_bad_npy(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.npy"
    corrupt.write_bytes(b"\x93NUMPY garbage that is not an array header")
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, np.zeros((4, 8, 8, 3), dtype=np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for path in (corrupt, truncated, pickled):
        with pytest.raises(GnervError, match="not a readable .npy") as err:
            load_frames(path)
        assert "\n" not in str(err.value)
    wrong = {
        "float.npy": np.zeros((2, 8, 8, 3), dtype=np.float32),
        "gray.npy": np.zeros((2, 8, 8), dtype=np.uint8),
    }
    for name, array in wrong.items():
        np.save(tmp_path / name, array)
        with pytest.raises(GnervError, match="frames must"):
            load_frames(tmp_path / name)


def test_load_rejects_bad_sidecar(tmp_path: Path, tiny_realshort: tuple[np.ndarray, dict]) -> None:
    frames, meta = tiny_realshort
    path = tmp_path / "frames.npy"
    save_frames(path, frames, meta)
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(GnervError, match="not valid JSON"):
        load_frames(path)
    path.with_suffix(".json").write_text(json.dumps({**meta, "n_frames": 99}))
    with pytest.raises(GnervError, match="stale"):
        load_frames(path)


def test_failed_save_keeps_old_output(tmp_path: Path, tiny_realshort: tuple[np.ndarray, dict]):
    frames, meta = tiny_realshort
    path = tmp_path / "frames.npy"
    save_frames(path, frames, meta)
    before = path.read_bytes(), path.with_suffix(".json").read_bytes()
    with pytest.raises(GnervError):
        save_frames(path, frames.astype(np.float32), meta)
    with pytest.raises(GnervError):
        save_frames(path, frames, {"bad": object()})
    assert (path.read_bytes(), path.with_suffix(".json").read_bytes()) == before
    assert listing(tmp_path) == ["frames.json", "frames.npy"]


def test_video_fingerprint_names_content_and_shape() -> None:
    frames = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    fp = video_fingerprint(frames)
    # the value format 1 files carry as stage.video_id for these frames
    assert fp == "883646e2d94bd13df84dad31dbe9a88e4faf67c4bf510ac59e3f76e5be5ddd44"
    assert len(fp) == 64 and fp == video_fingerprint(frames.copy())
    assert fp != video_fingerprint(frames.reshape(2, 6, 4, 3))
    other = frames.copy()
    other[1, 2, 3, 0] ^= 1
    assert fp != video_fingerprint(other)
    with pytest.raises(GnervError):
        video_fingerprint(frames.astype(np.float32))
