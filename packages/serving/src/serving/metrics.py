"""Serving metrics with the names of vLLM's ``benchmark_serving`` (so numbers line up with real runs).

From a per-request table (one row per request: ``prompt_tokens``, ``output_tokens``, ``finished``,
``ttft_s``, ``e2e_s``, ``arrival_s``) and the list of every inter-token latency:

    completed            requests that finished;  failed = the others
    duration             ``duration_s`` if given, else last finish (or arrival) − first arrival [s]
    request_throughput   completed / duration                                   [req/s]
    output_throughput    Σ output tokens of completed / duration                [tok/s]
    total_token_throughput (Σ prompt + Σ output tokens of completed) / duration [tok/s]
    TTFT                 first token time − arrival
    TPOT                 (E2E − TTFT) / (output − 1), requests with one output token excluded
    ITL                  time between consecutive output tokens of a request, all tokens of all
                         completed requests pooled
    E2EL                 finish − arrival
    for each of ttft, tpot, itl, e2el: mean_/median_/std_/p{P}_<name>_ms (P in ``percentiles``,
    percentiles by linear interpolation as ``numpy.percentile``); NaN when there is no value.
    goodput              completed requests with TTFT ≤ slo_ttft and TPOT ≤ slo_tpot, per second
                         of duration (a one-token request meets the TPOT SLO, as in vLLM where its
                         TPOT counts as 0)
    slo_attainment       those requests / all requests (failed ones miss)
    gpu_seconds          Σ over instances of tp × seconds alive (cost), and
                         output_tokens_per_gpu_second = Σ output tokens of completed / gpu_seconds
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REQUIRED = ("prompt_tokens", "output_tokens", "finished", "ttft_s", "e2e_s")
LATENCIES = ("ttft", "tpot", "itl", "e2el")


def _stats(values_s: np.ndarray, name: str, percentiles: tuple[float, ...]) -> dict[str, float]:
    ms = np.asarray(values_s, dtype=np.float64) * 1000.0
    out: dict[str, float] = {}
    if ms.size == 0:
        out[f"mean_{name}_ms"] = out[f"median_{name}_ms"] = out[f"std_{name}_ms"] = math.nan
        for p in percentiles:
            out[f"p{p:g}_{name}_ms"] = math.nan
        return out
    out[f"mean_{name}_ms"] = float(ms.mean())
    out[f"median_{name}_ms"] = float(np.median(ms))
    out[f"std_{name}_ms"] = float(ms.std())
    for p, v in zip(percentiles, np.percentile(ms, list(percentiles)), strict=True):
        out[f"p{p:g}_{name}_ms"] = float(v)
    return out


def compute_metrics(
    requests: pd.DataFrame,
    itl_s: Any = None,
    *,
    duration_s: float | None = None,
    gpu_seconds: float | None = None,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    percentiles: tuple[float, ...] = (99.0,),
) -> dict[str, float]:
    """The metrics above from ``requests`` (a per-request table) and ``itl_s`` (every ITL, seconds)."""
    missing = [c for c in REQUIRED if c not in requests.columns]
    if missing:
        raise ValueError(f"per-request table lacks column(s) {missing}")
    for p in percentiles:
        if not 0 <= p <= 100:
            raise ValueError(f"percentiles must be in [0, 100], got {p}")
    fin = requests["finished"].to_numpy(dtype=bool)
    done = requests[fin]
    prompt = done["prompt_tokens"].to_numpy(dtype=np.int64)
    output = done["output_tokens"].to_numpy(dtype=np.int64)
    ttft = done["ttft_s"].to_numpy(dtype=np.float64)
    e2e = done["e2e_s"].to_numpy(dtype=np.float64)
    if np.any(~np.isfinite(ttft)) or np.any(~np.isfinite(e2e)):
        raise ValueError("finished requests need finite ttft_s and e2e_s")
    multi = output > 1
    tpot = (e2e[multi] - ttft[multi]) / (output[multi] - 1)
    if duration_s is None:
        if "arrival_s" not in requests.columns:
            raise ValueError("give duration_s or an arrival_s column")
        arrival = requests["arrival_s"].to_numpy(dtype=np.float64)
        ends = done["arrival_s"].to_numpy(dtype=np.float64) + e2e
        last = max(float(ends.max()) if ends.size else -math.inf, float(arrival.max()) if arrival.size else 0.0)
        duration_s = last - (float(arrival.min()) if arrival.size else 0.0)
    completed = int(fin.sum())
    n_all = len(requests)
    dur = float(duration_s)
    rate = (lambda x: x / dur) if dur > 0 else (lambda x: math.nan)
    out: dict[str, float] = {
        "completed": completed,
        "failed": n_all - completed,
        "total_input_tokens": int(prompt.sum()),
        "total_output_tokens": int(output.sum()),
        "duration": dur,
        "request_throughput": rate(completed),
        "output_throughput": rate(float(output.sum())),
        "total_token_throughput": rate(float(prompt.sum() + output.sum())),
    }
    out.update(_stats(ttft, "ttft", percentiles))
    out.update(_stats(tpot, "tpot", percentiles))
    if itl_s is not None:
        out.update(_stats(np.asarray(itl_s, dtype=np.float64), "itl", percentiles))
    else:
        out.update(_stats(np.zeros(0), "itl", percentiles))
    out.update(_stats(e2e, "e2el", percentiles))
    if slo_ttft_ms is not None or slo_tpot_ms is not None:
        ok = np.ones(completed, dtype=bool)
        if slo_ttft_ms is not None:
            ok &= ttft * 1000.0 <= slo_ttft_ms
        if slo_tpot_ms is not None:
            tp_all = np.zeros(completed)
            tp_all[multi] = tpot
            ok &= tp_all * 1000.0 <= slo_tpot_ms
        good = int(ok.sum())
        out["slo_ttft_ms"] = math.nan if slo_ttft_ms is None else float(slo_ttft_ms)
        out["slo_tpot_ms"] = math.nan if slo_tpot_ms is None else float(slo_tpot_ms)
        out["good_requests"] = good
        out["goodput"] = rate(good)
        out["slo_attainment"] = good / n_all if n_all else math.nan
    if gpu_seconds is not None:
        out["gpu_seconds"] = float(gpu_seconds)
        out["output_tokens_per_gpu_second"] = float(output.sum()) / gpu_seconds if gpu_seconds > 0 else math.nan
    return out


def write_requests(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the per-request table as CSV, or parquet when ``path`` ends in .parquet."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def jsonable(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics with NaN/inf replaced by None (strict JSON) and numpy scalars made plain."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, (np.integer, np.floating)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


def write_metrics(metrics: Mapping[str, Any], path: str | Path, **extra: Any) -> Path:
    """Write ``metrics`` (plus ``extra`` top-level keys) as strict JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**jsonable(metrics), **extra}
    path.write_text(json.dumps(data, indent=2, allow_nan=False, default=str) + "\n")
    return path
