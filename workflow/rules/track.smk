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
        experiment=config["mlflow"]["experiment"],
    log:
        results.log("{video}", "track"),
    conda:
        GNERV_ENV
    shell:
        "gnerv track --video {wildcards.video} --params {input.params:q}"
        " --fits {input.fits:q} --layers {input.layers:q} --metrics {input.metrics:q}"
        " --frames-meta {input.frames_meta:q} --summary {input.summary:q}"
        " --summary-md {input.summary_md:q} --artifacts {input.artifacts:q}"
        " --experiment {params.experiment:q} -o {output.record:q} > {log:q} 2>&1"
