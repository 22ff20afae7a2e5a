# The ablations' settings (params.yaml's `ablations:` section) as input lists and flags for
# workflow/rules/ablations.smk; gnerv.pipeline.params.AblationPlan reads the section (dvc_yaml.py too).
# Functions only, no rules (Snakemake's linter keeps them apart).

from snakemake.exceptions import WorkflowError

from gnerv.pipeline.params import AblationPlan

# None when the parameters have no `ablations:` section (then `snakemake ablations` refuses).
ABLATIONS = AblationPlan.from_params(config)
ABLATION_FIT = results.ablation_fit("{video}", "{branch}", "{c0}", "{epochs}")


def ablation_fit_dirs(fits: list[str]) -> list[str]:
    """The `gnerv fit` folders holding these fit.json files."""
    return [str(Path(fit).parent) for fit in fits]


def ablation_time_branch_fits(wildcards) -> list[str]:
    """Table 4: a DS-only and a DS+M model per C0."""
    return ABLATIONS.time_branch_fits(wildcards.video)


def ablation_epoch_fits(wildcards) -> list[str]:
    """Fig. 7: one DS model per epoch count (separate runs, each with its own schedule)."""
    return ABLATIONS.epoch_fits(wildcards.video)


def ablation_pipeline_stages() -> int:
    return ABLATIONS.n_stages if ABLATIONS else 1


def ablation_evaluated_layers(wildcards) -> list[str]:
    if wildcards.which == "long":
        return [results.ablation_long_layer(wildcards.video)]
    return results.ablation_pipeline_layers(wildcards.video, ablation_pipeline_stages())


def ablation_targets() -> list[str]:
    """What `snakemake ablations` builds: each ablation's json, table and plot, per video."""
    if ABLATIONS is None:
        raise WorkflowError(
            "the parameters have no `ablations:` section: add one (params.yaml has the demo's, "
            "configs/paper-bunny.yaml the paper's)"
        )
    return [
        path
        for video in VIDEOS
        for path in results.ablation_final_files(video, config["mlflow"]["enabled"])
    ]
