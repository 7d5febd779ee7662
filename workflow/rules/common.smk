# Helpers shared by every .smk file: scale lookup, experiment configs, cluster resources.
import copy
import json
import os
import sys
from pathlib import Path

import yaml

SCALE = config["scale"]
SCALE_FILE = Path(workflow.basedir) / "config" / "scale" / f"{SCALE}.yaml"
if not SCALE_FILE.is_file():
    raise WorkflowError(f"scale {SCALE!r}: no scale file {SCALE_FILE}")
try:
    SCALE_CONFIG = yaml.safe_load(SCALE_FILE.read_text()) or {}
    validate(SCALE_CONFIG, "../schemas/scale.schema.yaml")
except (yaml.YAMLError, WorkflowError) as exc:
    raise WorkflowError(f"in {SCALE_FILE}:\n{exc}")

# Jobs call `python -m <package>`: make that the interpreter running snakemake (the project's
# .venv) even when the venv is not activated. Under --sdm conda, conda's activation comes first.
os.environ["PATH"] = os.pathsep.join(
    [os.path.dirname(sys.executable), os.environ.get("PATH", "")]
)

# Registries that the per-package .smk files fill; `all` wants every figure, `claims` every summary.
FIGURES = []
SUMMARIES = []
EXPERIMENT_RULES = (
    {}
)  # filled by the package rule files, turned into rules by experiments.smk
LEDGER = ["results/claims.md", "results/claims.csv"]

# Thread caps for the numerical libraries, so --cores bounds the real CPU use.
THREADS_ENV = (
    "OMP_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
    "NUMBA_NUM_THREADS={threads} RAYON_NUM_THREADS={threads} "
)


def _merge(base, override):
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def experiment_params(name):
    """Parameters of one experiment at the current scale (the scale file's sizes win)."""
    return _merge(config["experiments"].get(name, {}), SCALE_CONFIG.get(name, {}))


def experiment_config(name):
    """The same, as inline JSON for `--config`."""
    return json.dumps(experiment_params(name), sort_keys=True)


def experiment_rule_spec(
    exp,
    package,
    data,
    minutes,
    mem,
    threads=(1, 1, 1),
    gpu=False,
    transform=None,
    extra=None,
):
    """Settings of one experiment's run_/fig_ pair — the data files it writes, runtime minutes and
    mem_mb at ci/local/paper, threads at ci/local/paper, whether it can use a GPU (asked for at
    the scales in `cluster: gpu_scales`), and config keys the workflow adds (e.g. a train_dir).
    """
    return {
        "package": package,
        "data": list(data),
        "runtime": by_scale(*minutes),
        "mem_mb": by_scale(*mem),
        "threads": by_scale(*threads),
        "gpu": gpu,
        "config": json.dumps(
            {**(transform or (lambda p: p))(experiment_params(exp)), **(extra or {})},
            sort_keys=True,
        ),
    }


def in_shared_data(params):
    """Trace specs with `kind: file` name their path relative to config `shared_data` (an
    absolute path is kept); returns a copy with those paths joined."""
    if isinstance(params, list):
        return [in_shared_data(v) for v in params]
    if not isinstance(params, dict):
        return params
    out = {k: in_shared_data(v) for k, v in params.items()}
    if out.get("kind") == "file" and out.get("path"):
        out["path"] = os.path.join(config["shared_data"], out["path"])
    return out


def by_scale(ci, local, paper):
    """A per-scale value, e.g. runtime minutes: runtime=by_scale(5, 30, 240)."""
    return {"ci": ci, "local": local, "paper": paper}[SCALE]


def cluster_resources(gpu=False, gpus=1):
    """Slurm partition/account from config `cluster:` (only the keys that are set).

    gpu=True: the rule can use GPUs; it asks Slurm for `gpus` of them (and the gpu_partition) at
    the scales listed in `cluster: gpu_scales` (default: paper only)."""
    cl = config["cluster"]
    gpu = gpu and SCALE in cl["gpu_scales"]
    res = {}
    partition = cl["gpu_partition"] if gpu and cl["gpu_partition"] else cl["partition"]
    if partition:
        res["slurm_partition"] = partition
    if cl["account"]:
        res["slurm_account"] = cl["account"]
    if gpu:
        res["gpu"] = gpus
    return res


# ---------------------------------------------------------------- seesaw_train runs
def seesaw_training_base():
    """Training settings shared by every run; a BPE tokenizer trained here sets the model's
    vocabulary (the paper shapes already carry T5's)."""
    base = experiment_params("seesaw_training")
    tokenizer = experiment_params("seesaw_data").get("tokenizer", {})
    if tokenizer.get("kind", "bpe") == "bpe":
        vocab = tokenizer.get("vocab_size", 4096)
        base["model_overrides"] = {
            **base.get("model_overrides", {}),
            "vocab_size": vocab,
        }
    base["data_dir"] = "results/seesaw_train/data"
    return base


SEESAW_SCHEDULE_KEYS = {"f": "f", "a": "alpha", "b": "beta"}


def seesaw_run_name(schedule, batch, lr, seed, **params):
    """Run names carry the whole run config, so equal runs are shared between figures.

    ``cosine_B8_lr0.003_s0``; schedule parameters join the schedule: ``seesaw-f0.5-a1.68179-b1.41421``.
    """
    tag = "".join(
        f"-{k}{params[v]:.6g}" for k, v in SEESAW_SCHEDULE_KEYS.items() if v in params
    )
    return f"{schedule}{tag}_B{batch}_lr{lr:g}_s{seed}"


def seesaw_run_config(name):
    """Training config of a run name made by :func:`seesaw_run_name`."""
    try:
        sched, batch, lr, seed = name.rsplit("_", 3)  # schedule names may hold "_"
        schedule, *tags = sched.split("-")
        params = {SEESAW_SCHEDULE_KEYS[t[0]]: float(t[1:]) for t in tags}
        overrides = {
            "schedule": schedule,
            "schedule_params": params,
            "batch_size": int(batch.removeprefix("B")),
            "peak_lr": float(lr.removeprefix("lr")),
            "seed": int(seed.removeprefix("s")),
        }
    except (ValueError, KeyError) as exc:
        raise WorkflowError(f"cannot parse training-run name {name!r}: {exc}")
    return {**seesaw_training_base(), **overrides}


def seesaw_runs(exp):
    """Run names of one figure experiment (those that do not wait on the LR grid)."""
    e = experiment_params(exp)
    lr = seesaw_training_base()["peak_lr"]
    if exp == "seesaw_cbs":
        return [
            seesaw_run_name("cosine", b, lr, s)
            for b in e["batch_sizes"]
            for s in e["seeds"]
        ]
    if (
        exp == "seesaw_vs_cosine"
    ):  # the LR grid; the comparison runs follow the checkpoint
        return [
            seesaw_run_name("cosine", min(e["batch_sizes"]), g, 0) for g in e["lr_grid"]
        ]
    if exp == "seesaw_large_batch":  # at the CBS ladder's LR: its cosine run is shared
        return [
            seesaw_run_name(schedule, e["batch_size"], lr, s)
            for schedule in ("cosine", "constant_ramp", "seesaw")
            for s in e["seeds"]
        ]
    raise WorkflowError(f"no run list for {exp!r}")


def seesaw_aggregate_config(exp, runs, **extra):
    """Config of a figure's aggregation step: run folders and the figure's own settings."""
    own = {
        k: v
        for k, v in experiment_params(exp).items()
        if k in ("tolerance", "loss_tolerance", "alpha_sqrt_beta", "min_cbs_multiple")
    }
    folders = {r: f"results/seesaw_train/runs/{r}" for r in runs}
    return json.dumps({"runs": folders, **own, **extra}, sort_keys=True)


def seesaw_best_lr():
    """The best peak LR of fig_seesaw_vs_cosine's cosine grid (waits on its checkpoint)."""
    path = checkpoints.seesaw_vs_cosine_best_lr.get().output[0]
    return json.loads(Path(path).read_text())["best_lr"]


def seesaw_vs_cosine_runs(wildcards=None):
    """Cosine and Seesaw at the grid's best LR, for every batch size and seed."""
    best = seesaw_best_lr()
    e = experiment_params("seesaw_vs_cosine")
    return [
        seesaw_run_name(schedule, b, best, s)
        for b in e["batch_sizes"]
        for s in e["seeds"]
        for schedule in ("cosine", "seesaw")
    ]


def seesaw_alpha_beta_runs(wildcards=None):
    """The α√β = c family at cosine's halving points (f = 1/2), α = 2^e for each exponent e and
    β = (c/α)², plus cosine, all at the grid's best LR."""
    best = seesaw_best_lr()
    e = experiment_params("seesaw_alpha_beta")
    c = e["alpha_sqrt_beta"]
    family = [
        seesaw_run_name(
            "seesaw",
            e["batch_size"],
            best,
            e["seed"],
            f=0.5,
            alpha=2**x,
            beta=(c / 2**x) ** 2,
        )
        for x in e["log2_alpha"]
    ]
    return family + [seesaw_run_name("cosine", e["batch_size"], best, e["seed"])]


# --- serving_vllm.smk: the `vllm serve` command line and workload of the cluster rules
def vllm_serve_command(port="{port}", extra=""):
    """`vllm serve ...` with the configured engine settings; '{port}' is filled in by the driver."""
    v = config["serving_vllm"]
    return (
        f"vllm serve {v['model']} --host 127.0.0.1 --port {port}"
        f" --tensor-parallel-size {v['tp']} --max-num-seqs {v['max_num_seqs']}"
        f" --max-num-batched-tokens {v['max_num_batched_tokens']} --max-model-len {v['max_model_len']}"
        f" --gpu-memory-utilization {v['gpu_memory_utilization']} {v['extra_args']} {extra}"
    ).strip()


def vllm_trace_args():
    """The driver's workload arguments (file trace from shared_data, or the generated Poisson trace)."""
    v = config["serving_vllm"]
    args = [
        f"--requests {v['requests']}",
        f"--saturation-requests {v['saturation_requests']}",
        f"--rate-fraction {v['rate_fraction']}",
        f"--prompt-min {v['prompt']['min']} --prompt-max {v['prompt']['max']}",
        f"--output-min {v['output']['min']} --output-max {v['output']['max']}",
    ]
    if v["trace"] == "poisson":
        args.append(
            f"--prompt-median {v['prompt']['median']} --prompt-sigma {v['prompt']['sigma']}"
        )
        args.append(
            f"--output-median {v['output']['median']} --output-sigma {v['output']['sigma']}"
        )
    else:
        path = os.path.join(config["shared_data"], v["trace"])
        args.append(f"--trace {path} --trace-format {v['trace_format']}")
    return " ".join(args)
