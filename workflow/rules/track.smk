rule track:
    """Complete the MLflow runs of one video's finished pipeline: the pipeline run and one
    nested run per stage (the fits opened them and logged each epoch live; `track` adds the
    final metrics, the report's files, and makes the runs of fits that were not tracked).
    Running it again updates the same runs.

    Tracking URI: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the repository root.
    Runs on the submitting host (localrules), which can reach the tracking store. Reruns when
    a parameter value it logs changes (`values`), not when a parameter file is touched."""
    input:
        unpack(track_inputs),
    output:
        record=RUN_RECORD,
    params:
        params_files=params_files(),
        values=track_values,
    log:
        results.log("{video}", "track"),
    conda:
        GNERV_ENV
    shell:
        "gnerv track --video {wildcards.video} --params {params.params_files:q}"
        " --fits {input.fits:q} --layers {input.layers:q} --metrics {input.metrics:q}"
        " --frames-meta {input.frames_meta:q} --summary {input.summary:q}"
        " --summary-md {input.summary_md:q} --artifacts {input.artifacts:q}"
        " -o {output.record:q} > {log:q} 2>&1"
