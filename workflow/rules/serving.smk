# serving (simulated): each experiment replays a trace through the discrete-event simulator under
# several policies; one job per experiment (run_<exp> / fig_<exp> from experiments.smk). Trace
# files are read from config `shared_data`; without them the experiments use generated stand-ins.
# experiment: (data files it writes, runtime minutes at ci/local/paper, mem_mb at ci/local/paper)
SV_EXPERIMENTS = {
    "serving_rate_sweep": (
        ["rates.csv", "ratios.csv"],
        (5, 10, 30),
        (1000, 2000, 4000),
    ),
    "serving_prefix_hotspots": (
        ["runs.csv", "instances.csv"],
        (5, 10, 30),
        (1000, 2000, 4000),
    ),
    "serving_autoscaling": (
        ["runs.csv", "timeline.csv", "load.csv"],
        (5, 10, 60),
        (1000, 2000, 8000),
    ),
    "serving_ablations": (["ablations.csv"], (5, 10, 60), (1000, 2000, 8000)),
}

for exp, (data_files, minutes, mem) in SV_EXPERIMENTS.items():
    EXPERIMENT_RULES[exp] = experiment_rule_spec(
        exp, "serving", data_files, minutes, mem, transform=in_shared_data
    )
