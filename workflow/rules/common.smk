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


def experiment_config(name):
    """Parameters of one experiment at the current scale, as inline JSON for `--config`."""
    return json.dumps(
        _merge(config["experiments"].get(name, {}), SCALE_CONFIG.get(name, {})),
        sort_keys=True,
    )


def by_scale(ci, local, paper):
    """A per-scale value, e.g. runtime minutes: runtime=by_scale(5, 30, 240)."""
    return {"ci": ci, "local": local, "paper": paper}[SCALE]


def cluster_resources(gpu=False):
    """Slurm partition/account from config `cluster:` (only the keys that are set)."""
    cl = config["cluster"]
    res = {}
    partition = cl["gpu_partition"] if gpu and cl["gpu_partition"] else cl["partition"]
    if partition:
        res["slurm_partition"] = partition
    if cl["account"]:
        res["slurm_account"] = cl["account"]
    if gpu:
        res["gpu"] = 1
    return res


# ---------------------------------------------------------------- seesaw_train runs
def seesaw_training_base():
    """Training settings shared by every run; a BPE tokenizer trained here sets the model's
    vocabulary (the paper shapes already carry T5's)."""
    data = _merge(
        config["experiments"].get("seesaw_data", {}),
        SCALE_CONFIG.get("seesaw_data", {}),
    )
    base = _merge(
        config["experiments"]["seesaw_training"],
        SCALE_CONFIG.get("seesaw_training", {}),
    )
    tokenizer = data.get("tokenizer", {})
    if tokenizer.get("kind", "bpe") == "bpe":
        vocab = tokenizer.get("vocab_size", 4096)
        base["model_overrides"] = {
            **base.get("model_overrides", {}),
            "vocab_size": vocab,
        }
    base["data_dir"] = "results/seesaw_train/data"
    return base


def seesaw_runs(exp):
    """{run name: training config} of one seesaw_train figure experiment."""
    e = _merge(config["experiments"][exp], SCALE_CONFIG.get(exp, {}))
    base = seesaw_training_base()
    runs = {}
    if exp == "seesaw_cbs":
        for b in e["batch_sizes"]:
            for s in e["seeds"]:
                runs[f"cosine_B{b}_s{s}"] = {
                    **base,
                    "schedule": "cosine",
                    "batch_size": b,
                    "seed": s,
                }
    return runs


def seesaw_aggregate_config(exp, runs):
    """Config of a figure's aggregation step: the run folders and the figure's own settings."""
    e = _merge(config["experiments"][exp], SCALE_CONFIG.get(exp, {}))
    own = {k: v for k, v in e.items() if k in ("tolerance",)}
    return json.dumps(
        {"runs": {r: f"results/seesaw_train/{exp}/runs/{r}" for r in runs}, **own},
        sort_keys=True,
    )
