checkpoint prefix:
    """With a `target:` (params.yaml): layers 1..stage decoded and measured (PSNR, bpp from the
    files' sizes) by `gnerv evaluate`; gnerv.encoder.target.decide reads them to choose whether the
    pipeline adds stage + 1 (used_stages in common.smk). A checkpoint: the jobs after it are
    planned only once it has run."""
    input:
        frames=FRAMES,
        layers=prefix_layers,
    output:
        metrics=PREFIX_METRICS,
    log:
        results.log("{video}", "prefix_stage{stage}"),
    benchmark:
        results.benchmark("{video}", "prefix_stage{stage}")
    threads: TORCH_THREADS
    resources:
        gpu=TORCH_GPUS,
    conda:
        GNERV_ENV
    shell:
        "gnerv evaluate {input.frames:q} --layers {input.layers:q} -o {output.metrics:q}"
        " > {log:q} 2>&1"
