"""The workflow: Snakemake rules, params schema and checks, the SLURM profile, dvc.yaml's agreement
with the Snakemake DAG, and (once the whole CLI exists) tiny end-to-end runs of both.

Every test works in its own copy of the workflow files under tmp_path, so runs never share
results/, .snakemake/ or DVC state with the checkout or with each other.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from gnerv.pipeline.params import command_settings, load_params
from gnerv.pipeline.results import DVC_FILES

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GNERV = BIN / "gnerv"
# What a run of the workflow needs; the gnerv package itself comes from the environment.
WORKFLOW_FILES = (
    "Snakefile",
    "params.yaml",
    "dvc.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    "workflow",
    "configs",
    "data/raw",
)
CI_CONFIG = "configs/ci-tiny.yaml"
ABLATIONS_DVC = DVC_FILES["ablations"]
# The ablations at CI size (seconds each): Table 4 at one C0, Fig. 7 at two epoch counts
# (sharing Table 4's DS model), Fig. 8 with two stages.
TINY_ABLATIONS = {
    "time_branch": {"c0": "2", "epochs": 1},
    "epochs": {"c0": 2, "values": "1,2"},
    "progressive": {"sizes": "6k,6k", "epochs": "1,1"},
}
DRY_RUN_TIMEOUT_S = 120
RUN_TIMEOUT_S = 900
LOCK_WAIT_S = 120
# The log redirection every rule appends; DVC shows the output instead.
LOG_SUFFIX = re.compile(r"\s*>\s*\S+\s+2>&1\s*$")
RULE_LINE = re.compile(r"^(?:local)?rule (\w+):$")


def cli_ready() -> bool:
    """The progressive/evaluation commands exist (the end-to-end tests need all of them)."""
    try:
        done = subprocess.run([str(GNERV), "residual", "--help"], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


needs_cli = pytest.mark.skipif(
    not cli_ready(),
    reason="`gnerv residual --help` fails: the progressive/evaluation CLI commands "
    "(residual, evaluate, baselines, report) are not in gnerv/cli.py yet",
)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def copy_workflow(dest: Path) -> Path:
    """The workflow's files, copied into `dest` (no results, no .snakemake, no DVC cache)."""
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
        "DVC_NO_ANALYTICS": "1",
    }


def run(cwd: Path, *args: str, timeout: float = DRY_RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a command in `cwd`; stdout and stderr together in .stdout."""
    return subprocess.run(
        args,
        cwd=cwd,
        env=env(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def snakemake(cwd: Path, *args: str, timeout: float = DRY_RUN_TIMEOUT_S):
    return run(cwd, sys.executable, "-m", "snakemake", *args, timeout=timeout)


def dvc(cwd: Path, *args: str, timeout: float = DRY_RUN_TIMEOUT_S):
    return run(cwd, sys.executable, "-m", "dvc", *args, timeout=timeout)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"{shlex.join(map(str, done.args))} failed:\n{done.stdout}"
    return done.stdout


@dataclass
class Job:
    rule: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    shell: str = ""
    threads: int = 1


def dry_run_jobs(cwd: Path, *args: str, forceall: bool = True) -> list[Job]:
    """The jobs of `snakemake -n -p [--forceall]`, parsed from its report."""
    text = ok(snakemake(cwd, "-n", "-p", *(["--forceall"] if forceall else []), *args))
    jobs: list[Job] = []
    for line in text.splitlines():
        if match := RULE_LINE.match(line):
            jobs.append(Job(match.group(1)))
        elif jobs and line.startswith("    input: "):
            jobs[-1].inputs = line.removeprefix("    input: ").split(", ")
        elif jobs and line.startswith("    output: "):
            jobs[-1].outputs = line.removeprefix("    output: ").split(", ")
        elif jobs and line.startswith("    threads: "):
            jobs[-1].threads = int(line.removeprefix("    threads: "))
        elif jobs and line.startswith("Shell command: "):
            jobs[-1].shell = line.removeprefix("Shell command: ")
    return jobs


def rule_counts(jobs: list[Job]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.rule] = counts.get(job.rule, 0) + 1
    return counts


def write_overlay(cwd: Path, data: dict) -> str:
    path = cwd / "overlay.yaml"
    path.write_text(yaml.safe_dump(data))
    return path.name


def use_as_params(cwd: Path, config: str) -> None:
    """Make `config` the repository's params.yaml and regenerate dvc.yaml for it."""
    if config != "params.yaml":
        shutil.copy2(cwd / config, cwd / "params.yaml")
    ok(run(cwd, sys.executable, "workflow/scripts/dvc_yaml.py"))


def git_init(cwd: Path) -> None:
    for args in (
        ("init", "-q"),
        ("add", "-A"),
        ("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "workflow"),
    ):
        ok(run(cwd, "git", *args))


def dvc_stages(cwd: Path, dvc_file: str = "dvc.yaml") -> dict[str, dict]:
    """DVC's own view of one pipeline file, after interpolating params.yaml: name ->
    cmd/deps/outs/params (paths as the stage writes them, relative to its wdir)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    if not (cwd / ".git").exists():
        ok(run(cwd, "git", "init", "-q"))  # DVC needs a git repository around dvc.yaml
    stages = {}
    wanted = (cwd / dvc_file).resolve()
    with Repo(str(cwd)) as repo:
        for stage in repo.index.stages:
            if Path(stage.dvcfile.path).resolve() != wanted:
                continue
            params = [d for d in stage.deps if isinstance(d, ParamsDependency)]
            stages[stage.name] = {
                "cmd": stage.cmd,
                "deps": sorted(d.def_path for d in stage.deps if d not in params),
                "outs": sorted(o.def_path for o in stage.outs),
                "persist": sorted(o.def_path for o in stage.outs if o.persist),
                "uncached": sorted(o.def_path for o in stage.outs if not o.use_cache),
                "params": sorted(p for d in params for p in d.params),
            }
    return stages


# --------------------------------------------------------------------------------------------
# Snakemake: dry runs, lint, DAG
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def wf(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path)


def test_dry_run_builds_the_progressive_dag(wf: Path) -> None:
    counts = rule_counts(dry_run_jobs(wf))
    n_stages = len(yaml.safe_load((wf / "params.yaml").read_text())["stages"])
    assert counts == {
        "extract": 1,
        "baselines": 1,
        "fit": n_stages,
        "finetune": n_stages,  # the default recipe's coding fine-tunes every stage
        "compress": n_stages,
        "residual": n_stages - 1,
        "evaluate": 1,
        "decode": 1,
        "report": 1,
        "track": 1,
        "all": 1,
    }
    tiny = dry_run_jobs(wf, "--configfile", CI_CONFIG)
    assert rule_counts(tiny)["fit"] == 2
    fit2 = next(j for j in tiny if j.rule == "fit" and "stage2" in j.outputs[0])
    assert fit2.inputs == [
        "results/cockatoo/stage2/residual.npy",
        "results/cockatoo/stage2/residual.json",
    ]
    # the fit reads stage 2's settings from the parameter files Snakemake merged, itself
    words = shlex.split(LOG_SUFFIX.sub("", fit2.shell))
    files = words[words.index("--params") + 1 : words.index("--stage")]
    assert Path(files[0]).name == "params.yaml" and Path(files[1]).name == Path(CI_CONFIG).name
    assert words[words.index("--stage") + 1] == "2"
    settings = command_settings(load_params([wf / f for f in files]), "fit", 2)
    assert (settings["c0"], settings["epochs"], settings["lr"]) == (4, 2, 2e-4)


def test_segments_fan_out_one_job_per_segment(wf: Path) -> None:
    """configs/segments-demo.yaml: the 280-frame range cut into 64-frame segments is four
    `gnerv encode --segment I` jobs (the last segment takes the 24-frame tail) and one gather;
    the stages' sizes are the video's totals, each job scales them itself."""
    jobs = dry_run_jobs(wf, "--configfile", "configs/segments-demo.yaml")
    assert rule_counts(jobs) == {
        "encode_segment": 4, "gather_segments": 1, "evaluate_segments": 1,
        "track_segments": 1, "all": 1,
    }  # fmt: skip
    for i, job in enumerate(sorted((j for j in jobs if j.rule == "encode_segment"),
                                   key=lambda j: j.outputs[0])):  # fmt: skip
        assert job.outputs == [f"results/cockatoo/segments/seg{i:03d}/segment.json"]
        words = shlex.split(LOG_SUFFIX.sub("", job.shell))
        assert words[:2] == ["gnerv", "encode"] and words[words.index("--segment") + 1] == str(i)
        assert words[words.index("--segment-frames") + 1] == "64"
        assert words[words.index("--stage-sizes") + 1] == "0.1M"
        assert words[words.index("--frames") + 1] == "0:280"
    gather = next(j for j in jobs if j.rule == "gather_segments")
    assert gather.outputs == ["results/cockatoo/segments/segments.json"] and len(gather.inputs) == 4
    evaluate = next(j for j in jobs if j.rule == "evaluate_segments")
    words = shlex.split(LOG_SUFFIX.sub("", evaluate.shell))
    assert words[:3] == ["gnerv", "evaluate", "data/raw/cockatoo.mp4"]
    assert words[words.index("--segments") + 1] == "results/cockatoo/segments"
    assert words[words.index("--frames") + 1] == "0:280"
    # a range without an end cannot be cut up front: one line, before any job
    done = snakemake(
        wf, "-n", "--configfile", "configs/segments-demo.yaml",
        write_overlay(wf, {"extract": {"frames": "0:"}}),
    )  # fmt: skip
    assert done.returncode != 0 and "give extract.frames as A:B" in done.stdout


@needs_cli
def test_segmented_pipeline_runs_and_decodes(wf: Path) -> None:
    """The tiny config cut into three 4-frame segments of two stages: three encode jobs and a
    gather, whose folder `gnerv info` lists and `gnerv decode` reads, any range."""
    stages = [
        {"size": "15k", "epochs": 2, "alpha": 0.7},
        {"size": "15k", "epochs": 2, "alpha": 1.0, "residual_scale": 100},
    ]  # the video's totals: 5k per segment and stage
    overlay = write_overlay(
        wf,
        {"extract": {"frames": "0:12"}, "stages": stages, "segments": {"segment_frames": 4}},
    )
    ok(snakemake(wf, "--cores", "2", "--configfile", CI_CONFIG, overlay, timeout=RUN_TIMEOUT_S))
    folder = wf / "results" / "cockatoo" / "segments"
    assert "3 segments" in ok(run(wf, str(GNERV), "info", str(folder)))
    metrics = json.loads((wf / "results/cockatoo/eval/segment_metrics.json").read_text())
    assert [p["stage"] for p in metrics["points"]] == [1, 2] and len(metrics["segments"]) == 3
    assert metrics["points"][1]["psnr"] > metrics["points"][0]["psnr"]
    runs = json.loads((wf / "results/cockatoo/mlflow_segments.json").read_text())
    assert sorted(runs["segment_run_ids"]) == ["seg000", "seg001", "seg002"]
    ok(run(wf, str(GNERV), "decode", str(folder), "--frames", "3:9", "-o", "part.npy"))
    assert np.load(wf / "part.npy").shape == (6, 36, 64, 3)


def test_torch_rules_use_the_cores(wf: Path) -> None:
    """Snakemake sets a job's OMP_NUM_THREADS (torch's thread count) to its threads, 1 unless
    the rule asks for more: the torch rules ask for several, scaled down to --cores."""
    torch_rules = {"fit", "compress", "residual", "evaluate", "decode"}
    for cores, fit_threads, other_threads in (("1", 1, 1), ("2", 2, 2), ("32", 8, 4)):
        for job in dry_run_jobs(wf, "--cores", cores):
            if job.rule in ("fit", "finetune"):
                assert job.threads == fit_threads, (cores, job)
            elif job.rule in torch_rules:
                assert job.threads == other_threads, (cores, job)
            else:
                assert job.threads == 1, (cores, job)


def test_lint_and_dag(wf: Path) -> None:
    assert "Congratulations" in ok(snakemake(wf, "--lint"))
    assert ok(snakemake(wf, "--dag", "--quiet", "all")).lstrip().startswith("digraph")


def test_ablations_target_plans_the_paper_ablations(wf: Path) -> None:
    """`snakemake -n ablations`: Table 4's models (a ds and a ds+m one per C0), Fig. 7's runs
    (sharing the one Table 4 has), Fig. 8's pipeline and its one-model rival; nothing of `all`."""
    ablations = yaml.safe_load((wf / "params.yaml").read_text())["ablations"]
    c0s = str(ablations["time_branch"]["c0"]).split(",")
    epochs = str(ablations["epochs"]["values"]).split(",")
    tb_epochs = str(ablations["time_branch"]["epochs"])
    shared = str(ablations["epochs"]["c0"]) in c0s and tb_epochs in epochs
    jobs = dry_run_jobs(wf, "ablations")
    assert rule_counts(jobs) == {
        "extract": 1,
        "ablation_fit": 2 * len(c0s) + len(epochs) - shared,
        "ablation_time_branch": 1,
        "ablation_epochs": 1,
        "ablation_pipeline": 1,
        "ablation_long": 1,
        "ablation_evaluate": 2,
        "ablation_progressive": 1,
        "ablation_track": 1,  # each ablation as an MLflow run of its own (mlflow.enabled)
        "ablations": 1,
    }
    fits = [shlex.split(LOG_SUFFIX.sub("", j.shell)) for j in jobs if j.rule == "ablation_fit"]
    branches = sorted(words[words.index("--time-branch") + 1] for words in fits)
    assert branches == sorted(["ds", "ds+m"] * len(c0s) + ["ds"] * (len(epochs) - shared))
    outputs = {out for j in jobs for out in j.outputs}
    for name in ("time_branch", "epochs", "progressive"):
        for kind in ("json", "md", "png"):
            assert f"results/cockatoo/ablations/{name}.{kind}" in outputs
    # every ablation command comes from the gnerv CLI
    assert all(j.shell.startswith("gnerv ") for j in jobs if j.rule not in ("ablations",))


def test_mlflow_disabled_skips_track(wf: Path) -> None:
    overlay = write_overlay(wf, {"mlflow": {"enabled": False, "experiment": "x"}})
    assert "track" not in rule_counts(dry_run_jobs(wf, "--configfile", overlay))


# --------------------------------------------------------------------------------------------
# Parameters: schema and start-up checks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        ({"qaunt": {"bits": 8}}, ["'qaunt' was unexpected"]),
        ({"train": {"bacth": 4}}, ["'bacth' was unexpected", "train"]),
        (
            {"quant": {"bits": "eight"}},  # an integer or auto
            ["'eight' is not valid under any of the given schemas", "['quant']['bits']"],
        ),
        ({"stages": []}, ["should be non-empty", "stages"]),
        (
            {"stages": [{"size": "0.1M", "c0": 8, "epochs": 1, "lr": 0.1, "alpha": 1.0}]},
            ["is not valid under any of the given schemas", "stages"],
        ),
        ({"eval": {"codecs": "x264,av1", "crf": "28", "preset": "fast"}}, ["x264,av1"]),
    ],
)
def test_schema_names_the_bad_key(wf: Path, overlay: dict, expected: list[str]) -> None:
    done = snakemake(wf, "-n", "--configfile", write_overlay(wf, overlay))
    assert done.returncode != 0
    assert "Error validating config file" in done.stdout
    for text in expected:
        assert text in done.stdout


STAGE = {"size": "0.1M", "epochs": 1, "lr": 2.0e-3, "alpha": 0.7}


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        (
            {"videos": {"ghost": "data/raw/ghost.mp4"}},
            "videos.ghost: data/raw/ghost.mp4 not found",
        ),
        (
            {"stages": [{**STAGE, "residual_scale": 100}]},
            "stages[0] (stage 1): the base stage fits the video itself and takes no residual_scale",
        ),
        (
            {"stages": [STAGE, STAGE]},
            "stages[1] (stage 2): a residual stage needs residual_scale > 0",
        ),
        (
            {"stages": [STAGE, {**STAGE, "residual_scale": -1}]},
            "stages[1] (stage 2): a residual stage needs residual_scale > 0 (paper: 100), got -1",
        ),
        ({"stages": [{**STAGE, "size": "0.0M"}]}, "size 0.0M must be more than 0 parameters"),
        (
            {"extract": {"frames": 640, "stride": 1, "resize": "36x64"}},  # an unquoted 10:40
            "extract.frames was read as the number 640: quote the range",
        ),
    ],
)
def test_startup_checks_refuse_a_broken_pipeline(wf: Path, overlay: dict, expected: str) -> None:
    done = snakemake(wf, "-n", "--configfile", write_overlay(wf, overlay))
    assert done.returncode != 0
    assert "do not form a valid pipeline" in done.stdout
    assert expected in done.stdout


def test_config_on_the_command_line_is_refused(wf: Path) -> None:
    """The commands read the parameter files themselves, so a --config value would be lost."""
    done = snakemake(wf, "-n", "--config", "quant={bits: 6}")
    assert done.returncode != 0
    assert "--config KEY=VALUE is not supported" in done.stdout and "--configfile" in done.stdout


@pytest.mark.parametrize(
    "config",
    [
        "params.yaml",
        CI_CONFIG,
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").glob("paper-*.yaml")),
    ],
)
def test_shipped_configs_are_valid(config: str) -> None:
    import jsonschema

    schema = yaml.safe_load((ROOT / "workflow/schemas/params.schema.yaml").read_text())
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load((ROOT / config).read_text()))


def test_paper_configs_replace_the_demo_videos(wf: Path) -> None:
    """--configfile merges into params.yaml, but its `videos` replace the demo's."""
    for config in ("configs/paper-bunny.yaml", "configs/paper-uvg.yaml"):
        videos = yaml.safe_load((wf / config).read_text())["videos"]
        for path in videos.values():  # stand-ins: a dry run never opens them
            (wf / path).parent.mkdir(parents=True, exist_ok=True)
            (wf / path).touch()
        jobs = dry_run_jobs(wf, "--configfile", config)
        extracted = sorted(j.outputs[0].split("/")[1] for j in jobs if j.rule == "extract")
        assert extracted == sorted(videos)
        assert rule_counts(jobs)["fit"] == 3 * len(videos)
    uvg_fit = next(j for j in jobs if j.rule == "fit")
    words = shlex.split(LOG_SUFFIX.sub("", uvg_fit.shell))
    files = words[words.index("--params") + 1 : words.index("--stage")]
    settings = command_settings(load_params([wf / f for f in files]), "fit", 1)
    assert (settings["c0"], settings["epochs"]) == (160, 300)
    assert "--resize 1080x1920" in next(j for j in jobs if j.rule == "extract").shell


# --------------------------------------------------------------------------------------------
# Cluster profile and the lock
# --------------------------------------------------------------------------------------------


def test_slurm_profile_dry_run(wf: Path) -> None:
    text = ok(snakemake(wf, "-n", "--profile", "workflow/profiles/slurm"))
    blocks = re.split(r"\n(?=(?:local)?rule \w+:\n)", text)
    resources = {}
    for block in blocks:
        if match := re.match(r"(?:local)?rule (\w+):", block):
            found = re.search(r"^    resources: (.*)$", block, re.M)
            resources.setdefault(match.group(1), found.group(1) if found else "")
    for rule in ("fit", "compress", "residual", "evaluate", "decode"):
        assert "gpu=1" in resources[rule], rule
    for rule in ("extract", "baselines", "report"):
        assert "gpu" not in resources[rule], rule
    assert "runtime=1440" in resources["fit"]


def test_slurm_asks_for_a_gpu_only_where_one_is_used(wf: Path) -> None:
    """train.device: cpu, or the slurm-cpu profile: no job asks SLURM for a GPU."""

    def gpu_rules(*args: str) -> set[str]:
        text = ok(snakemake(wf, "-n", *args))
        return set(
            re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: .*gpu=1", text, re.M)
        )

    assert "fit" in gpu_rules("--profile", "workflow/profiles/slurm")
    cpu = write_overlay(
        wf,
        {"train": {**yaml.safe_load((wf / "params.yaml").read_text())["train"], "device": "cpu"}},
    )
    assert not gpu_rules("--profile", "workflow/profiles/slurm", "--configfile", cpu)
    assert not gpu_rules("--profile", "workflow/profiles/slurm-cpu")


def fake_sinfo(wf: Path, lines: str) -> dict[str, str]:
    """An environment whose `sinfo` prints `lines` (a 2-CPU, ~4 GB node without GPUs), with
    the `squeue` every SLURM has (the slurm plugin 2.8+ refuses to load with sinfo alone)."""
    bin_dir = wf / "fakebin"
    bin_dir.mkdir()
    for name, text in (("sinfo", f"cat <<'EOF'\n{lines}\nEOF\n"), ("squeue", "exit 0\n")):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{text}")
        script.chmod(0o755)
    return {**env(wf), "PATH": f"{bin_dir}{os.pathsep}{env(wf)['PATH']}"}


def test_slurm_jobs_larger_than_the_partition_stop_before_submission(wf: Path) -> None:
    """A profile asking for more CPUs, memory or GPUs than the partition's largest node has
    stops at start-up with the limit named (sbatch would refuse or leave the job pending);
    the one-node SLURM test (test-local.sh) shows a fitting profile passing the check."""
    small = fake_sinfo(wf, "node1|debug*|2|3900|(null)")
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm"],
        cwd=wf,
        env=small,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=DRY_RUN_TIMEOUT_S,
    )
    assert done.returncode != 0
    assert (
        "rule fit asks for 8 CPUs (cpus_per_task) but the largest node of partition "
        "'debug' has 2" in done.stdout
    ), done.stdout
    assert "rule fit asks for 32000 MB (mem_mb)" in done.stdout
    assert "rule fit asks for 1 GPU(s)" in done.stdout
    assert "submitted" not in done.stdout and not (wf / "results").exists()


SLURM_SCRIPT = ROOT / "workflow" / "profiles" / "slurm" / "test-local.sh"
SLURM_TIMEOUT_S = 600


@pytest.mark.slow
@pytest.mark.skipif(
    not (os.environ.get("CI") or os.environ.get("GNERV_TEST_SLURM") == "1"),
    reason="starts a one-node SLURM cluster (installs slurm-wlm and munge with apt-get, as "
    "root): set GNERV_TEST_SLURM=1 (CI sets CI)",
)
def test_slurm_profile_runs_the_pipeline_on_a_one_node_cluster() -> None:
    """workflow/profiles/slurm/test-local.sh: the tiny pipeline through sbatch, with the same
    layers as a local run; it stops the daemons it started."""
    if os.geteuid() != 0:
        pytest.skip("test-local.sh installs and starts SLURM daemons: it needs root")
    done = subprocess.run(
        [str(SLURM_SCRIPT)],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=SLURM_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout
    assert "OK: the SLURM run's layers equal the local run's" in done.stdout


def test_second_run_in_the_same_directory_is_refused(wf: Path) -> None:
    """Snakemake's lock: a second run that would write the same files stops with a clear
    message naming --unlock (only needed after a killed run)."""
    overlay = write_overlay(
        wf,
        {"stages": [{"c0": 4, "epochs": 10_000, "lr": 2.0e-3, "alpha": 0.7}]},
    )
    target = "results/cockatoo/stage1/fit.json"
    args = ("--cores", "1", "--configfile", CI_CONFIG, overlay)  # the tiny video, a long stage
    first = subprocess.Popen(
        (sys.executable, "-m", "snakemake", target, *args),
        cwd=wf,
        env=env(wf),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while not (wf / "logs/cockatoo/fit_stage1.log").exists():
            assert first.poll() is None, "the first run ended before it started training"
            assert time.monotonic() < deadline, "the first run never started training"
            time.sleep(0.2)
        second = snakemake(wf, target, *args)
        assert second.returncode != 0
        assert "Directory cannot be locked" in second.stdout
        assert "--unlock" in second.stdout
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(timeout=LOCK_WAIT_S)


# --------------------------------------------------------------------------------------------
# DVC: dvc.yaml is generated from params.yaml and agrees with the Snakemake DAG
# --------------------------------------------------------------------------------------------


def test_committed_dvc_yaml_is_up_to_date() -> None:
    done = run(ROOT, sys.executable, "workflow/scripts/dvc_yaml.py", "--check")
    assert done.returncode == 0, done.stdout


def use_ci_params(cwd: Path, rate_path: bool = False, mlflow: bool = True) -> None:
    """CI's tiny pipeline as params.yaml: coded on the rate path, fine-tuned (rule finetune), if
    asked; with MLflow off for the tests of what DVC and Snakemake rerun, which the end-to-end
    runs check with tracking on (each tracked job loads MLflow, a few seconds of a tiny run)."""
    params = yaml.safe_load((cwd / CI_CONFIG).read_text())
    if rate_path:
        params["quant"]["bits"] = 6
        params["compress"] = {
            "scheme": "symmetric", "qat_epochs": 1, "qat_lr": 1e-4, "prune": 0.0,
        }  # fmt: skip
    params["mlflow"]["enabled"] = mlflow
    (cwd / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    use_as_params(cwd, "params.yaml")


@pytest.mark.parametrize("config", ["params.yaml", CI_CONFIG, "rate"])
def test_dvc_stages_agree_with_snakemake_jobs(wf: Path, config: str) -> None:
    if config == "rate":
        use_ci_params(wf, rate_path=True)
    else:
        use_as_params(wf, config)
    jobs = dry_run_jobs(wf)
    assert any(j.rule == "finetune" for j in jobs) == (config != CI_CONFIG)  # its paper recipe
    stages = dvc_stages(wf)
    # Snakemake's `all` is DVC's last stage, which waits for the same files and records
    # DVC's runs in Snakemake's metadata (`snakemake --touch`)
    (final,) = [j for j in jobs if j.rule == "all"]
    jobs.remove(final)
    state = stages.pop("snakemake-state")
    assert sorted(state["deps"]) == sorted(final.inputs) and not state["outs"]
    assert shlex.split(state["cmd"])[:2] == ["snakemake", "--touch"]
    assert len(stages) == len(jobs)

    # The one allowed difference: each fit's (and fine-tune's) checkpoint.pt. Snakemake does
    # not declare it (it would delete it before a rerun); DVC lists it as a cached, persisted
    # out of the fit (not deleted before a rerun), and as a dep of the stages that read it.
    # `gnerv fit --auto-resume` (in both commands) then continues a killed fit.
    persisted = {path for s in stages.values() for path in s["persist"]}
    trains = ("fit", "finetune")
    fit_dirs = {str(Path(out).parent) for j in jobs if j.rule in trains for out in j.outputs}
    assert persisted == {f"{d}/checkpoint.pt" for d in fit_dirs}
    assert not persisted & {path for j in jobs for path in (*j.inputs, *j.outputs)}
    assert not persisted & {path for s in stages.values() for path in s["uncached"]}

    def without_checkpoints(paths: list[str]) -> tuple[str, ...]:
        return tuple(sorted(set(paths) - persisted))

    by_outputs = {without_checkpoints(s["outs"]): (name, s) for name, s in stages.items()}
    cfg = yaml.safe_load((wf / "params.yaml").read_text())
    for job in jobs:
        name, stage = by_outputs.pop(tuple(sorted(job.outputs)))  # same outputs
        assert name.split("-")[0] == job.rule
        assert list(without_checkpoints(stage["deps"])) == sorted(job.inputs), name
        read = {f"{Path(p).parent}/checkpoint.pt" for p in job.inputs} & persisted
        written = {f"{Path(p).parent}/checkpoint.pt" for p in job.outputs} & persisted
        if job.rule in trains:
            assert set(stage["outs"]) & persisted == written != set(), name
        else:
            assert not set(stage["outs"]) & persisted, name
        if job.rule == "fit":
            assert "--auto-resume" in shlex.split(stage["cmd"]), name
        if job.rule in ("compress", "finetune"):
            assert set(stage["deps"]) & persisted == read != set(), name
        else:
            assert not set(stage["deps"]) & persisted, name
        assert shlex.split(stage["cmd"]) == shlex.split(LOG_SUFFIX.sub("", job.shell)), name
        # per-stage params: a job of stage j depends on entry j-1 of `stages` only
        stage_keys = {p.split(".")[1] for p in stage["params"] if p.startswith("stages.")}
        if match := re.search(r"stage(\d+)$", name):
            assert stage_keys <= {str(int(match.group(1)) - 1)}, name
        else:
            assert not stage_keys, name
        for key in stage["params"]:  # every param the stage declares exists in params.yaml
            node = cfg
            for part in key.split("."):
                node = node[int(part)] if isinstance(node, list) else node[part]
    assert not by_outputs


def test_dvc_segment_stages_agree_with_snakemake_jobs(wf: Path) -> None:
    """params.yaml with configs/segments-demo.yaml merged in: dvc.yaml spells the segmented
    run as Snakemake plans it, a stage per job with the same command. The one difference: a
    segment's stage outputs its folder (persisted, its encode resumes from it), where the
    Snakemake job declares the manifest inside it."""
    from gnerv.pipeline.params import merge

    cfg = merge(
        yaml.safe_load((wf / "params.yaml").read_text()),
        yaml.safe_load((wf / "configs/segments-demo.yaml").read_text()),
    )
    (wf / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    use_as_params(wf, "params.yaml")
    jobs = dry_run_jobs(wf)
    stages = dvc_stages(wf)
    (final,) = [j for j in jobs if j.rule == "all"]
    jobs.remove(final)
    state = stages.pop("snakemake-state")
    assert sorted(state["deps"]) == sorted(final.inputs) == sorted(
        ["results/cockatoo/segments/segments.json", "results/cockatoo/eval/segment_metrics.json",
         "results/cockatoo/mlflow_segments.json"]
    )  # fmt: skip
    assert len(stages) == len(jobs) == 4 + 3

    def folder(path: str) -> str:
        return str(Path(path).parent)

    for job in jobs:
        outputs = sorted(job.outputs)
        inputs = sorted(job.inputs)
        if job.rule == "encode_segment":
            outputs = [folder(p) for p in outputs]
        if job.rule == "gather_segments":
            inputs = sorted(folder(p) for p in inputs)
        (name,) = [n for n, s in stages.items() if s["outs"] == outputs] or [
            n for n in stages if n.startswith(f"{job.rule}-") and stages[n]["outs"] == []
        ]
        stage = stages.pop(name)
        assert name.split("-")[0] == job.rule, name
        assert stage["deps"] == inputs, name
        assert shlex.split(stage["cmd"]) == shlex.split(LOG_SUFFIX.sub("", job.shell)), name
        assert stage["persist"] == (outputs if job.rule == "encode_segment" else []), name
    assert not stages


def test_dvc_yaml_generator_refuses_bad_params(tmp_path: Path) -> None:
    bad = yaml.safe_load((ROOT / "params.yaml").read_text())
    bad["quant"]["bitz"] = 8
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    done = run(
        ROOT,
        sys.executable,
        "workflow/scripts/dvc_yaml.py",
        "--params",
        str(tmp_path / "params.yaml"),
        "--output",
        str(tmp_path / "dvc.yaml"),
    )
    assert done.returncode != 0 and "quant: Additional properties" in done.stdout
    assert not (tmp_path / "dvc.yaml").exists()


def ablation_jobs_and_stages(wf: Path) -> tuple[list[Job], dict[str, dict]]:
    """`snakemake ablations`'s jobs (less `extract`, which dvc.yaml holds) and the stages of
    the ablations' DVC file, with its `snakemake-state` checked against the `ablations` job."""
    jobs = [j for j in dry_run_jobs(wf, "ablations") if j.rule != "extract"]
    stages = dvc_stages(wf, ABLATIONS_DVC)
    (final,) = [j for j in jobs if j.rule == "ablations"]
    jobs.remove(final)
    state = stages.pop("snakemake-state")
    assert sorted(state["deps"]) == sorted(final.inputs) and not state["outs"]
    assert shlex.split(state["cmd"]) == ["snakemake", "--touch", "--cores", "1", "ablations"]
    return jobs, stages


def test_dvc_ablation_stages_agree_with_snakemake_jobs(wf: Path) -> None:
    """workflow/ablations/dvc.yaml spells `snakemake ablations` job for job: same commands,
    inputs and outputs (plus each ablation model's persisted checkpoint.pt, as in dvc.yaml,
    which the Table 4 stage reads), params that exist in params.yaml."""
    use_as_params(wf, "params.yaml")
    jobs, stages = ablation_jobs_and_stages(wf)
    assert len(stages) == len(jobs)
    persisted = {path for s in stages.values() for path in s["persist"]}
    fit_dirs = {str(Path(o).parent) for j in jobs if j.rule == "ablation_fit" for o in j.outputs}
    assert persisted == {f"{d}/checkpoint.pt" for d in fit_dirs} != set()

    def without_checkpoints(paths: list[str]) -> list[str]:
        return sorted(set(paths) - persisted)

    by_outputs = {tuple(without_checkpoints(s["outs"])): (n, s) for n, s in stages.items()}
    cfg = yaml.safe_load((wf / "params.yaml").read_text())
    for job in jobs:
        name, stage = by_outputs.pop(tuple(sorted(job.outputs)))
        assert name.split("-")[0] == job.rule
        assert without_checkpoints(stage["deps"]) == sorted(job.inputs), name
        assert shlex.split(stage["cmd"]) == shlex.split(LOG_SUFFIX.sub("", job.shell)), name
        for key in stage["params"]:
            node = cfg
            for part in key.split("."):
                node = node[int(part)] if isinstance(node, list) else node[part]
    assert not by_outputs
    # a plain `dvc repro` (dvc.yaml) is the pipeline only, as a plain `snakemake` is
    assert not set(dvc_stages(wf)) & set(stages)


def test_dvc_yaml_generator_drops_the_ablations_file_without_ablations(wf: Path) -> None:
    assert (wf / ABLATIONS_DVC).is_file()
    use_as_params(wf, CI_CONFIG)  # no `ablations:` section
    assert not (wf / ABLATIONS_DVC).exists()
    assert run(wf, sys.executable, "workflow/scripts/dvc_yaml.py", "--check").returncode == 0


@needs_cli
@pytest.mark.slow
def test_snakemake_and_dvc_share_the_ablations(wf: Path) -> None:
    """On a tiny clip: after `snakemake ablations` (which ends with `dvc commit` of the
    ablations' DVC file) `dvc repro workflow/ablations/dvc.yaml` runs nothing; a change to
    Fig. 8's stage sizes reruns exactly Fig. 8's stages under DVC, after which Snakemake plans
    nothing; dvc.yaml's own stages never ran."""
    tiny = yaml.safe_load((wf / CI_CONFIG).read_text())
    tiny["ablations"] = TINY_ABLATIONS
    (wf / "params.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    use_as_params(wf, "params.yaml")
    git_init(wf)
    _, stages = ablation_jobs_and_stages(wf)
    ok(snakemake(wf, "ablations", "--cores", "2", timeout=RUN_TIMEOUT_S))
    for path in [out for s in stages.values() for out in s["outs"]]:
        assert (wf / path).is_file(), path
    assert not ran_stages(ok(dvc(wf, "repro", ABLATIONS_DVC, timeout=RUN_TIMEOUT_S)))

    tiny["ablations"]["progressive"]["sizes"] = "6k,8k"  # the long model's size is their sum
    (wf / "params.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    use_as_params(wf, "params.yaml")
    rerun = ran_stages(ok(dvc(wf, "repro", ABLATIONS_DVC, timeout=RUN_TIMEOUT_S)))
    fig8 = ("ablation_pipeline", "ablation_long", "ablation_evaluate", "ablation_progressive")
    assert rerun == {
        f"{ABLATIONS_DVC}:{name}"
        for name in stages
        if name.startswith(fig8) or name.startswith("ablation_track")
    } | {f"{ABLATIONS_DVC}:snakemake-state"}
    assert "Nothing to be done" in ok(snakemake(wf, "-n", "ablations"))
    assert "fit-cockatoo-stage1" in ok(dvc(wf, "status", "dvc.yaml"))  # never ran


# --------------------------------------------------------------------------------------------
# End to end (tiny config): Snakemake, then DVC with a per-stage param change
# --------------------------------------------------------------------------------------------


@needs_cli
@pytest.mark.slow
def test_snakemake_end_to_end(wf: Path) -> None:
    ok(snakemake(wf, "--cores", "2", "--configfile", CI_CONFIG, timeout=RUN_TIMEOUT_S))
    results = wf / "results" / "cockatoo"
    for name in (
        "frames.npy",
        "stage1/stage1.gnerv",
        "stage2/stage2.gnerv",
        "eval/metrics.json",
        "eval/baselines.json",
        "eval/decoded.mkv",
        "eval/rd.png",
        "eval/per_frame.png",
        "eval/frames.png",
        "eval/summary.md",
        "eval/summary.json",
        "benchmarks/fit_stage1.tsv",
    ):
        assert (results / name).is_file(), name
    assert (wf / "logs" / "cockatoo" / "fit_stage2.log").is_file()
    record = json.loads((results / "mlflow_run.json").read_text())
    assert record["experiment"] == "gnerv-ci" and set(record["stage_run_ids"]) == {
        "stage1",
        "stage2",
    }
    assert "Nothing to be done" in ok(snakemake(wf, "-n", "--configfile", CI_CONFIG))
    ok(snakemake(wf, "--report", "report.html", "--configfile", CI_CONFIG))
    assert "Rate-distortion" in (wf / "report.html").read_text(errors="replace")

    # a stage-2 setting edited in its file reruns stage 2 and what follows, never extraction or
    # stage 1 (the commands read the files; each rule's `settings` holds the values it reads)
    tiny = yaml.safe_load((wf / CI_CONFIG).read_text())
    tiny["stages"][1]["residual_scale"] = 50
    (wf / CI_CONFIG).write_text(yaml.safe_dump(tiny, sort_keys=False))
    todo = dry_run_jobs(wf, "--configfile", CI_CONFIG, forceall=False)
    outputs = {out for job in todo for out in job.outputs}
    assert "results/cockatoo/stage2/residual.npy" in outputs
    assert "results/cockatoo/stage2/stage2.gnerv" in outputs
    assert "results/cockatoo/eval/metrics.json" in outputs
    for untouched in (
        "frames.npy",
        "stage1/fit.json",
        "stage1/stage1.gnerv",
        "eval/baselines.json",
    ):
        assert f"results/cockatoo/{untouched}" not in outputs, untouched


FIT1_SUMMARY = "results/cockatoo/stage1/fit.json"
FIT1_CHECKPOINT = "results/cockatoo/stage1/checkpoint.pt"
FIT1_LOG = "logs/cockatoo/fit_stage1.log"


@pytest.mark.slow
def test_rerun_fit_reuses_its_finished_checkpoint(wf: Path) -> None:
    """checkpoint.pt is not a declared output, so a rerun of the fit (here: its fit.json was
    lost) finds it, and `--auto-resume` returns at once from a finished checkpoint with the same
    settings and data: no retraining, same weights, same training time."""
    args = (FIT1_SUMMARY, "--cores", "1", "--configfile", CI_CONFIG)
    ok(snakemake(wf, *args, timeout=RUN_TIMEOUT_S))
    first = json.loads((wf / FIT1_SUMMARY).read_text())
    weights = (wf / FIT1_CHECKPOINT).read_bytes()

    (wf / FIT1_SUMMARY).unlink()
    assert "rule fit:" in ok(snakemake(wf, *args, timeout=RUN_TIMEOUT_S))
    again = json.loads((wf / FIT1_SUMMARY).read_text())
    assert (wf / FIT1_CHECKPOINT).read_bytes() == weights  # kept, and not even rewritten
    assert again["train_seconds"] == first["train_seconds"]  # a retraining would take its own
    assert again["history"] == first["history"] and again["psnr"] == first["psnr"]
    assert "starting over" not in (wf / FIT1_LOG).read_text()

    # a changed stage setting reruns the fit, and the old checkpoint no longer matches
    tiny = yaml.safe_load((wf / CI_CONFIG).read_text())
    tiny["stages"][0]["lr"] = 1.0e-3
    changed = write_overlay(wf, {"stages": tiny["stages"]})
    ok(snakemake(wf, *args, changed, timeout=RUN_TIMEOUT_S))
    assert "other settings or data, starting over" in (wf / FIT1_LOG).read_text()
    assert (wf / FIT1_CHECKPOINT).read_bytes() != weights


@pytest.mark.slow
def test_killed_fit_resumes_from_its_checkpoint(wf: Path) -> None:
    """kill -9 of Snakemake and its fit after the first checkpoint: the next run (after
    --unlock, as docs/workflow.md says) continues from that checkpoint's epoch."""
    import torch

    epochs = 60  # tiny model: well under 0.1 s an epoch; checkpoint_every is 1 in the CI config
    tiny = yaml.safe_load((wf / CI_CONFIG).read_text())
    tiny["stages"][0]["epochs"] = epochs
    overlay = write_overlay(wf, {"stages": tiny["stages"]})
    args = (FIT1_SUMMARY, "--cores", "1", "--configfile", CI_CONFIG, overlay)
    first = subprocess.Popen(
        (sys.executable, "-m", "snakemake", *args),
        cwd=wf,
        env=env(wf),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while not (wf / FIT1_CHECKPOINT).exists():
            assert first.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "the fit never wrote a checkpoint"
            time.sleep(0.02)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # Snakemake and the fit job, as a power cut would
        first.wait(timeout=LOCK_WAIT_S)
    assert not (wf / FIT1_SUMMARY).exists()
    killed = torch.load(wf / FIT1_CHECKPOINT, weights_only=True)
    assert 1 <= killed["epoch"] < epochs, "the fit finished before it could be killed"
    # Mark the checkpoint: train_seconds is not part of the settings it is matched on, so a
    # resumed fit carries this value on, while a fit that started over would count from 0.
    killed["train_seconds"] = 1e6
    torch.save(killed, wf / FIT1_CHECKPOINT)

    ok(snakemake(wf, "--unlock", *args))
    ok(snakemake(wf, *args, "--rerun-incomplete", timeout=RUN_TIMEOUT_S))
    summary = json.loads((wf / FIT1_SUMMARY).read_text())
    assert summary["train_seconds"] > 1e6, "the rerun started over instead of resuming"
    assert len(summary["history"]) == epochs
    assert summary["history"][: killed["epoch"]] == killed["history"]
    assert torch.load(wf / FIT1_CHECKPOINT, weights_only=True)["epoch"] == epochs


# What `dvc repro` reruns after stages[1].residual_scale changes: stage 2 and what follows it.
STAGE2_SCALE_RERUNS = {
    "residual-cockatoo-stage2",
    "fit-cockatoo-stage2",
    "compress-cockatoo-stage2",
    "evaluate-cockatoo",
    "decode-cockatoo",
    "report-cockatoo",
    "track-cockatoo",
    "snakemake-state",
}


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@needs_cli
@pytest.mark.slow
def test_dvc_repro_reruns_only_what_a_stage_param_touches(wf: Path) -> None:
    use_ci_params(wf, mlflow=False)
    git_init(wf)
    everything = set(dvc_stages(wf))
    assert ran_stages(ok(dvc(wf, "repro", timeout=RUN_TIMEOUT_S))) == everything
    assert "up to date" in ok(dvc(wf, "status"))

    params = yaml.safe_load((wf / "params.yaml").read_text())
    params["stages"][1]["residual_scale"] = 50
    (wf / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = ok(dvc(wf, "status"))
    assert "residual-cockatoo-stage2" in status and "stages.1.residual_scale" in status
    assert "fit-cockatoo-stage1" not in status and "extract-cockatoo" not in status
    rerun = ran_stages(ok(dvc(wf, "repro", timeout=RUN_TIMEOUT_S)))
    assert rerun == STAGE2_SCALE_RERUNS - {"track-cockatoo"}  # MLflow off

    ok(run(wf, "git", "add", "-A"))
    ok(run(wf, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "scale"))
    exp = ok(dvc(wf, "exp", "run", "-S", "quant.bits=6", timeout=RUN_TIMEOUT_S))
    assert not ran_stages(exp) & {"extract-cockatoo", "baselines-cockatoo", "fit-cockatoo-stage1"}
    assert "compress-cockatoo-stage1" in ran_stages(exp)
    assert yaml.safe_load((wf / "params.yaml").read_text())["quant"]["bits"] == 6

    metrics = json.loads(ok(dvc(wf, "metrics", "show", "--json")))
    shown = json.dumps(metrics)
    assert "results/cockatoo/eval/metrics.json" in shown
    summary = next(
        data["data"]
        for rev in metrics.values()
        for path, data in rev["data"].items()
        if path.endswith("summary.json")
    )
    assert {"psnr", "bpp"} <= set(summary)  # top-level numbers DVC lists
    written = json.loads((wf / "results/cockatoo/eval/summary.json").read_text())
    # BD figures by reference: numbers where the curves overlap (DVC lists them), else null
    assert set(written["bd_rate_percent"]) == {"x264"} == set(written["bd_psnr_db"])
    assert "not applicable" in written["ms_ssim_note"]  # 36x64 frames: below 161 px
    # the plots page is images only: it renders without the network
    ok(dvc(wf, "plots", "show", "--out", "dvc_plots"))
    page = (wf / "dvc_plots" / "index.html").read_text()
    assert "rd.png" in page and "per_frame.png" in page
    assert not re.search(r"(?:src|href)=[\"']?(?:https?:)?//", page), "the page loads from the net"

    # the persisted checkpoint survives the rerun of its stage: no retraining
    first = json.loads((wf / FIT1_SUMMARY).read_text())
    weights = (wf / FIT1_CHECKPOINT).read_bytes()
    (wf / FIT1_SUMMARY).unlink()
    rerun = ran_stages(ok(dvc(wf, "repro", "fit-cockatoo-stage1", timeout=RUN_TIMEOUT_S)))
    assert rerun == {"fit-cockatoo-stage1"}
    assert (wf / FIT1_CHECKPOINT).read_bytes() == weights
    assert json.loads((wf / FIT1_SUMMARY).read_text())["train_seconds"] == first["train_seconds"]


@needs_cli
@pytest.mark.slow
def test_snakemake_and_dvc_share_one_state(wf: Path) -> None:
    """After a Snakemake run DVC knows the outputs (the workflow ends with `dvc commit`, which
    leaves the outputs' mtimes alone), so `dvc repro` runs nothing; a param change reruns
    exactly its stages under DVC, after which Snakemake plans nothing; the default local remote
    takes `dvc push` and gives everything back with `dvc pull`."""
    use_as_params(wf, CI_CONFIG)
    git_init(wf)
    ok(snakemake(wf, "--cores", "2", timeout=RUN_TIMEOUT_S))
    assert (wf / "dvc.lock").is_file()
    assert "Nothing to be done" in ok(snakemake(wf, "-n"))
    assert not ran_stages(ok(dvc(wf, "repro", timeout=RUN_TIMEOUT_S)))
    # a comment edit of params.yaml reruns nothing, `track` included (values, not the file)
    (wf / "params.yaml").write_text((wf / "params.yaml").read_text() + "# a note\n")
    assert "Nothing to be done" in ok(snakemake(wf, "-n"))
    assert "up to date" in ok(dvc(wf, "status"))

    params = yaml.safe_load((wf / "params.yaml").read_text())
    params["stages"][1]["residual_scale"] = 50
    (wf / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(ok(dvc(wf, "repro", timeout=RUN_TIMEOUT_S))) == STAGE2_SCALE_RERUNS
    # DVC's last stage recorded the run in Snakemake's metadata: Snakemake plans nothing
    assert "Nothing to be done" in ok(snakemake(wf, "-n"))
    assert not ran_stages(ok(dvc(wf, "repro", timeout=RUN_TIMEOUT_S)))
    report = (wf / "results/cockatoo/eval/summary.md").read_text()
    assert "Parameter files (later ones override earlier): `params.yaml`" in report

    ok(dvc(wf, "push", timeout=RUN_TIMEOUT_S))
    layer = wf / "results/cockatoo/stage2/stage2.gnerv"
    digest = layer.read_bytes()
    shutil.rmtree(wf / ".dvc" / "cache")
    layer.unlink()
    ok(dvc(wf, "pull", timeout=RUN_TIMEOUT_S))
    assert layer.read_bytes() == digest


@needs_cli
@pytest.mark.slow
def test_rate_path_fine_tunes_in_a_rule_of_its_own(wf: Path) -> None:
    """A fine-tuning coding: each stage's quantization-aware fine-tune is a job of its own
    (rule finetune / DVC stage finetune-*), so a change to the compression settings reruns the
    fine-tunes and the coding but never the base stage's fit."""
    use_ci_params(wf, rate_path=True, mlflow=False)
    git_init(wf)
    ok(snakemake(wf, "--cores", "2", timeout=RUN_TIMEOUT_S))
    for j in (1, 2):
        summary = json.loads((wf / f"results/cockatoo/stage{j}/finetune/finetune.json").read_text())
        assert summary["key"]["compress"]["qat_epochs"] == 1 and summary["bits"] == 6
        assert (wf / f"results/cockatoo/stage{j}/finetune/checkpoint.pt").is_file()
        layer = (wf / f"results/cockatoo/stage{j}/stage{j}.gnerv").read_bytes()
        assert struct.unpack_from("<H", layer, 4)[0] == 5  # format 5: files with a render version
    assert not ran_stages(ok(dvc(wf, "repro", timeout=RUN_TIMEOUT_S)))
    fit1 = (wf / FIT1_CHECKPOINT).read_bytes()

    params = yaml.safe_load((wf / "params.yaml").read_text())
    params["compress"]["qat_lr"] = 2e-4
    (wf / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = ran_stages(ok(dvc(wf, "repro", timeout=RUN_TIMEOUT_S)))
    assert {"finetune-cockatoo-stage1", "compress-cockatoo-stage1"} <= rerun
    assert not rerun & {"extract-cockatoo", "fit-cockatoo-stage1", "baselines-cockatoo"}
    assert (wf / FIT1_CHECKPOINT).read_bytes() == fit1
    assert "Nothing to be done" in ok(snakemake(wf, "-n"))


@needs_cli
@pytest.mark.slow
def test_target_adds_stages_until_it_is_met(wf: Path) -> None:
    """params.yaml's `target:`: Snakemake measures each prefix (checkpoint prefix) and stops
    adding stages once the target is met; one out of reach runs every stage and says so. DVC's
    generator refuses a target (its pipelines have a fixed shape)."""
    params = yaml.safe_load((wf / CI_CONFIG).read_text())
    params["mlflow"]["enabled"] = False
    params["target"] = {"psnr": 5.0}  # any decoded prefix reaches it: stage 1 alone
    (wf / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = ok(snakemake(wf, "--cores", "2", timeout=RUN_TIMEOUT_S))
    assert "cockatoo: target 5 dB met: " in done and "after 1 stage(s)" in done
    assert (wf / "results/cockatoo/stage1/stage1.gnerv").is_file()
    assert not (wf / "results/cockatoo/stage2").exists()  # never fitted
    metrics = json.loads((wf / "results/cockatoo/eval/metrics.json").read_text())
    assert [p["stage"] for p in metrics["points"]] == [1]

    params["target"] = {"psnr": 99.0}  # out of reach: every stage, and the message says so
    (wf / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = ok(snakemake(wf, "--cores", "2", timeout=RUN_TIMEOUT_S))
    assert "cockatoo: target 99 dB NOT met: " in done and "after all 2 stage(s)" in done
    assert "add stages (entries in `stages`)" in done
    metrics = json.loads((wf / "results/cockatoo/eval/metrics.json").read_text())
    assert [p["stage"] for p in metrics["points"]] == [1, 2]

    refused = run(wf, sys.executable, "workflow/scripts/dvc_yaml.py")
    assert refused.returncode != 0 and "DVC cannot run a pipeline" in refused.stdout
