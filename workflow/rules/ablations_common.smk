# The ablations' settings (params.yaml's `ablations:` section) as input lists and flags for
# workflow/rules/ablations.smk. Functions only, no rules (Snakemake's linter keeps them apart).

from snakemake.exceptions import WorkflowError

# None when the parameters have no `ablations:` section (then `snakemake ablations` refuses).
ABLATIONS = config.get("ablations")
ABLATION_FIT = results.ablation_fit("{video}", "{branch}", "{c0}", "{epochs}")
# Table 4 compares these two models at each C0.
ABLATION_BRANCHES = ("ds", "ds+m")


def ablation_values(section: str, key: str) -> list[str]:
    """One comma-string setting of the `ablations:` section as a list."""
    return str(ABLATIONS[section][key]).replace(" ", "").split(",")


def ablation_fit_dirs(fits: list[str]) -> list[str]:
    """The `gnerv fit` folders holding these fit.json files."""
    return [str(Path(fit).parent) for fit in fits]


def ablation_time_branch_fits(wildcards) -> list[str]:
    """Table 4: a DS-only and a DS+M model per C0."""
    epochs = ABLATIONS["time_branch"]["epochs"]
    return [
        ABLATION_FIT.format(video=wildcards.video, branch=branch, c0=c0, epochs=epochs)
        for c0 in ablation_values("time_branch", "c0")
        for branch in ABLATION_BRANCHES
    ]


def ablation_epoch_fits(wildcards) -> list[str]:
    """Fig. 7: one DS model per epoch count (separate runs, each with its own schedule)."""
    c0 = ABLATIONS["epochs"]["c0"]
    return [
        ABLATION_FIT.format(video=wildcards.video, branch="ds", c0=c0, epochs=epochs)
        for epochs in ablation_values("epochs", "values")
    ]


def ablation_pipeline_stages() -> int:
    return len(ablation_values("progressive", "sizes")) if ABLATIONS else 1


def ablation_long_size() -> int:
    """Fig. 8's one model: the pipeline's stage sizes added up (parameters)."""
    return round(sum(param_count(size) for size in ablation_values("progressive", "sizes")))


def ablation_long_epochs() -> int:
    """... trained for the pipeline's epochs added up."""
    return sum(int(epochs) for epochs in ablation_values("progressive", "epochs"))


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
    targets = [
        path
        for video in VIDEOS
        for name in results.ABLATION_NAMES
        for path in results.ablation_files(video, name).values()
    ]
    if config["mlflow"]["enabled"]:  # each ablation also as an MLflow run
        targets += [results.ablation_run_record(video) for video in VIDEOS]
    return targets
