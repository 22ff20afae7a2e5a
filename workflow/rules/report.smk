rule report:
    """R-D plot against the baselines, per-frame PSNR, sample frames, BD-rate summary."""
    input:
        metrics=METRICS,
        baselines=BASELINES,
        frames=FRAMES,
    output:
        rd=report(
            REPORT_FILES["rd"],
            caption="../report/rd.rst",
            category="Rate-distortion",
            labels={"video": "{video}", "figure": "R-D curve"},
        ),
        per_frame=report(
            REPORT_FILES["per_frame"],
            caption="../report/per_frame.rst",
            category="Per-frame quality",
            labels={"video": "{video}", "figure": "PSNR per frame"},
        ),
        frames=report(
            REPORT_FILES["frames"],
            caption="../report/frames.rst",
            category="Sample frames",
            labels={"video": "{video}", "figure": "original and decoded frames"},
        ),
        summary_md=REPORT_FILES["summary_md"],
        summary_json=REPORT_FILES["summary_json"],
    params:
        outdir=lambda wildcards, output: f"{Path(output.rd).parent}/",
        params_files=params_files(),
    log:
        results.log("{video}", "report"),
    benchmark:
        results.benchmark("{video}", "report")
    conda:
        GNERV_ENV
    shell:
        "gnerv report --metrics {input.metrics:q} --baselines {input.baselines:q}"
        " --frames-file {input.frames:q} -o {params.outdir:q}"
        " --params {params.params_files:q} > {log:q} 2>&1"
