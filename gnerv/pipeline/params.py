"""The workflow's parameters (params.yaml) as the package reads them: one merge, one mapping.

``params.yaml`` names things as a user thinks of them (``train.batch``, ``stages[j].alpha``);
the package's dataclasses name them as the code does (``TrainConfig.batch_size``,
``TrainConfig.loss_alpha``). The tables below are the only place the two vocabularies meet:
``gnerv fit|compress|residual --params params.yaml --stage J`` read one stage's settings
through them, the Snakemake rules use them to know which values a job depends on, and
``workflow/scripts/dvc_yaml.py`` to list each DVC stage's params.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gnerv.pipeline import results
from gnerv.runtime.errors import GnervError
from gnerv.runtime.sizes import parse_param_count

# params.yaml section.key -> the setting's name in the package (GNeRVConfig / TrainConfig field,
# or a command's own option).
MODEL_KEYS = {
    "upscale_factors": "upscale_factors",
    "min_channels": "min_channels",
    "pe_base": "pe_base",
    "pe_levels": "pe_levels",
    "ds_hidden": "ds_hidden",
    "kernel_size": "kernel_size",
    "layout": "layout",
    "time_branch": "time_branch",
}
TRAIN_KEYS = {
    "batch": "batch_size",
    "warmup": "warmup_fraction",
    "embedding_std": "embedding_std",
    "distortion": "distortion",
    "seed": "seed",
    "device": "device",
    "precision": "precision",
    "checkpoint_every": "checkpoint_every",
}
# One entry of `stages` (size or c0 picks the model's size).
STAGE_KEYS = {
    "size": "size",
    "c0": "c0",
    "epochs": "epochs",
    "lr": "lr",
    "alpha": "loss_alpha",
    "residual_scale": "residual_scale",
}
QUANT_KEYS = {"bits": "bits"}


class SameNames(dict):
    """A key table for a section whose keys are the settings' own names: every key the section
    holds maps to itself (keys_of)."""


# params.yaml's `compress:` section: its keys are CompressConfig's coding options by their field
# names (gnerv.encoder.config.coding_options, which also makes the section's schema), so a new
# coding option needs no entry here.
COMPRESS_KEYS = SameNames()


def keys_of(table: Mapping[str, str], values: Mapping[str, Any]) -> Mapping[str, str]:
    """A section's key table as it applies to `values` (a SameNames table: their own keys)."""
    return {key: key for key in values} if isinstance(table, SameNames) else table


# What each command reads: (params.yaml section, its key table). "stage" is the stage's entry.
COMMAND_SECTIONS = {
    "fit": (("model", MODEL_KEYS), ("train", TRAIN_KEYS), ("stage", STAGE_KEYS)),
    "compress": (("quant", QUANT_KEYS), ("compress", COMPRESS_KEYS)),
    # encode fits and codes in one go: both commands' sections
    "encode": (
        ("model", MODEL_KEYS),
        ("train", TRAIN_KEYS),
        ("stage", STAGE_KEYS),
        ("quant", QUANT_KEYS),
        ("compress", COMPRESS_KEYS),
    ),
    "residual": (("stage", {"residual_scale": "residual_scale"}),),
}
# The stage entry's keys that `fit` does not read (they belong to `residual`).
FIT_SKIPS_STAGE_KEYS = ("residual_scale",)


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`update` merged into a copy of `base` as Snakemake merges config files: mappings key by
    key, anything else (lists such as `stages`) replaced whole."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_params(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """params.yaml, then each further file merged into it as the Snakefile does: key by key,
    except that a later file's `videos` replace the earlier ones (a paper config runs its own
    videos, not the demo's as well)."""
    import yaml

    params: dict[str, Any] = {}
    for path in paths:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise GnervError(f"{path}: parameters file not found")
        except (OSError, yaml.YAMLError) as e:
            raise GnervError(f"{path}: not a readable YAML parameters file ({e})")
        if not isinstance(loaded, dict):
            raise GnervError(f"{path}: expected a mapping of parameters at the top level")
        merged = merge(params, loaded)
        if params and "videos" in loaded:
            merged["videos"] = loaded["videos"]
        params = merged
    return params


def stage_entry(params: Mapping[str, Any], stage: int) -> dict[str, Any]:
    """The `stages` entry of stage `stage` (1 = base), or a one-line error."""
    stages = params.get("stages")
    if not isinstance(stages, list) or not stages:
        raise GnervError("the parameters hold no `stages` list: pass the workflow's params.yaml")
    if not 1 <= stage <= len(stages):
        raise GnervError(f"--stage {stage}: the parameters list stages 1..{len(stages)}")
    entry = stages[stage - 1]
    if not isinstance(entry, dict):
        raise GnervError(f"stages[{stage - 1}] must be a mapping of settings")
    return entry


def command_settings(params: Mapping[str, Any], command: str, stage: int) -> dict[str, Any]:
    """The settings `command` takes from the parameters for stage `stage`, under the package's
    names (e.g. {"batch_size": 4, "loss_alpha": 0.7, "c0": 160, ...})."""
    settings: dict[str, Any] = {}
    if params.get("recipe") is not None:  # the top-level recipe applies to every command
        settings["recipe"] = str(params["recipe"])
    for section, keys in COMMAND_SECTIONS[command]:
        values = stage_entry(params, stage) if section == "stage" else params.get(section, {})
        if not isinstance(values, Mapping):
            raise GnervError(f"parameters section `{section}` must be a mapping")
        for key, name in keys_of(keys, values).items():
            if key in values and values[key] is not None:
                skips = command in ("fit", "encode") and key in FIT_SKIPS_STAGE_KEYS
                if section == "stage" and skips:
                    continue
                settings[name] = values[key]
    return settings


def command_params(params: Mapping[str, Any], command: str, stage: int) -> list[str]:
    """The dotted params.yaml keys whose values `command` reads for stage `stage` (DVC's
    `params:` of that stage; a change to any of them reruns it, to nothing else does not)."""
    keys = ["recipe"] if params.get("recipe") is not None else []
    for section, table in COMMAND_SECTIONS[command]:
        if section == "stage":
            entry = stage_entry(params, stage)
            keys += [
                f"stages.{stage - 1}.{key}"
                for key in table
                if key in entry and not (command == "fit" and key in FIT_SKIPS_STAGE_KEYS)
            ]
        else:
            present = params.get(section, {})
            keys += [f"{section}.{key}" for key in keys_of(table, present) if key in present]
    return keys


def _comma_ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in str(value).replace(" ", "").split(","))


@dataclass(frozen=True)
class AblationPlan:
    """The `ablations:` section (the paper's section 4.3) as the jobs it asks for: what the
    Snakemake rules (workflow/rules/ablations*.smk) and workflow/ablations/dvc.yaml both run."""

    time_branch_c0: tuple[int, ...]  # Table 4: a DS-only and a DS+M model per C0 ...
    time_branch_epochs: int  # ... each trained this long
    epochs_c0: int  # Fig. 7: one DS model ...
    epoch_values: tuple[int, ...]  # ... one run per epoch count
    stage_sizes: tuple[str, ...]  # Fig. 8: the pipeline's stage sizes ...
    stage_epochs: tuple[int, ...]  # ... and epochs

    # Table 4 compares these two models at each C0.
    TIME_BRANCHES = ("ds", "ds+m")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AblationPlan | None:
        """None when the parameters have no `ablations:` section (the schema checked its form)."""
        section = params.get("ablations")
        if not section:
            return None
        return cls(
            time_branch_c0=_comma_ints(section["time_branch"]["c0"]),
            time_branch_epochs=int(section["time_branch"]["epochs"]),
            epochs_c0=int(section["epochs"]["c0"]),
            epoch_values=_comma_ints(section["epochs"]["values"]),
            stage_sizes=tuple(str(section["progressive"]["sizes"]).replace(" ", "").split(",")),
            stage_epochs=_comma_ints(section["progressive"]["epochs"]),
        )

    def time_branch_models(self) -> list[tuple[str, int, int]]:
        """Table 4's models as (time branch, C0, epochs)."""
        return [
            (branch, c0, self.time_branch_epochs)
            for c0 in self.time_branch_c0
            for branch in self.TIME_BRANCHES
        ]

    def epoch_models(self) -> list[tuple[str, int, int]]:
        """Fig. 7's: separate runs, each with its own schedule (not checkpoints of one run)."""
        return [("ds", self.epochs_c0, epochs) for epochs in self.epoch_values]

    def models(self) -> list[tuple[str, int, int]]:
        """Every ablation model once (Table 4 and Fig. 7 may share one)."""
        return list(dict.fromkeys(self.time_branch_models() + self.epoch_models()))

    def time_branch_fits(self, video: str) -> list[str]:
        return [results.ablation_fit(video, *model) for model in self.time_branch_models()]

    def epoch_fits(self, video: str) -> list[str]:
        return [results.ablation_fit(video, *model) for model in self.epoch_models()]

    @property
    def n_stages(self) -> int:
        return len(self.stage_sizes)

    @property
    def long_size(self) -> int:
        """Fig. 8's one model: the pipeline's stage sizes added up (parameters) ..."""
        return sum(parse_param_count(size) for size in self.stage_sizes)

    @property
    def long_epochs(self) -> int:
        """... trained for the pipeline's epochs added up."""
        return sum(self.stage_epochs)


# Segments by default (segment_frames "auto", in params.yaml and for `gnerv encode`): one network
# codes a clip of up to WHOLE_CLIP_FRAMES frames (the paper's longest videos, UVG's, have 600);
# a longer clip is cut into segments of AUTO_SEGMENT_FRAMES, so that no job holds more than that
# many frames and a cluster can spread the segments (docs/results.md measures what cutting costs).
AUTO_SEGMENTS = "auto"
NO_SEGMENTS = "none"  # one network, however long the clip (`--segment-frames none`; YAML null)
WHOLE_CLIP_FRAMES = 600
AUTO_SEGMENT_FRAMES = 300


def segment_length(segment_frames: int | str | None, n_frames: int) -> int | None:
    """The segment length for a clip of `n_frames` frames under a segment_frames setting (a
    length, "auto", "none" or None); None: one network for the whole clip."""
    if segment_frames is None or segment_frames == NO_SEGMENTS:
        return None
    if segment_frames == AUTO_SEGMENTS:
        return AUTO_SEGMENT_FRAMES if n_frames > WHOLE_CLIP_FRAMES else None
    return int(segment_frames)


@dataclass(frozen=True)
class SegmentPlan:
    """The `segments:` section with the extraction's frame range: how many segments
    `snakemake segments` encodes (one job each) and the stage flags every segment's
    `gnerv encode` takes (the stages' sizes are the video's totals; each segment scales them by
    its share of the frames)."""

    segment_frames: int
    n_frames: int  # frames of the extract section's range A:B, every stride-th
    stage_sizes: tuple[str, ...]
    stage_epochs: tuple[int, ...]

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], clip_frames: Callable[[], int] | None = None
    ) -> SegmentPlan | None:
        """None for one network per video (the paper's way): `segments.segment_frames` null, or
        "auto" and a range of at most WHOLE_CLIP_FRAMES frames. `clip_frames()`: the longest
        video's frame count, asked for only when "auto" meets a range without an end."""
        setting = (params.get("segments") or {}).get("segment_frames")
        if setting is None or setting == NO_SEGMENTS:
            return None
        extract = params["extract"]
        first, _, end = str(extract["frames"]).partition(":")
        stride = int(extract.get("stride") or 1)
        if not end.strip():
            if setting == AUTO_SEGMENTS and clip_frames is not None:
                longest = len(range(int(first or 0), clip_frames(), stride))
                if segment_length(setting, longest) is None:
                    return None
            raise GnervError(
                f"segments: extract.frames {extract['frames']!r} has no end; segments need the "
                "clip's length up front: give extract.frames as A:B"
                + (
                    f" (segment_frames auto cuts clips over {WHOLE_CLIP_FRAMES} frames; null "
                    "codes one network)"
                    if setting == AUTO_SEGMENTS
                    else ""
                )
            )
        n = len(range(int(first or 0), int(end), stride))
        segment_frames = segment_length(setting, n)
        if segment_frames is None:
            return None
        stages = params["stages"]
        if any("size" not in s for s in stages):
            raise GnervError(
                "segments: every stage needs a size (the video's total; c0 cannot be shared "
                "out between segments)"
            )
        return cls(
            segment_frames=int(segment_frames),
            n_frames=n,
            stage_sizes=tuple(str(s["size"]) for s in stages),
            stage_epochs=tuple(int(s["epochs"]) for s in stages),  # required by the schema
        )

    @property
    def count(self) -> int:
        return len(results.split_frames(self.n_frames, self.segment_frames))

    def encode_flags(self) -> list[str]:
        """The flags of one segment's `gnerv encode` beyond --params: the cut and the stages."""
        return [
            "--segment-frames", str(self.segment_frames),
            "--stages", str(len(self.stage_sizes)),
            "--stage-sizes", ",".join(self.stage_sizes),
            "--stage-epochs", ",".join(map(str, self.stage_epochs)),
        ]  # fmt: skip
