"""Simulate the trace the engine served, with the engine's settings and the calibrated cost model, and compare.

Input: a folder written by ``python -m serving.bench`` (``requests.csv``, ``metrics.json``; with
``serving.validation.run`` also ``run.json`` and ``engine_stats.json``) and a profile folder
(``serving.validation.profile``).

The simulated trace is the one that reached the server: request i arrives at its measured send time
``send_s`` (rebased so the first send is 0; the client may send late under load, and the measured
latencies count from the send), with its prompt tokens and its ``max_tokens`` as output tokens (the
engine generates exactly that many, ``ignore_eos``).

Simulator settings that mirror the engine (``engine_sim_config``; serving/engine/core.py):

    policy vllm, 1 instance               one colocated engine (routing is moot)
    max_num_seqs = max_batch              the engine admits while fewer than max_batch run
    chunked_prefill = False               the engine prefills whole prompts; iterations are then either
                                          prefill-only or decode-only, prefill first (prefill priority)
    max_num_batched_tokens = max_batch ×  the engine has no token budget: never binding
        max_model_len
    kv_capacity_tokens = max_batch ×      the engine's KV cache is max_batch slots of up to max_model_len
        max_model_len, watermark 0        positions, reserved per slot: memory never refuses admission
    prefix_caching = False                the engine has no prefix cache
    cost model                            the profile's chosen (or named) model; ``context="padded"`` wraps
                                          it with ``PaddedDecode`` (below)

Known mismatches (each documented where it matters; their sizes are in serving_validation.md):

1. The engine prefills the admitted prompts one after the other and streams each first token when *its*
   prefill ends; the simulator prices them as one prefill iteration (``iteration_time(ΣN, ΣA, 0, 0)``)
   and emits every first token at its end. With the polynomial the k prompts of one iteration pay one
   fixed term a_p instead of k. At moderate load k is mostly 1.
2. After its prefills the engine always runs a decode step in the same loop iteration; the simulator's
   non-chunked scheduler starts another prefill-only iteration if more prompts arrived meanwhile (its
   decoders wait longer then). The probability is about the arrival rate × prefill time (≈ 0.1–0.2 here).
3. The engine's decode attends over the padded length (batch × longest context, masked); the cost-model
   protocol passes only Σ context. ``PaddedDecode`` (``context="padded"``) replaces Σ context by
   κ(B)·Σ context with κ(B) = E[max of B contexts] / E[mean of B contexts] estimated from the trace's own
   lengths (a decoding sequence's context is its prompt plus a uniform share of its output; sequences
   drawn in proportion to their decode steps) — an input of the run, not a measurement of it.
4. HTTP and client overheads: the engine thread shares the GIL with the HTTP loop that frames and sends
   every token, and each request pays a front-end latency (parsing, hand-over to the engine thread, its
   wake-up, delivery). The ``http`` profile calibrates both: the decode price is the step time the
   clients see (whole steps, gaps between steps included), and the front-end latency d_fe is added to the
   simulated TTFT and E2E (``frontend_s``; a constant delay, so TPOT and ITL are unchanged). It is
   modelled as a delay after the engine, not before it: the engine sees each request d_fe earlier than in
   reality, which matters only if the queue changes within d_fe (tens of ms).
5. Background load: the profile and the run happen at different moments of a shared machine; both record
   their load averages.
6. The engine thread sleeps on an empty inbox and wakes on a request; the simulator starts an iteration at
   the arrival instant. Wake-up latency is not modelled.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..metrics import compute_metrics
from ..sim import SimConfig, SimResult, simulate
from ..traces import Trace

__all__ = [
    "LATENCIES",
    "Measured",
    "PaddedDecode",
    "ScaledCost",
    "compare_runs",
    "engine_sim_config",
    "ks_distance",
    "padding_factors",
    "read_measured",
    "simulate_measured",
    "speed_factors",
    "step_diagnostics",
    "trace_from_bench",
]

LATENCIES = ("ttft", "tpot", "e2el", "itl")
STATS = ("mean", "median", "p90", "p99")


@dataclass
class Measured:
    """A measured run: per-request table (``itl_s`` parsed to lists), its metrics, and what the driver recorded."""

    folder: Path
    requests: pd.DataFrame
    metrics: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)
    engine_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def itl_s(self) -> np.ndarray:
        done = self.requests[self.requests["finished"].astype(bool)]
        parts = [np.asarray(x, dtype=float) for x in done["itl_s"]]
        return np.concatenate(parts) if parts else np.zeros(0)


def read_measured(folder: str | Path, phase: str = "run", stats_dir: str | Path | None = None) -> Measured:
    """Read ``folder``'s requests.csv and metrics.json (+ run.json and engine_stats.json when present).

    ``phase`` names the engine_stats.json entry of this run ("run" or "saturation"), read from ``stats_dir``
    (default ``folder``; the saturation burst's counters live in the run folder's engine_stats.json)."""
    folder = Path(folder)
    for name in ("requests.csv", "metrics.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found: not a bench output folder")
    frame = pd.read_csv(folder / "requests.csv")
    need = ("send_s", "prompt_tokens", "max_tokens", "output_tokens", "finished", "ttft_s", "tpot_s", "e2e_s", "itl_s")
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"{folder / 'requests.csv'} lacks column(s) {missing}")
    frame["itl_s"] = [json.loads(x) if isinstance(x, str) else [] for x in frame["itl_s"]]
    frame["finished"] = frame["finished"].astype(bool)
    metrics = json.loads((folder / "metrics.json").read_text())
    run = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
    stats = {}
    stats_file = Path(stats_dir or folder) / "engine_stats.json"
    if stats_file.is_file():
        stats = json.loads(stats_file.read_text()).get(phase, {})
    return Measured(folder, frame, metrics, run, stats)


def trace_from_bench(frame: pd.DataFrame) -> tuple[Trace, np.ndarray, float]:
    """(trace of the sends, the bench row of each trace request, the first send time) — module docstring."""
    order = np.argsort(frame["send_s"].to_numpy(dtype=float), kind="stable")
    send = frame["send_s"].to_numpy(dtype=float)[order]
    t0 = float(send[0])
    trace = Trace(
        arrival_s=send - t0,
        prompt_tokens=frame["prompt_tokens"].to_numpy(dtype=np.int64)[order],
        output_tokens=frame["max_tokens"].to_numpy(dtype=np.int64)[order],
        name="measured-sends",
    )
    return trace, order, t0


def engine_sim_config(max_batch: int, max_model_len: int) -> SimConfig:
    """Simulator settings that mirror the CPU engine (module docstring)."""
    slots = int(max_batch) * int(max_model_len)
    return SimConfig(
        max_num_seqs=int(max_batch),
        max_num_batched_tokens=max(slots, int(max_batch)),
        chunked_prefill=False,
        prefix_caching=False,
        watermark=0.0,
        kv_capacity_tokens=slots,
    )


def padding_factors(trace: Trace, max_batch: int, seed: int = 0, draws: int = 20000) -> np.ndarray:
    """κ(B) for B = 0..max_batch (κ(0) = κ(1) = 1): E[max of B decode contexts] / E[mean of B] (module docstring).

    A decoding sequence is request i with probability ∝ its decode steps (o_i − 1) at context
    p_i + U·o_i, U ~ Uniform(0, 1); B such draws are independent (Monte Carlo, ``draws`` batches per B)."""
    p = trace.prompt_tokens.astype(float)
    o = trace.output_tokens.astype(float)
    w = np.maximum(o - 1.0, 0.0)
    kappa = np.ones(int(max_batch) + 1)
    if w.sum() <= 0:
        return kappa
    rng = np.random.default_rng(seed)
    w = w / w.sum()
    for b in range(2, int(max_batch) + 1):
        idx = rng.choice(len(p), size=(draws, b), p=w)
        ctx = p[idx] + rng.random((draws, b)) * o[idx]
        kappa[b] = float(ctx.max(axis=1).mean() / ctx.mean(axis=1).mean())
    return kappa


class PaddedDecode:
    """A cost model whose decode context is κ(B)·Σ context (padded attention; module docstring, item 3)."""

    def __init__(self, base: Any, kappa: np.ndarray) -> None:
        self.base = base
        self.kappa = np.asarray(kappa, dtype=float)
        self.model, self.gpu, self.tp = base.model, base.gpu, base.tp

    def _k(self, b: int) -> float:
        return float(self.kappa[min(int(b), len(self.kappa) - 1)])

    def iteration_time(self, prefill_tokens: int, prefill_attn: float, decode_seqs: int, decode_context: int) -> float:
        """base.iteration_time with decode_context → κ(decode_seqs)·decode_context."""
        ctx = self._k(decode_seqs) * decode_context if decode_seqs else decode_context
        return self.base.iteration_time(prefill_tokens, prefill_attn, decode_seqs, ctx)

    def kv_capacity_tokens(self) -> int:
        return self.base.kv_capacity_tokens()

    def kv_transfer_time(self, tokens: int) -> float:
        return self.base.kv_transfer_time(tokens)

    def weight_transfer_time(self, layers: int) -> float:
        return self.base.weight_transfer_time(layers)


class ScaledCost:
    """``base`` with its prefill part × ``s_prefill`` and its decode part × ``s_decode`` (a mixed iteration:
    each part priced alone and scaled; the engine-mirroring simulation has no mixed iterations)."""

    def __init__(self, base: Any, s_prefill: float, s_decode: float) -> None:
        self.base, self.s_prefill, self.s_decode = base, float(s_prefill), float(s_decode)
        self.model, self.gpu, self.tp = base.model, base.gpu, base.tp

    def iteration_time(self, prefill_tokens: int, prefill_attn: float, decode_seqs: int, decode_context: int) -> float:
        """s_p·base(P, A, 0, 0) + s_d·base(0, 0, D, C) (each term 0 when its part is empty)."""
        t = 0.0
        if prefill_tokens:
            t += self.s_prefill * self.base.iteration_time(prefill_tokens, prefill_attn, 0, 0)
        if decode_seqs:
            t += self.s_decode * self.base.iteration_time(0, 0.0, decode_seqs, decode_context)
        return t

    def kv_capacity_tokens(self) -> int:
        return self.base.kv_capacity_tokens()

    def kv_transfer_time(self, tokens: int) -> float:
        return self.base.kv_transfer_time(tokens)

    def weight_transfer_time(self, layers: int) -> float:
        return self.base.weight_transfer_time(layers)


def speed_factors(measured: Measured, counter_model: Any) -> tuple[float, float] | None:
    """(s_prefill, s_decode) = the engine's own mean prefill and decode-step times during the run ÷ what
    ``counter_model`` (a model of the same counters, i.e. the profile's ``engine`` basis, or the in-process
    ``wall`` one) predicts for the run's prompts and mean batch (``step_diagnostics``); None without
    counters. How much faster or slower the shared machine was during the run than during the profile."""
    d = step_diagnostics(measured, counter_model)
    if not d:
        return None
    return 1.0 / d["prefill_ratio"], 1.0 / d["decode_ratio"]


def simulate_measured(
    measured: Measured,
    cost: Any,
    max_batch: int,
    max_model_len: int,
    frontend_s: float = 0.0,
    config: SimConfig | None = None,
) -> tuple[SimResult, pd.DataFrame]:
    """Simulate the measured run's sends; returns (SimResult, per-request table aligned with the bench rows).

    The aligned table has the bench's ``request_id`` and the simulated ``ttft_s, tpot_s, e2e_s, finished``
    (times from the request's send), ``arrival_s`` in the bench's clock, and ``end_s`` = arrival + e2e.
    ``frontend_s`` (the profile's per-request front-end latency: parsing, hand-over to the engine thread,
    token delivery) is added to TTFT and E2E — a constant delay outside the engine, so TPOT and ITL keep
    their values. ``config`` replaces ``engine_sim_config(max_batch, max_model_len)`` (another server)."""
    from ..policies import make_policy

    trace, order, t0 = trace_from_bench(measured.requests)
    config = config if config is not None else engine_sim_config(max_batch, max_model_len)
    res = simulate(trace, cost, make_policy("vllm", {}), 1, config)
    sim = res.requests.copy()
    sim["request_id"] = measured.requests["request_id"].to_numpy()[order]
    sim["arrival_s"] = sim["arrival_s"] + t0
    sim["ttft_s"] = sim["ttft_s"] + frontend_s
    sim["e2e_s"] = sim["e2e_s"] + frontend_s
    sim["end_s"] = sim["arrival_s"] + sim["e2e_s"]
    return res, sim.sort_values("request_id").reset_index(drop=True)


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic sup_x |F_a(x) − F_b(x)| (NaN when a sample is empty)."""
    a = np.sort(np.asarray(a, dtype=float)[np.isfinite(a)])
    b = np.sort(np.asarray(b, dtype=float)[np.isfinite(b)])
    if a.size == 0 or b.size == 0:
        return math.nan
    x = np.concatenate([a, b])
    fa = np.searchsorted(a, x, side="right") / a.size
    fb = np.searchsorted(b, x, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def _latencies(frame: pd.DataFrame, itl: np.ndarray) -> dict[str, np.ndarray]:
    done = frame[frame["finished"].astype(bool)]
    tpot = done.loc[done["output_tokens"] > 1, "tpot_s"]
    return {
        "ttft": done["ttft_s"].to_numpy(dtype=float) * 1e3,
        "tpot": tpot.to_numpy(dtype=float) * 1e3,
        "e2el": done["e2e_s"].to_numpy(dtype=float) * 1e3,
        "itl": np.asarray(itl, dtype=float) * 1e3,
    }


def _stats(x: np.ndarray) -> dict[str, float]:
    if x.size == 0:
        return dict.fromkeys(STATS, math.nan)
    return {
        "mean": float(x.mean()),
        "median": float(np.median(x)),
        "p90": float(np.percentile(x, 90)),
        "p99": float(np.percentile(x, 99)),
    }


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return math.nan
    ra = np.argsort(np.argsort(a[ok])).astype(float)
    rb = np.argsort(np.argsort(b[ok])).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def compare_runs(measured: Measured, sim_frame: pd.DataFrame, sim_itl: np.ndarray) -> dict[str, Any]:
    """Distributions (mean/median/p90/p99 in ms), simulator ÷ engine ratios, KS distances, per-request pairing,
    and throughputs over the same clock (duration = last end − 0, as the bench reports it)."""
    eng = _latencies(measured.requests, measured.itl_s)
    sim = _latencies(sim_frame, sim_itl)
    out: dict[str, Any] = {"engine": {}, "simulator": {}, "ratio": {}, "ks": {}}
    for name in LATENCIES:
        se, ss = _stats(eng[name]), _stats(sim[name])
        out["engine"][name] = se
        out["simulator"][name] = ss
        out["ratio"][name] = {k: ss[k] / se[k] if se[k] and math.isfinite(se[k]) else math.nan for k in STATS}
        out["ks"][name] = ks_distance(eng[name], sim[name])
    dur_e = float(np.nanmax(measured.requests["end_s"].to_numpy(dtype=float)))
    dur_s = float(np.nanmax(sim_frame["end_s"].to_numpy(dtype=float)))
    me = compute_metrics(measured.requests, measured.itl_s, duration_s=dur_e)
    ms = compute_metrics(sim_frame, sim_itl, duration_s=dur_s)
    for key in ("request_throughput", "output_throughput"):
        out["engine"][key], out["simulator"][key] = me[key], ms[key]
        out["ratio"][key] = ms[key] / me[key] if me[key] else math.nan
    out["engine"]["completed"], out["simulator"]["completed"] = int(me["completed"]), int(ms["completed"])
    both = measured.requests[["request_id", "ttft_s", "tpot_s", "e2e_s"]].merge(
        sim_frame[["request_id", "ttft_s", "tpot_s", "e2e_s"]], on="request_id", suffixes=("_engine", "_sim")
    )
    paired = {}
    for name, col in (("ttft", "ttft_s"), ("tpot", "tpot_s"), ("e2el", "e2e_s")):
        a, b = both[f"{col}_engine"].to_numpy(dtype=float), both[f"{col}_sim"].to_numpy(dtype=float)
        ok = np.isfinite(a) & np.isfinite(b) & (a > 0)
        paired[name] = {
            "median_ratio": float(np.median(b[ok] / a[ok])) if ok.any() else math.nan,
            "rank_correlation": _rank_corr(a, b),
        }
    out["paired"] = paired
    return out


def step_diagnostics(measured: Measured, cost: Any, res: SimResult | None = None) -> dict[str, Any]:
    """The engine's own step counters during the run (``engine_stats.json``) against the cost model.

    prefill: measured mean prefill vs the model's mean over the run's prompts (each priced alone, as the
    engine runs them); decode: measured mean step vs model(B̄, C̄) with B̄ = decode tokens / steps and
    C̄ = ΣC / steps, ΣC = Σ_i Σ_{s=1}^{o_i−1} (p_i + s) (exact mean for an affine decode form). With a
    simulation, also its busy time against the engine's (prefill + decode seconds)."""
    st = measured.engine_stats
    if not st or not st.get("decode_steps_total"):
        return {}
    fr = measured.requests
    p = fr["prompt_tokens"].to_numpy(dtype=float)
    o = fr["max_tokens"].to_numpy(dtype=float)
    pre_model = float(np.mean([cost.iteration_time(int(n), n * (n + 1) / 2.0, 0, 0) for n in p]))
    sigma_c = float(np.sum((o - 1) * p + (o - 1) * o / 2.0))
    steps = float(st["decode_steps_total"])
    b_mean, c_mean = float(st["decode_tokens_total"]) / steps, sigma_c / steps
    dec_model = float(cost.iteration_time(0, 0.0, b_mean, c_mean))
    out = {
        "engine_mean_prefill_ms": 1e3 * float(st["mean_prefill_s"]),
        "model_mean_prefill_ms": 1e3 * pre_model,
        "prefill_ratio": pre_model / float(st["mean_prefill_s"]),
        "engine_decode_steps": int(steps),
        "engine_mean_decode_batch": b_mean,
        "engine_mean_decode_step_ms": 1e3 * float(st["mean_decode_step_s"]),
        "model_decode_step_ms_at_engine_mean": 1e3 * dec_model,
        "decode_ratio": dec_model / float(st["mean_decode_step_s"]),
        "engine_busy_s": float(st["prefill_seconds_total"]) + float(st["decode_seconds_total"]),
    }
    if res is not None:
        inst = res.instances.iloc[0]
        out["sim_busy_s"] = float(inst["busy_s"])
        out["busy_ratio"] = out["sim_busy_s"] / out["engine_busy_s"] if out["engine_busy_s"] > 0 else math.nan
        out["sim_iterations"] = int(inst["iterations"])
    return out
