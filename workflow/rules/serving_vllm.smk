# serving_vllm: a real vLLM server on a GPU node (issue 7 part 4). Never installed or run by CI; the
# plan is dry-run tested under the slurm profile.
#
# Included by the Snakefile; never part of `all` unless `serving_vllm: enabled: true` at paper
# scale. Settings: the `serving_vllm:` block of config/config.yaml (schema in workflow/schemas). Run
# at paper scale on a GPU partition, e.g.
#     snakemake --profile slurm --sdm conda --config scale=paper -- fig_sim_validation_vllm vllm_bench_pd
#
# Rules:
#   vllm_profile            the simulator's Splitwise table + DistServe polynomial for (model, GPU, tp),
#                           measured on a real `vllm serve` (python -m serving.validation.profile --mode client)
#   vllm_bench              colocated vLLM: saturation burst, then a trace at a fraction of it, replayed with
#                           `python -m serving bench` (python -m serving.validation.run --server-command ...)
#   vllm_bench_pd           the same against a prefill/decode pair joined by a KV connector behind vLLM's
#                           P/D proxy (NixlConnector by default; LMCache as a configured alternative)
#   run_sim_validation_vllm the sim_validation experiment on vllm_profile + vllm_bench (CPU job)
#   fig_sim_validation_vllm its figure
#
# Server lifecycle: every GPU rule starts the server itself, on the node it runs on, through the Python
# driver's --server-command ('{port}' is filled with a free loopback port). The driver waits for the
# readiness endpoint (GET /health; the toy P/D proxy has GET /healthcheck), runs its measurements, and
# stops the server by signalling the server's own process group (SIGINT, SIGKILL after 30 s; vLLM's
# engine-core and worker processes are in that group), also when the measurement fails — a failed job
# never leaves a GPU server behind. Model weights must be reachable from the node (HF cache or a local
# path in `model`); nothing here downloads at ci/local scale, because these rules run only at paper scale.
#
# vLLM flags (checked against the vLLM documentation, 2025):
#   --kv-transfer-config '{"kv_connector":"NixlConnector","kv_role":"kv_both"}' on both the prefill and the
#   decode instance, VLLM_NIXL_SIDE_CHANNEL_PORT distinct per instance on one host, and a proxy that sends
#   each request to the prefiller with max_tokens 1 and then streams it from the decoder:
#   tests/v1/kv_connector/nixl_integration/toy_proxy_server.py --port P --prefiller-hosts H --prefiller-ports PP
#   --decoder-hosts H --decoder-ports DP  (https://docs.vllm.ai/en/latest/features/nixl_connector_usage.html;
#   https://docs.vllm.ai/en/latest/features/disagg_prefill.html). The proxy is not in the vllm wheel: it
#   comes from a vLLM source checkout (`vllm_repo`), of the same version as the installed vllm.
#   LMCache (https://docs.vllm.ai/en/latest/examples/disaggregated/lmcache/): connector LMCacheConnectorV1
#   with kv_role kv_producer (prefill) / kv_consumer (decode) and an LMCACHE_CONFIG_FILE per role; set
#   `kv_transfer_prefill`, `kv_transfer_decode` and `kv_env_prefill`/`kv_env_decode` accordingly and verify
#   the keys against the installed LMCache version (its disaggregation config changed between releases).
SVLLM = "results/serving/vllm"


rule vllm_profile:
    """Profile a real vLLM server into the simulator's table (Splitwise schema) and polynomial."""
    output:
        multiext(
            f"{SVLLM}/profile/",
            "perf_model.csv",
            "polynomial.json",
            "groups.csv",
            "profile.json",
        ),
    log:
        "results/logs/serving/vllm_profile.log",
    conda:
        "../../envs/serving.yaml"
    threads: 8
    resources:
        **cluster_resources(gpu=True, gpus=config["serving_vllm"]["tp"]),
        runtime=by_scale(10, 30, 120),
        mem_mb=by_scale(16000, 32000, 64000),
    params:
        server=lambda w: vllm_serve_command(),  # a function: '{port}' is not a wildcard
        size=SCALE,
        out=lambda w, output: os.path.dirname(output[0]),
        v=config["serving_vllm"],
    shell:
        "python -m serving.validation.profile --mode client --server-command {params.server:q}"
        " --model-name {params.v[model_spec]} --hardware {params.v[gpu]} --tp {params.v[tp]}"
        " --max-batch {params.v[profile_batch]} --max-model-len {params.v[max_model_len]}"
        " --startup-timeout-s {params.v[startup_timeout_s]} --size {params.size} --no-progress"
        " --out {params.out} > {log} 2>&1"


rule vllm_bench:
    """Colocated vLLM: start it, measure saturation with a burst, replay the trace at rate_fraction × μ, stop it."""
    output:
        multiext(
            f"{SVLLM}/colocated/",
            "requests.csv",
            "metrics.json",
            "run.json",
            "trace.csv",
        ),
    log:
        "results/logs/serving/vllm_bench.log",
    conda:
        "../../envs/serving.yaml"
    threads: 8
    resources:
        **cluster_resources(gpu=True, gpus=config["serving_vllm"]["tp"]),
        runtime=by_scale(10, 30, 180),
        mem_mb=by_scale(16000, 32000, 64000),
    params:
        server=lambda w: vllm_serve_command(),  # a function: '{port}' is not a wildcard
        workload=vllm_trace_args(),
        out=lambda w, output: os.path.dirname(output[0]),
        v=config["serving_vllm"],
    shell:
        "python -m serving.validation.run --server-command {params.server:q}"
        " --max-model-len {params.v[max_model_len]} --startup-timeout-s {params.v[startup_timeout_s]}"
        " --timeout-s 1800 {params.workload} --no-progress --out {params.out} > {log} 2>&1"


rule vllm_bench_pd:
    """Prefill/decode-disaggregated vLLM (2 × tp GPUs on one node: the first tp of the job's GPUs prefill, the
    next tp decode) joined by the configured KV connector, behind vLLM's toy P/D proxy; same workload.
    """
    output:
        multiext(
            f"{SVLLM}/pd/", "requests.csv", "metrics.json", "run.json", "trace.csv"
        ),
    log:
        "results/logs/serving/vllm_bench_pd.log",
    conda:
        "../../envs/serving.yaml"
    threads: 8
    resources:
        **cluster_resources(gpu=True, gpus=2 * config["serving_vllm"]["tp"]),
        runtime=by_scale(10, 30, 180),
        mem_mb=by_scale(32000, 64000, 128000),
    params:
        serve=lambda w: vllm_serve_command(port="PORT_ROLE"),
        launcher=os.path.join(
            workflow.basedir, "workflow", "scripts", "vllm_pd_launch.sh"
        ),
        workload=vllm_trace_args(),
        out=lambda w, output: os.path.dirname(output[0]),
        v=config["serving_vllm"],
    shell:
        "test -f {params.v[vllm_repo]}/tests/v1/kv_connector/nixl_integration/toy_proxy_server.py"
        " || {{ echo 'serving_vllm.vllm_repo must be a vLLM source checkout (the P/D proxy is not in the wheel)'"
        " > {log}; exit 2; }}; "
        "TP={params.v[tp]} SERVE={params.serve:q} VLLM_REPO={params.v[vllm_repo]:q}"
        " KV_PREFILL={params.v[kv_transfer_prefill]:q} KV_DECODE={params.v[kv_transfer_decode]:q}"
        " KV_ENV_PREFILL={params.v[kv_env_prefill]:q} KV_ENV_DECODE={params.v[kv_env_decode]:q}"
        " python -m serving.validation.run"
        " --server-command 'bash {params.launcher} {{port}}'"
        " --health-path /healthcheck --served-model {params.v[model]}"
        " --max-model-len {params.v[max_model_len]} --startup-timeout-s {params.v[startup_timeout_s]}"
        " --timeout-s 1800 {params.workload} --no-progress --out {params.out} > {log} 2>&1"


rule run_sim_validation_vllm:
    """The simulator, calibrated on vllm_profile, against the colocated vLLM run (vllm policy, chunked prefill)."""
    input:
        profile=f"{SVLLM}/profile/profile.json",
        bench=f"{SVLLM}/colocated/metrics.json",
    output:
        multiext(
            f"{SVLLM}/sim_validation/",
            "requests.csv",
            "latencies.csv",
            "medians.csv",
            "variants.csv",
            "profile_holdout.csv",
            "summary.json",
            "provenance.json",
        ),
    log:
        "results/logs/serving/run_sim_validation_vllm.log",
    conda:
        "../../envs/serving.yaml"
    threads: 1
    resources:
        **cluster_resources(),
        runtime=30,
        mem_mb=4000,
    params:
        config=lambda w, input: json.dumps(
            {
                **experiment_params("sim_validation"),
                "profile_dir": os.path.dirname(input.profile),
                "bench_dir": os.path.dirname(input.bench),
                "frontend": True,
                "sim": {
                    **config["serving_vllm"]["sim"],
                    "max_num_seqs": config["serving_vllm"]["max_num_seqs"],
                    "max_num_batched_tokens": config["serving_vllm"][
                        "max_num_batched_tokens"
                    ],
                },
            },
            sort_keys=True,
        ),
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        f"{THREADS_ENV}python -m serving run sim_validation --config {{params.config:q}}"
        " --out {params.out} > {log} 2>&1"


rule fig_sim_validation_vllm:
    input:
        rules.run_sim_validation_vllm.output,
    output:
        png=report(
            f"{SVLLM}/sim_validation/figure.png",
            caption="../report/sim_validation.rst",
            category="serving",
        ),
        pdf=f"{SVLLM}/sim_validation/figure.pdf",
    log:
        "results/logs/serving/fig_sim_validation_vllm.log",
    conda:
        "../../envs/serving.yaml"
    threads: 1
    resources:
        **cluster_resources(),
        runtime=10,
        mem_mb=2000,
    params:
        data=lambda w, input: os.path.dirname(input[0]),
        prefix=lambda w, output: os.path.splitext(output.png)[0],
    shell:
        "python -m serving plot sim_validation --data {params.data} --out {params.prefix} > {log} 2>&1"


if config["serving_vllm"]["enabled"] and SCALE == "paper":
    FIGURES.append(rules.fig_sim_validation_vllm.output.png)
    SUMMARIES.append(f"{SVLLM}/sim_validation/summary.json")
