"""The ``.gnerv`` file: one coded layer (stage) of a video, and everything needed to decode it.

Layout (all integers little-endian; docs/bitstream.md has the full description)::

    offset 0    4 bytes   magic b"GNRV"
    offset 4    u16       format version (FORMATS: the table of versions; all are read)
    offset 6    u32       header length H (<= MAX_HEADER_BYTES)
    offset 10   H bytes   header: canonical UTF-8 JSON (sorted keys, no spaces, ASCII)
    ...         body      for each tensor of the header's table, in order:
                              mins  float32[channels], maxs float32[channels],
                              (symmetric scheme: a ranges record of ranges_bytes instead)
                              entropy blob (blob_bytes, gnerv.codec.entropy framing)
    end - 4     u32       CRC-32 (zlib.crc32) of every byte before it

Reading checks the magic, then the version (a newer format may lay out the rest differently),
then the CRC, and only then parses the header; every field is type- and range-checked, and the
tensor table must name exactly the tensors of ``GNeRV(model config)`` with their shapes. The
model's size is bounded from the config before anything is allocated. Every failure is a
:class:`GnervError` with a one-line message naming the file. No pickle, no ``torch.load``.

This module is the container only. Quantization (:mod:`gnerv.codec.quantize`, docs/compression.md:
tensors in their coding shapes, one range per channel) and entropy coding
(:mod:`gnerv.codec.entropy`) happen elsewhere; models are rebuilt from a file by
:func:`gnerv.codec.decode.build_model`, and a source video's fingerprint (``stage.video_id``) is
:func:`gnerv.media.video.video_fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnerv import __version__
from gnerv.codec.config import (
    DEFAULT_SCHEME,
    MAX_BITS,
    MAX_DS_HIDDEN,
    MAX_KERNEL_SIZE,
    MAX_MIN_CHANNELS,
    MAX_PE_BASE,
    MAX_UPSCALE_FACTOR,
    MIN_BITS,
    MINMAX_SCHEME,
    SCHEMES,
    SYMMETRIC_SCHEME,
    GNeRVConfig,
    count_params,
    macs_per_frame,
)
from gnerv.codec.entropy import (
    MODE_ANS,
    MODE_GAUSSIAN,
    MODE_GAUSSIAN_Q,
    MODE_GAUSSIAN_T,
    blob_info,
    coded_size_bound,
    decode_symbols,
    encode_symbols,
)
from gnerv.codec.kernels import NEWEST_RENDER, RENDER_KERNELS
from gnerv.codec.limits import (
    DEFAULT_LIMITS,
    MAX_PARAMS,
    MAX_SIDE,
    MAX_VIDEO_SAMPLES,
    DecodeLimits,
    check_cost,
    check_model_size,
    decode_cost,
)
from gnerv.codec.model import GNeRV
from gnerv.codec.quantize import (
    STEP_CODE_MAX,
    QuantizedTensor,
    coding_shape,
    num_channels,
    quantize_model,
)
from gnerv.runtime.atomic import write_bytes_atomic
from gnerv.runtime.errors import GnervError

MAGIC = b"GNRV"
SUFFIX = ".gnerv"
QUANT_SCHEME = MINMAX_SCHEME  # the paper's scheme, formats 1 and 2 (gnerv.codec.quantize)
_STEP_CODE_ALPHABET = STEP_CODE_MAX + 1

_PREFIX = struct.Struct("<4sHI")  # magic, version, header length
_UNIT_BF16 = struct.Struct("<H")  # a symmetric tensor's unit step from format 3
_CRC = struct.Struct("<I")
MIN_FILE_BYTES = _PREFIX.size + _CRC.size

# Limits checked before anything is allocated (a file is untrusted input).
MAX_HEADER_BYTES = 1 << 20
MAX_FILE_BYTES = 1 << 31
MAX_STAGE_INDEX = 255
MAX_UPSCALE_STAGES = 16
MAX_PE_LEVELS = 1024
MAX_FLOAT_FIELD = 1e9  # fps, pe_base, residual_scale
MAX_ENCODER_CHARS = 100

_HEX64 = re.compile(r"[0-9a-f]{64}")

_TOP_KEYS = {"encoder", "model", "quantization", "stage", "tensors", "video"}
_RENDER_KEY = "render"  # from format 5: the render version (kernels.RENDER_KERNELS)
_VIDEO_KEYS = {"fps", "height", "n_frames", "width"}
_QUANT_KEYS = {"bits", "scheme"}
_STAGE_KEYS = {"index", "parent_sha256", "residual_scale", "video_id"}
_TENSOR_KEYS = {"bits", "blob_bytes", "name", "shape"}
# The symmetric scheme (format 2) stores each tensor's ranges in a record of its own length, and
# its table compactly: one list [bits, ranges_bytes, blob_bytes] per tensor, in the model's
# order (names and shapes follow from the model config; the reader fills them in).
_SYMMETRIC_TENSOR_KEYS = _TENSOR_KEYS | {"ranges_bytes"}
_COMPACT_ENTRY = ("bits", "ranges_bytes", "blob_bytes")
# The model config as format 2 stores it; format 1 stored the same keys but "layout" and
# "time_branch". Frozen here on
# purpose: a new GNeRVConfig field changes the format (tests/test_bitstream.py fails until this
# set, the docs and maybe the version follow).
_CONFIG_KEYS = {
    "c0",
    "ds_hidden",
    "height",
    "kernel_size",
    "layout",
    "min_channels",
    "pe_base",
    "pe_levels",
    "residual",
    "time_branch",
    "upscale_factors",
    "width",
}


@dataclass(frozen=True)
class FormatSpec:
    """One .gnerv format version: what its files may hold. The writer picks its version from
    this table and the reader checks a file against its row (docs/bitstream.md, "Versioning")."""

    version: int
    schemes: tuple[str, ...]  # quantization.scheme values its files may carry
    model_keys: frozenset[str]  # the model config's keys in its header
    max_entropy_mode: int  # the newest entropy mode byte its blobs may use
    unit_bytes: int  # a symmetric tensor's unit step: float32 (4) or bfloat16 (2); 0: none
    added: str  # what the version brought, in words
    renders: tuple[int, ...] = (1,)  # header "render" values (absent before format 5: render 1)


FORMATS: dict[int, FormatSpec] = {
    f.version: f
    for f in (
        FormatSpec(
            1, (MINMAX_SCHEME,), frozenset(_CONFIG_KEYS - {"layout", "time_branch"}), MODE_ANS,
            0, "the paper's min/max scheme, entropy coded with counted tables",
        ),
        FormatSpec(
            2, SCHEMES, frozenset(_CONFIG_KEYS), MODE_GAUSSIAN, 4,
            "model.layout and model.time_branch; the symmetric scheme (float32 unit steps, "
            "float Laplace and Gaussian models)",
        ),
        FormatSpec(
            3, SCHEMES, frozenset(_CONFIG_KEYS), MODE_GAUSSIAN_Q, _UNIT_BF16.size,
            "the entropy coder's scaled tables and compact parametric models; bfloat16 unit "
            "steps",
        ),
        FormatSpec(
            4, SCHEMES, frozenset(_CONFIG_KEYS), MODE_GAUSSIAN_T, _UNIT_BF16.size,
            "parametric models with integer tables (LAPLACE_T, GAUSSIAN_T), exact on every "
            "platform, in place of format 3's float ones",
        ),
        FormatSpec(
            5, SCHEMES, frozenset(_CONFIG_KEYS), MODE_GAUSSIAN_T, _UNIT_BF16.size,
            "the header's render version (renders 2 and 3: the same frames for every batch size "
            "and thread count)", tuple(RENDER_KERNELS),
        ),
    )
}  # fmt: skip
FORMAT_VERSION = max(FORMATS)  # the newest, which files of the newest render are written in
READ_VERSIONS = tuple(FORMATS)
# The version a render-1 file of each scheme is written in (no "render" key: byte for byte what
# earlier writers wrote, so that earlier readers read it); a newer render needs FORMAT_VERSION.
RENDER1_FORMAT = {MINMAX_SCHEME: 2, SYMMETRIC_SCHEME: 4}


def written_format(scheme: str, render: int) -> int:
    """The format version a file of `scheme` rendered by `render` is written in."""
    return RENDER1_FORMAT[scheme] if render == 1 else FORMAT_VERSION


# --------------------------------------------------------------------------------------------
# Small pieces: video facts, stages, canonical JSON, the model's tensors
# --------------------------------------------------------------------------------------------


def video_facts(n_frames: int, height: int, width: int, fps: float) -> dict:
    """The header's ``video`` object."""
    return {
        "n_frames": int(n_frames),
        "height": int(height),
        "width": int(width),
        "fps": float(fps),
    }


def base_stage(video_id: str) -> dict:
    """The ``stage`` object of a base layer (stage 1)."""
    return {"index": 1, "parent_sha256": None, "residual_scale": None, "video_id": video_id}


def next_stage(parent: GnervFile, residual_scale: float) -> dict:
    """The ``stage`` object of the layer that refines ``parent`` (residuals x residual_scale)."""
    return {
        "index": int(parent.stage["index"]) + 1,
        "parent_sha256": parent.sha256,
        "residual_scale": float(residual_scale),
        "video_id": parent.stage["video_id"],
    }


def canonical_json(obj: Any) -> bytes:
    """The one byte string a header object is written as (and must be read as)."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def expected_tensors(cfg: GNeRVConfig) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every state-dict tensor of GNeRV(cfg), built on the meta device (no
    memory is allocated; bound the config with :func:`check_model_size` first)."""
    with torch.device("meta"):
        model = GNeRV(cfg)
    return [(k, tuple(int(s) for s in v.shape)) for k, v in model.state_dict().items()]


# --------------------------------------------------------------------------------------------
# Decode limits: what decoding a file may cost, bounded before anything is allocated
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Field validation: JSON values are untrusted, check their types before using them
# --------------------------------------------------------------------------------------------


def _obj(value: Any, what: str, keys: set[str]) -> dict:
    if not isinstance(value, dict):
        raise GnervError(f"header field {what} must be an object, got {type(value).__name__}")
    if set(value) != keys:
        missing, extra = sorted(keys - set(value)), sorted(set(value) - keys)
        raise GnervError(f"header field {what}: missing keys {missing}, unknown keys {extra}")
    return value


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GnervError(f"header field {what} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise GnervError(f"header field {what} = {value} outside {lo}..{hi}")
    return value


def _num(value: Any, what: str, hi: float = MAX_FLOAT_FIELD) -> float:
    """A finite number in (0, hi]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GnervError(f"header field {what} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0 < value <= hi):
        raise GnervError(f"header field {what} = {value!r} must be a positive number <= {hi:g}")
    return float(value)


def _hex64(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise GnervError(f"header field {what} must be a 64-digit lowercase hex SHA-256")
    return value


def _int_list(value: Any, what: str, max_len: int, lo: int, hi: int) -> list[int]:
    if not isinstance(value, list) or len(value) > max_len:
        raise GnervError(f"header field {what} must be a list of at most {max_len} integers")
    return [_int(v, f"{what}[{i}]", lo, hi) for i, v in enumerate(value)]


def _validate_config(d: Any, version: int = FORMAT_VERSION) -> GNeRVConfig:
    keys = FORMATS[version].model_keys
    if keys != _CONFIG_KEYS:  # format 1 had neither key: every model was "wide" and "ds"
        d = {**_obj(d, "model", set(keys)), "layout": "wide", "time_branch": "ds"}
    d = _obj(d, "model", _CONFIG_KEYS)
    for key in ("layout", "time_branch"):  # GNeRVConfig checks they are known values
        if not isinstance(d[key], str):
            raise GnervError(f"header field model.{key} must be a string")
    _int(d["height"], "model.height", 1, MAX_SIDE)
    _int(d["width"], "model.width", 1, MAX_SIDE)
    _int(d["c0"], "model.c0", 1, MAX_PARAMS)
    factors = _int_list(
        d["upscale_factors"], "model.upscale_factors", MAX_UPSCALE_STAGES, 1, MAX_UPSCALE_FACTOR
    )
    if not factors:  # empty means "derive", whose search is not bounded: the writer never does it
        raise GnervError("header field model.upscale_factors must not be empty")
    _int(d["min_channels"], "model.min_channels", 1, MAX_MIN_CHANNELS)
    _num(d["pe_base"], "model.pe_base", MAX_PE_BASE)  # > 1 and the levels: GNeRVConfig
    _int(d["pe_levels"], "model.pe_levels", 1, MAX_PE_LEVELS)
    _int(d["ds_hidden"], "model.ds_hidden", 1, MAX_DS_HIDDEN)
    _int(d["kernel_size"], "model.kernel_size", 1, MAX_KERNEL_SIZE)
    if not isinstance(d["residual"], bool):
        raise GnervError("header field model.residual must be true or false")
    try:
        return GNeRVConfig.from_dict(d)
    except (TypeError, ValueError, OverflowError) as e:
        raise GnervError(f"header field model is not a valid GNeRV config ({e})")


def _validate_stage(d: Any, cfg: GNeRVConfig) -> dict:
    d = _obj(d, "stage", _STAGE_KEYS)
    index = _int(d["index"], "stage.index", 1, MAX_STAGE_INDEX)
    _hex64(d["video_id"], "stage.video_id")
    if index == 1:
        if d["parent_sha256"] is not None or d["residual_scale"] is not None:
            raise GnervError("a base layer (stage 1) has no parent_sha256 and no residual_scale")
        if cfg.residual:
            raise GnervError("a base layer (stage 1) must hold a frame model, not a residual one")
    else:
        _hex64(d["parent_sha256"], "stage.parent_sha256")
        _num(d["residual_scale"], "stage.residual_scale")
        if not cfg.residual:
            raise GnervError(f"layer {index} must hold a residual model (model.residual true)")
    return d


def _validate_header(
    header: Any,
    version: int = FORMAT_VERSION,
    check_cost: Callable[[GNeRVConfig, int], None] | None = None,
) -> tuple[dict, GNeRVConfig, int, list[dict], dict, str]:
    """Check a parsed header of format `version`; returns (video, config, bits, tensor table,
    stage, scheme, render)."""
    spec = FORMATS[version]
    with_render = spec.renders != (1,)
    header = _obj(header, "(top level)", _TOP_KEYS | ({_RENDER_KEY} if with_render else set()))
    render = header[_RENDER_KEY] if with_render else 1
    if type(render) is not int or render not in spec.renders:
        raise GnervError(
            f"header field render of format {version} must be one of {list(spec.renders)}, "
            f"got {render!r}"
        )
    enc = header["encoder"]
    if not isinstance(enc, str) or len(enc) > MAX_ENCODER_CHARS or not enc.isprintable():
        raise GnervError("header field encoder must be a short printable string")
    video = _obj(header["video"], "video", _VIDEO_KEYS)
    height = _int(video["height"], "video.height", 1, MAX_SIDE)
    width = _int(video["width"], "video.width", 1, MAX_SIDE)
    n_frames = _int(video["n_frames"], "video.n_frames", 1, MAX_VIDEO_SAMPLES)
    _num(video["fps"], "video.fps")
    quant = _obj(header["quantization"], "quantization", _QUANT_KEYS)
    bits = _int(quant["bits"], "quantization.bits", MIN_BITS, MAX_BITS)
    scheme = quant["scheme"]
    if scheme not in FORMATS[version].schemes:
        known = list(FORMATS[version].schemes)
        raise GnervError(
            f"header field quantization.scheme of format {version} must be one of {known}"
        )
    tensor_keys = _SYMMETRIC_TENSOR_KEYS if scheme == SYMMETRIC_SCHEME else _TENSOR_KEYS
    cfg = _validate_config(header["model"], version)
    if (cfg.height, cfg.width) != (height, width):
        raise GnervError(
            f"model is for {cfg.height}x{cfg.width} frames but the video is {height}x{width}"
        )
    check_model_size(cfg, n_frames)
    if check_cost is not None:  # before the tensor table is built: a bomb costs nothing more
        check_cost(cfg, n_frames)
    stage = _validate_stage(header["stage"], cfg)

    table = header["tensors"]
    expected = expected_tensors(cfg)
    if not isinstance(table, list) or len(table) != len(expected):
        got = len(table) if isinstance(table, list) else type(table).__name__
        raise GnervError(f"tensor table must list the model's {len(expected)} tensors, got {got}")
    if scheme == SYMMETRIC_SCHEME:
        table = [
            _expand_entry(e, i, name, shape)
            for i, (e, (name, shape)) in enumerate(zip(table, expected, strict=True))
        ]
    for i, (entry, (name, shape)) in enumerate(zip(table, expected, strict=True)):
        entry = _obj(entry, f"tensors[{i}]", tensor_keys)
        if entry["name"] != name:
            raise GnervError(f"tensor {i} is named {entry['name']!r}, the model expects {name!r}")
        got_shape = _int_list(entry["shape"], f"tensors[{i}].shape", 8, 0, MAX_PARAMS)
        if tuple(got_shape) != shape:
            raise GnervError(
                f"tensor {name!r} has shape {got_shape}, the model expects {list(shape)}"
            )
        tbits = _int(entry["bits"], f"tensors[{i}].bits", MIN_BITS, MAX_BITS)
        bound = coded_size_bound(math.prod(shape), 1 << tbits)
        _int(entry["blob_bytes"], f"tensors[{i}].blob_bytes", 0, bound)
        if scheme == SYMMETRIC_SCHEME:
            lo, hi = _ranges_bounds(num_channels(coding_shape(shape)), version)
            _int(entry["ranges_bytes"], f"tensors[{i}].ranges_bytes", lo, hi)
    return video, cfg, bits, table, stage, scheme, render


def _expand_entry(entry: Any, i: int, name: str, shape: tuple[int, ...]) -> dict:
    """A compact table entry [bits, ranges_bytes, blob_bytes] as the full one."""
    if not isinstance(entry, list) or len(entry) != len(_COMPACT_ENTRY):
        raise GnervError(
            f"header field tensors[{i}] must be a list [bits, ranges_bytes, blob_bytes]"
        )
    return {"name": name, "shape": list(shape), **dict(zip(_COMPACT_ENTRY, entry, strict=True))}


def _compact_entry(entry: dict) -> list[int]:
    return [entry[k] for k in _COMPACT_ENTRY]


def _ranges_bounds(channels: int, version: int) -> tuple[int, int]:
    """Smallest and largest ranges record of a symmetric-scheme tensor: the unit step, then
    (2 or more channels) the step codes' entropy blob."""
    unit = _unit_bytes(version)
    if channels < 2:
        return unit, unit
    return unit + 1, unit + coded_size_bound(channels, _STEP_CODE_ALPHABET)


# --------------------------------------------------------------------------------------------
# The parsed file
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorRecord:
    """One tensor as stored: its table entry, channel ranges and entropy blob (not decoded)."""

    name: str
    shape: tuple[int, ...]  # the model's shape
    bits: int
    mins: np.ndarray
    maxs: np.ndarray
    blob: bytes
    mode: str  # entropy mode: empty | const | raw | ans | laplace
    table_bytes: int  # bytes of the blob that are not payload (mode byte, frequency table, ...)
    payload_bytes: int
    # SYMMETRIC_SCHEME (mins/maxs empty): unit step, step codes, bytes of its ranges record
    scheme: str = MINMAX_SCHEME
    unit: float = 0.0
    step_codes: np.ndarray | None = None
    ranges_bytes: int = 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def minmax_bytes(self) -> int:
        """Bytes of the channel ranges: min/max pairs, or the symmetric scheme's record."""
        return self.ranges_bytes if self.scheme == SYMMETRIC_SCHEME else 8 * self.mins.size

    @property
    def stored_bytes(self) -> int:
        """All body bytes of this tensor: min/max arrays and blob."""
        return self.minmax_bytes + len(self.blob)

    def decode(self) -> QuantizedTensor:
        """Entropy-decode the symbols (raises GnervError on a corrupt blob)."""
        symbols = decode_symbols(self.blob, self.numel, 1 << self.bits)
        return QuantizedTensor(
            self.name,
            coding_shape(self.shape),
            self.bits,
            symbols,
            self.mins,
            self.maxs,
            self.scheme,
            self.unit,
            self.step_codes,
        )


@dataclass
class GnervFile:
    """A checked ``.gnerv`` file. ``tensors`` entropy-decodes on first use."""

    name: str
    video: dict
    model_config: GNeRVConfig
    bits: int
    stage: dict
    records: list[TensorRecord]
    sha256: str
    sizes: dict
    encoder: str
    limits: DecodeLimits = DEFAULT_LIMITS  # what decoding it may cost
    scheme: str = MINMAX_SCHEME  # quantization.scheme
    version: int = FORMAT_VERSION  # the file's format version
    render: int = 1  # the render version its frames are defined by (kernels.RENDER_KERNELS)

    @property
    def n_frames(self) -> int:
        return int(self.video["n_frames"])

    @property
    def fps(self) -> float:
        return float(self.video["fps"])

    @property
    def index(self) -> int:
        return int(self.stage["index"])

    @cached_property
    def tensors(self) -> list[QuantizedTensor]:
        out = []
        for r in self.records:
            try:
                out.append(r.decode())
            except GnervError as e:
                raise GnervError(f"{self.name}: tensor {r.name!r}: {e}")
        return out


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def pack(
    video: dict,
    model_config: GNeRVConfig,
    bits: int,
    stage: dict,
    tensors: list[QuantizedTensor],
    encoder: str = f"gnerv {__version__}",
    render: int = NEWEST_RENDER,
) -> bytes:
    """Serialize one layer. ``tensors`` come from :func:`quantize_model` (coding shapes);
    ``render``: the render version its frames are defined by (the newest unless a file must be
    readable by an older decoder: render 1 writes format 2 or 4, as before).

    The header is checked with the reader's own validation, so nothing unreadable is written.
    """
    if render not in RENDER_KERNELS:
        raise GnervError(f"render {render} is not one of {list(RENDER_KERNELS)}")
    expected = expected_tensors(model_config)
    if [q.name for q in tensors] != [n for n, _ in expected]:
        raise GnervError("tensors do not match the model config's state dict (names or order)")
    scheme = tensors[0].scheme if tensors else DEFAULT_SCHEME
    if any(q.scheme != scheme for q in tensors):
        raise GnervError("all tensors of a file must share one quantization scheme")
    table, body = [], []
    for q, (name, shape) in zip(tensors, expected, strict=True):
        if tuple(q.shape) != coding_shape(shape):
            raise GnervError(
                f"tensor {name!r} has coding shape {q.shape}, expected {coding_shape(shape)}"
            )
        entry = {"name": name, "shape": list(shape), "bits": int(q.bits)}
        if scheme == SYMMETRIC_SCHEME:
            ranges = symmetric_ranges_record(q)
            entry["ranges_bytes"] = len(ranges)
        else:
            mins = np.asarray(q.mins, dtype="<f4")
            maxs = np.asarray(q.maxs, dtype="<f4")
            if mins.shape != (num_channels(q.shape),) or maxs.shape != mins.shape:
                raise GnervError(f"tensor {name!r}: channel ranges do not match its shape")
            ranges = mins.tobytes() + maxs.tobytes()
        blob = encode_symbols(q.symbols, q.alphabet_size, parametric=scheme == SYMMETRIC_SCHEME)
        entry["blob_bytes"] = len(blob)
        table.append(entry)
        body += [ranges, blob]
    header = {
        "encoder": encoder,
        "video": video,
        "model": model_config.to_dict(),
        "quantization": {"bits": int(bits), "scheme": scheme},
        "stage": stage,
        "tensors": [_compact_entry(e) for e in table] if scheme == SYMMETRIC_SCHEME else table,
    }
    version = written_format(scheme, render)
    if render != 1:
        header[_RENDER_KEY] = render
    _validate_header(header, version)
    try:
        text = canonical_json(header)
    except (TypeError, ValueError) as e:
        raise GnervError(f"header cannot be written as JSON ({e})")
    if len(text) > MAX_HEADER_BYTES:
        raise GnervError(f"header of {len(text)} bytes exceeds {MAX_HEADER_BYTES}")
    _validate_header(json.loads(text), version)
    data = _PREFIX.pack(MAGIC, version, len(text)) + text + b"".join(body)
    data += _CRC.pack(zlib.crc32(data))
    for r in _split_body(data, _PREFIX.size + len(text), table, "<new file>", version):
        _check_ranges(r, "<new file>")
    return data


RECIPE_MARK = ", recipe "  # the recipe, in the header's encoder field: "gnerv 0.1.0, recipe paper"


def encoder_name(recipe: str | None = None) -> str:
    """The header's encoder field: this package's version and, when given, the recipe whose
    settings made the file (gnerv.encoder.config.RECIPES)."""
    return f"gnerv {__version__}" + (f"{RECIPE_MARK}{recipe}" if recipe else "")


def recipe_of(encoder: str) -> str | None:
    """The recipe an encoder field names (None: none named, as in files written before recipes
    were recorded or through compress_model without one)."""
    head, mark, recipe = encoder.partition(RECIPE_MARK)
    return recipe if mark and head.startswith("gnerv ") and recipe.isidentifier() else None


def compress_model(
    model: GNeRV,
    bits: int | dict[str, int],
    video: dict,
    stage: dict,
    encoder: str = f"gnerv {__version__}",
    scheme: str = DEFAULT_SCHEME,
    render: int = NEWEST_RENDER,
) -> bytes:
    """Quantize ``model`` (not in place) with ``scheme`` at ``bits`` (one depth, or one per
    tensor name), entropy code it and serialize: the file's bytes. The header's
    ``quantization.bits`` is the largest depth used; ``render``: see :func:`pack`."""
    nominal = max(bits.values()) if isinstance(bits, dict) else bits
    tensors = quantize_model(model, bits, scheme)
    return pack(video, model.cfg, nominal, stage, tensors, encoder, render)


def symmetric_ranges_record(q: QuantizedTensor) -> bytes:
    """A symmetric-scheme tensor's ranges record (from format 3): the unit step as bfloat16 (the
    top 2 bytes of its float32), then (2+ channels) the step codes entropy coded."""
    codes = np.asarray(q.step_codes, dtype=np.int32)
    if codes.shape != (num_channels(q.shape),):
        raise GnervError(f"tensor {q.name!r}: step codes do not match its shape")
    bits = int(np.array([q.unit], dtype=np.float32).view(np.uint32)[0])
    if bits & 0xFFFF:
        raise GnervError(f"tensor {q.name!r}: unit step {q.unit!r} is not a bfloat16 value")
    unit = _UNIT_BF16.pack(bits >> 16)
    if codes.size < 2:
        return unit
    return unit + encode_symbols(codes, _STEP_CODE_ALPHABET, parametric=True)


# The entropy modes (gnerv.codec.entropy) each format may hold: 1 CONST/RAW/ANS, 2 also LAPLACE and
# GAUSSIAN, 3 also ANS_SCALED and the compact LAPLACE_Q / GAUSSIAN_Q, 4 also the integer-table
# LAPLACE_T / GAUSSIAN_T (which a format-3 file's blob therefore cannot be).
def _check_mode(blob: bytes, version: int) -> None:
    """Refuse a blob whose mode byte is newer than the file's format."""
    newest = max(f.max_entropy_mode for f in FORMATS.values())
    if blob and FORMATS[version].max_entropy_mode < blob[0] <= newest:
        raise GnervError(f"entropy blob: mode byte {blob[0]} does not exist in format {version}")


def _unit_bytes(version: int) -> int:
    """Bytes of a ranges record's unit step (the format table's unit_bytes)."""
    return FORMATS[version].unit_bytes


def _read_symmetric_ranges(
    record: bytes, channels: int, version: int = FORMAT_VERSION
) -> tuple[float, np.ndarray]:
    """(unit, step codes) of a ranges record; raises GnervError when it is inconsistent."""
    if _unit_bytes(version) == 4:  # float32
        (unit,) = struct.unpack_from("<f", record)
    else:  # the top half of a float32: bfloat16
        (top,) = _UNIT_BF16.unpack_from(record)
        unit = float(np.array([top << 16], dtype=np.uint32).view(np.float32)[0])
    if not (math.isfinite(unit) and unit >= 0):
        raise GnervError(f"unit step {unit!r} must be finite and >= 0")
    if channels < 2:
        return unit, np.zeros(channels, dtype=np.int32)
    codes = record[_unit_bytes(version) :]
    _check_mode(codes, version)
    return unit, decode_symbols(codes, channels, _STEP_CODE_ALPHABET)


def write_gnerv(path: str | os.PathLike, data: bytes) -> None:
    """Write a packed layer atomically (the file appears only when complete)."""
    write_bytes_atomic(path, data)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _split_body(
    data: bytes, start: int, table: list[dict], name: str, version: int = FORMAT_VERSION
) -> list[TensorRecord]:
    """Cut the body (data[start:-4]) into records following the (validated) tensor table."""
    end = len(data) - _CRC.size
    need = sum(
        e.get("ranges_bytes", 8 * num_channels(coding_shape(e["shape"]))) + e["blob_bytes"]
        for e in table
    )
    if start + need != end:
        raise GnervError(
            f"{name}: body has {end - start} bytes but the tensor table describes "
            f"{need}: the file is corrupt"
        )
    records, pos = [], start
    for e in table:
        shape = tuple(e["shape"])
        ch = num_channels(coding_shape(shape))
        extra: dict[str, Any] = {}
        if "ranges_bytes" in e:  # the symmetric scheme
            record = data[pos : pos + e["ranges_bytes"]]
            try:
                unit, codes = _read_symmetric_ranges(record, ch, version)
            except GnervError as err:
                raise GnervError(f"{name}: tensor {e['name']!r}: step codes: {err}")
            mins = maxs = np.zeros(0, dtype=np.float32)
            pos += e["ranges_bytes"]
            extra = {
                "scheme": SYMMETRIC_SCHEME,
                "unit": unit,
                "step_codes": codes,
                "ranges_bytes": e["ranges_bytes"],
            }
        else:
            mins = np.frombuffer(data, dtype="<f4", count=ch, offset=pos).astype(np.float32)
            maxs = np.frombuffer(data, dtype="<f4", count=ch, offset=pos + 4 * ch)
            maxs = maxs.astype(np.float32)
            pos += 8 * ch
        blob = data[pos : pos + e["blob_bytes"]]
        pos += e["blob_bytes"]
        try:
            _check_mode(blob, version)
            info = blob_info(blob, math.prod(shape))
        except GnervError as err:
            raise GnervError(f"{name}: tensor {e['name']!r}: {err}")
        mode, tb, pb = info.mode, info.table_bytes, info.payload_bytes
        records.append(
            TensorRecord(e["name"], shape, e["bits"], mins, maxs, blob, mode, tb, pb, **extra)
        )
    return records


def _check_ranges(r: TensorRecord, name: str) -> None:
    if not (np.isfinite(r.mins).all() and np.isfinite(r.maxs).all()):
        raise GnervError(f"{name}: tensor {r.name!r} has non-finite channel ranges")
    if (r.maxs < r.mins).any():
        raise GnervError(f"{name}: tensor {r.name!r} has a channel max below its min")
    if r.numel == 0 and r.blob:
        raise GnervError(f"{name}: tensor {r.name!r} is empty but has a blob")
    if r.numel and not r.blob:
        raise GnervError(f"{name}: tensor {r.name!r} has no coded symbols")


def unpack(
    data: bytes, name: str = "<bytes>", decode: bool = True, limits: DecodeLimits = DEFAULT_LIMITS
) -> GnervFile:
    """Check and parse a whole file's bytes. ``decode`` also entropy-decodes every tensor now
    (otherwise on first use of ``.tensors``). The decode limits that do not depend on the batch
    are checked here, before any tensor is decoded (the file keeps ``limits`` for the decoder's
    own check). Raises GnervError naming ``name``."""
    if not isinstance(data, bytes):
        data = bytes(data)
    size = len(data)
    if size == 0:
        raise GnervError(f"{name}: empty file, not a .gnerv file")
    if data[: len(MAGIC)] != MAGIC:
        if size < len(MAGIC) and data == MAGIC[:size]:
            raise GnervError(f"{name}: truncated .gnerv file ({size} bytes)")
        raise GnervError(f"{name}: not a .gnerv file (starts with {data[:4]!r}, not {MAGIC!r})")
    if size < _PREFIX.size:
        raise GnervError(f"{name}: truncated .gnerv file ({size} bytes)")
    _, version, header_len = _PREFIX.unpack_from(data)
    if version > FORMAT_VERSION:
        raise GnervError(
            f"{name}: written by a newer gnerv (format {version}); upgrade gnerv "
            f"(this one reads format {FORMAT_VERSION})"
        )
    if version not in READ_VERSIONS:
        raise GnervError(f"{name}: unknown .gnerv format version {version}")
    if size < MIN_FILE_BYTES:
        raise GnervError(f"{name}: truncated .gnerv file ({size} bytes)")
    (stored,) = _CRC.unpack_from(data, size - _CRC.size)
    actual = zlib.crc32(memoryview(data)[: size - _CRC.size])
    if stored != actual:
        raise GnervError(
            f"{name}: checksum mismatch (CRC-32 {actual:08x}, stored {stored:08x}): "
            "the file is corrupt or truncated"
        )
    if header_len > MAX_HEADER_BYTES:
        raise GnervError(f"{name}: header of {header_len} bytes exceeds {MAX_HEADER_BYTES}")
    start = _PREFIX.size + header_len
    if start > size - _CRC.size:
        raise GnervError(f"{name}: header length {header_len} runs past the end of the file")
    raw = data[_PREFIX.size : start]

    def no_constants(token: str) -> Any:
        raise ValueError(f"{token} is not allowed")

    try:
        header = json.loads(raw.decode("ascii"), parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise GnervError(f"{name}: header is not valid JSON ({str(e).splitlines()[0][:80]})")
    try:
        canonical = canonical_json(header) == raw
    except (TypeError, ValueError, RecursionError):
        canonical = False
    if not canonical:
        raise GnervError(f"{name}: header is not in canonical form (sorted keys, no spaces)")
    try:
        video, cfg, bits, table, stage, scheme, render = _validate_header(
            header, version, lambda cfg, n: check_cost(cfg, n, 1, size, limits, None)
        )
    except GnervError as e:
        raise GnervError(f"{name}: {e}")
    records = _split_body(data, start, table, name, version)
    for r in records:
        _check_ranges(r, name)
    minmax = sum(r.minmax_bytes for r in records)
    entropy_tables = sum(r.table_bytes for r in records)
    payload = sum(r.payload_bytes for r in records)
    sizes = {
        "header": start + _CRC.size,
        "minmax": minmax,
        "entropy_tables": entropy_tables,
        "table": minmax + entropy_tables,
        "payload": payload,
        "total": size,
    }
    f = GnervFile(
        name=name,
        video=video,
        model_config=cfg,
        bits=bits,
        stage=stage,
        records=records,
        sha256=hashlib.sha256(data).hexdigest(),
        sizes=sizes,
        encoder=header["encoder"],
        scheme=scheme,
        limits=limits,
        version=version,
        render=render,
    )
    if decode:
        _ = f.tensors
    return f


def read_gnerv(
    path: str | os.PathLike, decode: bool = True, limits: DecodeLimits = DEFAULT_LIMITS
) -> GnervFile:
    """Read and check a ``.gnerv`` file (see :func:`unpack`)."""
    path = Path(path)
    if not path.exists():
        raise GnervError(f"{path}: no such file")
    if not path.is_file():
        raise GnervError(f"{path}: not a file; give a .gnerv file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise GnervError(f"{path}: {size} bytes is larger than any .gnerv file can be")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GnervError(f"{path}: cannot read ({e.strerror or e})")
    return unpack(data, str(path), decode=decode, limits=limits)


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def file_info(f: GnervFile, batch: int = 8) -> dict:
    """What ``gnerv info`` reports: video, stage, model, per-tensor sizes, bpp and what decoding
    costs at ``batch`` frames per pass (gnerv.codec.decode.DEFAULT_BATCH), without decoding."""
    cfg = f.model_config
    pixels = f.n_frames * cfg.height * cfg.width
    return {
        "file": f.name,
        "format": f.version,
        "render": f.render,
        "encoder": f.encoder,
        "recipe": recipe_of(f.encoder),
        "sha256": f.sha256,
        "video": dict(f.video),
        "stage": dict(f.stage),
        "model": cfg.to_dict(),
        "params": count_params(cfg),
        "macs_per_frame": macs_per_frame(cfg),
        "decode_cost": decode_cost(cfg, f.n_frames, batch),
        "bits": f.bits,
        "scheme": f.scheme,
        "sizes": dict(f.sizes),
        "bpp": 8 * f.sizes["total"] / pixels,
        "tensors": [
            {
                "name": r.name,
                "shape": list(r.shape),
                "bits": r.bits,
                "channels": num_channels(coding_shape(r.shape)),
                "mode": r.mode,
                "minmax_bytes": r.minmax_bytes,
                "table_bytes": r.table_bytes,
                "payload_bytes": r.payload_bytes,
                "bytes": r.stored_bytes,
            }
            for r in f.records
        ],
    }
