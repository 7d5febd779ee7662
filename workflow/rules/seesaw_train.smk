# seesaw_train: data preparation → one rule job per training run → figure aggregation.
# Every training run is its own job (a GPU job on a cluster at paper scale), resumable from its
# last checkpoint (--resume auto); a figure's run_<exp> rule reads the finished runs.
ST = "results/seesaw_train"
SEESAW_GPU = SCALE == "paper"


SEESAW_RUNS = {exp: seesaw_runs(exp) for exp in ("seesaw_cbs",)}


wildcard_constraints:
    exp="seesaw_[a-z_]+",
    run="[A-Za-z0-9_.]+",


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
        f"{ST}/{{exp}}/runs/{{run}}/run.json",
    log:
        f"results/logs/seesaw_train/{{exp}}/{{run}}.log",
    conda:
        "../../envs/seesaw_train.yaml"
    threads: by_scale(1, 1, 8)
    resources:
        **cluster_resources(gpu=SEESAW_GPU),
        runtime=by_scale(5, 30, 24 * 60),
        mem_mb=by_scale(2000, 4000, 64000),
    params:
        config=lambda w: json.dumps(SEESAW_RUNS[w.exp][w.run], sort_keys=True),
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        THREADS_ENV
        + "python -m seesaw_train.train --config {params.config:q} --out {params.out}"
        " --resume auto > {log} 2>&1"


for exp, data_files in {"seesaw_cbs": ["curves.csv", "finals.csv"]}.items():

    rule:
        name:
            f"run_{exp}"
        input:
            [f"{ST}/{exp}/runs/{run}/run.json" for run in SEESAW_RUNS[exp]],
        output:
            multiext(f"{ST}/{exp}/", *data_files, "summary.json", "provenance.json"),
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
            config=seesaw_aggregate_config(exp, SEESAW_RUNS[exp]),
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
