rule track:
    """Log the finished pipeline of one video to MLflow in one process: a parent run, one nested
    run per stage (params, per-epoch history, final metrics) and the report's files.

    Tracking URI: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory.
    Runs on the submitting host (localrules), which can reach the tracking store."""
    input:
        unpack(track_inputs),
    output:
        record=RUN_RECORD,
    params:
        results=lambda wildcards, output: Path(output.record).parent,
        experiment=config["mlflow"]["experiment"],
    log:
        "logs/{video}/track.log",
    conda:
        GNERV_ENV
    shell:
        "gnerv track --video {wildcards.video} --results {params.results:q}"
        " --params {input.params:q} --experiment {params.experiment:q} > {log:q} 2>&1"
