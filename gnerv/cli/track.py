"""track: log one video's finished pipeline to MLflow (the workflow's last step)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_track(args: argparse.Namespace) -> None:
    from gnerv.pipeline.params import load_params
    from gnerv.pipeline.tracking import (
        DEFAULT_EXPERIMENT,
        PipelineFiles,
        default_tracking_uri,
        track_pipeline,
    )

    params = load_params(args.params)
    experiment = args.experiment or params.get("mlflow", {}).get("experiment", DEFAULT_EXPERIMENT)
    uri = args.tracking_uri or default_tracking_uri()
    files = PipelineFiles(
        fits=args.fits,
        layers=args.layers,
        metrics=args.metrics,
        record=args.output,
        summary=args.summary,
        summary_md=args.summary_md,
        frames_meta=args.frames_meta,
        artifacts=args.artifacts,
        benchmarks=args.benchmarks,
    )
    run_id = track_pipeline(args.video, files, params, experiment, uri)
    print(f"MLflow run {run_id} (experiment {experiment!r}) holds {args.video}'s pipeline")


def cmd_track_ablations(args: argparse.Namespace) -> None:
    from gnerv.pipeline.params import load_params
    from gnerv.pipeline.tracking import DEFAULT_EXPERIMENT, default_tracking_uri, track_ablations

    params = load_params(args.params)
    experiment = args.experiment or params.get("mlflow", {}).get("experiment", DEFAULT_EXPERIMENT)
    uri = args.tracking_uri or default_tracking_uri()
    runs = track_ablations(args.video, args.results, params, args.output, experiment, uri)
    for name, run_id in runs.items():
        print(f"MLflow run {run_id} (experiment {experiment!r}) holds {args.video}'s {name}")


def cmd_track_segments(args: argparse.Namespace) -> None:
    from gnerv.pipeline.params import load_params
    from gnerv.pipeline.tracking import DEFAULT_EXPERIMENT, default_tracking_uri, track_segments

    params = load_params(args.params)
    experiment = args.experiment or params.get("mlflow", {}).get("experiment", DEFAULT_EXPERIMENT)
    uri = args.tracking_uri or default_tracking_uri()
    run_id = track_segments(
        args.video, args.metrics, args.index, params, args.output, experiment, uri
    )
    print(f"MLflow run {run_id} (experiment {experiment!r}) holds {args.video}'s segments")


def add_video_args(p: argparse.ArgumentParser) -> None:
    """--video and --params: which video of which workflow parameters."""
    p.add_argument("--video", required=True, metavar="NAME", help="the video's name in params")
    p.add_argument(
        "--params",
        required=True,
        nargs="+",
        metavar="PARAMS.yaml",
        help="workflow parameters (params.yaml, then any --configfile merged into it)",
    )


def add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", help="MLflow experiment (default: mlflow.experiment)")
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="log a finished pipeline (one video) to MLflow")
    add_video_args(p)
    g = p.add_argument_group("the pipeline's files")
    g.add_argument("--fits", nargs="+", required=True, type=Path, help="fit.json of each stage")
    g.add_argument(
        "--layers", nargs="+", required=True, type=Path, help="the .gnerv layers, base first"
    )
    g.add_argument("--metrics", required=True, type=Path, help="metrics.json of gnerv evaluate")
    g.add_argument("--summary", type=Path, help="summary.json of gnerv report (BD-rates)")
    g.add_argument("--summary-md", type=Path, help="summary.md of gnerv report (the run's note)")
    g.add_argument("--frames-meta", type=Path, help="frames.json of gnerv extract")
    g.add_argument("--artifacts", nargs="*", type=Path, default=[], help="report files to log")
    g.add_argument("--benchmarks", nargs="*", type=Path, default=[], help="job timing files")
    p.add_argument(
        "-o", "--output", required=True, type=Path, metavar="RUN.json", help="run record to write"
    )
    add_store_args(p)
    p.set_defaults(func=cmd_track)

    p = sub.add_parser(
        "track-ablations", help="log a video's ablations (gnerv ablation) to MLflow, a run each"
    )
    add_video_args(p)
    p.add_argument(
        "--results",
        nargs="+",
        required=True,
        type=Path,
        metavar="X.json",
        help="the ablations' JSON (X.md and X.png beside each are logged too)",
    )
    p.add_argument(
        "-o", "--output", required=True, type=Path, metavar="RUNS.json", help="record to write"
    )
    add_store_args(p)
    p.set_defaults(func=cmd_track_ablations)

    p = sub.add_parser(
        "track-segments",
        help="log a segmented video to MLflow: a parent run, a nested run per segment",
    )
    add_video_args(p)
    p.add_argument(
        "--metrics", required=True, type=Path, help="the JSON of gnerv evaluate --segments"
    )
    p.add_argument("--index", required=True, type=Path, help="the segmented video's index")
    p.add_argument(
        "-o", "--output", required=True, type=Path, metavar="RUNS.json", help="record to write"
    )
    add_store_args(p)
    p.set_defaults(func=cmd_track_segments)
