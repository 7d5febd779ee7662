# diffusion: collapse errors of deterministic samplers (2508.16154). Each experiment is one job
# (run_<exp> / fig_<exp> from experiments.smk) that trains its denoisers with Lightning into
# results/diffusion/<exp>/train (checkpoints there, so a rerun resumes or reuses them) and then
# samples and measures. GPU-capable: at the scales in `cluster: gpu_scales` (paper: CIFAR-10 +
# UNet) the job asks Slurm for a GPU and `accelerator: auto` picks it up.
# experiment: (data files it writes, runtime minutes at ci/local/paper, mem_mb at ci/local/paper)
DF_EXPERIMENTS = {
    "collapse_samplers": (
        [
            "metrics.csv",
            "intervals.csv",
            "differences.csv",
            "scatter.csv",
            "training.csv",
        ],
        (5, 15, 12 * 60),
        (2000, 4000, 32000),
    ),
    "collapse_mitigation": (
        [
            "samples_metrics.csv",
            "intervals.csv",
            "effects.csv",
            "sigma_error.csv",
            "scatter.csv",
        ],
        (5, 15, 24 * 60),
        (2000, 4000, 32000),
    ),
    "seesaw_noise": (
        ["per_sigma.csv", "ratios.csv", "bands.csv", "history.csv", "trends.csv"],
        (5, 15, 24 * 60),
        (2000, 4000, 32000),
    ),
}

for exp, (data_files, minutes, mem) in DF_EXPERIMENTS.items():
    EXPERIMENT_RULES[exp] = experiment_rule_spec(
        exp,
        "diffusion",
        data_files,
        minutes,
        mem,
        threads=(1, 1, 4),
        gpu=True,
        extra={
            "train_dir": f"results/diffusion/{exp}/train",
            "threads": by_scale(1, 1, 4),
            "progress_bar": False,
        },
    )
