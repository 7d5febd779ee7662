"""Shared pieces of the serving experiments: trace and cluster configs, one simulated run → metrics.

Traces come from a file (``kind: file``; Azure / Mooncake / BurstGPT readers) or a generator
(``poisson | gamma | diurnal | shared_prefix``). A file that is absent (a user's clone has no
``../shared``) is replaced by the generator named in ``fallback`` with the same length/rate
parameters, or the trace is skipped (``fallback: none``); the summary records which source ran.
A relative path is looked up as given (from the working directory: the repository root under
Snakemake), then under ``$FULCRUM_SHARED`` with its leading ``…/shared/`` removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulcrum_core import ConfigError

from ..costmodel import make_cost_model
from ..policies import POLICIES, make_policy
from ..sim import SimConfig, simulate
from ..traces import LengthDist, diurnal_trace, gamma_trace, poisson_trace, read_trace, shared_prefix_trace

TRACE_KINDS = ("file", "poisson", "gamma", "diurnal", "shared_prefix", "none")
GENERATORS = ("poisson", "gamma", "diurnal", "shared_prefix")
FORMATS = ("azure", "mooncake", "burstgpt")
AZURE_CODE = "../shared/data/traces/AzureLLMInferenceTrace_code_2023.csv"
MOONCAKE = "../shared/data/traces/mooncake_synthetic_trace.jsonl"


@dataclass(frozen=True)
class Lengths:
    """Lognormal token lengths: clip(round(median·exp(sigma·Z)), lo, hi) (``traces.LengthDist``)."""

    median: float
    sigma: float = 0.0
    lo: int = 1
    hi: int | None = None

    def __post_init__(self) -> None:
        if not self.median > 0 or self.sigma < 0 or self.lo < 1 or (self.hi is not None and self.hi < self.lo):
            raise ConfigError(f"lengths need median > 0, sigma >= 0, 1 <= lo <= hi; got {self}")

    def dist(self) -> LengthDist:
        return LengthDist.lognormal(self.median, self.sigma, self.lo, self.hi)


# lognormal MLE (LengthDist.fit) of the Azure 2023 code trace's ContextTokens / GeneratedTokens
AZURE_PROMPT = Lengths(1095.0, 1.36, 3, 7437)
AZURE_OUTPUT = Lengths(16.0, 0.85, 6, 1899)


@dataclass(frozen=True)
class TraceConfig:
    """``kind``: file | poisson | gamma | diurnal | shared_prefix | none (skip).

    file: ``path``, ``format`` (azure | mooncake | burstgpt; None = guess), ``fallback`` generator when
    the file is absent (or "none" to skip). Generators: ``rate`` req/s, ``duration_s`` or ``n``; gamma
    and shared_prefix arrivals have gap CV ``cv``; diurnal: ``period_s``, ``amplitude`` (peak at half a
    period); shared_prefix: ``n_prefixes`` prefixes of ``prefix`` tokens (Zipf ``zipf_s`` popularity)
    plus a ``suffix``. ``rate_scale`` multiplies the rate of whatever was read or generated; ``n`` on
    a file keeps its first n requests.
    """

    name: str = "trace"
    kind: str = "gamma"
    path: str | None = None
    format: str | None = None
    fallback: str = "gamma"
    rate: float = 2.5
    rate_scale: float = 1.0
    duration_s: float | None = None
    n: int | None = 4000
    cv: float = 1.0
    period_s: float = 3600.0
    amplitude: float = 0.5
    n_prefixes: int = 50
    zipf_s: float = 1.1
    prompt: Lengths = AZURE_PROMPT
    output: Lengths = AZURE_OUTPUT
    prefix: Lengths = Lengths(8000.0, 0.8, 512, 60000)
    suffix: Lengths = Lengths(1500.0, 1.0, 1, 20000)
    block_tokens: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in TRACE_KINDS:
            raise ConfigError(f"trace.kind must be one of {TRACE_KINDS}, got {self.kind!r}")
        if self.fallback not in (*GENERATORS, "none"):
            raise ConfigError(f"trace.fallback must be one of {(*GENERATORS, 'none')}, got {self.fallback!r}")
        if self.kind == "file" and not self.path:
            raise ConfigError("trace.path is required when trace.kind is 'file'")
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"trace.format must be one of {FORMATS}, got {self.format!r}")
        if not self.rate > 0 or not self.rate_scale > 0:
            raise ConfigError("trace.rate and trace.rate_scale must be > 0")
        if self.n is None and self.duration_s is None and self.kind in GENERATORS:
            raise ConfigError("a generated trace needs trace.n or trace.duration_s")
        if self.n is not None and self.n < 1:
            raise ConfigError(f"trace.n must be >= 1, got {self.n}")


def resolve_path(path: str) -> Path | None:
    """``path`` if it exists, else the same file under $FULCRUM_SHARED (leading …/shared/ removed)."""
    p = Path(path)
    if p.is_file():
        return p
    shared = os.environ.get("FULCRUM_SHARED")
    if shared:
        parts = p.parts
        rest = Path(*parts[parts.index("shared") + 1 :]) if "shared" in parts else p
        q = Path(shared) / rest
        if q.is_file():
            return q
    return None


def generate(cfg: TraceConfig, kind: str) -> Any:
    kw = {"prompt": cfg.prompt.dist(), "output": cfg.output.dist(), "seed": cfg.seed}
    size = {"n": cfg.n} if cfg.n is not None else {"duration_s": cfg.duration_s}
    if kind == "poisson":
        return poisson_trace(cfg.rate, **size, **kw)
    if kind == "gamma":
        return gamma_trace(cfg.rate, cfg.cv, **size, **kw)
    if kind == "diurnal":
        if cfg.duration_s is None:
            raise ConfigError("a diurnal trace needs trace.duration_s")
        return diurnal_trace(cfg.rate, cfg.period_s, cfg.amplitude, cfg.duration_s, **kw)
    return shared_prefix_trace(
        cfg.n_prefixes,
        cfg.prefix.dist(),
        cfg.zipf_s,
        rate=cfg.rate,
        cv=cfg.cv,
        suffix=cfg.suffix.dist(),
        output=cfg.output.dist(),
        block_tokens=cfg.block_tokens,
        seed=cfg.seed,
        **size,
    )


def load_trace(cfg: TraceConfig) -> tuple[Any | None, str]:
    """(trace or None when skipped, a description of its source)."""
    if cfg.kind == "none":
        return None, "skipped (kind: none)"
    if cfg.kind == "file":
        path = resolve_path(cfg.path)
        if path is not None:
            trace = read_trace(path, cfg.format)
            if cfg.n is not None:
                trace = trace.head(min(cfg.n, len(trace)))
            source = f"file {path}"
        elif cfg.fallback == "none":
            return None, f"skipped: {cfg.path} not found"
        else:
            trace = generate(cfg, cfg.fallback)
            source = f"generated {cfg.fallback} ({cfg.path} not found)"
    else:
        trace = generate(cfg, cfg.kind)
        source = f"generated {cfg.kind}"
    if cfg.rate_scale != 1.0:
        trace = trace.scaled(cfg.rate_scale)
    return trace, source


@dataclass(frozen=True)
class ClusterConfig:
    """Model, GPU, tensor parallelism and engine limits of every instance (roofline cost model)."""

    model: str = "llama2-70b"
    gpu: str = "h100-80gb"
    tp: int = 4
    cost_model: str = "roofline"
    instances: int = 8
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256
    prefix_caching: bool = True

    def __post_init__(self) -> None:
        if self.cost_model not in ("roofline", "polynomial"):
            raise ConfigError(f"cluster.cost_model must be roofline or polynomial, got {self.cost_model!r}")
        if self.instances < 1 or self.tp < 1:
            raise ConfigError("cluster.instances and cluster.tp must be >= 1")

    def cost(self) -> Any:
        kw = {"max_batch_tokens": self.max_num_batched_tokens}
        return make_cost_model(self.cost_model, self.model, self.gpu, self.tp, **kw)

    def sim_config(self) -> SimConfig:
        return SimConfig(
            max_num_batched_tokens=self.max_num_batched_tokens,
            max_num_seqs=self.max_num_seqs,
            prefix_caching=self.prefix_caching,
        )


@dataclass(frozen=True)
class PolicySpec:
    """One line of a comparison: a label, a registered policy and its config mapping."""

    label: str
    policy: str
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"policy {self.policy!r} is not registered (known: {', '.join(sorted(POLICIES))})")
        make_policy(self.policy, self.config)  # validate now: errors name the key


def run_policy(
    trace: Any,
    cluster: ClusterConfig,
    spec: PolicySpec,
    *,
    instances: int | None = None,
    slo_ttft_ms: float,
    slo_tpot_ms: float,
    seed: int = 0,
    cost: Any = None,
) -> tuple[dict, Any, Any]:
    """Simulate ``trace`` under ``spec``: (metrics row, the SimResult, the policy object)."""
    pol = make_policy(spec.policy, spec.config)
    res = simulate(
        trace,
        cost if cost is not None else cluster.cost(),
        pol,
        instances or cluster.instances,
        cluster.sim_config(),
        seed=seed,
    )
    m = res.metrics(slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms, percentiles=(50.0, 99.0))
    req = res.requests
    row = {
        "policy": spec.label,
        "requests": len(req),
        "completed": int(m["completed"]),
        "total_time_s": res.duration_s,
        "request_throughput": m["request_throughput"],
        "output_throughput": m["output_throughput"],
        "total_token_throughput": m["total_token_throughput"],
        "goodput": m["goodput"],
        "slo_attainment": m["slo_attainment"],
        "gpu_seconds": res.gpu_seconds,
        "hit_rate": float(req["cached_tokens"].sum() / req["prompt_tokens"].sum()),
        "wall_s": res.wall_s,
    }
    for name in ("ttft", "tpot", "e2el"):
        row[f"mean_{name}_ms"] = m[f"mean_{name}_ms"]
        row[f"p50_{name}_ms"] = m[f"p50_{name}_ms"]
        row[f"p99_{name}_ms"] = m[f"p99_{name}_ms"]
    return row, res, pol


def windowed_imbalance(requests: pd.DataFrame, instances: list[int], column: str, window_s: float) -> float:
    """Mean over arrival windows (with any load) of max/mean over ``instances`` of Σ ``column``.

    Requests are binned by arrival time (window ``window_s``) and by the instance that prefilled them."""
    req = requests[requests["instance"].isin(instances)]
    if req.empty:
        return float("nan")
    b = np.floor(req["arrival_s"].to_numpy() / window_s).astype(np.int64)
    tab = (
        req.assign(_w=b)
        .pivot_table(index="_w", columns="instance", values=column, aggfunc="sum", fill_value=0)
        .reindex(columns=instances, fill_value=0)
    )
    tab = tab[tab.sum(axis=1) > 0]
    return float((tab.max(axis=1) / tab.mean(axis=1)).mean())


def range_claim_terms(low: float, high: float) -> tuple[float, float]:
    """(midpoint, half-width): |m − mid| ≤ half ⟺ low ≤ m ≤ high, one claim per claimed range."""
    return (low + high) / 2.0, (high - low) / 2.0
