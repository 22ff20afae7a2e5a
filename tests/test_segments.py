"""Segmented videos: `encode --segment-frames` cuts a clip into independently coded segments,
a frame range decodes from the segments it touches alone, bit-exactly as each segment decodes on
its own, and a damaged index or a layer from elsewhere is refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import gnerv.codec.segments as seg_mod
from gnerv.cli import main
from gnerv.codec.bitstream import read_gnerv
from gnerv.codec.config import count_params
from gnerv.codec.decode import decode_layers
from gnerv.codec.segments import INDEX_NAME, read_index
from gnerv.media.video import read_video, video_fingerprint, write_video
from gnerv.pipeline.results import split_frames
from gnerv.runtime.errors import GnervError

N_FRAMES = 12
SEGMENT_FRAMES = 4


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def encode_args(cockatoo_path: Path, out: Path) -> list[str]:
    return [
        "encode", str(cockatoo_path), "-o", str(out), "--frames", f"0:{N_FRAMES}",
        "--resize", "36x64", "--segment-frames", str(SEGMENT_FRAMES), "--stages", "2",
        "--size", "36k", "--stage-epochs", "3,2", "--min-channels", "8", "--quiet",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def segmented(tmp_path_factory, cockatoo_path) -> Path:
    out = tmp_path_factory.mktemp("seg") / "video"
    assert main(encode_args(cockatoo_path, out)) == 0
    return out


def test_split_frames_tiles_the_clip_and_folds_a_short_tail():
    assert split_frames(12, 4) == [(0, 4), (4, 4), (8, 4)]
    assert split_frames(13, 4) == [(0, 4), (4, 4), (8, 5)]  # 1 frame joins the last segment
    assert split_frames(14, 4) == [(0, 4), (4, 4), (8, 4), (12, 2)]  # half a segment stays
    assert split_frames(3, 8) == [(0, 3)]
    with pytest.raises(GnervError):
        split_frames(10, 0)


def test_encode_writes_an_index_and_a_chain_per_segment(segmented, cockatoo_path, capsys):
    frames, _ = read_video(cockatoo_path, (0, N_FRAMES), resize=(36, 64), progress=False)
    video = read_index(segmented)
    assert video.n_frames == N_FRAMES and len(video.segments) == N_FRAMES // SEGMENT_FRAMES
    for i, s in enumerate(video.segments):
        assert (s.start, s.n_frames, len(s.layers)) == (i * SEGMENT_FRAMES, SEGMENT_FRAMES, 2)
        base = read_gnerv(segmented / s.layers[0][0], decode=False)
        assert base.n_frames == SEGMENT_FRAMES and base.sha256 == s.layers[0][1]
        # read from the video segment by segment: exactly the clip's frames of that segment
        assert base.stage["video_id"] == video_fingerprint(frames[s.start : s.stop])
        # each segment gets its share of the 36k budget: a third, about 12k parameters
        assert 8_000 < count_params(base.model_config) < 16_000
    code, out, _ = run(capsys, "info", str(segmented))
    assert code == 0 and "3 segments" in out and "frames 8:12" in out


def test_a_range_decodes_from_its_segments_alone_bit_exactly(segmented, tmp_path, monkeypatch):
    opened = []
    real = seg_mod.read_segment
    monkeypatch.setattr(
        seg_mod, "read_segment", lambda v, i, *a: opened.append(i) or real(v, i, *a)
    )
    assert main(["decode", str(segmented), "-o", str(tmp_path / "all.npy")]) == 0
    assert opened == [0, 1, 2]
    opened.clear()
    assert main(["decode", str(segmented), "--frames", "5:7", "-o", str(tmp_path / "r.npy")]) == 0
    assert opened == [1]  # frames 5 and 6 lie in segment 1 only
    whole, part = np.load(tmp_path / "all.npy"), np.load(tmp_path / "r.npy")
    assert whole.shape == (N_FRAMES, 36, 64, 3)
    assert np.array_equal(part, whole[5:7])
    # the same bytes as each segment's layers decoded on their own
    video = read_index(segmented)
    for s in video.segments:
        files = [read_gnerv(segmented / name) for name, _ in s.layers]
        alone = decode_layers(files, list(range(s.n_frames)), "cpu")
        assert np.array_equal(alone, whole[s.start : s.stop])


def test_a_damaged_index_or_a_foreign_layer_is_refused(segmented, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(segmented, bad)
    index = json.loads((bad / INDEX_NAME).read_text())

    def decode_with(doc) -> tuple[int, str]:
        (bad / INDEX_NAME).write_text(json.dumps(doc))
        code, _, err = run(capsys, "decode", str(bad), "-o", str(tmp_path / "x.npy"))
        assert not (tmp_path / "x.npy").exists()  # nothing half-written
        return code, err.strip()

    gap = json.loads(json.dumps(index))
    gap["segments"][1]["start"] = 5
    code, err = decode_with(gap)
    assert code == 2 and "segments.json" in err and len(err.splitlines()) == 1
    climb = json.loads(json.dumps(index))
    climb["segments"][0]["layers"][0]["file"] = "../../etc/passwd.gnerv"
    code, err = decode_with(climb)
    assert code == 2 and "names a layer badly" in err
    (bad / INDEX_NAME).write_text("{not json")
    assert run(capsys, "decode", str(bad), "-o", str(tmp_path / "x.npy"))[0] == 2
    # a segment's layer replaced by another segment's: refused by its SHA-256
    swapped = json.loads(json.dumps(index))
    (bad / INDEX_NAME).write_text(json.dumps(swapped))
    shutil.copy(bad / "seg000" / "stage1.gnerv", bad / "seg001" / "stage1.gnerv")
    code, _, err = run(capsys, "decode", str(bad), "--frames", "4:6", "-o", str(tmp_path / "x.npy"))
    assert code == 2 and "not the layer the index lists" in err
    assert not (tmp_path / "x.npy").exists()


def test_segment_flags_are_checked_before_any_work(cockatoo_path, tmp_path, capsys):
    code, _, err = run(
        capsys, "encode", str(cockatoo_path), "-o", str(tmp_path / "v"), "--segment-frames",
        "4", "--target-psnr", "30",
    )  # fmt: skip
    assert code == 2 and "--segment-frames" in err
    code, _, err = run(
        capsys, "encode", str(cockatoo_path), "-o", str(tmp_path / "v"), "--segment-frames", "0"
    )
    assert code == 2 and "--segment-frames 0" in err


def test_segments_encoded_as_separate_jobs_gather_to_the_same_index(
    segmented, cockatoo_path, tmp_path, capsys
):
    """Each segment as a job of its own (--segment I, any order), then `gnerv gather`: the same
    layers and the same index, byte for byte, as one encode of them all; gathering too early
    names the missing segments, and nothing is indexed."""
    out = tmp_path / "jobs"
    for i in (2, 0):
        assert run(capsys, *encode_args(cockatoo_path, out), "--segment", str(i))[0] == 0
    code, _, err = run(capsys, "gather", str(out))
    assert code == 2 and "segments 1 of 3 are not encoded yet" in err
    assert not (out / INDEX_NAME).exists()
    assert run(capsys, *encode_args(cockatoo_path, out), "--segment", "1")[0] == 0
    code, stdout, _ = run(capsys, "gather", str(out))
    assert code == 0 and "3 segments" in stdout
    assert (out / INDEX_NAME).read_bytes() == (segmented / INDEX_NAME).read_bytes()
    code, _, err = run(capsys, *encode_args(cockatoo_path, out), "--segment", "3")
    assert code == 2 and "3 segments" in err  # 0 to 2


def test_evaluate_measures_the_whole_video_from_its_segments(
    segmented, cockatoo_path, tmp_path, capsys
):
    """`gnerv evaluate VIDEO --segments DIR`: each prefix of stages over the whole video, read
    and decoded one segment at a time, equals the figures of the whole decode."""
    from gnerv.evaluation.metrics import psnr_per_frame

    out = tmp_path / "metrics.json"
    source = ["--frames", f"0:{N_FRAMES}", "--resize", "36x64"]
    code, _, err = run(
        capsys, "evaluate", str(cockatoo_path), "--segments", str(segmented), "-o", str(out),
        *source, "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out.read_text())
    frames, _ = read_video(cockatoo_path, (0, N_FRAMES), resize=(36, 64), progress=False)
    video = read_index(segmented)
    pixels = N_FRAMES * 36 * 64
    for j, point in enumerate(result["points"], start=1):
        layers = [s.layers[:j] for s in video.segments]
        size = (segmented / INDEX_NAME).stat().st_size
        size += sum((segmented / name).stat().st_size for ls in layers for name, _ in ls)
        assert point["stage"] == j and point["segments"] == 3
        assert point["bytes"] == size and point["bpp"] == pytest.approx(8 * size / pixels)
        decoded = np.concatenate(
            [
                decode_layers(
                    [read_gnerv(segmented / name) for name, _ in s.layers[:j]],
                    range(s.n_frames),
                    "cpu",
                )
                for s in video.segments
            ]
        )
        want = psnr_per_frame(frames, decoded)
        assert point["psnr"] == pytest.approx(float(want.mean()), abs=1e-9)
        assert [round(float(p), 4) for p in want] == point["psnr_per_frame"]
    assert result["points"][1]["psnr"] > result["points"][0]["psnr"]
    assert [s["start"] for s in result["segments"]] == [0, 4, 8]
    # the source must be the encode's: other frames are refused before anything is decoded
    code, _, err = run(
        capsys, "evaluate", str(cockatoo_path), "--segments", str(segmented), "-o", str(out),
        "--frames", "0:10", "--resize", "36x64",
    )  # fmt: skip
    assert code != 0 and "codes 12 frames" in err and len(err.strip().splitlines()) == 1


def test_auto_keeps_one_network_up_to_the_stated_length_and_cuts_beyond():
    from gnerv.pipeline.params import (
        AUTO_SEGMENT_FRAMES,
        WHOLE_CLIP_FRAMES,
        SegmentPlan,
        segment_length,
    )

    assert segment_length("auto", WHOLE_CLIP_FRAMES) is None
    assert segment_length("auto", WHOLE_CLIP_FRAMES + 1) == AUTO_SEGMENT_FRAMES
    assert segment_length("none", 10**6) is None and segment_length(None, 10**6) is None
    assert segment_length(64, 32) == 64

    def params(frames: str, setting="auto", stride: int = 1) -> dict:
        return {
            "extract": {"frames": frames, "stride": stride, "resize": "36x64"},
            "stages": [{"size": "0.1M", "epochs": 2}],
            "segments": {"segment_frames": setting},
        }

    assert SegmentPlan.from_params(params("0:600")) is None
    plan = SegmentPlan.from_params(params("0:1000"))
    assert plan is not None and plan.segment_frames == AUTO_SEGMENT_FRAMES and plan.count == 3
    assert SegmentPlan.from_params(params("0:1000", stride=2)) is None  # 500 frames picked
    assert SegmentPlan.from_params(params("0:1000", None)) is None  # null: one network
    # a range without an end: the videos' length decides; a long clip needs A:B
    assert SegmentPlan.from_params(params("0:"), lambda: 132) is None
    with pytest.raises(GnervError, match="give extract.frames as A:B"):
        SegmentPlan.from_params(params("0:"), lambda: 3600)


def test_encode_cuts_a_long_clip_by_default_into_a_folder(cockatoo_path, tmp_path, capsys):
    import argparse

    from gnerv.cli.codec import chosen_segment_frames

    # a long clip: 1300 tiny frames, written once for this test
    long_clip = tmp_path / "long.mkv"
    write_video(long_clip, np.zeros((1300, 16, 16, 3), np.uint8), fps=25.0)
    # more than 600 frames picked: a single-file output is refused in one line, before reading
    code, _, err = run(
        capsys, "encode", str(long_clip), "-o", str(tmp_path / "v.gnerv"),
        "--frames", "0:1300", "--stride", "2",
    )  # fmt: skip
    assert code == 2 and "650 frames are more than the 600" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "v.gnerv").exists()
    args = argparse.Namespace(
        segment_frames="auto", frames="0:700", stride=1, video=str(long_clip),
        output=str(tmp_path / "long"),
    )  # fmt: skip
    assert chosen_segment_frames(args) == 300
    assert "coded as segments of 300" in capsys.readouterr().err
    args.segment_frames = "none"
    assert chosen_segment_frames(args) is None
    # the sample clip has 280 frames: a range past its end counts the frames it has (as
    # extract reads them), and the whole clip is one network
    args.segment_frames, args.video = "auto", str(cockatoo_path)
    for args.frames in ("0:700", None):
        assert chosen_segment_frames(args) is None
