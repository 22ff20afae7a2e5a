"""Where the workflow keeps each video's files: the one place the results layout is spelled.

The Snakemake rules, ``workflow/scripts/dvc_yaml.py`` and ``gnerv track`` all ask this module
for their paths. Every function takes the video's name and, for per-stage files, the stage's
number; both may be Snakemake wildcards (``"{video}"``, ``"{stage}"``), in which case the
result is a wildcard pattern::

    results/<video>/frames.npy, frames.json          extraction
    results/<video>/stage<j>/fit.json, checkpoint.pt  stage j's training (and source.json:
                                                      the target file it was fitted to)
    results/<video>/stage<j>/residual.npy, .json      stage j's target (j >= 2)
    results/<video>/stage<j>/finetune/finetune.json, checkpoint.pt
                                                      its quantization-aware fine-tune
    results/<video>/stage<j>/stage<j>.gnerv           stage j's coded layer
    results/<video>/stage<j>/prefix.json              layers 1..j decoded (with a `target:`)
    results/<video>/eval/...                          evaluation, decode, baselines, report
    results/<video>/benchmarks/<job>.tsv              Snakemake's per-job timings
    results/<video>/mlflow_run.json                   which MLflow run holds the pipeline
    results/<video>/ablations/<name>.json, .md, .png  the paper's ablations (4.3), by name
    results/<video>/ablations/mlflow_run.json        their MLflow runs (mlflow.enabled)
    results/<video>/ablations/fits/<branch>_c<C0>_e<epochs>/   their fitted models
    results/<video>/ablations/progressive/            Fig. 8's pipeline and its one-model rival
    results/<video>/segments/segments.json            a segmented encode's index (`snakemake
                                                      segments`); seg<NNN>/ each segment's
                                                      layers and segment.json, its manifest
    logs/<video>/<job>.log                            each job's output
"""

from __future__ import annotations

from gnerv.runtime.errors import GnervError

RESULTS_ROOT = "results"
LOGS_ROOT = "logs"

# Names inside results/<video>/ (and its stage and eval folders).
FRAMES_NAME = "frames.npy"
FRAMES_META_NAME = "frames.json"
FIT_SUMMARY_NAME = "fit.json"
CHECKPOINT_NAME = "checkpoint.pt"
SOURCE_NAME = "source.json"  # the file a model was fitted to (gnerv.encoder.source)
RESIDUAL_NAME = "residual.npy"
RESIDUAL_META_NAME = "residual.json"
FINETUNE_DIR = "finetune"
FINETUNE_SUMMARY_NAME = "finetune.json"  # written last by a fine-tune (gnerv.encoder.encode)
EVAL_DIR = "eval"
BENCHMARKS_DIR = "benchmarks"
RUN_RECORD_NAME = "mlflow_run.json"
ABLATIONS_DIR = "ablations"
# A segmented video's folder (gnerv.codec.segments): its index, and per segment a folder with
# the segment's layers and the manifest its encode leaves.
SEGMENTS_DIR = "segments"
SEGMENT_INDEX_NAME = "segments.json"
SEGMENT_DIR_FORMAT = "seg{:03d}"  # segment i's folder: three digits at least
SEGMENT_MANIFEST_NAME = "segment.json"
SEGMENT_METRICS_NAME = "segment_metrics.json"  # in EVAL_DIR: the whole video's, and per segment
SEGMENT_RUN_RECORD_NAME = "mlflow_segments.json"  # the segmented video's MLflow runs
# The DVC pipeline files, by the Snakemake target they spell: `dvc repro` runs dvc.yaml (the
# default target `all`), `dvc repro workflow/ablations/dvc.yaml` the ablations.
DVC_FILES = {"all": "dvc.yaml", "ablations": "workflow/ablations/dvc.yaml"}
# The ablations (paper 4.3) by name: Table 4, Fig. 7, Fig. 8.
ABLATION_NAMES = ("time_branch", "epochs", "progressive")
# The report's files in eval/ (gnerv report writes them under these names).
REPORT_NAMES = {
    "rd": "rd.png",
    "per_frame": "per_frame.png",
    "frames": "frames.png",
    "summary_md": "summary.md",
    "summary_json": "summary.json",
}


def video_dir(video: str) -> str:
    return f"{RESULTS_ROOT}/{video}"


def frames(video: str) -> str:
    return f"{video_dir(video)}/{FRAMES_NAME}"


def frames_meta(video: str) -> str:
    return f"{video_dir(video)}/{FRAMES_META_NAME}"


def stage_dir(video: str, stage: int | str) -> str:
    return f"{video_dir(video)}/stage{stage}"


def layer_name(stage: int | str) -> str:
    """The coded layer's file name: stage<j>.gnerv."""
    return f"stage{stage}.gnerv"


def layer(video: str, stage: int | str) -> str:
    return f"{stage_dir(video, stage)}/{layer_name(stage)}"


def layers(video: str, count: int) -> list[str]:
    """The layers of stages 1..count, base first."""
    return [layer(video, k) for k in range(1, count + 1)]


def fit_summary(video: str, stage: int | str) -> str:
    return f"{stage_dir(video, stage)}/{FIT_SUMMARY_NAME}"


def checkpoint(video: str, stage: int | str) -> str:
    return f"{stage_dir(video, stage)}/{CHECKPOINT_NAME}"


def finetune_dir(video: str, stage: int | str) -> str:
    return f"{stage_dir(video, stage)}/{FINETUNE_DIR}"


def finetune_summary(video: str, stage: int | str) -> str:
    return f"{finetune_dir(video, stage)}/{FINETUNE_SUMMARY_NAME}"


def finetune_checkpoint(video: str, stage: int | str) -> str:
    return f"{finetune_dir(video, stage)}/{CHECKPOINT_NAME}"


def prefix_metrics(video: str, stage: int | str) -> str:
    """`gnerv evaluate` of layers 1..stage: where a `target:` stops adding stages."""
    return f"{stage_dir(video, stage)}/prefix.json"


def residual(video: str, stage: int | str) -> str:
    return f"{stage_dir(video, stage)}/{RESIDUAL_NAME}"


def residual_meta(video: str, stage: int | str) -> str:
    return f"{stage_dir(video, stage)}/{RESIDUAL_META_NAME}"


def eval_dir(video: str) -> str:
    return f"{video_dir(video)}/{EVAL_DIR}"


def metrics(video: str) -> str:
    return f"{eval_dir(video)}/metrics.json"


def decoded(video: str) -> str:
    return f"{eval_dir(video)}/decoded.mkv"


def baselines(video: str) -> str:
    return f"{eval_dir(video)}/baselines.json"


def report_files(video: str) -> dict[str, str]:
    """The report's files by role (rd, per_frame, frames, summary_md, summary_json)."""
    return {role: f"{eval_dir(video)}/{name}" for role, name in REPORT_NAMES.items()}


def benchmarks_dir(video: str) -> str:
    return f"{video_dir(video)}/{BENCHMARKS_DIR}"


def benchmark(video: str, job: str) -> str:
    """Snakemake's timing file of one job (e.g. job "fit_stage{stage}")."""
    return f"{benchmarks_dir(video)}/{job}.tsv"


def run_record(video: str) -> str:
    return f"{video_dir(video)}/{RUN_RECORD_NAME}"


def log(video: str, job: str) -> str:
    return f"{LOGS_ROOT}/{video}/{job}.log"


def track_files(video: str, n_stages: int) -> dict[str, str | list[str]]:
    """What `gnerv track` reads of one finished pipeline, by its option name (the track rule
    and dvc.yaml pass these same files)."""
    report = report_files(video)
    return {
        "fits": [fit_summary(video, k) for k in range(1, n_stages + 1)],
        "layers": layers(video, n_stages),
        "metrics": metrics(video),
        "frames_meta": frames_meta(video),
        "summary": report["summary_json"],
        "summary_md": report["summary_md"],
        "artifacts": [report["rd"], report["per_frame"], report["frames"], baselines(video)],
    }


def final_files(video: str, n_stages: int, tracked: bool) -> list[str]:
    """Everything a full run leaves for one video: Snakemake's default target, and what DVC's
    last stage waits for."""
    files = [*layers(video, n_stages), metrics(video), decoded(video), baselines(video)]
    files += list(report_files(video).values())
    return files + ([run_record(video)] if tracked else [])


def ablations_dir(video: str) -> str:
    return f"{video_dir(video)}/{ABLATIONS_DIR}"


def ablation_files(video: str, name: str) -> dict[str, str]:
    """One ablation's results by kind: json, md (the table), png (the plot)."""
    return {kind: f"{ablations_dir(video)}/{name}.{kind}" for kind in ("json", "md", "png")}


def ablation_run_record(video: str) -> str:
    """Where `gnerv track-ablations` records the MLflow runs of a video's ablations."""
    return f"{ablations_dir(video)}/{RUN_RECORD_NAME}"


def ablation_final_files(video: str, tracked: bool) -> list[str]:
    """What `snakemake ablations` leaves for one video, and what the last stage of the
    ablations' DVC file waits for."""
    files = [path for name in ABLATION_NAMES for path in ablation_files(video, name).values()]
    return files + ([ablation_run_record(video)] if tracked else [])


def ablation_fit(video: str, branch: str, c0: int | str, epochs: int | str) -> str:
    """fit.json of an ablation's model: time branch, C0 and epochs name it (so Table 4 and
    Fig. 7 share the models they have in common)."""
    return f"{ablations_dir(video)}/fits/{branch}_c{c0}_e{epochs}/{FIT_SUMMARY_NAME}"


def ablation_progressive_dir(video: str) -> str:
    return f"{ablations_dir(video)}/progressive"


def ablation_pipeline_layers(video: str, count: int) -> list[str]:
    """Fig. 8's pipeline: stage1.gnerv ... (as `gnerv encode --stages N` names them)."""
    return [f"{ablation_progressive_dir(video)}/{layer_name(k)}" for k in range(1, count + 1)]


def ablation_long_layer(video: str) -> str:
    """Fig. 8's one model with the pipeline's parameters and epochs."""
    return f"{ablation_progressive_dir(video)}/long.gnerv"


def ablation_metrics(video: str, which: str) -> str:
    """`gnerv evaluate` of Fig. 8's pipeline ("pipeline") or its one model ("long")."""
    return f"{ablation_progressive_dir(video)}/{which}_metrics.json"


def split_frames(n_frames: int, segment_frames: int) -> list[tuple[int, int]]:
    """(first frame, length) of each segment of a clip of n_frames: consecutive, segment_frames
    long, the last one taking the remainder when it is at least half a segment and joining the
    one before when shorter (a segment of a few frames would cost a whole network's header and
    side information)."""
    if segment_frames < 1:
        raise GnervError(f"segment length {segment_frames} must be >= 1 frame")
    if n_frames < 1:
        raise GnervError("no frames to cut into segments")
    starts = list(range(0, n_frames, segment_frames))
    if len(starts) > 1 and n_frames - starts[-1] < (segment_frames + 1) // 2:
        starts.pop()
    ends = [*starts[1:], n_frames]
    return [(s, e - s) for s, e in zip(starts, ends, strict=True)]


def segment_dir_name(index: int) -> str:
    return SEGMENT_DIR_FORMAT.format(int(index))


def segments_dir(video: str) -> str:
    return f"{video_dir(video)}/{SEGMENTS_DIR}"


def segment_index(video: str) -> str:
    return f"{segments_dir(video)}/{SEGMENT_INDEX_NAME}"


def segment_manifest(video: str, segment: int | str) -> str:
    """Segment `segment`'s manifest; a wildcard ("{segment}") stands for the folder's digits."""
    name = segment_dir_name(segment) if isinstance(segment, int) else f"seg{segment}"
    return f"{segments_dir(video)}/{name}/{SEGMENT_MANIFEST_NAME}"


def segment_metrics(video: str) -> str:
    """`gnerv evaluate --segments`'s figures: the whole video per prefix, and each segment."""
    return f"{eval_dir(video)}/{SEGMENT_METRICS_NAME}"


def segment_run_record(video: str) -> str:
    return f"{video_dir(video)}/{SEGMENT_RUN_RECORD_NAME}"


def segment_final_files(video: str, tracked: bool) -> list[str]:
    """What a segmented run leaves for one video: the index (the decoder's entry), the whole
    video's evaluation and, tracked, its MLflow record."""
    files = [segment_index(video), segment_metrics(video)]
    return files + ([segment_run_record(video)] if tracked else [])
