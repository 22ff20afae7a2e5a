"""The .gnerv format: exact round trip, determinism, sizes, and every kind of bad file refused."""

from __future__ import annotations

import copy
import json
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch

from gnerv.codec import bitstream as bs
from gnerv.codec.config import GNeRVConfig
from gnerv.codec.decode import build_model, decode_layers
from gnerv.codec.entropy import empirical_entropy_bits
from gnerv.codec.model import GNeRV, for_inference, render, to_uint8
from gnerv.codec.quantize import dequantized_state_dict, quantize_model
from gnerv.runtime.errors import GnervError

N_FRAMES = 8
VIDEO = bs.video_facts(N_FRAMES, 36, 64, 25.0)
VIDEO_ID = "ab" * 32
PREFIX = struct.Struct("<4sHI")


def laplace_model(seed: int = 0, c0: int = 16, residual: bool = False) -> GNeRV:
    """A small GNeRV whose weights look trained (Laplacian), so most tensors are ANS coded."""
    with torch.device("meta"):
        model = GNeRV(GNeRVConfig(36, 64, c0=c0, min_channels=8, residual=residual))
    rng = np.random.default_rng(seed)
    sd = {
        k: torch.from_numpy(rng.laplace(0.0, 0.05, tuple(v.shape)).astype(np.float32))
        for k, v in model.state_dict().items()
    }
    model.load_state_dict(sd, assign=True)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> GNeRV:
    return laplace_model()


@pytest.fixture(scope="module")
def data(model: GNeRV) -> bytes:
    return bs.compress_model(model, 8, VIDEO, bs.base_stage(VIDEO_ID), render=1)  # format 2


def split(data: bytes) -> tuple[int, dict, bytes]:
    """(version, header object, body) of a file, by the documented layout."""
    _, version, hlen = PREFIX.unpack_from(data)
    return version, json.loads(data[10 : 10 + hlen]), data[10 + hlen : -4]


def join(header: dict | bytes, body: bytes, version: int = 2, hlen: int | None = None) -> bytes:
    """A file with a valid CRC around the given pieces."""
    raw = header if isinstance(header, bytes) else bs.canonical_json(header)
    out = PREFIX.pack(b"GNRV", version, len(raw) if hlen is None else hlen) + raw + body
    return out + struct.pack("<I", zlib.crc32(out))


def refused(data: bytes, fragment: str, name: str = "clip.gnerv") -> str:
    """Assert unpack refuses ``data`` with a one-line message naming the file and ``fragment``."""
    with pytest.raises(GnervError) as info:
        bs.unpack(data, name)
    msg = str(info.value)
    assert "\n" not in msg and name in msg and fragment in msg, msg
    return msg


# --------------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------------


def test_round_trip_is_exact(model: GNeRV, data: bytes) -> None:
    f = bs.unpack(data, "clip.gnerv")
    expected = quantize_model(model, 8)
    assert [q.name for q in f.tensors] == [q.name for q in expected]
    for got, want in zip(f.tensors, expected, strict=True):
        np.testing.assert_array_equal(got.symbols, want.symbols)
        np.testing.assert_array_equal(got.mins, want.mins)
        np.testing.assert_array_equal(got.maxs, want.maxs)
        assert got.shape == want.shape and got.bits == 8
    assert {r.mode for r in f.records} >= {"ans"}
    assert f.video == VIDEO and f.stage == bs.base_stage(VIDEO_ID) and f.bits == 8
    assert f.model_config == model.cfg


def test_decoder_renders_the_dequantized_model_bit_for_bit(model: GNeRV, data: bytes) -> None:
    f = bs.unpack(data, "clip.gnerv")
    shapes = [tuple(v.shape) for v in model.state_dict().values()]
    reference = GNeRV(model.cfg).eval()
    reference.load_state_dict(dequantized_state_dict(quantize_model(model, 8), shapes))
    want = to_uint8(
        render(for_inference(reference, "cpu"), torch.arange(N_FRAMES), N_FRAMES)
    ).numpy()
    built = build_model(f)
    for k, v in reference.state_dict().items():
        assert torch.equal(built.state_dict()[k], v)
    np.testing.assert_array_equal(decode_layers([f], range(N_FRAMES), "cpu"), want)


def test_same_model_same_bytes(model: GNeRV, data: bytes) -> None:
    again = bs.compress_model(laplace_model(), 8, VIDEO, bs.base_stage(VIDEO_ID), render=1)
    assert again == data


def test_format_5_names_the_render_its_frames_are_defined_by(model: GNeRV) -> None:
    newest = bs.compress_model(model, 8, VIDEO, bs.base_stage(VIDEO_ID))
    version, header, body = split(newest)
    assert version == bs.FORMAT_VERSION == 5 and header["render"] == 3
    assert bs.unpack(newest).render == 3 and bs.file_info(bs.unpack(newest))["render"] == 3
    for value in (4, 0, True, 3.0, "3", None, [3]):
        refused(join({**header, "render": value}, body, 5), "render of format 5 must be one of")
    missing = {k: v for k, v in header.items() if k != "render"}
    refused(join(missing, body, 5), "missing keys ['render']")
    for older in (1, 2):  # may be named
        assert bs.unpack(join({**header, "render": older}, body, 5)).render == older
    refused(join(header, body, 4), "unknown keys ['render']")  # before format 5: never named
    assert bs.unpack(join(missing, body, 4)).render == 1  # absent: render 1


def test_channel_layout_per_tensor_kind(model: GNeRV, data: bytes) -> None:
    records = {r.name: r for r in bs.unpack(data, "x").records}
    assert records["embedding"].shape == (1, 16, 9, 16)
    assert records["embedding"].mins.size == 16  # one range per embedding channel
    for name in ("ds_shared.weight", "ds_heads.1.weight", "blocks.0.conv1.weight", "head.weight"):
        assert records[name].mins.size == records[name].shape[0]  # per output row / channel
    assert records["ds_shared.weight"].mins.size == 40
    assert records["ds_shared.bias"].mins.size == 1  # 1-d: one channel
    emb = model.embedding.detach()[0]
    np.testing.assert_array_equal(records["embedding"].mins, emb.amin(dim=(1, 2)).numpy())
    np.testing.assert_array_equal(records["embedding"].maxs, emb.amax(dim=(1, 2)).numpy())


def test_sizes_add_up(model: GNeRV, data: bytes) -> None:
    f = bs.unpack(data, "x", decode=False)
    s = f.sizes
    assert s["total"] == len(data) == s["header"] + s["table"] + s["payload"]
    assert s["table"] == s["minmax"] + s["entropy_tables"]
    assert s["minmax"] == sum(8 * r.mins.size for r in f.records)
    _, header, _ = split(data)
    assert s["header"] == 10 + len(bs.canonical_json(header)) + 4
    ideals = [empirical_entropy_bits(q.symbols, 256) / 8 for q in quantize_model(model, 8)]
    assert sum(ideals) <= s["payload"] <= 1.05 * sum(ideals)  # small tensors are bit-packed
    for r, ideal in zip(f.records, ideals, strict=True):
        if r.mode == "ans":  # ANS itself is within a few bytes of the empirical entropy
            assert ideal <= r.payload_bytes <= 1.002 * ideal + 8
    info = bs.file_info(f)
    assert info["bpp"] == 8 * len(data) / (N_FRAMES * 36 * 64)
    assert sum(t["bytes"] for t in info["tensors"]) == s["table"] + s["payload"]


def test_header_is_canonical_json_with_the_documented_fields(data: bytes) -> None:
    version, header, body = split(data)
    assert version == 2 and data[:4] == b"GNRV"  # the paper's scheme: format 2 as before
    assert set(header) == {"encoder", "model", "quantization", "stage", "tensors", "video"}
    assert header["quantization"] == {"bits": 8, "scheme": bs.QUANT_SCHEME}
    assert header["tensors"][0] == {
        "name": "embedding",
        "shape": [1, 16, 9, 16],
        "bits": 8,
        "blob_bytes": header["tensors"][0]["blob_bytes"],
    }
    assert join(header, body) == data
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])


def test_format_1_config_keys_are_the_models() -> None:
    # A new GNeRVConfig field changes what a file must hold: update bitstream._CONFIG_KEYS,
    # docs/bitstream.md and, if old files can no longer be read, FORMAT_VERSION.
    assert bs._CONFIG_KEYS == set(GNeRVConfig.__dataclass_fields__)


def test_residual_layer_names_its_parent(data: bytes) -> None:
    base = bs.unpack(data, "base.gnerv")
    stage = bs.next_stage(base, 32.0)
    assert stage == {
        "index": 2,
        "parent_sha256": base.sha256,
        "residual_scale": 32.0,
        "video_id": VIDEO_ID,
    }
    layer = bs.unpack(bs.compress_model(laplace_model(1, residual=True), 6, VIDEO, stage), "l2")
    assert layer.stage == stage and layer.bits == 6 and layer.model_config.residual
    with pytest.raises(GnervError, match="residual model"):
        bs.compress_model(laplace_model(1), 8, VIDEO, stage)  # frame model as a layer 2
    with pytest.raises(GnervError, match="base layer"):
        bs.compress_model(laplace_model(1, residual=True), 8, VIDEO, bs.base_stage(VIDEO_ID))


def test_decoding_needs_no_pickle(monkeypatch: pytest.MonkeyPatch, data: bytes, tmp_path) -> None:
    path = tmp_path / "clip.gnerv"
    bs.write_gnerv(path, data)

    def forbidden(*_a, **_k):
        raise AssertionError("pickle / torch.load used on the decode path")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    f = bs.read_gnerv(path)
    assert decode_layers([f], [0, 7], "cpu").shape == (2, 36, 64, 3)


# --------------------------------------------------------------------------------------------
# Refusals: framing
# --------------------------------------------------------------------------------------------


def test_empty_wrong_magic_future_version(data: bytes) -> None:
    refused(b"", "empty file")
    refused(b"GN", "truncated")
    refused(b"\x1aE\xdf\xa3" + data[4:], "not a .gnerv file")
    refused(b"\x93NUMPY" + bytes(100), "not a .gnerv file")
    future = bytearray(data)
    newer = bs.FORMAT_VERSION + 1
    struct.pack_into("<H", future, 4, newer)
    refused(bytes(future), f"written by a newer gnerv (format {newer}); upgrade")  # CRC wrong too
    _, header, body = split(data)
    refused(join(header, body, version=newer), f"newer gnerv (format {newer})")
    refused(join(header, body, version=0), "unknown .gnerv format version 0")


@pytest.mark.parametrize("keep", [6, 10, 13, 14, 100, -5, -4, -1])
def test_truncated(data: bytes, keep: int) -> None:
    msg = refused(data[:keep], "")
    assert "truncated" in msg or "checksum" in msg


@pytest.mark.parametrize("where", [6, 20, 300, -100, -3])
def test_flipped_byte(data: bytes, where: int) -> None:
    bad = bytearray(data)
    bad[where] ^= 0x10
    refused(bytes(bad), "checksum mismatch")


def test_header_length_limits(data: bytes) -> None:
    _, header, body = split(data)
    raw = bs.canonical_json(header)
    refused(join(raw, body, hlen=len(raw) + len(body) + 1), "runs past the end")
    refused(join(raw, body, hlen=bs.MAX_HEADER_BYTES + 1), "exceeds")
    padded = raw[:-1] + b',"pad":"' + b"x" * bs.MAX_HEADER_BYTES + b'"}'
    refused(join(padded, body), "exceeds")


def test_header_must_be_canonical_json(data: bytes) -> None:
    _, header, body = split(data)
    refused(join(json.dumps(header, sort_keys=True).encode(), body), "canonical")
    refused(join(b"{not json" + b" " * 10, body), "not valid JSON")
    refused(join(b"[" * 100_000 + b"]" * 100_000, body), "")
    refused(join(b'{"a":NaN}', body), "not valid JSON")
    refused(join(b'{"a":"\xff"}', body), "not valid JSON")
    refused(join(b"[1,2]", body), "must be an object")


# --------------------------------------------------------------------------------------------
# Refusals: header fields (the CRC is made valid again, so validation itself is exercised)
# --------------------------------------------------------------------------------------------


def mutate(data: bytes, path: tuple, value) -> bytes:
    _, header, body = split(data)
    header = copy.deepcopy(header)
    node = header
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return join(header, body)


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("video", "n_frames"), "8", "video.n_frames must be an integer"),
        (("video", "n_frames"), True, "must be an integer"),
        (("video", "n_frames"), 8.0, "must be an integer"),
        (("video", "n_frames"), 0, "outside"),
        (("video", "fps"), "25", "video.fps must be a number"),
        (("video", "fps"), -1.0, "positive"),
        (("video", "height"), 37, "model is for 36x64"),
        (("video", "width"), None, "must be an integer"),
        (("video", "extra"), 1, "unknown keys ['extra']"),
        (("video", "fps"), DELETE, "missing keys ['fps']"),
        (("model", "c0"), "8", "model.c0 must be an integer"),
        (("model", "c0"), 17, "expects"),
        (("model", "residual"), 1, "true or false"),
        (("model", "upscale_factors"), [], "must not be empty"),
        (("model", "upscale_factors"), [3, 3], "does not divide"),
        (("model", "upscale_factors"), "2,2", "must be a list"),
        (("model", "upscale_factors"), [1] * 17, "must be a list"),
        (("model", "kernel_size"), 2, "odd"),
        (("model", "pe_base"), "1.25", "must be a number"),
        (("model", "pe_levels"), 10**6, "outside"),
        (("model", "c0"), 10**30, "outside"),
        (("model", "nonsense"), 1, "unknown keys"),
        (("quantization", "bits"), 17, "outside 2..16"),
        (("quantization", "bits"), "8", "must be an integer"),
        (("quantization", "scheme"), "other", "scheme"),
        (("stage", "index"), 0, "outside"),
        (("stage", "index"), 2, "64-digit"),
        (("stage", "index"), "1", "must be an integer"),
        (("stage", "video_id"), "xyz", "64-digit"),
        (("stage", "video_id"), "AB" * 32, "64-digit"),
        (("stage", "parent_sha256"), "ab" * 32, "base layer"),
        (("stage", "residual_scale"), 4.0, "base layer"),
        (("encoder",), 7, "encoder"),
        (("tensors",), {}, "tensor table"),
        (("tensors",), [], "tensor table"),
        (("tensors", 0, "name"), "emb", "named 'emb'"),
        (("tensors", 0, "name"), 5, "named 5"),
        (("tensors", 1, "shape"), [40, 41], "shape [40, 41]"),
        (("tensors", 1, "shape"), [40, "40"], "must be an integer"),
        (("tensors", 1, "bits"), 1, "outside"),
        (("tensors", 1, "blob_bytes"), "9", "must be an integer"),
        (("tensors", 1, "blob_bytes"), -1, "outside"),
        (("tensors", 1, "blob_bytes"), 10**9, "outside"),
        (("tensors", 0), [], "must be an object"),
        (("video",), [], "must be an object"),
        (("stage",), None, "must be an object"),
    ],
)
def test_bad_header_fields(data: bytes, path: tuple, value, fragment: str) -> None:
    refused(mutate(data, path, value), fragment)


def test_blob_lengths_must_cover_the_body(data: bytes) -> None:
    _, header, _ = split(data)
    n = header["tensors"][1]["blob_bytes"]
    refused(mutate(data, ("tensors", 1, "blob_bytes"), n + 1), "describes")
    refused(mutate(data, ("tensors", 1, "blob_bytes"), n - 1), "")
    _, header, body = split(data)
    refused(join(header, body + b"\0"), "describes")
    refused(join(header, body[:-1]), "describes")


def test_huge_configs_are_refused_before_anything_is_built(
    monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    def no_build(*_a, **_k):
        raise AssertionError("model built before its size was checked")

    monkeypatch.setattr(bs, "expected_tensors", no_build)
    monkeypatch.setattr(bs, "GNeRV", no_build)
    refused(mutate(data, ("model", "c0"), 60_000), "parameters, more than the limit")
    refused(mutate(data, ("video", "n_frames"), 2**33), "exceed")
    _, header, body = split(data)
    for part in ("video", "model"):
        header[part]["height"] = header[part]["width"] = 20_000
    refused(join(header, body), "outside 1..16384")


def test_bad_channel_ranges_and_blobs(data: bytes) -> None:
    _, header, body = split(data)
    channels = 16  # the embedding comes first: mins[16], maxs[16], then its blob
    nan = bytearray(body)
    struct.pack_into("<f", nan, 4, float("nan"))
    refused(join(header, bytes(nan)), "non-finite")
    inverted = bytearray(body)
    struct.pack_into("<f", inverted, 4 * channels, -1e6)  # maxs[0] below mins[0]
    refused(join(header, bytes(inverted)), "below its min")
    bad_mode = bytearray(body)
    bad_mode[8 * channels] = 10
    refused(join(header, bytes(bad_mode)), "tensor 'embedding': entropy blob: unknown mode")
    bad_mode[8 * channels] = 7  # the compact Gaussian of format 3 in a format-2 file
    refused(join(header, bytes(bad_mode)), "mode byte 7 does not exist in format 2")

    # An ANS table for symbols 127..382 of an 8-bit tensor is found only when decoding.
    f = bs.unpack(data, "x")
    k = next(i for i, r in enumerate(f.records) if r.mode == "ans")
    start = sum(r.stored_bytes for r in f.records[:k]) + f.records[k].minmax_bytes
    bad_range = bytearray(body)
    assert bad_range[start : start + 2] == bytes([2, 0])  # mode ANS, lowest symbol 0
    bad_range[start + 1] = 127
    name = f.records[k].name
    lazy = bs.unpack(join(header, bytes(bad_range)), "lazy.gnerv", decode=False)
    with pytest.raises(GnervError, match=f"lazy.gnerv: tensor '{name}'"):
        _ = lazy.tensors
    refused(join(header, bytes(bad_range)), "symbol range")


def test_read_gnerv_path_errors(tmp_path) -> None:
    with pytest.raises(GnervError, match="no such file"):
        bs.read_gnerv(tmp_path / "missing.gnerv")
    with pytest.raises(GnervError, match="not a file"):
        bs.read_gnerv(tmp_path)


def test_pack_refuses_what_it_could_not_read(model: GNeRV) -> None:
    qs = quantize_model(model, 8)
    with pytest.raises(GnervError, match="names or order"):
        bs.pack(VIDEO, model.cfg, 8, bs.base_stage(VIDEO_ID), qs[::-1])
    with pytest.raises(GnervError, match="video.fps = nan must be a positive number"):
        bs.pack({**VIDEO, "fps": float("nan")}, model.cfg, 8, bs.base_stage(VIDEO_ID), qs)
    with pytest.raises(GnervError, match="video_id"):
        bs.pack(VIDEO, model.cfg, 8, bs.base_stage("nope"), qs)
    with pytest.raises(GnervError, match="bits"):
        bs.compress_model(model, 1, VIDEO, bs.base_stage(VIDEO_ID))


def test_layout_is_recorded_and_format_1_reads_as_wide(data: bytes) -> None:
    # Format 2 writes model.layout: a "paper"-layout model comes back as itself.
    with torch.device("meta"):
        paper = GNeRV(GNeRVConfig(36, 64, c0=16, min_channels=8, layout="paper"))
    rng = np.random.default_rng(1)
    sd = {
        k: torch.from_numpy(rng.laplace(0.0, 0.05, tuple(v.shape)).astype(np.float32))
        for k, v in paper.state_dict().items()
    }
    paper.load_state_dict(sd, assign=True)
    packed = bs.compress_model(paper.eval(), 8, VIDEO, bs.base_stage(VIDEO_ID), render=1)
    version, header, body = split(packed)
    assert version == 2 and header["model"]["layout"] == "paper"
    f = bs.unpack(packed, "paper.gnerv")
    assert f.model_config == paper.cfg
    expected = quantize_model(paper, 8)
    assert [q.name for q in f.tensors] == [q.name for q in expected]
    for got, want in zip(f.tensors, expected, strict=True):
        assert np.array_equal(got.symbols, want.symbols)
    t = torch.tensor([0.0, 0.5])
    assert build_model(f)(t).shape == (2, 3, 36, 64)
    bad = copy.deepcopy(header)
    bad["model"]["layout"] = "narrow"
    refused(join(bad, body, version=2), "layout 'narrow' is not one of: wide, paper")
    bad["model"]["layout"] = 1
    refused(join(bad, body, version=2), "model.layout must be a string")

    # Format 1 had no layout or time_branch key: its models are today's "wide", "ds" ones.
    _, header, body = split(data)
    assert header["model"]["layout"] == "wide" and header["model"]["time_branch"] == "ds"
    del header["model"]["layout"], header["model"]["time_branch"]
    old = bs.unpack(join(header, body, version=1), "old.gnerv")
    new = bs.unpack(data, "new.gnerv")
    assert old.model_config == new.model_config and old.model_config.layout == "wide"
    assert old.model_config.time_branch == "ds"
    assert [r.blob for r in old.records] == [r.blob for r in new.records]
    newer = bs.FORMAT_VERSION + 1
    refused(join(header, body, version=newer), f"newer gnerv (format {newer}); upgrade gnerv")


def test_each_format_has_its_own_model_keys(data: bytes) -> None:
    """Format 2 requires model.layout and model.time_branch; format 1 never had them (and reads
    as "wide", "ds")."""
    _, header, body = split(data)
    new_keys = ("layout", "time_branch")
    without = {**header, "model": {k: v for k, v in header["model"].items() if k not in new_keys}}
    refused(join(without, body, version=2), "missing keys ['layout', 'time_branch']")
    refused(join(header, body, version=1), "unknown keys ['layout', 'time_branch']")
    f = bs.unpack(join(without, body, version=1), "v1.gnerv")
    assert f.model_config.layout == "wide" and f.model_config.time_branch == "ds"
    assert f.version == 1
    assert bs.file_info(f)["format"] == 1


def test_the_format_table_is_the_one_the_docs_list():
    """One table of versions (bitstream.FORMATS) drives writer and reader; docs/bitstream.md's
    Versioning table lists exactly its versions, and each scheme writes a version it may use."""
    import re
    from pathlib import Path

    from gnerv.codec import bitstream

    doc = (Path(__file__).resolve().parent.parent / "docs" / "bitstream.md").read_text()
    section = doc.split("## Versioning", 1)[1].split("\n## ", 1)[0]
    listed = [int(m) for m in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)]
    assert listed == list(bitstream.FORMATS) == list(bitstream.READ_VERSIONS)
    assert bitstream.FORMAT_VERSION == max(bitstream.FORMATS)
    for scheme, version in bitstream.RENDER1_FORMAT.items():
        assert scheme in bitstream.FORMATS[version].schemes
        assert bitstream.FORMATS[version].renders == (1,)
        assert bitstream.written_format(scheme, 1) == version
        assert bitstream.written_format(scheme, 2) == bitstream.FORMAT_VERSION
    modes = [f.max_entropy_mode for f in bitstream.FORMATS.values()]
    assert modes == sorted(modes)  # a newer format never loses an entropy mode
