# The run_<exp> / fig_<exp> rule pair of every experiment that is one job (optim_theory, diffusion,
# serving; seesaw_train's figures aggregate training runs and have their own rules). The package
# rule files fill EXPERIMENT_RULES (see experiment_rule_spec in common.smk); run_<exp> writes the
# data + summary.json + provenance.json, the wildcard-free fig_<exp> draws figure.png/pdf, which
# goes in the report with workflow/report/<exp>.rst.
for exp, spec in EXPERIMENT_RULES.items():

    rule:
        name:
            f"run_{exp}"
        output:
            multiext(
                f"results/{spec['package']}/{exp}/",
                *spec["data"],
                "summary.json",
                "provenance.json",
            ),
        log:
            f"results/logs/{spec['package']}/run_{exp}.log",
        conda:
            f"../../envs/{spec['package']}.yaml"
        threads: spec["threads"]
        resources:
            **cluster_resources(gpu=spec["gpu"]),
            runtime=spec["runtime"],
            mem_mb=spec["mem_mb"],
        params:
            package=spec["package"],
            experiment=exp,
            config=spec["config"],
            out=lambda w, output: os.path.dirname(output[0]),
        shell:
            THREADS_ENV
            + "python -m {params.package} run {params.experiment} --config {params.config:q}"
            " --out {params.out} > {log} 2>&1"

    rule:
        name:
            f"fig_{exp}"
        input:
            getattr(rules, f"run_{exp}").output,
        output:
            png=report(
                f"results/{spec['package']}/{exp}/figure.png",
                caption=f"../report/{exp}.rst",
                category=spec["package"],
            ),
            pdf=f"results/{spec['package']}/{exp}/figure.pdf",
        log:
            f"results/logs/{spec['package']}/fig_{exp}.log",
        conda:
            f"../../envs/{spec['package']}.yaml"
        threads: 1
        resources:
            **cluster_resources(),
            runtime=10,
            mem_mb=1000,
        params:
            package=spec["package"],
            experiment=exp,
            data=lambda w, input: os.path.dirname(input[0]),
            prefix=lambda w, output: os.path.splitext(output.png)[0],
        shell:
            THREADS_ENV
            + "python -m {params.package} plot {params.experiment} --data {params.data}"
            " --out {params.prefix} > {log} 2>&1"

    FIGURES.extend(getattr(rules, f"fig_{exp}").output)
    SUMMARIES.append(f"results/{spec['package']}/{exp}/summary.json")
