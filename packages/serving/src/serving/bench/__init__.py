"""Load client for OpenAI-compatible servers: trace replay with per-token timing.

- ``run_benchmark(base_url, model, trace, ...)`` (async) → one row per request (``client.COLUMNS``).
- ``summarize(frame, slo_ttft_ms=, slo_tpot_ms=)`` → ``serving.metrics.compute_metrics`` of a run.
- ``main(argv)`` — the ``bench`` command (``command`` module): writes metrics.json and requests.csv.
"""

from __future__ import annotations

from .client import COLUMNS, failure_counts, pooled_itl, run_benchmark, summarize
from .command import main
from .prompts import build_prompts

__all__ = ["COLUMNS", "build_prompts", "failure_counts", "main", "pooled_itl", "run_benchmark", "summarize"]
