rule fit:
    """Fit one stage's network: stage 1 to the frames, stage j >= 2 to the scaled residual.

    `gnerv fit` reads this stage's settings from the parameter files itself (--params, --stage);
    the `settings` param holds the same values so that Snakemake reruns the job when one of
    them changes, and only then: changing another stage's settings does not retrain this one.

    The training state, checkpoint.pt, is written beside fit.json but deliberately NOT declared
    as an output: Snakemake deletes a job's declared outputs before it reruns and after it fails,
    which would throw away the epochs a killed fit had done. With `--auto-resume` the rerun
    continues from that checkpoint when it was written with the same settings and target bytes
    (a finished one returns at once), and starts over otherwise. Downstream rules take fit.json,
    which `gnerv fit` writes last, as the sign that the checkpoint beside it is complete.

    With mlflow.enabled the fit logs each epoch into its MLflow run as it trains (--track; the
    run's id is kept beside the checkpoint in mlflow.json, so a resumed fit continues it)."""
    input:
        unpack(fit_inputs),
    output:
        summary=FIT_SUMMARY,
    params:
        params_files=params_files(),
        outdir=lambda wildcards, output: Path(output.summary).parent,
        settings=stage_settings("fit"),
        track=track_flag,
    log:
        results.log("{video}", "fit_stage{stage}"),
    benchmark:
        results.benchmark("{video}", "fit_stage{stage}")
    threads: FIT_THREADS
    resources:
        gpu=TORCH_GPUS,
    conda:
        GNERV_ENV
    shell:
        "gnerv fit {input.target:q} -o {params.outdir:q}"
        " --params {params.params_files:q} --stage {wildcards.stage}"
        " --auto-resume --quiet {params.track} > {log:q} 2>&1"
