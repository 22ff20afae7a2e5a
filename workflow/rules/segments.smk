# Long videos as segments (params.yaml's `segments:` section): one `gnerv encode --segment I`
# job per segment, then `gnerv gather` writes the index. common.smk holds the plan (SEGMENTS,
# from gnerv.pipeline.params.SegmentPlan); gnerv.pipeline.results names the files.


rule encode_segment:
    """Encode one segment of the video as a video of its own: its frames read from the clip
    (the extract section's range, resize and stride), the stages' sizes scaled by its share of
    the frames. Segments are independent jobs: a workstation runs as many side by side as its
    cores allow, a cluster spreads them over nodes."""
    input:
        video=lambda wildcards: config["videos"][wildcards.video],
    output:
        manifest=SEGMENT_MANIFEST,
    params:
        folder=results.segments_dir("{video}"),
        index=lambda wildcards: int(wildcards.segment),
        frames=config["extract"]["frames"],
        stride=config["extract"]["stride"],
        resize=config["extract"]["resize"],
        flags=lambda wildcards: " ".join(SEGMENTS.encode_flags()),
        params_files=params_files(),
        settings=lambda wildcards: command_settings(config, "encode", 1),
    log:
        results.log("{video}", "encode_segment{segment}"),
    benchmark:
        results.benchmark("{video}", "encode_segment{segment}")
    wildcard_constraints:
        segment=r"[0-9]{3,6}",
    threads: FIT_THREADS
    resources:
        gpu=TORCH_GPUS,
    conda:
        GNERV_ENV
    shell:
        "gnerv encode {input.video:q} -o {params.folder:q} --frames {params.frames}"
        " --stride {params.stride} --resize {params.resize} {params.flags}"
        " --segment {params.index} --params {params.params_files:q} --stage 1"
        " --auto-resume --quiet > {log:q} 2>&1"


rule gather_segments:
    """Check that the segments tile the video and write its index (the decoder's entry)."""
    input:
        segment_manifests,
    output:
        index=results.segment_index("{video}"),
    params:
        folder=results.segments_dir("{video}"),
    log:
        results.log("{video}", "gather_segments"),
    conda:
        GNERV_ENV
    shell:
        "gnerv gather {params.folder:q} > {log:q} 2>&1"


rule evaluate_segments:
    """The whole video's bpp, PSNR and MS-SSIM per prefix of stages, and each segment's own:
    the segments decoded one at a time against the clip's frames, read one segment at a time."""
    input:
        video=lambda wildcards: config["videos"][wildcards.video],
        index=results.segment_index("{video}"),
    output:
        metrics=results.segment_metrics("{video}"),
    params:
        folder=lambda wildcards, input: str(Path(input.index).parent),
        frames=config["extract"]["frames"],
        stride=config["extract"]["stride"],
        resize=config["extract"]["resize"],
    log:
        results.log("{video}", "evaluate_segments"),
    benchmark:
        results.benchmark("{video}", "evaluate_segments")
    threads: TORCH_THREADS
    resources:
        gpu=TORCH_GPUS,
    conda:
        GNERV_ENV
    shell:
        "gnerv evaluate {input.video:q} --segments {params.folder:q} --frames {params.frames}"
        " --stride {params.stride} --resize {params.resize} -o {output.metrics:q}"
        " > {log:q} 2>&1"


rule track_segments:
    """One MLflow parent run for the segmented video (the whole video's figures per prefix of
    stages) with a nested run per segment. Runs on the submitting host (localrules)."""
    input:
        metrics=results.segment_metrics("{video}"),
        index=results.segment_index("{video}"),
    output:
        record=results.segment_run_record("{video}"),
    params:
        params_files=params_files(),
    log:
        results.log("{video}", "track_segments"),
    conda:
        GNERV_ENV
    shell:
        "gnerv track-segments --video {wildcards.video} --params {params.params_files:q}"
        " --metrics {input.metrics:q} --index {input.index:q} -o {output.record:q}"
        " > {log:q} 2>&1"
