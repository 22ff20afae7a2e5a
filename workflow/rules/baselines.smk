rule baselines:
    """x264/x265 rate-distortion points of the same frames, measured with our metrics."""
    input:
        frames=FRAMES,
    output:
        points=BASELINES,
    params:
        codecs=config["eval"]["codecs"],
        crf=config["eval"]["crf"],
        preset=config["eval"]["preset"],
    log:
        results.log("{video}", "baselines"),
    benchmark:
        results.benchmark("{video}", "baselines")
    conda:
        GNERV_ENV
    shell:
        "gnerv baselines {input.frames:q} --codecs {params.codecs} --crf {params.crf}"
        " --preset {params.preset} -o {output.points:q} > {log:q} 2>&1"
