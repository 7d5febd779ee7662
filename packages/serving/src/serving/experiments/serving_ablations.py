"""serving_ablations — BanaServe's and CoCoServe's mechanisms switched off one at a time.

Papers: BanaServe (arXiv 2510.13223) — layer-level weight migration, attention-level KV migration,
the global KV store with layer-wise overlapped loading; CoCoServe (arXiv 2507.18006) — module
replication, module migration, the auto-scaler with peer weight copy at scale-out.

BanaServe runs on a prefix-sharing, prompt-heavy trace (Mooncake when present, else the Zipf
shared-prefix generator) at a rate that loads the P/D cluster; variants: full, each mechanism
off, and all off (= DistServe with the same split and routing; layer-wise overlapped KV hand-off
kept). CoCoServe runs on the bursty day of ``serving_autoscaling`` at one HPA target; variants:
full, each mechanism off (``autoscale`` off = a static deployment of the initial size), all off.

Reported per variant: throughput, total time, TTFT/TPOT p50/p99, goodput, SLO attainment,
GPU-seconds, prefix hit rate, and how often each mechanism acted (weight-migration steps, KV
migrations, store hit tokens, replicas, module migrations, scale events) — so that a mechanism that
never fired is visible as such. No ledger claims: the abstracts make no per-mechanism claims; the
deltas are reported in ``summary.json`` (numbers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fulcrum_core import ConfigError, Experiment, RunResult
from fulcrum_core.cli import save_figure

from .common import MOONCAKE, ClusterConfig, Lengths, PolicySpec, TraceConfig, load_trace, run_policy
from .serving_autoscaling import DiurnalTrace

OUTPUTS = ("ablations.csv",)

BANA_OFF = {
    "weight_migration": {"weight_migration": False},
    "kv_migration": {"kv_migration": False},
    "global_kv_store": {"global_kv_store": False},
    "layerwise_store": {"layerwise_store": False},
}
COCO_OFF = {
    "replication": {"replication": False},
    "migration": {"migration": False},
    "peer_start": {"peer_start": False},
    "autoscale": {"autoscale": False},
}


@dataclass(frozen=True)
class PrefixTrace(TraceConfig):
    name: str = "prefix_heavy"
    kind: str = "file"
    path: str | None = MOONCAKE
    format: str | None = "mooncake"
    fallback: str = "shared_prefix"
    rate: float = 4.0
    n: int | None = None
    duration_s: float | None = 1000.0
    n_prefixes: int = 50
    zipf_s: float = 1.1
    output: Lengths = Lengths(60.0, 1.2, 1, 1000)


@dataclass(frozen=True)
class Config:
    banaserve_trace: PrefixTrace = field(default_factory=PrefixTrace)
    cocoserve_trace: DiurnalTrace = field(default_factory=DiurnalTrace)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    banaserve: dict[str, Any] = field(default_factory=lambda: {"n_prefill": 4})
    cocoserve: dict[str, Any] = field(default_factory=lambda: {"target": 4.0, "min_replicas": 1, "max_replicas": 32})
    cocoserve_instances: int = 2
    slo_ttft_ms: float = 2000.0
    slo_tpot_ms: float = 100.0
    seed: int = 0

    def __post_init__(self) -> None:
        PolicySpec("banaserve", "banaserve", dict(self.banaserve))
        PolicySpec("cocoserve", "cocoserve", dict(self.cocoserve))
        if self.cocoserve_instances < 1:
            raise ConfigError("cocoserve_instances must be >= 1")
        for key, off in (("banaserve", BANA_OFF), ("cocoserve", COCO_OFF)):
            clash = sorted(set(getattr(self, key)) & {k for d in off.values() for k in d})
            if clash:
                raise ConfigError(f"{key}: {clash} are switched by the ablation itself; do not set them")


def variants(base: dict, off: dict[str, dict]) -> list[tuple[str, dict]]:
    out = [("full", dict(base))]
    out += [(f"no {name}", {**base, **flip}) for name, flip in off.items()]
    everything = dict(base)
    for flip in off.values():
        everything.update(flip)
    out.append(("all off", everything))
    return out


def activity(policy: str, pol: Any, res: Any) -> dict:
    """How often each mechanism acted in one run."""
    if policy == "banaserve":
        steps = sum(1 for h in getattr(pol, "history", []) if h.get("moved"))
        return {
            "weight_steps": steps,
            "kv_migrations": pol.kv_moves,
            "store_hit_tokens": int(pol.store.hit_tokens) if pol.store is not None else 0,
            "store_load_s": float(res.instances["kv_load_s"].sum()),
        }
    return {
        "replicas": pol.replicas_placed,
        "module_migrations": pol.migrations_placed,
        "scale_events": pol.scale_outs + pol.scale_ins,
    }


def run(cfg: Config, out: Path) -> RunResult:
    cost = cfg.cluster.cost()
    rows = []
    sources = {}
    plan = [
        ("banaserve", cfg.banaserve_trace, variants(cfg.banaserve, BANA_OFF), cfg.cluster.instances),
        ("cocoserve", cfg.cocoserve_trace, variants(cfg.cocoserve, COCO_OFF), cfg.cocoserve_instances),
    ]
    for policy, tcfg, vs, n in plan:
        trace, source = load_trace(tcfg)
        sources[policy] = source
        if trace is None:
            continue
        for label, conf in vs:
            spec = PolicySpec(label, policy, conf)
            row, res, pol = run_policy(
                trace,
                cfg.cluster,
                spec,
                instances=n,
                slo_ttft_ms=cfg.slo_ttft_ms,
                slo_tpot_ms=cfg.slo_tpot_ms,
                seed=cfg.seed,
                cost=cost,
            )
            rows.append({"system": policy, "variant": label, "trace": tcfg.name, **row, **activity(policy, pol, res)})
    if not rows:
        raise ConfigError(f"no trace could be loaded: {sources}")
    table = pd.DataFrame(rows)
    table.to_csv(out / "ablations.csv", index=False)
    numbers: dict = {"trace_sources": sources}
    keys = (
        "request_throughput",
        "goodput",
        "slo_attainment",
        "p99_ttft_ms",
        "p99_tpot_ms",
        "gpu_seconds",
        "total_time_s",
        "hit_rate",
    )
    for system, g in table.groupby("system", sort=False):
        full = g[g.variant == "full"].iloc[0]
        numbers[system] = {
            r.variant: {k: float(getattr(r, k)) for k in keys}
            | {f"{k}_vs_full": float(getattr(r, k) / full[k]) if full[k] else float("nan") for k in keys}
            for r in g.itertuples()
        }
    checks = {"runs": len(table), "all_finished": bool((table.completed == table.requests).all())}
    return RunResult(numbers=numbers, claims=[], checks=checks)


def plot(data: Path, out_prefix: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    table = pd.read_csv(data / "ablations.csv")
    sources = json.loads((data / "summary.json").read_text())["numbers"]["trace_sources"]
    systems = list(dict.fromkeys(table.system))
    panels = {
        "banaserve": [
            ("goodput", "goodput (req/s)"),
            ("p99_ttft_ms", "TTFT p99 (ms)"),
            ("p99_tpot_ms", "TPOT p99 (ms)"),
            ("hit_rate", "prefix hit rate"),
        ],
        "cocoserve": [
            ("gpu_seconds", "GPU-seconds"),
            ("slo_attainment", "SLO attainment"),
            ("p99_ttft_ms", "TTFT p99 (ms)"),
            ("p99_tpot_ms", "TPOT p99 (ms)"),
        ],
    }
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(len(systems), 4, figsize=(18, 4.2 * len(systems)), squeeze=False)
    for row, system in zip(axes, systems, strict=True):
        g = table[table.system == system]
        for ax, (col, label) in zip(row, panels[system], strict=True):
            colors = ["tab:green" if v == "full" else "tab:grey" if v == "all off" else "tab:blue" for v in g.variant]
            ax.bar(g.variant, g[col], color=colors)
            ax.set(ylabel=label, title=f"{system}: {label}")
            if col.endswith("_ms"):
                ax.set_yscale("log")
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.suptitle("Ablations (simulated): " + "; ".join(f"{k} on {v}" for k, v in sources.items()), fontsize=10)
    save_figure(fig, out_prefix)


EXPERIMENT = Experiment(
    name="serving_ablations",
    description="2510.13223 / 2507.18006: each BanaServe / CoCoServe mechanism switched off in turn (simulated)",
    config_cls=Config,
    run=run,
    plot=plot,
    outputs=OUTPUTS,
)
