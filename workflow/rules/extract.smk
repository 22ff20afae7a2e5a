rule extract:
    """Decode the video's frame range into frames.npy (+ frames.json: fps, source, size)."""
    input:
        video=lambda wildcards: config["videos"][wildcards.video],
    output:
        frames=FRAMES,
        meta=FRAMES_META,
    params:
        frames=config["extract"]["frames"],
        stride=config["extract"]["stride"],
        resize=config["extract"]["resize"],
    log:
        results.log("{video}", "extract"),
    benchmark:
        results.benchmark("{video}", "extract")
    conda:
        GNERV_ENV
    shell:
        "gnerv extract {input.video:q} -o {output.frames:q} --frames {params.frames}"
        " --stride {params.stride} --resize {params.resize} > {log:q} 2>&1"
