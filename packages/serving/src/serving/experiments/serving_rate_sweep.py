"""serving_rate_sweep — throughput and latency against request rate: vLLM vs DistServe vs BanaServe.

Paper: BanaServe, arXiv 2510.13223 (abstract): "Compared to vLLM, BanaServe achieves 1.2x–3.9x higher
throughput with 3.9%–78.4% lower total processing time, and outperforms DistServe by 1.1x–2.8x in
throughput with 1.4%–70.1% latency reduction."

Setup: the Azure 2023 code trace (first ``trace.n`` requests), time-scaled by each factor in
``rate_scales`` (arrival times ÷ factor), replayed through the simulator on ``cluster.instances``
instances (llama2-70b on 4×H100 by default, roofline cost) under each policy: vllm (colocated,
least-load routing, chunked prefill), distserve (static prefill/decode split), banaserve (the same
split with layer-level weight migration, attention-level KV migration and the global KV store; the
Azure trace has no prefix ids, so the store is idle here). Without the trace file a gamma trace with
the code trace's fitted lengths stands in (``trace.fallback``).

Per policy and rate: request/output throughput (completed ÷ total time), total processing time
(last finish − first arrival), TTFT/TPOT/E2E p50 and p99, goodput and SLO attainment
(``slo_ttft_ms``, ``slo_tpot_ms``).

Claims: a claimed range [low, high] is tested as one ledger claim with predicted = midpoint and
tolerance = half-width (|m − mid| ≤ half ⟺ low ≤ m ≤ high): one verdict per range, and neither end
is reported as reproduced on its own when the other fails. The measured value is taken at the
highest rate of the sweep — where every system is saturated, so that throughput measures capacity
(below saturation all systems deliver the offered rate and every ratio is 1 by construction).
"Total processing time" = the replay's makespan; DistServe's "latency" = mean end-to-end latency.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fulcrum_core import Claim, ConfigError, Experiment, RunResult
from fulcrum_core.cli import save_figure

from .common import AZURE_CODE, ClusterConfig, PolicySpec, TraceConfig, load_trace, range_claim_terms, run_policy

PAPER = "2510.13223"
OUTPUTS = ("rates.csv", "ratios.csv")


@dataclass(frozen=True)
class AzureCodeTrace(TraceConfig):
    name: str = "azure_code"
    kind: str = "file"
    path: str | None = AZURE_CODE
    format: str | None = "azure"
    fallback: str = "gamma"
    rate: float = 2.57  # the code trace's mean rate (8,819 requests in 3,436 s)
    cv: float = 3.0  # assumption for the stand-in: bursty (the real trace's gap CV is ≈ 13, batched arrivals)
    n: int | None = None


POLICIES = (
    PolicySpec("vllm", "vllm", {}),
    PolicySpec("distserve", "distserve", {"n_prefill": 4}),
    PolicySpec("banaserve", "banaserve", {"n_prefill": 4}),
)


@dataclass(frozen=True)
class Config:
    trace: AzureCodeTrace = field(default_factory=AzureCodeTrace)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    rate_scales: tuple[float, ...] = (2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0)
    policies: tuple[PolicySpec, ...] = POLICIES
    baseline: str = "vllm"
    disaggregated: str = "distserve"
    candidate: str = "banaserve"
    slo_ttft_ms: float = 2000.0
    slo_tpot_ms: float = 100.0
    throughput_vs_vllm: tuple[float, float] = (1.2, 3.9)
    time_reduction_vs_vllm: tuple[float, float] = (0.039, 0.784)
    throughput_vs_distserve: tuple[float, float] = (1.1, 2.8)
    latency_reduction_vs_distserve: tuple[float, float] = (0.014, 0.701)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.rate_scales or min(self.rate_scales) <= 0:
            raise ConfigError("rate_scales must be a non-empty list of positive factors")
        labels = [p.label for p in self.policies]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"policies: labels must be unique, got {labels}")
        for key in ("baseline", "disaggregated", "candidate"):
            if getattr(self, key) not in labels:
                raise ConfigError(f"{key} {getattr(self, key)!r} is not one of the policies' labels {labels}")
        for key in (
            "throughput_vs_vllm",
            "time_reduction_vs_vllm",
            "throughput_vs_distserve",
            "latency_reduction_vs_distserve",
        ):
            lo, hi = getattr(self, key)
            if not lo <= hi:
                raise ConfigError(f"{key} must be [low, high] with low <= high, got {[lo, hi]}")


def ratios(rates: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Per rate: candidate ÷ baseline throughput, 1 − time ratio, and the same against DistServe."""
    by = rates.set_index(["rate_scale", "policy"])
    rows = []
    for s in sorted(rates.rate_scale.unique()):
        c, b, d = by.loc[(s, cfg.candidate)], by.loc[(s, cfg.baseline)], by.loc[(s, cfg.disaggregated)]
        rows.append(
            {
                "rate_scale": s,
                "offered_rate": c.offered_rate,
                "throughput_vs_vllm": c.request_throughput / b.request_throughput,
                "time_reduction_vs_vllm": 1.0 - c.total_time_s / b.total_time_s,
                "throughput_vs_distserve": c.request_throughput / d.request_throughput,
                "latency_reduction_vs_distserve": 1.0 - c.mean_e2el_ms / d.mean_e2el_ms,
                "goodput_vs_vllm": c.goodput / b.goodput if b.goodput > 0 else float("nan"),
                "goodput_vs_distserve": c.goodput / d.goodput if d.goodput > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def run(cfg: Config, out: Path) -> RunResult:
    base, source = load_trace(cfg.trace)
    if base is None:
        raise ConfigError(f"trace: {source}")
    cost = cfg.cluster.cost()
    rows = []
    for s in cfg.rate_scales:
        trace = base.scaled(s)
        for spec in cfg.policies:
            row, _, _ = run_policy(
                trace,
                cfg.cluster,
                spec,
                slo_ttft_ms=cfg.slo_ttft_ms,
                slo_tpot_ms=cfg.slo_tpot_ms,
                seed=cfg.seed,
                cost=cost,
            )
            rows.append({"rate_scale": s, "offered_rate": trace.rate, **row})
    rates = pd.DataFrame(rows)
    table = ratios(rates, cfg)
    rates.to_csv(out / "rates.csv", index=False)
    table.to_csv(out / "ratios.csv", index=False)

    top = table.iloc[-1]
    numbers = {
        "trace_source": source,
        "requests": len(base),
        "base_rate": base.rate,
        "top_rate_scale": float(top.rate_scale),
        "top_offered_rate": float(top.offered_rate),
        "at_top_rate": {k: float(top[k]) for k in table.columns if k not in ("rate_scale", "offered_rate")},
        "range_over_rates": {
            k: [float(table[k].min()), float(table[k].max())]
            for k in table.columns
            if k not in ("rate_scale", "offered_rate")
        },
        "max_throughput": {p: float(g.request_throughput.max()) for p, g in rates.groupby("policy")},
        "sim_wall_s": float(rates.wall_s.sum()),
        "claimed_ranges": {
            k: list(getattr(cfg, k))
            for k in (
                "throughput_vs_vllm",
                "time_reduction_vs_vllm",
                "throughput_vs_distserve",
                "latency_reduction_vs_distserve",
            )
        },
    }
    words = {
        "throughput_vs_vllm": "BanaServe ÷ vLLM request throughput in the claimed 1.2–3.9× range",
        "time_reduction_vs_vllm": "BanaServe's total processing time 3.9–78.4% below vLLM's",
        "throughput_vs_distserve": "BanaServe ÷ DistServe request throughput in the claimed 1.1–2.8× range",
        "latency_reduction_vs_distserve": "BanaServe's mean E2E latency 1.4–70.1% below DistServe's",
    }
    claims = []
    for key, text in words.items():
        mid, half = range_claim_terms(*getattr(cfg, key))
        claims.append(
            Claim(
                PAPER,
                f"{text} (at the top rate, {top.offered_rate:.3g} req/s)",
                predicted=mid,
                measured=float(top[key]),
                tolerance=half,
            )
        )
    checks = {"runs": len(rates), "all_finished": bool((rates.completed == rates.requests).all())}
    return RunResult(numbers=numbers, claims=claims, checks=checks)


def plot(data: Path, out_prefix: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    rates = pd.read_csv(data / "rates.csv")
    table = pd.read_csv(data / "ratios.csv")
    summary = json.loads((data / "summary.json").read_text())
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(2, 4, figsize=(19, 8))
    panels = [
        ("request_throughput", "request throughput (req/s)"),
        ("total_time_s", "total processing time (s)"),
        ("p50_ttft_ms", "TTFT p50 (ms)"),
        ("p99_ttft_ms", "TTFT p99 (ms)"),
        ("p50_tpot_ms", "TPOT p50 (ms)"),
        ("p99_tpot_ms", "TPOT p99 (ms)"),
        ("goodput", "goodput (req/s within both SLOs)"),
    ]
    for ax, (col, label) in zip(axes.flat, panels, strict=False):
        for policy, g in rates.groupby("policy", sort=False):
            ax.plot(g.offered_rate, g[col], "o-", label=policy)
        ax.set(xlabel="offered request rate (req/s)", ylabel=label)
        if "ms" in col:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    axes[0, 0].plot(rates.offered_rate, rates.offered_rate, color="grey", ls=":", lw=1, label="offered")
    ax = axes[1, 3]
    claimed = summary["numbers"]["claimed_ranges"]
    series = [
        ("throughput_vs_vllm", "thr ÷ vLLM", "tab:blue"),
        ("throughput_vs_distserve", "thr ÷ DistServe", "tab:orange"),
    ]
    for col, label, color in series:
        ax.plot(table.offered_rate, table[col], "o-", color=color, label=label)
        ax.axhspan(*claimed[col], color=color, alpha=0.12)
    ax.axhline(1.0, color="grey", lw=1)
    ax.set(
        xlabel="offered request rate (req/s)",
        ylabel="BanaServe throughput ratio",
        title="ratios (bands: claimed ranges)",
    )
    ax.legend(fontsize=7)
    fig.suptitle(f"vLLM vs DistServe vs BanaServe (simulated) — {summary['numbers']['trace_source']}", fontsize=10)
    save_figure(fig, out_prefix)


EXPERIMENT = Experiment(
    name="serving_rate_sweep",
    description="2510.13223: throughput/latency vs request rate, vLLM vs DistServe vs BanaServe (simulated)",
    config_cls=Config,
    run=run,
    plot=plot,
    outputs=OUTPUTS,
)
