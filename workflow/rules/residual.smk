rule residual:
    """Stage j >= 2's target: residual_scale * (frames - decoded stages 1..j-1)."""
    input:
        frames=FRAMES,
        layers=earlier_layers,
    output:
        residual=RESIDUAL,
        sidecar=RESIDUAL_META,
    params:
        params_files=params_files(),
        settings=stage_settings("residual"),
    log:
        results.log("{video}", "residual_stage{stage}"),
    benchmark:
        results.benchmark("{video}", "residual_stage{stage}")
    wildcard_constraints:
        stage=r"[2-9]|[1-9][0-9]+",
    threads: TORCH_THREADS
    resources:
        gpu=TORCH_GPUS,
    conda:
        GNERV_ENV
    shell:
        "gnerv residual {input.frames:q} --layers {input.layers:q}"
        " --params {params.params_files:q} --stage {wildcards.stage}"
        " -o {output.residual:q} > {log:q} 2>&1"
