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


# sim_validation: profile the CPU engine (http mode) → run it under a Poisson trace → simulate the same
# requests with the calibrated cost model → figure. The profile and the run each keep both cores busy
# (engine thread + HTTP loop/client), so they ask for 2 threads: with --cores 2 nothing else of the DAG
# runs beside them and the run directly follows its profile (the two are compared, so they should see the
# same machine).
SVAL = "results/serving/sim_validation"


rule serving_profile_engine:
    """Profile the CPU engine's prefill and decode steps inside its server → table + polynomial."""
    output:
        multiext(
            f"{SVAL}/profile/",
            "perf_model.csv",
            "polynomial.json",
            "groups.csv",
            "profile.json",
        ),
    log:
        "results/logs/serving/profile_engine.log",
    conda:
        "../../envs/serving.yaml"
    threads: 2
    resources:
        **cluster_resources(),
        runtime=by_scale(5, 10, 60),
        mem_mb=by_scale(2000, 3000, 4000),
    params:
        size=SCALE,
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "
        "python -m serving.validation.profile --mode http --model-config tiny --threads 1 --max-batch 16"
        " --max-model-len 8192 --size {params.size} --no-progress --out {params.out} > {log} 2>&1"


rule serving_bench_engine:
    """Start the engine with the profile's settings, measure saturation, replay a Poisson trace at 0.55 μ, stop it."""
    input:
        rules.serving_profile_engine.output,
    output:
        multiext(
            f"{SVAL}/bench/",
            "requests.csv",
            "metrics.json",
            "run.json",
            "engine_stats.json",
            "trace.csv",
        ),
    log:
        "results/logs/serving/bench_engine.log",
    conda:
        "../../envs/serving.yaml"
    threads: 2
    resources:
        **cluster_resources(),
        runtime=by_scale(5, 10, 60),
        mem_mb=by_scale(2000, 3000, 4000),
    params:
        profile=lambda w, input: os.path.dirname(input[0]),
        size=SCALE,
        fraction=lambda w: experiment_params("sim_validation_run")["rate_fraction"],
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        "python -m serving.validation.run --profile-dir {params.profile} --size {params.size}"
        " --rate-fraction {params.fraction} --no-progress --out {params.out} > {log} 2>&1"


rule run_sim_validation:
    """Simulate the measured requests with the calibrated cost model; compare; claims."""
    input:
        profile=f"{SVAL}/profile/profile.json",
        bench=f"{SVAL}/bench/metrics.json",
    output:
        multiext(
            f"{SVAL}/",
            "requests.csv",
            "latencies.csv",
            "medians.csv",
            "variants.csv",
            "profile_holdout.csv",
            "summary.json",
            "provenance.json",
        ),
    log:
        "results/logs/serving/run_sim_validation.log",
    conda:
        "../../envs/serving.yaml"
    threads: 1
    resources:
        **cluster_resources(),
        runtime=by_scale(5, 10, 30),
        mem_mb=by_scale(1000, 2000, 4000),
    params:
        config=lambda w, input: json.dumps(
            {
                **experiment_params("sim_validation"),
                "profile_dir": os.path.dirname(input.profile),
                "bench_dir": os.path.dirname(input.bench),
            },
            sort_keys=True,
        ),
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        THREADS_ENV
        + "python -m serving run sim_validation --config {params.config:q} --out {params.out} > {log} 2>&1"


rule fig_sim_validation:
    input:
        rules.run_sim_validation.output,
    output:
        png=report(
            f"{SVAL}/figure.png",
            caption="../report/sim_validation.rst",
            category="serving",
        ),
        pdf=f"{SVAL}/figure.pdf",
    log:
        "results/logs/serving/fig_sim_validation.log",
    conda:
        "../../envs/serving.yaml"
    threads: 1
    resources:
        **cluster_resources(),
        runtime=10,
        mem_mb=1000,
    params:
        data=lambda w, input: os.path.dirname(input[0]),
        prefix=lambda w, output: os.path.splitext(output.png)[0],
    shell:
        "python -m serving plot sim_validation --data {params.data} --out {params.prefix} > {log} 2>&1"


FIGURES.append(rules.fig_sim_validation.output.png)
SUMMARIES.append(f"{SVAL}/summary.json")
