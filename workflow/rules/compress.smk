rule compress:
    """Quantize + entropy code a fitted stage into its .gnerv layer."""
    input:
        unpack(compress_inputs),
    output:
        bitstream=LAYER,
    params:
        params_files=params_files(),
        model_dir=lambda wildcards, input: Path(input.summary).parent,
        settings=stage_settings("compress"),
        target=compress_target_option,
    log:
        results.log("{video}", "compress_stage{stage}"),
    benchmark:
        results.benchmark("{video}", "compress_stage{stage}")
    threads: TORCH_THREADS
    resources:
        gpu=TORCH_GPUS,
    conda:
        GNERV_ENV
    shell:
        "gnerv compress {params.model_dir:q} -o {output.bitstream:q}"
        " --params {params.params_files:q} --stage {wildcards.stage}"
        " --frames-file {input.frames:q} {params.target} > {log:q} 2>&1"
