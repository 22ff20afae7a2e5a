rule evaluate:
    """Per prefix of layers: bpp, PSNR, MS-SSIM, params, MACs and decoding speed."""
    input:
        frames=FRAMES,
        layers=all_layers,
    output:
        metrics=METRICS,
    log:
        results.log("{video}", "evaluate"),
    benchmark:
        results.benchmark("{video}", "evaluate")
    threads: TORCH_THREADS
    resources:
        gpu=TORCH_GPUS,
    conda:
        GNERV_ENV
    shell:
        "gnerv evaluate {input.frames:q} --layers {input.layers:q} -o {output.metrics:q}"
        " > {log:q} 2>&1"


rule decode:
    """All layers decoded to a lossless video, as a receiver would."""
    input:
        layers=all_layers,
    output:
        video=DECODED,
    log:
        results.log("{video}", "decode"),
    benchmark:
        results.benchmark("{video}", "decode")
    threads: TORCH_THREADS
    resources:
        gpu=TORCH_GPUS,
    conda:
        GNERV_ENV
    shell:
        "gnerv decode {input.layers:q} -o {output.video:q} > {log:q} 2>&1"
