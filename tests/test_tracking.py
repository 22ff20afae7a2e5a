"""gnerv.pipeline.tracking on a synthetic results folder, logged into a throwaway sqlite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gnerv.pipeline import results as layout
from gnerv.pipeline.params import load_params
from gnerv.pipeline.results import RUN_RECORD_NAME
from gnerv.pipeline.tracking import (
    STAGE_RUN_FILE,
    FitTracker,
    PipelineFiles,
    public_uri,
    relocate_artifacts,
    repository_root,
    resolve_uri,
    track_pipeline,
)
from gnerv.runtime.errors import GnervError

pytest.importorskip("mlflow")

VIDEO = "clip"
EPOCHS = (6, 3)  # epochs of stage 1 and stage 2
STAGE_BYTES = (1200, 700)
POINTS = (  # cumulative figures per prefix of layers, as gnerv evaluate writes them
    {"bpp": 0.05, "psnr": 27.5, "ms_ssim": 0.91, "params": 100_000, "macs_per_frame": 2.0e7},
    {"bpp": 0.08, "psnr": 29.25, "ms_ssim": 0.94, "params": 150_000, "macs_per_frame": 3.0e7},
)
PARAMS: dict[str, Any] = {
    "videos": {VIDEO: "data/raw/clip.mp4"},
    "extract": {"frames": "0:8", "stride": 1, "resize": "36x64"},
    "model": {"upscale_factors": "auto", "min_channels": 30},
    "train": {"batch": 4, "seed": 0},
    "stages": [
        {"size": "0.1M", "epochs": EPOCHS[0], "lr": 2e-3, "alpha": 0.7},
        {"size": "0.05M", "epochs": EPOCHS[1], "lr": 2e-4, "alpha": 1.0, "residual_scale": 100},
    ],
    "quant": {"bits": 8},
    "eval": {"codecs": "x264", "crf": "28,38", "preset": "medium"},
    "mlflow": {"enabled": True, "experiment": "gnerv-test"},
}
FAKE_PNG = b"\x89PNG\r\n\x1a\n" + bytes(16)


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def fake_results(root: Path) -> Path:
    """A finished two-stage pipeline's files, in the formats the CLI writes."""
    results = root / "results" / VIDEO
    write_json(results / "frames.json", {"fps": 20.0, "n_frames": 8, "height": 36, "width": 64})
    for j, (epochs, size) in enumerate(zip(EPOCHS, STAGE_BYTES, strict=True), start=1):
        history = [
            {"epoch": e, "loss": 1.0 / e, "train_psnr": 20.0 + e, "lr": 1e-3}
            for e in range(1, 1 + epochs)
        ]
        write_json(
            results / f"stage{j}" / "fit.json",
            {
                "model": {"c0": 8 * j, "upscale_factors": [2, 2], "residual": j > 1},
                "train": {"epochs": epochs, "lr": PARAMS["stages"][j - 1]["lr"], "batch_size": 4},
                "params": 50_000 * j,
                "macs_per_frame": 1.0e7 * j,
                "n_frames": 8,
                "psnr": 27.0 + j,
                "epochs": epochs,
                "train_seconds": 10.0 * j,
                "device": "cpu",
                "video": {"fps": 20.0},
                "target_scale": 1.0 if j == 1 else 100.0,
                "history": history,
            },
        )
        (results / f"stage{j}" / f"stage{j}.gnerv").write_bytes(bytes(size))
    points = [
        {
            "label": "gnerv",
            "stage": k,
            "layers": [f"stage{i}.gnerv" for i in range(1, k + 1)],
            "psnr_per_frame": [p["psnr"]] * 8,
            **p,
        }
        for k, p in enumerate(POINTS, start=1)
    ]
    write_json(results / "eval" / "metrics.json", {"video": {"n_frames": 8}, "points": points})
    bd = [
        {"curve": "gnerv", "reference": "x264", "bd_rate_percent": -12.5, "bd_psnr_db": 0.75},
        {"curve": "gnerv", "reference": "x265", "note": "the two curves do not overlap"},
    ]
    write_json(results / "eval" / "summary.json", {"top": {"stage": 2}, "bd": bd})
    for name in ("rd.png", "per_frame.png", "frames.png"):
        (results / "eval" / name).write_bytes(FAKE_PNG)
    (results / "eval" / "summary.md").write_text(
        "| codec | BD-rate |\n| --- | --- |\n| x264 | -12.5 % |\n"
    )
    return results


def pipeline_files(n_stages: int = len(EPOCHS)) -> PipelineFiles:
    """The pipeline's files as the track rule names them (paths relative to the working
    directory, which the `store` fixture makes tmp_path)."""
    named = layout.track_files(VIDEO, n_stages)
    return PipelineFiles(
        **{k: [Path(p) for p in v] if isinstance(v, list) else Path(v) for k, v in named.items()},
        record=Path(layout.run_record(VIDEO)),
    )


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path}/mlflow.db"


def test_track_pipeline_logs_parent_and_nested_stage_runs(tmp_path: Path, store: str) -> None:
    from mlflow.tracking import MlflowClient

    results = fake_results(tmp_path)
    run_id = track_pipeline(
        VIDEO, pipeline_files(), PARAMS, experiment="gnerv-test", tracking_uri=store
    )

    record = json.loads((results / RUN_RECORD_NAME).read_text())
    assert record["parent_run_id"] == run_id and record["experiment"] == "gnerv-test"
    assert set(record["stage_run_ids"]) == {"stage1", "stage2"}

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("gnerv-test")
    assert experiment is not None
    assert experiment.artifact_location.endswith("mlartifacts")  # beside the database
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == VIDEO
    assert "mlflow.parentRunId" not in parent.data.tags
    # params: flattened workflow settings
    assert parent.data.params["quant.bits"] == "8"
    assert parent.data.params["extract.resize"] == "36x64"
    assert parent.data.params["n_stages"] == "2"
    assert parent.data.params["source"] == "data/raw/clip.mp4"
    # final metrics = the last prefix; one step per prefix
    assert parent.data.metrics["psnr"] == pytest.approx(POINTS[-1]["psnr"])
    assert parent.data.metrics["bpp"] == pytest.approx(POINTS[-1]["bpp"])
    assert parent.data.metrics["ms_ssim"] == pytest.approx(POINTS[-1]["ms_ssim"])
    assert parent.data.metrics["bd_rate_percent.gnerv_vs_x264"] == pytest.approx(-12.5)
    assert parent.data.metrics["bd_psnr_db.gnerv_vs_x264"] == pytest.approx(0.75)
    assert not any(key.endswith("gnerv_vs_x265") for key in parent.data.metrics)
    assert parent.data.metrics["total_bytes"] == sum(STAGE_BYTES)
    assert "stage" not in parent.data.metrics
    psnr_steps = client.get_metric_history(run_id, "psnr")
    assert sorted((m.step, m.value) for m in psnr_steps) == [
        (k, p["psnr"]) for k, p in enumerate(POINTS, start=1)
    ]
    assert "x264" in parent.data.tags["mlflow.note.content"]
    artifacts = {a.path for a in client.list_artifacts(run_id, "eval")}
    assert {"eval/rd.png", "eval/per_frame.png", "eval/frames.png", "eval/summary.md"} <= artifacts
    sizes_file = client.download_artifacts(run_id, "sizes.json", str(tmp_path))
    assert json.loads(Path(sizes_file).read_text())["total"] == sum(STAGE_BYTES)

    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert sorted(r.info.run_name for r in children) == [f"{VIDEO}/stage1", f"{VIDEO}/stage2"]
    for child in children:
        j = int(child.data.tags["stage"])
        assert child.info.run_id == record["stage_run_ids"][f"stage{j}"]
        assert child.info.status == "FINISHED"
        # the settings the stage was fitted with, and its params.yaml entry
        assert child.data.params["model.c0"] == str(8 * j)
        assert child.data.params["stage.size"] == PARAMS["stages"][j - 1]["size"]
        assert ("stage.residual_scale" in child.data.params) == (j > 1)
        # per-epoch history, one step per epoch
        losses = client.get_metric_history(child.info.run_id, "loss")
        assert sorted(m.step for m in losses) == list(range(1, EPOCHS[j - 1] + 1))
        assert len(client.get_metric_history(child.info.run_id, "train_psnr")) == EPOCHS[j - 1]
        # final numbers: the stage's own and the prefix up to it (cumulative bpp)
        assert child.data.metrics["fit.psnr"] == pytest.approx(27.0 + j)
        assert child.data.metrics["fit.train_seconds"] == pytest.approx(10.0 * j)
        assert child.data.metrics["stage_bytes"] == STAGE_BYTES[j - 1]
        assert child.data.metrics["bpp"] == pytest.approx(POINTS[j - 1]["bpp"])
        assert child.data.metrics["params"] == POINTS[j - 1]["params"]

    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on runs

    # tracking the same finished pipeline again updates its runs: no new run, no second point
    assert (
        track_pipeline(VIDEO, pipeline_files(), PARAMS, experiment="gnerv-test", tracking_uri=store)
        == run_id
    )
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 + len(EPOCHS)
    assert len(client.get_metric_history(run_id, "psnr")) == len(POINTS)
    for child in children:
        j = int(child.data.tags["stage"])
        assert len(client.get_metric_history(child.info.run_id, "loss")) == EPOCHS[j - 1]
    # other parameter values are another pipeline: a new parent run, the stage runs move to it
    changed = {**PARAMS, "quant": {"bits": 6}}
    second = track_pipeline(VIDEO, pipeline_files(), changed, "gnerv-test", tracking_uri=store)
    assert second != run_id
    moved = json.loads((results / RUN_RECORD_NAME).read_text())["stage_run_ids"]
    assert moved == record["stage_run_ids"]
    for stage_run in moved.values():
        assert client.get_run(stage_run).data.tags["mlflow.parentRunId"] == second


def test_default_uri_is_sqlite_in_the_repository_root(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = fake_results(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "sub").mkdir()
    assert repository_root(tmp_path / "sub") == tmp_path  # the nearest folder up with .dvc/
    track_pipeline(VIDEO, pipeline_files(), PARAMS, experiment="gnerv-test")
    assert (tmp_path / "mlflow.db").is_file()
    # under `dvc exp run --temp` DVC_ROOT names the original repository: the store is there
    temp = tmp_path / ".dvc" / "tmp" / "exps" / "tmp123"
    (temp / ".dvc").mkdir(parents=True)
    monkeypatch.chdir(temp)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert resolve_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT")
    assert json.loads((results / RUN_RECORD_NAME).read_text())["tracking_uri"] == (
        f"sqlite:///{tmp_path}/mlflow.db"
    )
    other = tmp_path / "elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other}")
    track_pipeline(VIDEO, pipeline_files(), PARAMS, experiment="gnerv-test")
    assert other.is_file()


def test_unfinished_pipeline_is_refused_before_anything_is_logged(
    tmp_path: Path, store: str
) -> None:
    results = fake_results(tmp_path)
    (results / "stage2" / "stage2.gnerv").unlink()
    with pytest.raises(GnervError, match="stage2.gnerv not found"):
        track_pipeline(VIDEO, pipeline_files(), PARAMS, experiment="gnerv-test", tracking_uri=store)
    assert not (tmp_path / "mlflow.db").exists()
    assert not (results / RUN_RECORD_NAME).exists()


def test_load_params_merges_like_snakemake(tmp_path: Path) -> None:
    base, extra = tmp_path / "params.yaml", tmp_path / "extra.yaml"
    base.write_text("quant: {bits: 8}\neval: {codecs: x264, crf: '28'}\nstages: [{c0: 8}]\n")
    extra.write_text("eval: {crf: '23,28'}\nstages: [{c0: 16}, {c0: 4}]\n")
    base.write_text(base.read_text() + "videos: {demo: a.mp4}\n")
    extra.write_text(extra.read_text() + "videos: {paper: b.mkv}\n")
    merged = load_params([base, extra])
    assert merged["eval"] == {"codecs": "x264", "crf": "23,28"}
    assert merged["videos"] == {"paper": "b.mkv"}  # as the Snakefile: a configfile's videos replace
    assert merged["stages"] == [{"c0": 16}, {"c0": 4}]  # lists are replaced, not merged
    with pytest.raises(GnervError, match="not found"):
        load_params([tmp_path / "missing.yaml"])


def test_public_uri_drops_credentials() -> None:
    assert public_uri("https://user:secret@mlflow.example.org:5000/x") == (
        "https://mlflow.example.org:5000/x"
    )
    assert public_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_tracked_fit_is_the_stage_run_that_track_completes(tmp_path: Path, store: str) -> None:
    """A fit logs live into its stage run (FitTracker); `track` completes that run, under the
    pipeline run the fit opened, instead of making new ones."""
    from mlflow.tracking import MlflowClient

    results = fake_results(tmp_path)
    stage_dir = results / "stage1"
    fit = json.loads((stage_dir / "fit.json").read_text())
    tracker = FitTracker(VIDEO, 1, PARAMS, stage_dir, tracking_uri=store)
    for record in fit["history"][:2]:  # killed after two epochs
        tracker.epoch(record["epoch"], record)
    tracker.fail("KILLED")
    first = json.loads((stage_dir / STAGE_RUN_FILE).read_text())
    client = MlflowClient(tracking_uri=store)
    assert client.get_run(first["run_id"]).info.status == "KILLED"
    assert client.get_run(first["parent_run_id"]).info.status == "RUNNING"

    resumed = FitTracker(VIDEO, 1, PARAMS, stage_dir, tracking_uri=store)
    for record in fit["history"][2:]:  # --auto-resume continues at epoch 3: the same run
        resumed.epoch(record["epoch"], record)
    resumed.finish(fit)
    assert json.loads((stage_dir / STAGE_RUN_FILE).read_text())["run_id"] == first["run_id"]
    run = client.get_run(first["run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["fit.psnr"] == fit["psnr"]
    steps = [m.step for m in client.get_metric_history(first["run_id"], "loss")]
    assert sorted(steps) == list(range(1, EPOCHS[0] + 1))
    end_time = run.info.end_time

    parent = track_pipeline(VIDEO, pipeline_files(), PARAMS, "gnerv-test", tracking_uri=store)
    assert parent == first["parent_run_id"]
    record = json.loads((results / RUN_RECORD_NAME).read_text())
    assert record["stage_run_ids"]["stage1"] == first["run_id"]
    after = client.get_run(first["run_id"])
    assert after.info.end_time == end_time  # the run's duration stays the fit's
    assert len(client.get_metric_history(first["run_id"], "loss")) == EPOCHS[0]
    assert after.data.metrics["stage_bytes"] == STAGE_BYTES[0]
    assert client.get_run(parent).info.status == "FINISHED"

    # a fresh fit (epoch 1 again: other settings) is a new run
    restarted = FitTracker(VIDEO, 1, PARAMS, stage_dir, tracking_uri=store)
    restarted.epoch(1, fit["history"][0])
    restarted.finish(fit)
    assert json.loads((stage_dir / STAGE_RUN_FILE).read_text())["run_id"] != first["run_id"]


def test_copied_store_writes_its_own_artifacts(tmp_path: Path, store: str) -> None:
    from mlflow.tracking import MlflowClient

    fake_results(tmp_path)
    track_pipeline(VIDEO, pipeline_files(), PARAMS, "gnerv-test", tracking_uri=store)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "mlflow.db").write_bytes((tmp_path / "mlflow.db").read_bytes())
    relocate_artifacts(copy / "mlflow.db")
    client = MlflowClient(tracking_uri=f"sqlite:///{copy}/mlflow.db")
    experiment = client.get_experiment_by_name("gnerv-test")
    assert experiment.artifact_location == (copy / "mlartifacts").as_uri()
    for run in client.search_runs([experiment.experiment_id]):
        assert run.info.artifact_uri.startswith((copy / "mlartifacts").as_uri())


@pytest.mark.slow
def test_fit_logs_while_it_trains_and_resumes_its_run(tmp_path: Path, store: str) -> None:
    """`gnerv fit --track`: MLflow's client sees the run RUNNING with per-epoch points while
    the fit trains; killed and resumed with --auto-resume, the fit continues the same run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from mlflow.tracking import MlflowClient

    gnerv = str(Path(sys.executable).parent / "gnerv")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    subprocess.run(
        [gnerv, "extract", str(root / "data/raw/cockatoo.mp4"), "-o", "frames.npy"]
        + ["--frames", "0:4", "--resize", "36x64"],
        check=True,
        env=env,
        capture_output=True,
    )
    epochs = 300  # long enough that the fit is still training when two epochs are seen
    fit = [gnerv, "fit", "frames.npy", "-o", "model", "--c0", "4", "--epochs", str(epochs)]
    fit += ["--checkpoint-every", "1", "--quiet", "--track", VIDEO, "--auto-resume"]
    first = subprocess.Popen(fit, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = MlflowClient(tracking_uri=store)
    sidecar = tmp_path / "model" / STAGE_RUN_FILE
    try:
        deadline = time.monotonic() + 120
        seen: list = []
        while len(seen) < 2:
            assert first.poll() is None, "the fit ended before two epochs were seen in MLflow"
            assert time.monotonic() < deadline, "no per-epoch points reached MLflow"
            time.sleep(0.2)
            if sidecar.is_file():
                run_id = json.loads(sidecar.read_text())["run_id"]
                assert client.get_run(run_id).info.status == "RUNNING"
                seen = client.get_metric_history(run_id, "loss")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert len({m.timestamp for m in seen}) == len(seen)  # each epoch at its own time

    subprocess.run(fit, check=True, env=env, capture_output=True)
    assert json.loads(sidecar.read_text())["run_id"] == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(run_id, "loss")}
    assert steps == set(range(1, epochs + 1))
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.info.run_name == VIDEO and parent.info.status == "RUNNING"  # track ends it


def fake_ablations(root: Path) -> list[Path]:
    """The three ablations' files in the formats `gnerv ablation` writes (json, md, png)."""
    folder = root / "results" / VIDEO / "ablations"
    written = {
        "time_branch": {
            "ablation": "time_branch",
            "paper": {"c0": [20, 40], "w. DS": [31.95, 34.19]},
            "columns": [
                {"c0": 8, "w. DS": 27.1, "w. DS and M, mask M": 26.5, "params ds": 21000},
                {"c0": 16, "w. DS": 28.4, "w. DS and M, mask M": 27.9, "params ds": 52000},
            ],
        },
        "epochs": {
            "ablation": "epochs",
            "points": [
                {"epochs": 15, "psnr": 24.0, "c0": 16},
                {"epochs": 30, "psnr": 26.0, "c0": 16},
            ],
        },
        "progressive": {
            "ablation": "progressive",
            "rows": [
                {"pipeline": "progressive", "stage": 1, "epochs": 40, "psnr": 25.0},
                {"pipeline": "progressive", "stage": 2, "epochs": 80, "psnr": 26.5},
                {"pipeline": "one model", "stage": 1, "epochs": 80, "psnr": 27.0},
            ],
        },
    }
    paths = []
    for name, result in written.items():
        write_json(folder / f"{name}.json", result)
        (folder / f"{name}.md").write_text(f"| {name} |\n|---|\n")
        (folder / f"{name}.png").write_bytes(FAKE_PNG)
        paths.append(folder / f"{name}.json")
    return paths


def test_ablations_are_runs_of_their_own(tmp_path: Path, store: str) -> None:
    """Each ablation becomes one run: its settings, per-row metrics at the row's step (C0 or
    epochs; two curves at one step kept apart), its table as the note, its files as artifacts.
    Logging again updates those runs; changed settings open new ones."""
    from mlflow.tracking import MlflowClient

    from gnerv.pipeline.tracking import track_ablations

    paths = fake_ablations(tmp_path)
    params = {**PARAMS, "ablations": {"time_branch": {"c0": "8,16", "epochs": 60}}}
    record = tmp_path / "runs.json"
    runs = track_ablations(VIDEO, paths, params, record, "gnerv-test", store)
    assert set(runs) == {"time_branch", "epochs", "progressive"}
    assert json.loads(record.read_text())["ablation_run_ids"] == runs

    client = MlflowClient(tracking_uri=store)
    table4 = client.get_run(runs["time_branch"])
    assert (
        table4.info.status == "FINISHED" and table4.info.run_name == f"{VIDEO}/ablation/time_branch"
    )
    assert table4.data.params["ablation.c0"] == "8,16"
    assert table4.data.tags["mlflow.note.content"].startswith("| time_branch |")
    history = client.get_metric_history(runs["time_branch"], "w. DS and M_ mask M")
    assert sorted((m.step, m.value) for m in history) == [(8, 26.5), (16, 27.9)]
    fig8 = runs["progressive"]
    assert [(m.step, m.value) for m in client.get_metric_history(fig8, "one model.psnr")] == [
        (80, 27.0)
    ]
    assert sorted(m.step for m in client.get_metric_history(fig8, "progressive.psnr")) == [40, 80]
    artifacts = {a.path for a in client.list_artifacts(runs["epochs"], "ablation")}
    assert artifacts == {"ablation/epochs.json", "ablation/epochs.md", "ablation/epochs.png"}

    again = track_ablations(VIDEO, paths, params, record, "gnerv-test", store)
    assert again == runs
    assert len(client.get_metric_history(runs["epochs"], "psnr")) == 2  # not logged twice
    changed = {**params, "ablations": {"time_branch": {"c0": "8,16", "epochs": 90}}}
    other = track_ablations(VIDEO, paths[:1], changed, record, "gnerv-test", store)
    assert other["time_branch"] != runs["time_branch"]


def test_track_ablations_command(tmp_path: Path, store: str, capsys) -> None:
    import yaml

    from gnerv.cli import main

    paths = fake_ablations(tmp_path)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(PARAMS))
    record = tmp_path / "results" / VIDEO / "ablations" / RUN_RECORD_NAME
    argv = ["track-ablations", "--video", VIDEO, "--params", str(params_file), "--results"]
    assert main([*argv, *map(str, paths), "-o", str(record), "--tracking-uri", store]) == 0
    assert json.loads(record.read_text())["experiment"] == PARAMS["mlflow"]["experiment"]
    assert capsys.readouterr().out.count("MLflow run ") == 3
    assert main([*argv, str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.json")]) == 2
    assert "missing.json" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def fake_segment_metrics(root: Path) -> tuple[Path, Path]:
    """The JSON of `gnerv evaluate --segments` for two segments of two stages, and an index."""
    segments = [
        {
            "segment": i,
            "start": 4 * i,
            "n_frames": 4,
            "points": [
                {"stage": j, "bytes": 300 * j + i, "bpp": 0.1 * j, "psnr": 25.0 + j + i}
                for j in (1, 2)
            ],
        }
        for i in (0, 1)
    ]
    points = [
        {"label": "gnerv", "stage": j, "segments": 2, "bytes": 700 * j, "bpp": 0.1 * j,
         "psnr": 25.5 + j, "params": 1000 * j}
        for j in (1, 2)
    ]  # fmt: skip
    metrics = root / "results" / VIDEO / "eval" / "segment_metrics.json"
    write_json(metrics, {"video": {"n_frames": 8}, "points": points, "segments": segments})
    index = root / "results" / VIDEO / "segments" / "segments.json"
    write_json(index, {"kind": "gnerv-segments"})
    return metrics, index


def test_a_segmented_video_is_a_parent_run_with_a_run_per_segment(
    tmp_path: Path, store: str, capsys
) -> None:
    from mlflow.tracking import MlflowClient

    from gnerv.cli import main

    metrics, index = fake_segment_metrics(tmp_path)
    params = {**PARAMS, "segments": {"segment_frames": 4}}
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    record = tmp_path / "runs.json"
    args = ["track-segments", "--video", VIDEO, "--params", str(tmp_path / "params.yaml")]
    args += ["--metrics", str(metrics), "--index", str(index), "-o", str(record)]
    args += ["--tracking-uri", store]
    assert main(args) == 0, capsys.readouterr().err
    runs = json.loads(record.read_text())
    client = MlflowClient(tracking_uri=store)
    parent = client.get_run(runs["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["segments"] == "2"
    history = client.get_metric_history(parent.info.run_id, "psnr")
    assert sorted((m.step, m.value) for m in history) == [(1, 26.5), (2, 27.5)]
    assert set(runs["segment_run_ids"]) == {"seg000", "seg001"}
    for i, name in enumerate(("seg000", "seg001")):
        child = client.get_run(runs["segment_run_ids"][name])
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["segment"] == str(i) and child.data.params["start"] == str(4 * i)
        seg_psnr = client.get_metric_history(child.info.run_id, "psnr")
        assert sorted((m.step, m.value) for m in seg_psnr) == [(1, 26.0 + i), (2, 27.0 + i)]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "segments")}
    assert artifacts == {"segments/segment_metrics.json", "segments/segments.json"}
    # again: the same runs, no point logged twice
    assert main(args) == 0
    assert json.loads(record.read_text()) == runs
    assert len(client.get_metric_history(parent.info.run_id, "psnr")) == 2
    # a plain metrics.json is refused in one line
    plain = tmp_path / "plain.json"
    write_json(plain, {"points": POINTS})
    bad = [*args[:5], "--metrics", str(plain), *args[7:]]
    assert main(bad) != 0 and "not from `gnerv evaluate --segments`" in capsys.readouterr().err
