# optim_theory: exact numerics for linear/logistic regression theory (CPU only).
OT = "results/optim_theory"


rule run_sgd_bias_variance:
    """2506.15535: exact SGD bias/variance vs N, with a Monte-Carlo check."""
    output:
        multiext(
            f"{OT}/sgd_bias_variance/",
            "curves.csv",
            "mc.csv",
            "summary.json",
            "provenance.json",
        ),
    log:
        "results/logs/optim_theory/run_sgd_bias_variance.log",
    conda:
        "../../envs/optim_theory.yaml"
    threads: 1
    resources:
        **cluster_resources(),
        runtime=by_scale(5, 20, 120),
        mem_mb=by_scale(1000, 2000, 8000),
    params:
        config=experiment_config("sgd_bias_variance"),
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        THREADS_ENV
        + "python -m optim_theory run sgd_bias_variance --config {params.config:q}"
        " --out {params.out} > {log} 2>&1"


rule fig_sgd_bias_variance:
    """Figure: bias/variance vs N (tail average, last iterate) and exact vs Monte Carlo."""
    input:
        rules.run_sgd_bias_variance.output,
    output:
        png=report(
            f"{OT}/sgd_bias_variance/figure.png",
            caption="../report/sgd_bias_variance.rst",
            category="optim_theory",
        ),
        pdf=f"{OT}/sgd_bias_variance/figure.pdf",
    log:
        "results/logs/optim_theory/fig_sgd_bias_variance.log",
    conda:
        "../../envs/optim_theory.yaml"
    threads: 1
    resources:
        **cluster_resources(),
        runtime=10,
        mem_mb=1000,
    params:
        data=lambda w, input: os.path.dirname(input[0]),
        prefix=lambda w, output: os.path.splitext(output.png)[0],
    shell:
        THREADS_ENV
        + "python -m optim_theory plot sgd_bias_variance --data {params.data}"
        " --out {params.prefix} > {log} 2>&1"


FIGURES += rules.fig_sgd_bias_variance.output
SUMMARIES.append(f"{OT}/sgd_bias_variance/summary.json")
