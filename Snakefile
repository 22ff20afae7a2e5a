# GNeRV workflow: extract -> fit stage 1 -> compress -> (residual -> fit -> compress) per further
# stage -> evaluate, decode, baselines -> report -> track. Each rule calls the `gnerv` CLI; every
# tunable comes from params.yaml (and any --configfile merged into it) through `params:`.
#
#   snakemake --cores all                              # the default demo (params.yaml)
#   snakemake --cores all --resources gpu=1            # workstation with one GPU
#   snakemake --cores all --configfile configs/paper-bunny.yaml
#   snakemake --profile workflow/profiles/slurm        # cluster
#   snakemake --report report.html                     # after a run
#
# See docs/workflow.md.

import subprocess

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("8.0")


# params.yaml holds every default. Snakemake merges a --configfile into it key by key (lists such
# as `stages` are replaced whole); a `videos` mapping given there replaces params.yaml's instead of
# adding to it, so `--configfile configs/paper-bunny.yaml` runs Bunny only.
configfile: "params.yaml"


if "videos" in workflow.config_settings.overwrite_config:
    config["videos"] = workflow.config_settings.overwrite_config["videos"]


# The gnerv commands read their settings from the parameter files (--params), which a
# --config KEY=VALUE would not reach.
if workflow.config_settings.config:
    raise WorkflowError(
        "--config KEY=VALUE is not supported: the gnerv commands read their settings from the "
        "parameter files, so put the values in a file and pass it with --configfile FILE"
    )


validate(config, "workflow/schemas/params.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/compress.smk"
include: "workflow/rules/target.smk"
include: "workflow/rules/residual.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/track.smk"
include: "workflow/rules/segments.smk"
include: "workflow/rules/ablations_common.smk"
include: "workflow/rules/ablations.smk"


report: "workflow/report/workflow.rst"


wildcard_constraints:
    video=VIDEO_PATTERN,
    stage=r"[1-9][0-9]*",


localrules:
    all,
    gather_segments,
    track_segments,
    track,
    ablations,
    ablation_track,


rule all:
    input:
        final_targets,
    default_target: True


# On a cluster: stop before submitting a job that no node of its partition can take.
# (Raised here: Snakemake reports an error raised inside an included file's function badly.)
onstart:
    if cluster_problems():
        raise WorkflowError(
            "the cluster cannot run these jobs as the profile sizes them:\n  "
            + "\n  ".join(cluster_problems())
        )


# One state for DVC and Snakemake: after a successful run, dvc.lock records the outputs (see
# dvc_commit_command in workflow/rules/common.smk), so `dvc repro` reruns nothing.
onsuccess:
    for line in target_messages():
        print(line)
    if dvc_commit_command():
        if subprocess.run(dvc_commit_command(), shell=True).returncode != 0:
            print("dvc commit failed: run `dvc commit --force` after a full run of the pipeline")
