rule fit:
    """Fit one stage's network: stage 1 to the frames, stage j >= 2 to the scaled residual.

    Only this stage's entry of `stages` is a parameter here, so changing another stage's
    settings does not retrain this one.

    The training state, checkpoint.pt, is written beside fit.json but deliberately NOT declared
    as an output: Snakemake deletes a job's declared outputs before it reruns and after it fails,
    which would throw away the epochs a killed fit had done. With `--auto-resume` the rerun
    continues from that checkpoint when it was written with the same settings and target bytes
    (a finished one returns at once), and starts over otherwise. Downstream rules take fit.json,
    which `gnerv fit` writes last, as the sign that the checkpoint beside it is complete."""
    input:
        unpack(fit_inputs),
    output:
        summary=FIT_SUMMARY,
    params:
        outdir=lambda wildcards, output: Path(output.summary).parent,
        size=size_flag,
        epochs=lambda wildcards: stage_entry(wildcards)["epochs"],
        lr=lambda wildcards: stage_entry(wildcards)["lr"],
        alpha=lambda wildcards: stage_entry(wildcards)["alpha"],
        batch=config["train"]["batch"],
        warmup=config["train"]["warmup"],
        distortion=config["train"]["distortion"],
        seed=config["train"]["seed"],
        device=config["train"]["device"],
        checkpoint_every=config["train"]["checkpoint_every"],
        upscale_factors=config["model"]["upscale_factors"],
        min_channels=config["model"]["min_channels"],
        pe_base=config["model"]["pe_base"],
        pe_levels=config["model"]["pe_levels"],
        ds_hidden=config["model"]["ds_hidden"],
        kernel_size=config["model"]["kernel_size"],
    log:
        "logs/{video}/fit_stage{stage}.log",
    benchmark:
        "results/{video}/benchmarks/fit_stage{stage}.tsv"
    threads: FIT_THREADS
    resources:
        gpu=1,
    conda:
        GNERV_ENV
    shell:
        "gnerv fit {input.target:q} -o {params.outdir:q} {params.size}"
        " --epochs {params.epochs} --batch {params.batch} --lr {params.lr}"
        " --warmup {params.warmup} --alpha {params.alpha} --distortion {params.distortion}"
        " --seed {params.seed} --device {params.device}"
        " --checkpoint-every {params.checkpoint_every}"
        " --upscale-factors {params.upscale_factors} --min-channels {params.min_channels}"
        " --pe-base {params.pe_base} --pe-levels {params.pe_levels}"
        " --ds-hidden {params.ds_hidden} --kernel-size {params.kernel_size}"
        " --auto-resume --quiet > {log:q} 2>&1"
