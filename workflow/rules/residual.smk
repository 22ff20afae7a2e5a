rule residual:
    """Stage j >= 2's target: residual_scale * (frames - decoded stages 1..j-1)."""
    input:
        frames=FRAMES,
        layers=earlier_layers,
    output:
        residual="results/{video}/stage{stage}/residual.npy",
        sidecar="results/{video}/stage{stage}/residual.json",
    params:
        scale=lambda wildcards: stage_entry(wildcards)["residual_scale"],
    log:
        "logs/{video}/residual_stage{stage}.log",
    benchmark:
        "results/{video}/benchmarks/residual_stage{stage}.tsv"
    wildcard_constraints:
        stage=r"[2-9]|[1-9][0-9]+",
    threads: TORCH_THREADS
    resources:
        gpu=1,
    conda:
        GNERV_ENV
    shell:
        "gnerv residual {input.frames:q} --layers {input.layers:q} --scale {params.scale}"
        " -o {output.residual:q} > {log:q} 2>&1"
