# optim_theory: exact numerics for linear/logistic regression theory (CPU only).
# Its experiments' run_<exp> / fig_<exp> rules are made by experiments.smk from this table:
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
    EXPERIMENT_RULES[exp] = experiment_rule_spec(
        exp, "optim_theory", data_files, minutes, mem
    )
