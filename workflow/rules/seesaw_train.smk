# seesaw_train: data preparation → one job per training run → figure aggregation.
# A training run is named by its whole config (see seesaw_run_name in common.smk), so figures
# that need the same run share it; every run is its own job (a GPU job at the scales in config
# `cluster: gpu_scales`, paper by default) and resumes from its last checkpoint (--resume auto).
# fig_seesaw_vs_cosine picks the best cosine LR from a grid first (a checkpoint rule), then
# trains its comparison runs at that LR.
ST = "results/seesaw_train"


wildcard_constraints:
    run="[A-Za-z0-9_.-]+",


rule seesaw_prepare_data:
    """Corpus (stdlib source at ci/local, C4 at paper) → BPE/T5 tokenizer → uint16 token shards."""
    output:
        multiext(f"{ST}/data/", "train.bin", "val.bin", "meta.json", "tokenizer.json"),
    log:
        "results/logs/seesaw_train/prepare_data.log",
    conda:
        "../../envs/seesaw_train.yaml"
    threads: 1
    resources:
        **cluster_resources(),
        runtime=by_scale(5, 20, 240),
        mem_mb=by_scale(2000, 4000, 16000),
    params:
        config=experiment_config("seesaw_data"),
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        f"{THREADS_ENV}python -m seesaw_train.data.prepare"
        " --config {params.config:q} --out {params.out} > {log} 2>&1"


rule seesaw_train_run:
    """One training run (Lightning); resumes from its last checkpoint if one exists."""
    input:
        rules.seesaw_prepare_data.output,
    output:
        f"{ST}/runs/{{run}}/run.json",
    log:
        "results/logs/seesaw_train/runs/{run}.log",
    conda:
        "../../envs/seesaw_train.yaml"
    threads: by_scale(1, 1, 8)
    resources:
        **cluster_resources(gpu=True),
        runtime=by_scale(5, 30, 24 * 60),
        mem_mb=by_scale(2000, 4000, 64000),
    params:
        config=lambda w: json.dumps(seesaw_run_config(w.run), sort_keys=True),
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        f"{THREADS_ENV}python -m seesaw_train.train"
        " --config {params.config:q} --out {params.out} --resume auto > {log} 2>&1"


checkpoint seesaw_vs_cosine_best_lr:
    """The cosine LR grid's best peak LR (lowest final validation loss)."""
    input:
        [f"{ST}/runs/{r}/run.json" for r in seesaw_runs("seesaw_vs_cosine")],
    output:
        f"{ST}/seesaw_vs_cosine/best_lr.json",
    log:
        "results/logs/seesaw_train/seesaw_vs_cosine_best_lr.log",
    conda:
        "../../envs/seesaw_train.yaml"
    threads: 1
    resources:
        **cluster_resources(),
        runtime=5,
        mem_mb=1000,
    params:
        runs=lambda w, input: [os.path.dirname(p) for p in input],
    shell:
        "python -m seesaw_train.experiments.select_lr --out {output} {params.runs} > {log} 2>&1"


SEESAW_FIGURES = {
    "seesaw_cbs": {
        "data": ["curves.csv", "finals.csv"],
        "runs": lambda w: seesaw_runs("seesaw_cbs"),
        "config": lambda w: seesaw_aggregate_config(
            "seesaw_cbs", seesaw_runs("seesaw_cbs")
        ),
    },
    "seesaw_vs_cosine": {
        "data": ["curves.csv", "finals.csv", "lr_grid.csv"],
        "runs": seesaw_vs_cosine_runs,
        "config": lambda w: seesaw_aggregate_config(
            "seesaw_vs_cosine",
            seesaw_vs_cosine_runs(),
            lr_grid_runs={r: f"{ST}/runs/{r}" for r in seesaw_runs("seesaw_vs_cosine")},
        ),
    },
    "seesaw_alpha_beta": {
        "data": ["curves.csv", "finals.csv"],
        "runs": seesaw_alpha_beta_runs,
        "config": lambda w: seesaw_aggregate_config(
            "seesaw_alpha_beta", seesaw_alpha_beta_runs()
        ),
    },
    "seesaw_large_batch": {
        "data": ["curves.csv", "finals.csv"],
        "runs": lambda w: seesaw_runs("seesaw_large_batch"),
        "extra": [f"{ST}/seesaw_cbs/summary.json"],
        "config": lambda w: seesaw_aggregate_config(
            "seesaw_large_batch",
            seesaw_runs("seesaw_large_batch"),
            cbs_summary=f"{ST}/seesaw_cbs/summary.json",
        ),
    },
}

for exp, spec in SEESAW_FIGURES.items():

    rule:
        name:
            f"run_{exp}"
        input:
            lambda w, spec=spec: [f"{ST}/runs/{r}/run.json" for r in spec["runs"](w)]
            + spec.get("extra", []),
        output:
            multiext(f"{ST}/{exp}/", *spec["data"], "summary.json", "provenance.json"),
        log:
            f"results/logs/seesaw_train/run_{exp}.log",
        conda:
            "../../envs/seesaw_train.yaml"
        threads: 1
        resources:
            **cluster_resources(),
            runtime=10,
            mem_mb=2000,
        params:
            experiment=exp,
            config=spec["config"],
            out=lambda w, output: os.path.dirname(output[0]),
        shell:
            THREADS_ENV
            + "python -m seesaw_train run {params.experiment} --config {params.config:q}"
            " --out {params.out} > {log} 2>&1"

    rule:
        name:
            f"fig_{exp}"
        input:
            getattr(rules, f"run_{exp}").output,
        output:
            png=report(
                f"{ST}/{exp}/figure.png",
                caption=f"../report/{exp}.rst",
                category="seesaw_train",
            ),
            pdf=f"{ST}/{exp}/figure.pdf",
        log:
            f"results/logs/seesaw_train/fig_{exp}.log",
        conda:
            "../../envs/seesaw_train.yaml"
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
            + "python -m seesaw_train plot {params.experiment} --data {params.data}"
            " --out {params.prefix} > {log} 2>&1"

    FIGURES.extend(getattr(rules, f"fig_{exp}").output)
    SUMMARIES.append(f"{ST}/{exp}/summary.json")
