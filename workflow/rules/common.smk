# Shared by the rules: start-up checks, file paths, and the small helpers that turn the config
# into input lists and flags. Functions only, no rules (Snakemake's linter keeps them apart).

import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

from gnerv.pipeline import cluster

from gnerv.pipeline import results
from gnerv.runtime.errors import GnervError
from gnerv.encoder.config import fine_tunes
from gnerv.media.video import longest_clip_frames
from gnerv.pipeline.params import SegmentPlan, command_settings
from gnerv.runtime.sizes import parse_param_count
from gnerv.encoder.target import Target, decide

# Files the pipeline writes, per video: gnerv.pipeline.results spells the layout (dvc.yaml follows it too).
FRAMES = results.frames("{video}")
FRAMES_META = results.frames_meta("{video}")
LAYER = results.layer("{video}", "{stage}")
FIT_SUMMARY = results.fit_summary("{video}", "{stage}")
# (checkpoint.pt, beside FIT_SUMMARY, is deliberately not a declared file: see rule fit)
FINETUNE_SUMMARY = results.finetune_summary("{video}", "{stage}")
# (likewise its checkpoint.pt: see rule finetune)
RESIDUAL = results.residual("{video}", "{stage}")
RESIDUAL_META = results.residual_meta("{video}", "{stage}")
PREFIX_METRICS = results.prefix_metrics("{video}", "{stage}")
METRICS = results.metrics("{video}")
DECODED = results.decoded("{video}")
BASELINES = results.baselines("{video}")
REPORT_FILES = results.report_files("{video}")
RUN_RECORD = results.run_record("{video}")
# CPU threads of the torch rules. Snakemake sets a job's OMP_NUM_THREADS (which torch follows) to
# its `threads`, 1 unless the rule asks for more, and scales `threads` down to --cores. Without
# these a CPU-only fit used one core of two (about 1.5x slower on the 2-core demo machine). They
# match the SLURM profile's cpus_per_task; `--max-threads N` or `--set-threads fit=N` change them.
FIT_THREADS = 8
TORCH_THREADS = 4
# The software every rule runs (used with --sdm conda; otherwise the active environment).
GNERV_ENV = "../envs/gnerv.yaml"

def positive_size(size) -> bool:
    """Whether a stage's `size` ("0.5M", "300k", 12000) is more than 0 parameters."""
    try:
        return parse_param_count(size) > 0
    except GnervError:
        return False


def config_problems(cfg: dict) -> list[str]:
    """What the schema cannot check: that every video exists, and the stage chain."""
    problems = []
    if isinstance(cfg["extract"]["frames"], int):
        problems.append(
            f"extract.frames was read as the number {cfg['extract']['frames']}: quote the range "
            '(frames: "10:42"); YAML 1.1 reads an unquoted 10:42 as a base-60 number, and '
            "`dvc exp run -S` drops the quotes when it rewrites params.yaml"
        )
    for name, path in cfg["videos"].items():
        if not Path(path).is_file():
            problems.append(
                f"videos.{name}: {path} not found (relative to {Path.cwd()}); place the video "
                "there or fix the path (data/README.md says where the paper's clips come from)"
            )
    for index, stage in enumerate(cfg["stages"]):
        key = f"stages[{index}] (stage {index + 1})"
        if "size" in stage and not positive_size(stage["size"]):
            problems.append(f"{key}: size {stage['size']} must be more than 0 parameters")
        scale = stage.get("residual_scale")
        if index == 0 and scale is not None:
            problems.append(
                f"{key}: the base stage fits the video itself and takes no residual_scale; "
                "remove it"
            )
        if index > 0 and (scale is None or not scale > 0):
            problems.append(
                f"{key}: a residual stage needs residual_scale > 0 (paper: 100), got {scale}"
            )
    target = config.get("target") or {}
    if target.get("psnr") is not None and target.get("bpp") is not None:
        problems.append("target: give psnr or bpp, not both")
    return problems


_problems = config_problems(config)
if _problems:
    raise WorkflowError(
        "the workflow parameters do not form a valid pipeline:\n  " + "\n  ".join(_problems)
    )

VIDEOS = list(config["videos"])
N_STAGES = len(config["stages"])
FINE_TUNES = fine_tunes(config)  # the coding fine-tunes: rule finetune runs before compress
TARGET = Target.from_params(config)  # target: set: stages are added until it is met
# The `gpu` resource of the torch rules: 1 unless train.device is cpu. The SLURM profile turns
# it into `sbatch --gpus=1`, so a CPU run (device: cpu, or the slurm-cpu profile, which sets it
# to 0) asks no cluster for a card; on a workstation `--resources gpu=1` runs them one at a time.
TORCH_GPUS = 0 if str(config["train"]["device"]) == "cpu" else 1
VIDEO_PATTERN = "|".join(re.escape(name) for name in VIDEOS)


# segments.segment_frames: None = one network; "auto" asks the videos' length when the range
# has no end
SEGMENTS = SegmentPlan.from_params(
    config, lambda: longest_clip_frames(config["videos"].values())
)
SEGMENT_MANIFEST = results.segment_manifest("{video}", "{segment}")


def segment_manifests(wildcards) -> list[str]:
    """Every segment's manifest: what `gnerv gather` needs before it writes the index."""
    return [results.segment_manifest(wildcards.video, i) for i in range(SEGMENTS.count)]


def layers(video: str, count: int) -> list[str]:
    """The bitstreams of stages 1..count of one video, base first."""
    return results.layers(video, count)


def earlier_layers(wildcards) -> list[str]:
    return layers(wildcards.video, int(wildcards.stage) - 1)


def all_layers(wildcards) -> list[str]:
    """The layers the pipeline keeps: every stage's, or with a `target:` the prefix it chose."""
    return layers(wildcards.video, used_stages(wildcards.video))


def prefix_layers(wildcards) -> list[str]:
    return layers(wildcards.video, int(wildcards.stage))


def target_outcome(video: str, prefix_file) -> dict | None:
    """Where the `target:` leaves the video's stages (gnerv.encoder.target.decide), reading stage j's
    prefix figures from prefix_file(j); None without a target."""
    if TARGET is None:
        return None
    import json

    measured = []
    for j in range(1, N_STAGES + 1):
        point = json.loads(Path(prefix_file(j)).read_text())["points"][-1]
        measured.append({"psnr": point["psnr"], "bpp": point["bpp"]})
        try:
            outcome = decide(
                TARGET, measured, N_STAGES, "stages[0]'s size or c0", "entries in `stages`"
            )
        except GnervError as e:
            raise WorkflowError(f"{video}: {e}") from None
        if outcome is not None:
            return outcome


def used_stages(video: str) -> int:
    """How many stages the pipeline keeps: all of them, or with a `target:` as many as it
    asks for, known only once the prefixes are measured (checkpoint prefix, one stage at a
    time: a stage after the target is met is never fitted)."""
    if TARGET is None:
        return N_STAGES
    outcome = target_outcome(
        video, lambda j: checkpoints.prefix.get(video=video, stage=j).output.metrics
    )
    return outcome["stages"]


def target_messages() -> list[str]:
    """One line per video on what the `target:` came to (after a run: its prefix files)."""
    lines = []
    for video in VIDEOS:
        try:
            outcome = target_outcome(video, lambda j: results.prefix_metrics(video, j))
        except (OSError, ValueError, WorkflowError):
            continue  # a partial run (a single target): nothing to say
        if outcome is not None:
            met = "met" if outcome["met"] else "NOT met"
            lines.append(
                f"{video}: target {TARGET.describe()} {met}: {outcome['message']}"
            )
    return lines


def stage_settings(command: str):
    """A rule's `params:` entry holding the values `command` reads from the parameters for the
    job's stage: the command reads them itself (--params, --stage), this entry only makes
    Snakemake rerun the job when one of them changes."""
    return lambda wildcards: command_settings(config, command, int(wildcards.stage))


def fit_inputs(wildcards) -> dict[str, str]:
    """Stage 1 fits the frames; stage j >= 2 the residual (with its sidecar) of stages < j."""
    if int(wildcards.stage) == 1:
        return {"target": FRAMES.format(video=wildcards.video)}
    return {
        "target": RESIDUAL.format(**wildcards),
        "sidecar": RESIDUAL_META.format(**wildcards),
    }


def finetune_inputs(wildcards) -> dict[str, str]:
    """The fitted model (its fit.json: the checkpoint.pt beside it is not a declared file, see
    rule fit), the frames it was fitted for, and for stage j >= 2 the residual itself (what a
    residual stage fits)."""
    inputs = {
        "summary": FIT_SUMMARY.format(**wildcards),
        "frames": FRAMES.format(video=wildcards.video),
    }
    if int(wildcards.stage) > 1:
        inputs["target"] = RESIDUAL.format(**wildcards)
    return inputs


def compress_inputs(wildcards) -> dict[str, str]:
    """What the fine-tune reads, its finetune.json when the pipeline fine-tunes, and for stage
    j >= 2 the residual's sidecar, which names the layer it refines."""
    inputs = finetune_inputs(wildcards)
    if FINE_TUNES:
        inputs["finetune"] = FINETUNE_SUMMARY.format(**wildcards)
    if int(wildcards.stage) > 1:
        inputs["sidecar"] = RESIDUAL_META.format(**wildcards)
    return inputs


def target_option(wildcards, input) -> str:
    """`--target-file RESIDUAL` for a residual stage (what its fine-tune fits, read only when
    the stage is fine-tuned: compress.qat_epochs > 0); nothing for the base stage."""
    return f"--target-file {input.target}" if "target" in input.keys() else ""


def finetune_option(wildcards, input) -> str:
    """`--finetune-dir DIR` where rule finetune left the stage's fine-tune (compress finds it
    finished and codes it), nothing when the pipeline does not fine-tune."""
    return f"--finetune-dir {Path(input.finetune).parent}" if "finetune" in input.keys() else ""


def params_files() -> list[str]:
    """The files the config came from: params.yaml, then any --configfile merged into it."""
    return ["params.yaml", *(str(path) for path in workflow.overwrite_configfiles)]


def track_inputs(wildcards) -> dict:
    """Everything `gnerv track` logs for one video (gnerv.pipeline.results names the files). The
    parameter files are not among them: track_values is the rerun trigger."""
    return results.track_files(wildcards.video, used_stages(wildcards.video))


def track_values(wildcards) -> dict:
    """The parameter values `gnerv track` logs for one video: `track` reruns when one of them
    changes, not when a parameter file is only touched or its comments edited."""
    values = {key: value for key, value in config.items() if key != "videos"}
    return {**values, "source": config["videos"][wildcards.video]}


def track_flag(wildcards) -> list[str]:
    """`--track VIDEO` for the fits when MLflow tracking is on: each epoch is logged live."""
    return ["--track", wildcards.video] if config["mlflow"]["enabled"] else []


def dvc_commit_command() -> str | None:
    """`dvc commit --force` of the DVC file that spells this run's target (dvc.yaml for the
    default target, workflow/ablations/dvc.yaml for `ablations`: committing a file whose
    outputs were not made fails) when its results are what that file describes: a DVC
    repository (.dvc/ inside a git one), the config being params.yaml alone (a --configfile
    gives results dvc.yaml's params do not), and DVC installed. Run by `onsuccess` (Snakefile),
    it records the outputs in dvc.lock without rewriting them (their mtimes stay, so Snakemake
    still plans nothing); GNERV_DVC_COMMIT=0 turns it off."""
    import os
    import shutil

    if os.environ.get("GNERV_DVC_COMMIT", "1") == "0" or workflow.overwrite_configfiles:
        return None
    if workflow.touch:  # `snakemake --touch`, e.g. run by dvc.yaml's snakemake-state stage
        return None
    if TARGET is not None:  # dvc.yaml spells every stage; a target may leave some out
        return None
    if not (Path(".dvc").is_dir() and Path(".git").exists() and shutil.which("dvc")):
        return None
    targets = set(workflow.dag_settings.targets) or {"all"}
    files = [path for target, path in results.DVC_FILES.items() if target in targets]
    if not files or not all(Path(path).is_file() for path in files):
        return None  # a target of its own (a file, one rule): no DVC file spells it
    return "dvc commit --force --with-deps --quiet " + " ".join(files)  # with upstream stages


def final_targets(wildcards=None) -> list[str]:
    """What `snakemake` builds by default, for every video (an input function: with a
    `target:` the number of stages is known only as the run goes)."""
    if SEGMENTS is not None:  # segments: each video's index and evaluation (and MLflow runs)
        tracked = config["mlflow"]["enabled"]
        return [f for video in VIDEOS for f in results.segment_final_files(video, tracked)]
    targets = []
    for video in VIDEOS:
        targets += results.final_files(video, used_stages(video), config["mlflow"]["enabled"])
    return targets


def _constant(resources, name: str):
    """A rule's resource value where it is a plain value (not a per-job function)."""
    value = resources.get(name)
    if value is None or value.is_evaluable():
        return None
    return value.value


def cluster_requests() -> list:
    """What each cluster job asks SLURM for: the rule's resources with the profile's
    default-resources and set-resources merged in (Snakemake has merged them)."""
    requests = []
    for each in workflow.rules:
        if workflow.is_local(each):
            continue
        res = each.resources
        cpus = _constant(res, "cpus_per_task") or _constant(res, "_cores") or 1
        requests.append(
            cluster.Request(
                rule_name=each.name,
                cpus=int(cpus),
                mem_mb=_constant(res, "mem_mb"),
                gpus=int(_constant(res, "gpu") or 0),
                partition=_constant(res, "slurm_partition"),
            )
        )
    return requests


def cluster_problems() -> list[str]:
    """On the SLURM executor, the rules that ask for more than the largest node of their
    partition has (sbatch would refuse such a job, or leave it pending forever), each named with
    its request and the limit; nothing elsewhere, in a dry run, or where sinfo does not answer."""
    plugin = workflow.executor_plugin
    if plugin is None or plugin.name != "slurm" or workflow.dryrun:
        return []
    found = cluster.query_partitions()
    if found is None:
        return []
    return cluster.oversized(cluster_requests(), *found)
