rule compress:
    """Quantize + entropy code a fitted stage into its .gnerv layer."""
    input:
        unpack(compress_inputs),
    output:
        bitstream=LAYER,
    params:
        model_dir=lambda wildcards, input: Path(input.summary).parent,
        bits=config["quant"]["bits"],
    log:
        "logs/{video}/compress_stage{stage}.log",
    benchmark:
        "results/{video}/benchmarks/compress_stage{stage}.tsv"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    conda:
        GNERV_ENV
    shell:
        "gnerv compress {params.model_dir:q} -o {output.bitstream:q} --bits {params.bits}"
        " --frames-file {input.frames:q} > {log:q} 2>&1"
