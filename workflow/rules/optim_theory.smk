# optim_theory: exact numerics for linear/logistic regression theory (CPU only).
# Each experiment gets a run_<exp> rule (data + summary.json + provenance.json) and a
# wildcard-free fig_<exp> rule (figure.png/pdf, in the report with workflow/report/<exp>.rst).
OT = "results/optim_theory"

# experiment: (data files it writes, runtime minutes at ci/local/paper, mem_mb at ci/local/paper)
OT_EXPERIMENTS = {
    "sgd_bias_variance": (["curves.csv", "mc.csv"], (5, 20, 120), (1000, 2000, 8000)),
    "seesaw_linreg": (
        ["curves.csv", "schedules.csv", "mc.csv"],
        (5, 15, 120),
        (1000, 2000, 8000),
    ),
    "multipass_scaling": (
        ["by_m.csv", "by_n.csv", "by_l.csv", "mc.csv"],
        (5, 15, 60),
        (1000, 2000, 4000),
    ),
    "gd_ridge_sgd": (["instances.csv", "curves.csv"], (5, 15, 180), (1000, 2000, 4000)),
    "logreg_large_stepsize": (
        ["steps.csv", "optimum.csv", "trajectories.csv", "heatmap.csv"],
        (5, 10, 30),
        (1000, 2000, 2000),
    ),
    "logreg_adaptive": (
        ["separation.csv", "burn_in.csv", "risk.csv"],
        (5, 10, 30),
        (1000, 2000, 2000),
    ),
}

for exp, (data_files, minutes, mem) in OT_EXPERIMENTS.items():

    rule:
        name:
            f"run_{exp}"
        output:
            multiext(f"{OT}/{exp}/", *data_files, "summary.json", "provenance.json"),
        log:
            f"results/logs/optim_theory/run_{exp}.log",
        conda:
            "../../envs/optim_theory.yaml"
        threads: 1
        resources:
            **cluster_resources(),
            runtime=by_scale(*minutes),
            mem_mb=by_scale(*mem),
        params:
            experiment=exp,
            config=experiment_config(exp),
            out=lambda w, output: os.path.dirname(output[0]),
        shell:
            THREADS_ENV
            + "python -m optim_theory run {params.experiment} --config {params.config:q}"
            " --out {params.out} > {log} 2>&1"

    rule:
        name:
            f"fig_{exp}"
        input:
            getattr(rules, f"run_{exp}").output,
        output:
            png=report(
                f"{OT}/{exp}/figure.png",
                caption=f"../report/{exp}.rst",
                category="optim_theory",
            ),
            pdf=f"{OT}/{exp}/figure.pdf",
        log:
            f"results/logs/optim_theory/fig_{exp}.log",
        conda:
            "../../envs/optim_theory.yaml"
        threads: 1
        resources:
            **cluster_resources(),
            runtime=10,
            mem_mb=1000,
        params:
            experiment=exp,
            data=lambda w, input: os.path.dirname(input[0]),
            prefix=lambda w, output: os.path.splitext(output.png)[0],
        shell:
            THREADS_ENV
            + "python -m optim_theory plot {params.experiment} --data {params.data}"
            " --out {params.prefix} > {log} 2>&1"

    FIGURES.extend(getattr(rules, f"fig_{exp}").output)
    SUMMARIES.append(f"{OT}/{exp}/summary.json")
