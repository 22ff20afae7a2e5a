"""MLflow adapter: log one finished pipeline (one video, all its stages) in one process.

The only module that imports mlflow. It is handed the merged workflow parameters and the
pipeline's files by name (:class:`PipelineFiles`); it derives no path and merges no YAML. The
workflow's last rule calls it (`gnerv track`) after
everything else has run, so nothing is logged while training (a synchronous ``log_metric`` costs
about 20 ms; the per-epoch history is read back from each stage's fit.json and sent in a few
``log_batch`` calls instead), a failed pipeline leaves no half-logged run, and the pipeline
itself needs no tracking server.

Layout in MLflow, per call:

- a parent run named after the video: the workflow parameters (flattened), the video's facts,
  one value per prefix of layers (step k = stages 1..k) of every number in eval/metrics.json
  (so the last step is the final PSNR / MS-SSIM / bpp), the BD-rates of eval/summary.json
  (``bd_rate_percent.gnerv_vs_x264``, ...), total bytes and training time, and
  the report's files as artifacts (bitstream sizes as JSON, rd.png, per_frame.png, frames.png,
  summary.md, ...);
- one nested run per stage (tag ``mlflow.parentRunId``): the model and training settings the
  stage was fitted with (from its fit.json), its params.yaml entry, the per-epoch history
  (loss, train_psnr, lr; step = epoch), and its final numbers (fit PSNR, params, MACs, training
  time as ``fit.*``, the layer's own size as ``stage_bytes``, and the figures of the prefix
  ending with this stage: cumulative bpp, PSNR, MS-SSIM, params, MACs, decode fps).

The tracking URI is the argument, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in
the working directory (MLflow's own default since 3.7; the ./mlruns file store is deprecated).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gnerv.atomic import read_json, write_json
from gnerv.errors import GnervError

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "gnerv"
# Artifacts of a sqlite store go beside the database, in this folder.
SQLITE_ARTIFACTS_DIR = "mlartifacts"
SQLITE_PREFIX = "sqlite:///"
# MLflow's limits for one log_batch call (mlflow.utils.validation).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000
# Tag MLflow uses to nest a run under another (what mlflow.start_run(nested=True) sets).
PARENT_RUN_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_TIMEOUT_S = 10.0

# Per-epoch fields of fit.json's history that are logged (step = epoch).
HISTORY_FIELDS = ("loss", "train_psnr", "lr")
# Keys of a metrics.json point that name the prefix rather than measure it.
PREFIX_INDEX_KEYS = ("stage", "layers", "n_layers", "prefix")


def default_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory."""
    return os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


def public_uri(uri: str) -> str:
    """The URI without any user:password@ part, fit to be written into a results file."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": leaf}; lists stay leaves."""
    if not isinstance(value, Mapping):
        return {prefix: value} if prefix else {}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """The finite numeric leaves of a nested dict, flattened (lists and text are skipped)."""
    return {k: float(v) for k, v in flatten(value, prefix).items() if numeric(v)}


def point_numbers(point: Mapping[str, Any]) -> dict[str, float]:
    """The measured numbers of a metrics.json point (not the field naming its prefix)."""
    return {k: v for k, v in numbers(point).items() if k not in PREFIX_INDEX_KEYS}


def bd_numbers(summary: Any) -> dict[str, float]:
    """The BD figures of eval/summary.json's rows {curve, reference, bd_rate_percent, ...} as
    {"bd_rate_percent.gnerv_vs_x264": ...}; rows without numbers (no overlap) are skipped."""
    rows = summary.get("bd", []) if isinstance(summary, Mapping) else []
    found: dict[str, float] = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, Mapping) or "curve" not in row or "reference" not in row:
            continue
        pair = f"{row['curve']}_vs_{row['reference']}"
        for key, value in row.items():
            if numeric(value):
                found[f"{key}.{pair}"] = float(value)
    return found


def prefix_points(metrics: Any, source: Path) -> list[dict[str, Any]]:
    """The per-prefix records of metrics.json, stage 1 first: its list of points (the first list
    of objects at the top level, or the file itself when it is a list)."""
    candidates = [metrics] if isinstance(metrics, list) else []
    if isinstance(metrics, Mapping):
        candidates = [v for v in metrics.values() if isinstance(v, list)]
    for points in candidates:
        if points and all(isinstance(p, Mapping) for p in points):
            return list(points)
    raise GnervError(f"{source}: holds no list of per-prefix points (write it with gnerv evaluate)")


def prefix_index(point: Mapping[str, Any], position: int) -> int:
    """Number of layers a point decodes: its "stage" (or similar) field, else its position."""
    for key in PREFIX_INDEX_KEYS:
        value = point.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, list):
            return len(value)
    return position


def param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_LENGTH]


def git_commit(cwd: Path) -> str | None:
    """HEAD of the repository holding `cwd`, when there is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Logger:
    """Buffers one run's params, metrics and tags and sends them in few log_batch calls."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self.params: dict[str, str] = {}
        self.metrics: list[Any] = []
        self.tags: dict[str, str] = {}
        self.now_ms = int(time.time() * 1000)

    def param(self, key: str, value: Any) -> None:
        self.params[key] = param_text(value)

    def params_from(self, values: Mapping[str, Any], prefix: str = "") -> None:
        for key, value in flatten(values, prefix).items():
            if value is not None:
                self.param(key, value)

    def metric(self, key: str, value: float, step: int = 0) -> None:
        from mlflow.entities import Metric

        if numeric(value):
            self.metrics.append(Metric(key, float(value), self.now_ms, step))

    def metrics_from(self, values: Mapping[str, float], step: int = 0) -> None:
        for key, value in values.items():
            self.metric(key, value, step)

    def flush(self) -> None:
        from mlflow.entities import Param, RunTag

        params = [Param(k, v) for k, v in self.params.items()]
        tags = [RunTag(k, v) for k, v in self.tags.items()]
        for batch in chunks(params, MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=list(batch))
        for batch in chunks(tags, MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=list(batch))
        for batch in chunks(self.metrics, MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=list(batch))
        self.params, self.tags, self.metrics = {}, {}, []


def _experiment_id(client: Any, name: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage != "active":
            raise GnervError(
                f"MLflow experiment '{name}' is deleted in {public_uri(tracking_uri)}: restore it "
                "(`mlflow experiments restore`) or set another mlflow.experiment"
            )
        return experiment.experiment_id
    location = None
    if tracking_uri.startswith(SQLITE_PREFIX):
        # A local database keeps its artifacts beside it, not in the working directory.
        db = Path(tracking_uri[len(SQLITE_PREFIX) :]).resolve()
        location = (db.parent / SQLITE_ARTIFACTS_DIR).as_uri()
    return client.create_experiment(name, artifact_location=location)


@dataclass(frozen=True)
class PipelineFiles:
    """One video's finished pipeline, file by file (the track rule names each one)."""

    fits: list[Path]  # fit.json of stages 1..N
    layers: list[Path]  # stage<j>.gnerv of stages 1..N
    metrics: Path  # gnerv evaluate's metrics.json
    record: Path  # written here: which MLflow run holds the pipeline
    summary: Path | None = None  # gnerv report's summary.json (BD-rates)
    summary_md: Path | None = None  # its markdown table, shown as the run's note
    frames_meta: Path | None = None  # gnerv extract's frames.json
    artifacts: list[Path] = field(default_factory=list)  # logged under eval/
    benchmarks: list[Path] = field(default_factory=list)  # Snakemake's per-job timings

    def check(self, n_stages: int) -> None:
        """Refuse an unfinished pipeline before anything is logged."""
        if len(self.fits) != n_stages or len(self.layers) != n_stages:
            raise GnervError(
                f"the parameters list {n_stages} stages but {len(self.fits)} fit summaries and "
                f"{len(self.layers)} layers were given"
            )
        for path in [*self.fits, *self.layers, self.metrics]:
            if not Path(path).is_file():
                raise GnervError(
                    f"{path} not found: the parameters list {n_stages} stages; "
                    "track a video whose pipeline has finished"
                )


def _artifacts(paths: Iterable[Path]) -> list[Path]:
    return [Path(p) for p in paths if Path(p).is_file()]


def _optional(path: Path | None, what: str) -> Any:
    return read_json(path, what) if path is not None and Path(path).is_file() else {}


def track_pipeline(
    video: str,
    files: PipelineFiles,
    params: dict[str, Any],
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
) -> str:
    """Log the finished pipeline of `video` as one parent run with a nested run per stage,
    `params` being the merged workflow parameters; write files.record; return the parent run's
    id."""
    stages = params.get("stages")
    if not isinstance(stages, list) or not stages:
        raise GnervError("the parameters hold no `stages` list: pass the workflow's params.yaml")
    files.check(len(stages))
    fits = [read_json(path, "a fit summary") for path in files.fits]
    points = prefix_points(read_json(files.metrics, "a metrics file"), files.metrics)
    by_prefix = {prefix_index(p, k): p for k, p in enumerate(points, start=1)}
    frames_meta = _optional(files.frames_meta, "a frames sidecar")
    summary = _optional(files.summary, "a report summary")
    sizes = {
        f"stage{j}": Path(path).stat().st_size for j, path in enumerate(files.layers, start=1)
    }

    import mlflow  # noqa: F401  (fails early, with mlflow's own message, when it is missing)
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment_id = _experiment_id(client, experiment, uri)
    except MlflowException as e:
        raise GnervError(f"MLflow tracking store {public_uri(uri)}: {e.message}")
    commit = git_commit(Path.cwd())
    common_tags = {"video": video, "results": str(Path(files.metrics).parent.parent)}
    if commit:
        common_tags[GIT_COMMIT_TAG] = commit

    parent = client.create_run(experiment_id, run_name=video, tags=common_tags)
    parent_id = parent.info.run_id
    stage_ids: dict[str, str] = {}
    try:
        log = _Logger(client, parent_id)
        log.params_from({k: v for k, v in params.items() if k not in ("videos", "stages")})
        log.param("video", video)
        if video in params.get("videos", {}):
            log.param("source", params["videos"][video])
        log.param("n_stages", len(stages))
        for key in ("n_frames", "height", "width", "fps", "source"):
            if key in frames_meta:
                log.param(f"frames.{key}", frames_meta[key])
        for k, point in sorted(by_prefix.items()):
            log.metrics_from(point_numbers(point), step=k)
        log.metrics_from(bd_numbers(summary))
        log.metric("total_bytes", sum(sizes.values()))
        log.metric("total_train_seconds", sum(float(f.get("train_seconds", 0.0)) for f in fits))
        if files.summary_md is not None and Path(files.summary_md).is_file():
            log.tags[NOTE_TAG] = Path(files.summary_md).read_text()[:MAX_PARAM_LENGTH]
        log.flush()

        for j, (fit_path, fit, entry) in enumerate(
            zip(files.fits, fits, stages, strict=True), start=1
        ):
            run = client.create_run(
                experiment_id,
                run_name=f"{video}/stage{j}",
                tags={**common_tags, PARENT_RUN_TAG: parent_id, "stage": str(j)},
            )
            stage_ids[f"stage{j}"] = run.info.run_id
            _log_stage(client, run.info.run_id, j, fit_path, fit, entry, by_prefix, sizes, params)
            client.set_terminated(run.info.run_id, "FINISHED")

        client.log_dict(parent_id, {"bytes": sizes, "total": sum(sizes.values())}, "sizes.json")
        logged = [*files.artifacts, files.metrics, files.summary, files.summary_md]
        for path in _artifacts(p for p in logged if p is not None):
            client.log_artifact(parent_id, str(path), artifact_path="eval")
        if files.frames_meta is not None and Path(files.frames_meta).is_file():
            client.log_artifact(parent_id, str(files.frames_meta))
        for path in _artifacts(files.benchmarks):
            client.log_artifact(parent_id, str(path), artifact_path="benchmarks")
        client.set_terminated(parent_id, "FINISHED")
    except BaseException:
        for run_id in [*stage_ids.values(), parent_id]:
            try:
                client.set_terminated(run_id, "FAILED")
            except Exception:  # the original error matters more than this one
                pass
        raise

    write_json(
        files.record,
        {
            "video": video,
            "tracking_uri": public_uri(uri),
            "experiment": experiment,
            "experiment_id": experiment_id,
            "parent_run_id": parent_id,
            "stage_run_ids": stage_ids,
        },
    )
    return parent_id


def _log_stage(
    client: Any,
    run_id: str,
    index: int,
    fit_path: Path,
    fit: dict[str, Any],
    entry: dict[str, Any],
    by_prefix: dict[int, dict[str, Any]],
    sizes: dict[str, int],
    params: dict[str, Any],
) -> None:
    """One stage's nested run: settings, per-epoch history, final figures, fit.json."""
    log = _Logger(client, run_id)
    log.param("stage", index)
    log.params_from(entry, "stage")
    log.params_from(fit.get("model", {}), "model")
    log.params_from(fit.get("train", {}), "train")
    if "quant" in params:
        log.params_from(params["quant"], "quant")
    if "target_scale" in fit:
        log.param("target_scale", fit["target_scale"])
    for record in fit.get("history", []):
        epoch = record.get("epoch")
        if isinstance(epoch, int):
            for field in HISTORY_FIELDS:
                if field in record:
                    log.metric(field, record[field], step=epoch)
    for key in ("psnr", "params", "macs_per_frame", "train_seconds", "epochs"):
        if key in fit:
            log.metric(f"fit.{key}", fit[key])
    log.metric("stage_bytes", sizes[f"stage{index}"])
    if index in by_prefix:
        log.metrics_from(point_numbers(by_prefix[index]))
    log.flush()
    client.log_artifact(run_id, str(fit_path))
