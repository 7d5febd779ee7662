# fulcrum — one DAG over four packages. Run from the repository root:
#   snakemake --cores 2 all                   local scale (default), offline
#   snakemake --cores 2 all --config scale=ci  seconds; what the tests run
#   snakemake --cores 2 fig_sgd_bias_variance  one figure and only its inputs
#   snakemake --profile slurm all             on a Slurm cluster (see README)
#   snakemake --report results/report.html    every figure with its caption
import os

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


validate(config, "workflow/schemas/config.schema.yaml")


# common.smk puts the interpreter running snakemake first on PATH for the jobs.
envvars:
    "PATH",


include: "workflow/rules/common.smk"
include: "workflow/rules/optim_theory.smk"
include: "workflow/rules/seesaw_train.smk"
include: "workflow/rules/serving.smk"
include: "workflow/rules/serving_vllm.smk"
include: "workflow/rules/diffusion.smk"
include: "workflow/rules/experiments.smk"


localrules:
    all,
    claims,


rule all:
    default_target: True
    input:
        FIGURES,
        LEDGER,


rule claims:
    """The claims ledger: every experiment's claim records, verdicts recomputed."""
    input:
        SUMMARIES,
    output:
        md="results/claims.md",
        csv=report(
            "results/claims.csv",
            caption="workflow/report/claims.rst",
            category="Claims ledger",
        ),
    log:
        "results/logs/claims.log",
    conda:
        "envs/fulcrum_core.yaml"
    threads: 1
    resources:
        **cluster_resources(),
        runtime=5,
        mem_mb=500,
    shell:
        "python -m fulcrum_core claims --md {output.md} --csv {output.csv} {input} > {log} 2>&1"
