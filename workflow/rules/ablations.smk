# The paper's ablations (section 4.3), built by `snakemake ablations` only (not part of `all`):
# Table 4 (time branch), Fig. 7 (epochs), Fig. 8 (progressive against one model). Settings from
# params.yaml's `ablations:` section; each model also takes the model and train sections and
# stage 1's lr and alpha (--params ... --stage 1), its own size and epochs by flag.


rule ablation_fit:
    """One ablation model: time branch, C0 and epochs from the path."""
    input:
        frames=FRAMES,
    output:
        summary=ABLATION_FIT,
    params:
        params_files=params_files(),
        outdir=lambda wildcards, output: Path(output.summary).parent,
        settings=lambda wildcards: command_settings(config, "fit", 1),
    log:
        results.log("{video}", "ablation_fit_{branch}_c{c0}_e{epochs}"),
    wildcard_constraints:
        branch=r"ds|m|ds\+m",
        c0=r"[1-9][0-9]*",
        epochs=r"[1-9][0-9]*",
    threads: FIT_THREADS
    resources:
        gpu=TORCH_GPUS,
    conda:
        GNERV_ENV
    shell:
        "gnerv fit {input.frames:q} -o {params.outdir:q} --params {params.params_files:q}"
        " --stage 1 --c0 {wildcards.c0} --epochs {wildcards.epochs}"
        " --time-branch {wildcards.branch} --auto-resume --quiet > {log:q} 2>&1"


rule ablation_time_branch:
    """Table 4: DS-only against DS+M, the latter directly, with M masked and with DS masked."""
    input:
        frames=FRAMES,
        fits=ablation_time_branch_fits,
    output:
        **results.ablation_files("{video}", "time_branch"),
    params:
        fit_dirs=lambda wildcards, input: ablation_fit_dirs(input.fits),
    log:
        results.log("{video}", "ablation_time_branch"),
    threads: TORCH_THREADS
    conda:
        GNERV_ENV
    shell:
        "gnerv ablation time-branch {input.frames:q} --fits {params.fit_dirs:q}"
        " -o {output.json:q} > {log:q} 2>&1"


rule ablation_epochs:
    """Fig. 7: PSNR against training epochs, one run per epoch count."""
    input:
        fits=ablation_epoch_fits,
    output:
        **results.ablation_files("{video}", "epochs"),
    params:
        fit_dirs=lambda wildcards, input: ablation_fit_dirs(input.fits),
    log:
        results.log("{video}", "ablation_epochs"),
    conda:
        GNERV_ENV
    shell:
        "gnerv ablation epochs --fits {params.fit_dirs:q} -o {output.json:q} > {log:q} 2>&1"


rule ablation_pipeline:
    """Fig. 8's progressive pipeline, fitted and coded in one `gnerv encode --stages N`."""
    input:
        video=lambda wildcards: config["videos"][wildcards.video],
    output:
        layers=results.ablation_pipeline_layers("{video}", ablation_pipeline_stages()),
    params:
        params_files=params_files(),
        outdir=lambda wildcards, output: Path(output.layers[0]).parent,
        stages=ablation_pipeline_stages(),
        sizes=",".join(ABLATIONS.stage_sizes) if ABLATIONS else "",
        epochs=",".join(map(str, ABLATIONS.stage_epochs)) if ABLATIONS else "",
        extract=config["extract"],
        settings=lambda wildcards: command_settings(config, "fit", 1),
    log:
        results.log("{video}", "ablation_pipeline"),
    threads: FIT_THREADS
    resources:
        gpu=TORCH_GPUS,
    conda:
        GNERV_ENV
    shell:
        "gnerv encode {input.video:q} -o {params.outdir:q} --stages {params.stages}"
        " --stage-sizes {params.sizes} --stage-epochs {params.epochs}"
        " --frames {params.extract[frames]} --stride {params.extract[stride]}"
        " --resize {params.extract[resize]} --params {params.params_files:q} --stage 1"
        " --auto-resume --quiet > {log:q} 2>&1"


rule ablation_long:
    """Fig. 8's rival: one model of the pipeline's total parameters, trained its total epochs."""
    input:
        video=lambda wildcards: config["videos"][wildcards.video],
    output:
        layer=results.ablation_long_layer("{video}"),
    params:
        params_files=params_files(),
        size=ABLATIONS.long_size if ABLATIONS else 0,
        epochs=ABLATIONS.long_epochs if ABLATIONS else 0,
        extract=config["extract"],
        settings=lambda wildcards: command_settings(config, "fit", 1),
    log:
        results.log("{video}", "ablation_long"),
    threads: FIT_THREADS
    resources:
        gpu=TORCH_GPUS,
    conda:
        GNERV_ENV
    shell:
        "gnerv encode {input.video:q} -o {output.layer:q} --size {params.size}"
        " --epochs {params.epochs} --frames {params.extract[frames]}"
        " --stride {params.extract[stride]} --resize {params.extract[resize]}"
        " --params {params.params_files:q} --stage 1 --auto-resume --quiet > {log:q} 2>&1"


rule ablation_evaluate:
    """Decoded PSNR and bpp of Fig. 8's pipeline (each prefix) or of its one model."""
    input:
        frames=FRAMES,
        layers=ablation_evaluated_layers,
    output:
        metrics=results.ablation_metrics("{video}", "{which}"),
    log:
        results.log("{video}", "ablation_evaluate_{which}"),
    wildcard_constraints:
        which="pipeline|long",
    threads: TORCH_THREADS
    conda:
        GNERV_ENV
    shell:
        "gnerv evaluate {input.frames:q} --layers {input.layers:q} -o {output.metrics:q}"
        " --label {wildcards.which} > {log:q} 2>&1"


rule ablation_progressive:
    """Fig. 8: the pipeline's PSNR after each stage against the one model's."""
    input:
        pipeline=results.ablation_metrics("{video}", "pipeline"),
        long=results.ablation_metrics("{video}", "long"),
    output:
        **results.ablation_files("{video}", "progressive"),
    log:
        results.log("{video}", "ablation_progressive"),
    conda:
        GNERV_ENV
    shell:
        "gnerv ablation progressive --pipeline {input.pipeline:q} --long {input.long:q}"
        " -o {output.json:q} > {log:q} 2>&1"


rule ablation_track:
    """The ablations of one video into MLflow, a run each (params, per-row metrics, the table
    as the note, json/md/png as artifacts); running it again updates the same runs. On the
    submitting host (localrules), like `track`."""
    input:
        results=lambda wildcards: [
            results.ablation_files(wildcards.video, name)["json"]
            for name in results.ABLATION_NAMES
        ],
    output:
        record=results.ablation_run_record("{video}"),
    params:
        params_files=params_files(),
        values=lambda wildcards: {
            key: config.get(key) for key in ("ablations", "model", "train", "extract", "mlflow")
        },
    log:
        results.log("{video}", "ablation_track"),
    conda:
        GNERV_ENV
    shell:
        "gnerv track-ablations --video {wildcards.video} --params {params.params_files:q}"
        " --results {input.results:q} -o {output.record:q} > {log:q} 2>&1"


rule ablations:
    """Target: every ablation of every video (`snakemake ablations --cores all`)."""
    input:
        lambda wildcards: ablation_targets(),
