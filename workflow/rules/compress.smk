rule finetune:
    """Fine-tune a fitted stage with the quantizer in the loop (compress.qat_epochs > 0, after
    bits auto's allocation and pruning): a training step, so GPU when present and resumable.

    As in rule fit, the fine-tune's checkpoint.pt is not declared (Snakemake would delete it
    before a rerun); finetune.json, written last, is the sign that it is complete. Rule
    compress then finds it finished (same settings, same fitted model) and codes it without
    training, so a change to the coding alone retrains nothing, and one to the fine-tune's
    settings reruns the fine-tune but never the fit."""
    input:
        unpack(finetune_inputs),
    output:
        summary=FINETUNE_SUMMARY,
    params:
        params_files=params_files(),
        model_dir=lambda wildcards, input: Path(input.summary).parent,
        outdir=lambda wildcards, output: Path(output.summary).parent,
        settings=stage_settings("compress"),
        target=target_option,
    log:
        results.log("{video}", "finetune_stage{stage}"),
    benchmark:
        results.benchmark("{video}", "finetune_stage{stage}")
    threads: FIT_THREADS
    resources:
        gpu=TORCH_GPUS,
    conda:
        GNERV_ENV
    shell:
        "gnerv finetune {params.model_dir:q} -o {params.outdir:q}"
        " --params {params.params_files:q} --stage {wildcards.stage}"
        " --frames-file {input.frames:q} {params.target} --quiet > {log:q} 2>&1"


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
        target=target_option,
        finetune=finetune_option,
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
        " --frames-file {input.frames:q} {params.target} {params.finetune} > {log:q} 2>&1"
