"""MLflow adapter: live runs of the fits, and the finished pipeline of one video.

The only module that imports mlflow. Two callers:

- ``gnerv fit --track VIDEO`` (:class:`FitTracker`) opens the stage's run while it trains: the
  per-epoch loss, PSNR and lr go in with the time each epoch ended (buffered, sent at most every
  ``LIVE_FLUSH_S`` seconds, since a synchronous ``log_metric`` costs about 20 ms), the run's
  duration is the fit's, and its id is kept beside the checkpoint (``mlflow.json``) so that a
  killed fit resumed with ``--auto-resume`` continues the same run. The stage run hangs under
  the video's pipeline run, which the fit finds or opens (one per video and parameter values).
- ``gnerv track`` (:func:`track_pipeline`), the workflow's last rule, completes those runs: it
  is handed the merged workflow parameters and the pipeline's files by name
  (:class:`PipelineFiles`), derives no path and merges no YAML, and updates the runs the fits
  opened (creating them only for fits that were not tracked). Running it again on the same
  finished pipeline updates the same runs; nothing already logged is logged twice.

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

The tracking URI is the argument, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``
(MLflow's own default since 3.7; the ./mlruns file store is deprecated). A relative sqlite
path is taken from the repository's root (:func:`repository_root`): ``$DVC_ROOT``, which
``dvc exp run --temp`` and ``--queue`` point at the original repository, else the nearest
folder up holding ``.dvc/``, else the working directory. The artifacts of a sqlite store go to
``mlartifacts/`` beside it; MLflow stores that location as an absolute path, so a store opened
from another place (a copied or moved repository) has its artifact locations moved to its own
``mlartifacts/`` first (:func:`relocate_artifacts`). The experiment is tagged to open on its
runs in MLflow 3's UI.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gnerv.runtime.atomic import read_json, write_json
from gnerv.runtime.errors import GnervError

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
# Set by DVC for every stage command; `dvc exp run --temp/--queue` point it at the original repo.
REPOSITORY_ROOT_ENV = "DVC_ROOT"
# MLflow 3's UI opens an experiment of this kind on its runs (not on the GenAI overview).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# Tags of the runs: a pipeline run's parameter fingerprint, a stage run's stage number.
PIPELINE_TAG = "pipeline"
ABLATION_TAG = "ablation"  # the ablation's name (time_branch, epochs, progressive)
# Fields of an ablation row that say where on its x axis it sits (the metric's step).
ABLATION_STEP_KEYS = ("epochs", "c0", "stage")
STAGE_TAG = "stage"
# Written by a tracked fit beside its checkpoint: which run holds the fit.
STAGE_RUN_FILE = "mlflow.json"
# A tracked fit sends its buffered per-epoch points at most this often.
LIVE_FLUSH_S = 2.0
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
    """$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db (in the repository root: resolve_uri)."""
    return os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


def repository_root(start: Path | None = None) -> Path:
    """$DVC_ROOT, else the nearest folder from `start` (the working directory) up that holds a
    .dvc/ folder, else `start` itself."""
    if os.environ.get(REPOSITORY_ROOT_ENV):
        return Path(os.environ[REPOSITORY_ROOT_ENV]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return here


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI to open: `uri` (else default_tracking_uri()), a relative sqlite path
    made absolute from the repository root."""
    uri = uri or default_tracking_uri()
    if uri.startswith(SQLITE_PREFIX) and not uri[len(SQLITE_PREFIX) :].startswith("/"):
        return f"{SQLITE_PREFIX}{repository_root() / uri[len(SQLITE_PREFIX) :]}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (after resolve_uri), else None."""
    return Path(uri[len(SQLITE_PREFIX) :]) if uri.startswith(SQLITE_PREFIX) else None


def relocate_artifacts(db: Path) -> None:
    """Point the artifact locations that this module gave the experiments of `db` (an
    mlartifacts/ folder beside the database, stored as an absolute path) at the mlartifacts/
    beside `db` now, when the database was copied or moved: a copied repository then writes
    and reads its own artifacts, not the original's."""
    import sqlite3

    if not db.is_file():
        return
    here = (db.resolve().parent / SQLITE_ARTIFACTS_DIR).as_uri()
    with sqlite3.connect(db) as con:
        try:
            query = "SELECT experiment_id, artifact_location FROM experiments"
            rows = con.execute(query).fetchall()
        except sqlite3.DatabaseError:  # not (yet) an MLflow store: MLflow will say so
            return
        for experiment_id, old in rows:
            suffix = f"/{SQLITE_ARTIFACTS_DIR}"
            if not (isinstance(old, str) and old.startswith("file://") and old.endswith(suffix)):
                continue
            if old == here:
                continue
            con.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                (here, experiment_id),
            )
            con.execute(
                "UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
                "WHERE experiment_id = ? AND substr(artifact_uri, 1, ?) = ?",
                (here, len(old) + 1, experiment_id, len(old), old),
            )


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
    """Buffers one run's params, metrics and tags and sends them in few log_batch calls. With
    `dedupe`, a metric point (key, step, value) the run already holds is not sent again, so
    logging the same finished pipeline twice leaves one point per step."""

    def __init__(self, client: Any, run_id: str, dedupe: bool = False) -> None:
        self.client, self.run_id, self.dedupe = client, run_id, dedupe
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

    def metric(self, key: str, value: float, step: int = 0, at_ms: int | None = None) -> None:
        from mlflow.entities import Metric

        if numeric(value):
            self.metrics.append(Metric(key, float(value), at_ms or self.now_ms, step))

    def metrics_from(self, values: Mapping[str, float], step: int = 0) -> None:
        for key, value in values.items():
            self.metric(key, value, step)

    def _new_metrics(self) -> list[Any]:
        if not self.dedupe or not self.metrics:
            return self.metrics
        held = self.client.get_run(self.run_id).data.metrics
        seen: dict[str, set[tuple[int, float]]] = {}
        for key in {m.key for m in self.metrics} & set(held):
            history = self.client.get_metric_history(self.run_id, key)
            seen[key] = {(m.step, m.value) for m in history}
        return [m for m in self.metrics if (m.step, m.value) not in seen.get(m.key, set())]

    def flush(self) -> None:
        from mlflow.entities import Param, RunTag

        params = [Param(k, v) for k, v in self.params.items()]
        tags = [RunTag(k, v) for k, v in self.tags.items()]
        for batch in chunks(params, MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=list(batch))
        for batch in chunks(tags, MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=list(batch))
        for batch in chunks(self._new_metrics(), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=list(batch))
        self.params, self.tags, self.metrics = {}, {}, []


def open_store(tracking_uri: str | None, experiment: str) -> tuple[Any, str, str]:
    """(client, resolved URI, experiment id) of `experiment` in the store (created if new)."""
    import mlflow  # noqa: F401  (fails early, with mlflow's own message, when it is missing)
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = resolve_uri(tracking_uri)
    db = sqlite_path(uri)
    if db is not None:
        relocate_artifacts(db)
    try:
        client = MlflowClient(tracking_uri=uri)
        return client, uri, _experiment_id(client, experiment, uri)
    except MlflowException as e:
        raise GnervError(f"MLflow tracking store {public_uri(uri)}: {e.message}")


def _experiment_id(client: Any, name: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage != "active":
            raise GnervError(
                f"MLflow experiment '{name}' is deleted in {public_uri(tracking_uri)}: restore it "
                "(`mlflow experiments restore`) or set another mlflow.experiment"
            )
        if experiment.tags.get(EXPERIMENT_KIND_TAG) is None:
            client.set_experiment_tag(
                experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
            )
        return experiment.experiment_id
    location = None
    if tracking_uri.startswith(SQLITE_PREFIX):
        # A local database keeps its artifacts beside it, not in the working directory.
        db = Path(tracking_uri[len(SQLITE_PREFIX) :]).resolve()
        location = (db.parent / SQLITE_ARTIFACTS_DIR).as_uri()
    return client.create_experiment(
        name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    )


def pipeline_key(video: str, params: Mapping[str, Any]) -> str:
    """Fingerprint of one video's pipeline: its name, source and every other parameter value.
    Runs with the same key are the same pipeline (its run is updated, not added again); a
    changed value opens a new pipeline run (MLflow params cannot change)."""
    import hashlib

    values = {k: v for k, v in params.items() if k != "videos"}
    values["source"] = params.get("videos", {}).get(video)
    text = json.dumps([video, values], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pipeline_params(video: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """What a pipeline run holds as params: the workflow settings other than the per-video
    and per-stage lists (those go to the stage runs), the video and its source."""
    logged: dict[str, Any] = flatten(
        {k: v for k, v in params.items() if k not in ("videos", "stages")}
    )
    logged["video"] = video
    if video in params.get("videos", {}):
        logged["source"] = params["videos"][video]
    if isinstance(params.get("stages"), list):
        logged["n_stages"] = len(params["stages"])
    return logged


def pipeline_run(client: Any, experiment_id: str, video: str, params: Mapping[str, Any]) -> str:
    """The id of `video`'s pipeline run for these parameter values: the newest one, else a new
    one holding the values as params."""
    key = pipeline_key(video, params)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{PIPELINE_TAG} = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    tags = {"video": video, PIPELINE_TAG: key}
    commit = git_commit(Path.cwd())
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    run_id = client.create_run(experiment_id, run_name=video, tags=tags).info.run_id
    log = _Logger(client, run_id)
    log.params_from(pipeline_params(video, params))
    log.flush()
    return run_id


def _stage_run_record(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / STAGE_RUN_FILE
    if not path.is_file():
        return {}
    try:
        return dict(read_json(path, "a stage's MLflow record"))
    except GnervError:
        return {}


def _write_stage_run_record(out_dir: Path, run_id: str, parent_id: str, uri: str) -> None:
    write_json(
        Path(out_dir) / STAGE_RUN_FILE,
        {"run_id": run_id, "parent_run_id": parent_id, "tracking_uri": public_uri(uri)},
    )


def _live_run(client: Any, run_id: str | None, experiment_id: str) -> Any:
    """The run `run_id` when this store holds it in `experiment_id`, else None."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    if run.info.experiment_id != experiment_id or run.info.lifecycle_stage != "active":
        return None
    return run


class FitTracker:
    """One stage's live MLflow run while `gnerv fit` trains (pass `epoch` as fit's on_epoch).

    The run is opened at the first epoch (its start time the tracker's creation): a fresh fit
    (epoch 1) opens a new run, a resumed one (a later epoch, or none left to train) continues
    the run recorded beside the checkpoint. Logging problems are reported once and then
    ignored: a tracking store that goes away does not stop a long fit."""

    def __init__(
        self,
        video: str,
        stage: int,
        params: Mapping[str, Any],
        out_dir: str | os.PathLike,
        experiment: str | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        self.video, self.stage, self.params = video, stage, dict(params)
        self.out_dir = Path(out_dir)
        self.experiment = experiment or str(
            self.params.get("mlflow", {}).get("experiment") or DEFAULT_EXPERIMENT
        )
        self.client, self.uri, self.experiment_id = open_store(tracking_uri, self.experiment)
        self.start_ms = int(time.time() * 1000)  # the fit starts now (the store is open)
        self.run_id: str | None = None
        self.logger: _Logger | None = None
        self.last_flush = -math.inf  # the first epoch is sent at once: the run shows up
        self.broken = False

    def _open(self, fresh: bool) -> None:
        record = _stage_run_record(self.out_dir)
        previous = _live_run(self.client, record.get("run_id"), self.experiment_id)
        parent_id = pipeline_run(self.client, self.experiment_id, self.video, self.params)
        if previous is not None and not fresh:
            self.run_id = previous.info.run_id
            if previous.info.status != "RUNNING":
                self.client.update_run(self.run_id, status="RUNNING")
        else:
            if previous is not None and previous.info.status == "RUNNING":
                self.client.set_terminated(previous.info.run_id, "KILLED")
            tags = {"video": self.video, PARENT_RUN_TAG: parent_id, STAGE_TAG: str(self.stage)}
            run = self.client.create_run(
                self.experiment_id,
                start_time=self.start_ms,
                run_name=f"{self.video}/stage{self.stage}",
                tags=tags,
            )
            self.run_id = run.info.run_id
            log = _Logger(self.client, self.run_id)
            log.param("stage", self.stage)
            stages = self.params.get("stages")
            if isinstance(stages, list) and self.stage <= len(stages):
                log.params_from(stages[self.stage - 1], "stage")
            log.flush()
        self.client.update_run(parent_id, status="RUNNING")
        _write_stage_run_record(self.out_dir, self.run_id, parent_id, self.uri)
        self.logger = _Logger(self.client, self.run_id)

    def _guard(self, action: Any) -> None:
        if self.broken:
            return
        try:
            action()
        except Exception as e:  # noqa: BLE001  (a lost store must not stop the fit)
            self.broken = True
            print(f"MLflow tracking stopped ({public_uri(self.uri)}): {e}", flush=True)

    def epoch(self, epoch: int, record: Mapping[str, Any]) -> None:
        """fit's on_epoch: buffer the epoch's numbers, send them now and then."""

        def log() -> None:
            if self.logger is None:
                self._open(fresh=epoch == 1)
            assert self.logger is not None
            now_ms = int(time.time() * 1000)
            for name in HISTORY_FIELDS:
                if name in record:
                    self.logger.metric(name, record[name], step=epoch, at_ms=now_ms)
            if time.monotonic() - self.last_flush >= LIVE_FLUSH_S:
                self.logger.flush()
                self.last_flush = time.monotonic()

        self._guard(log)

    def finish(self, fit_summary: Mapping[str, Any]) -> None:
        """The fit ended: the rest of its history (epochs a resumed fit did not run here), its
        settings and final numbers; the run is FINISHED with the fit's end as its end."""

        def log() -> None:
            if self.logger is None:
                self._open(fresh=False)
            assert self.logger is not None and self.run_id is not None
            self.logger.flush()
            rest = _Logger(self.client, self.run_id, dedupe=True)
            _log_fit(rest, fit_summary)
            rest.flush()
            self.client.set_terminated(self.run_id, "FINISHED")

        self._guard(log)

    def fail(self, status: str = "FAILED") -> None:
        """The fit stopped with an error (FAILED) or was interrupted (KILLED)."""

        def log() -> None:
            if self.logger is not None and self.run_id is not None:
                self.logger.flush()
                self.client.set_terminated(self.run_id, status)

        self._guard(log)


def _log_fit(log: _Logger, fit: Mapping[str, Any]) -> None:
    """A fit.json's settings, per-epoch history and final numbers, into a stage run."""
    log.params_from(fit.get("model", {}), "model")
    log.params_from(fit.get("train", {}), "train")
    if "target_scale" in fit:
        log.param("target_scale", fit["target_scale"])
    for record in fit.get("history", []):
        epoch = record.get("epoch")
        if isinstance(epoch, int):
            for name in HISTORY_FIELDS:
                if name in record:
                    log.metric(name, record[name], step=epoch)
    for key in ("psnr", "params", "macs_per_frame", "train_seconds", "epochs"):
        if key in fit:
            log.metric(f"fit.{key}", fit[key])


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


def _finish(client: Any, run_id: str) -> None:
    """End a run as FINISHED unless it already is (tracking again leaves a finished run alone)."""
    if client.get_run(run_id).info.status != "FINISHED":
        client.set_terminated(run_id, "FINISHED")


def _fail(client: Any, run_ids: Iterable[str]) -> None:
    """Mark runs FAILED after an error, which stays the one reported."""
    for run_id in run_ids:
        try:
            client.set_terminated(run_id, "FAILED")
        except Exception:  # the original error matters more than this one
            pass


def _write_runs_record(
    path: Path, video: str, uri: str, experiment: str, experiment_id: str, **run_ids: Any
) -> None:
    """The JSON pointer to a video's MLflow runs that a track command leaves."""
    write_json(
        path,
        {
            "video": video,
            "tracking_uri": public_uri(uri),
            "experiment": experiment,
            "experiment_id": experiment_id,
            **run_ids,
        },
    )


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
    sizes = {f"stage{j}": Path(path).stat().st_size for j, path in enumerate(files.layers, start=1)}

    client, uri, experiment_id = open_store(tracking_uri, experiment)
    parent_id = pipeline_run(client, experiment_id, video, params)
    common_tags = {"video": video, "results": str(Path(files.metrics).parent.parent)}
    stage_ids: dict[str, str] = {}
    created: list[str] = []  # the stage runs made here (the fits' own runs keep their status)
    try:
        log = _Logger(client, parent_id, dedupe=True)
        log.params_from(pipeline_params(video, params))
        for key in ("n_frames", "height", "width", "fps", "source"):
            if key in frames_meta:
                log.param(f"frames.{key}", frames_meta[key])
        for k, point in sorted(by_prefix.items()):
            log.metrics_from(point_numbers(point), step=k)
        log.metrics_from(bd_numbers(summary))
        log.metric("total_bytes", sum(sizes.values()))
        log.metric("total_train_seconds", sum(float(f.get("train_seconds", 0.0)) for f in fits))
        log.tags.update(common_tags)
        if files.summary_md is not None and Path(files.summary_md).is_file():
            log.tags[NOTE_TAG] = Path(files.summary_md).read_text()[:MAX_PARAM_LENGTH]
        log.flush()

        for j, (fit_path, fit, entry) in enumerate(
            zip(files.fits, fits, stages, strict=True), start=1
        ):
            tags = {**common_tags, PARENT_RUN_TAG: parent_id, STAGE_TAG: str(j)}
            recorded = _stage_run_record(Path(fit_path).parent).get("run_id")
            run = _live_run(client, recorded, experiment_id)
            if run is None:  # the fit was not tracked: its run is made now, from fit.json
                run = client.create_run(experiment_id, run_name=f"{video}/stage{j}", tags=tags)
                created.append(run.info.run_id)
                _write_stage_run_record(Path(fit_path).parent, run.info.run_id, parent_id, uri)
            else:  # the fit's own run; a stage kept from an earlier pipeline moves to this one
                for key, value in tags.items():
                    if run.data.tags.get(key) != value:
                        client.set_tag(run.info.run_id, key, value)
            stage_ids[f"stage{j}"] = run.info.run_id
            _log_stage(client, run.info.run_id, j, fit_path, fit, entry, by_prefix, sizes)
            if run.info.status != "FINISHED":
                client.set_terminated(run.info.run_id, "FINISHED")

        client.log_dict(parent_id, {"bytes": sizes, "total": sum(sizes.values())}, "sizes.json")
        logged = [*files.artifacts, files.metrics, files.summary, files.summary_md]
        for path in _artifacts(p for p in logged if p is not None):
            client.log_artifact(parent_id, str(path), artifact_path="eval")
        if files.frames_meta is not None and Path(files.frames_meta).is_file():
            client.log_artifact(parent_id, str(files.frames_meta))
        for path in _artifacts(files.benchmarks):
            client.log_artifact(parent_id, str(path), artifact_path="benchmarks")
        # its end is the pipeline's: tracking a finished pipeline again leaves it alone
        _finish(client, parent_id)
    except BaseException:
        _fail(client, [*created, parent_id])
        raise

    _write_runs_record(
        files.record, video, uri, experiment, experiment_id,
        parent_run_id=parent_id, stage_run_ids=stage_ids,
    )  # fmt: skip
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
) -> None:
    """One stage's nested run: settings, per-epoch history, final figures, fit.json. What a
    tracked fit already logged is not sent again. The quantization settings are the pipeline
    run's (a new bit depth re-codes the layer, not the fit)."""
    log = _Logger(client, run_id, dedupe=True)
    log.param("stage", index)
    log.params_from(entry, "stage")
    _log_fit(log, fit)
    log.metric("stage_bytes", sizes[f"stage{index}"])
    if index in by_prefix:
        log.metrics_from(point_numbers(by_prefix[index]))
    log.flush()
    client.log_artifact(run_id, str(fit_path))


SEGMENT_TAG = "segment"


def track_segments(
    video: str,
    metrics: Path,
    index: Path,
    params: dict[str, Any],
    record: Path,
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
) -> str:
    """Log a segmented video (`gnerv evaluate --segments`'s `metrics`, the folder's `index`)
    as one parent run, the whole video's figures per prefix of stages, with a nested run per
    segment holding its own; write `record`; return the parent run's id. Logging it again
    updates the same runs."""
    result = read_json(metrics, "a segmented video's metrics")
    if "segments" not in result or "points" not in result:
        raise GnervError(f"{metrics}: not from `gnerv evaluate --segments` (no segments list)")
    client, uri, experiment_id = open_store(tracking_uri, experiment)
    parent_id = pipeline_run(client, experiment_id, video, params)
    common_tags = {"video": video, "results": str(Path(metrics).parent.parent)}
    segment_ids: dict[str, str] = {}
    created: list[str] = []
    try:
        log = _Logger(client, parent_id, dedupe=True)
        log.params_from(pipeline_params(video, params))
        log.param("segments", len(result["segments"]))
        for point in result["points"]:
            log.metrics_from(point_numbers(point), step=int(point["stage"]))
        log.metric("total_bytes", result["points"][-1]["bytes"])
        log.tags.update(common_tags)
        log.flush()
        for seg in result["segments"]:
            i = int(seg["segment"])
            found = client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent_id}' "
                f"and tags.{SEGMENT_TAG} = '{i}'",
                max_results=1,
            )
            if found:
                run_id = found[0].info.run_id
            else:
                tags = {**common_tags, PARENT_RUN_TAG: parent_id, SEGMENT_TAG: str(i)}
                run_id = client.create_run(
                    experiment_id, run_name=f"{video}/seg{i:03d}", tags=tags
                ).info.run_id
                created.append(run_id)
            seg_log = _Logger(client, run_id, dedupe=True)
            seg_log.param("start", seg["start"])
            seg_log.param("n_frames", seg["n_frames"])
            for point in seg["points"]:
                seg_log.metrics_from(point_numbers(point), step=int(point["stage"]))
            seg_log.flush()
            _finish(client, run_id)
            segment_ids[f"seg{i:03d}"] = run_id
        for path in (metrics, index):
            client.log_artifact(parent_id, str(path), artifact_path="segments")
        _finish(client, parent_id)
    except BaseException:
        _fail(client, [*created, parent_id])
        raise
    _write_runs_record(
        record, video, uri, experiment, experiment_id,
        parent_run_id=parent_id, segment_run_ids=segment_ids,
    )  # fmt: skip
    return parent_id


def ablation_key(video: str, name: str, params: Mapping[str, Any]) -> str:
    """Fingerprint of one ablation of one video: what it was run with (its own settings and the
    model and train sections it shares with the pipeline, and the source)."""
    import hashlib

    values = {
        "ablation": (params.get("ablations") or {}).get(name),
        "model": params.get("model"),
        "train": params.get("train"),
        "extract": params.get("extract"),
        "stage1": (params.get("stages") or [None])[0],
        "source": params.get("videos", {}).get(video),
    }
    text = json.dumps([video, name, values], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def metric_name(text: str) -> str:
    """`text` with the characters MLflow refuses in a metric name (e.g. ",") as "_"."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)


def ablation_numbers(result: Mapping[str, Any]) -> list[tuple[int, dict[str, float]]]:
    """(step, numbers) of each row of an ablation's JSON (its list of row objects): the step is
    the row's epochs, C0 or stage where it has one, else its position; the numbers are its
    numeric fields, under the row's text fields as a prefix ("one model.psnr") so that rows of
    two curves at one step stay apart."""
    lists = (
        [v for v in result.values() if isinstance(v, list)] if isinstance(result, Mapping) else []
    )
    rows = next((v for v in lists if v and all(isinstance(r, Mapping) for r in v)), [])
    found = []
    for position, row in enumerate(rows, start=1):
        step = next((int(row[k]) for k in ABLATION_STEP_KEYS if numeric(row.get(k))), position)
        prefix = ".".join(str(v) for v in row.values() if isinstance(v, str))
        values = {metric_name(k): v for k, v in numbers(row, prefix).items()}
        found.append((step, values))
    return found


def track_ablations(
    video: str,
    results_json: Sequence[Path],
    params: dict[str, Any],
    record: Path,
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
) -> dict[str, str]:
    """Log each ablation of `video` (its X.json, with X.md and X.png beside it) as a run of its
    own: its settings as params, each row's numbers as metrics (step: C0, epochs or stage), the
    table as the run's note and the three files as artifacts. Logging the same results again
    updates the same runs; other settings open new ones. Writes `record`; returns the run ids."""
    client, uri, experiment_id = open_store(tracking_uri, experiment)
    run_ids: dict[str, str] = {}
    for path in results_json:
        path = Path(path)
        result = read_json(path, "an ablation's results (gnerv ablation)")
        name = str(result.get("ablation") or path.stem)
        key = ablation_key(video, name, params)
        found = client.search_runs(
            [experiment_id],
            filter_string=f"tags.{ABLATION_TAG} = '{name}' and tags.{PIPELINE_TAG} = '{key}'",
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
        else:
            tags = {"video": video, ABLATION_TAG: name, PIPELINE_TAG: key}
            commit = git_commit(Path.cwd())
            if commit:
                tags[GIT_COMMIT_TAG] = commit
            run_id = client.create_run(
                experiment_id, run_name=f"{video}/ablation/{name}", tags=tags
            ).info.run_id
        try:
            log = _Logger(client, run_id, dedupe=True)
            log.param("video", video)
            log.param("ablation", name)
            log.params_from((params.get("ablations") or {}).get(name) or {}, "ablation")
            log.params_from(params.get("model") or {}, "model")
            for step, values in ablation_numbers(result):
                log.metrics_from(values, step=step)
            table = path.with_suffix(".md")
            if table.is_file():
                log.tags[NOTE_TAG] = table.read_text()[:MAX_PARAM_LENGTH]
            log.flush()
            for artifact in _artifacts([path, table, path.with_suffix(".png")]):
                client.log_artifact(run_id, str(artifact), artifact_path="ablation")
            _finish(client, run_id)
        except BaseException:
            _fail(client, [run_id])
            raise
        run_ids[name] = run_id
    _write_runs_record(record, video, uri, experiment, experiment_id, ablation_run_ids=run_ids)
    return run_ids
