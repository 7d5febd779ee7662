"""The ``bench`` command: replay a trace file against a server, write metrics.json and requests.csv.

    bench --base-url URL [--model NAME] --trace FILE --trace-format {azure,mooncake,burstgpt}
          [--rate-scale X] [--max-requests N] [--max-concurrency N]
          [--slo-ttft-ms MS] [--slo-tpot-ms MS] --out DIR

Order of trace edits: the first ``--max-requests`` requests are kept, then arrivals are divided by
``--rate-scale`` (rate × X), then ``--clip-prompt-tokens`` / ``--clip-output-tokens`` cap the lengths
(to fit a small server; the caps are recorded in metrics.json). Without ``--model`` the first model of
``GET /v1/models`` is used.

``metrics.json`` = ``serving.metrics.compute_metrics`` of the run (vLLM benchmark names) plus
``failure_reasons`` and a ``benchmark`` block (arguments, trace summary). ``requests.csv`` = one row per
request (``serving.bench.client.COLUMNS``; ``itl_s`` as a JSON list). Exit status 0 when at least one
request completed, 1 when none did, 2 on bad arguments or an unreadable trace.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from ..metrics import write_metrics, write_requests
from ..traces import FORMATS, Trace, TraceError, read_trace
from .client import failure_counts, requests_for_csv, run_benchmark, summarize
from .prompts import MODES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="Replay a request trace against an OpenAI-compatible server.")
    p.add_argument("--base-url", required=True, help="server root, e.g. http://127.0.0.1:8000")
    p.add_argument("--model", default=None, help="model name to request (default: the server's first model)")
    p.add_argument("--trace", required=True, type=Path, help="trace file")
    p.add_argument("--trace-format", required=True, choices=FORMATS)
    p.add_argument("--rate-scale", type=float, default=1.0, help="multiply the arrival rate by X")
    p.add_argument("--max-requests", type=int, default=None, help="keep the first N requests")
    p.add_argument("--max-concurrency", type=int, default=None, help="most requests in flight")
    p.add_argument("--slo-ttft-ms", type=float, default=None)
    p.add_argument("--slo-tpot-ms", type=float, default=None)
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--timeout-s", type=float, default=600.0, help="limit per request (whole stream)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated prompts")
    p.add_argument("--prompt-mode", choices=MODES, default="ids", help="token-id lists (exact) or words (approx.)")
    p.add_argument("--clip-prompt-tokens", type=int, default=None, help="cap each prompt at N tokens")
    p.add_argument("--clip-output-tokens", type=int, default=None, help="cap each output at N tokens")
    p.add_argument("--no-ignore-eos", action="store_true", help="do not send ignore_eos (servers without it)")
    p.add_argument("--accept-short-output", action="store_true", help="count [DONE] with fewer tokens as completed")
    p.add_argument("--no-progress", action="store_true")
    return p


def prepare_trace(
    trace: Trace,
    *,
    max_requests: int | None = None,
    rate_scale: float = 1.0,
    clip_prompt: int | None = None,
    clip_output: int | None = None,
) -> Trace:
    """The trace edits of the module docstring."""
    if max_requests is not None:
        if max_requests < 1:
            raise ValueError(f"--max-requests must be >= 1, got {max_requests}")
        trace = trace.head(max_requests)
    if not rate_scale > 0:
        raise ValueError(f"--rate-scale must be > 0, got {rate_scale}")
    if rate_scale != 1.0:
        trace = trace.scaled(rate_scale)
    for name, cap in (("prompt_tokens", clip_prompt), ("output_tokens", clip_output)):
        if cap is not None:
            if cap < 1:
                raise ValueError(f"--clip-{name.replace('_', '-')} must be >= 1, got {cap}")
            trace = replace(trace, **{name: np.minimum(getattr(trace, name), cap)})
    return trace


def first_model(base_url: str, timeout_s: float = 10.0) -> str:
    """The id of the first model listed by ``GET /v1/models``."""
    r = httpx.get(base_url.rstrip("/") + "/v1/models", timeout=timeout_s, trust_env=False)
    r.raise_for_status()
    return str(r.json()["data"][0]["id"])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.max_concurrency is not None and args.max_concurrency < 1:
            raise ValueError(f"--max-concurrency must be >= 1, got {args.max_concurrency}")
        if not args.timeout_s > 0:
            raise ValueError(f"--timeout-s must be > 0, got {args.timeout_s}")
        trace = read_trace(args.trace, args.trace_format)
        trace = prepare_trace(
            trace,
            max_requests=args.max_requests,
            rate_scale=args.rate_scale,
            clip_prompt=args.clip_prompt_tokens,
            clip_output=args.clip_output_tokens,
        )
    except (TraceError, ValueError, OSError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    model = args.model
    if model is None:
        try:
            model = first_model(args.base_url)
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            print(
                f"bench: error: no --model given and {args.base_url}/v1/models did not name one ({exc})",
                file=sys.stderr,
            )
            return 2
    frame = asyncio.run(
        run_benchmark(
            args.base_url,
            model,
            trace,
            max_concurrency=args.max_concurrency,
            timeout_s=args.timeout_s,
            progress=not args.no_progress,
            seed=args.seed,
            prompt_mode=args.prompt_mode,
            ignore_eos=not args.no_ignore_eos,
            require_full_output=not args.accept_short_output,
        )
    )
    metrics = summarize(frame, slo_ttft_ms=args.slo_ttft_ms, slo_tpot_ms=args.slo_tpot_ms)
    info: dict[str, Any] = {
        "base_url": args.base_url,
        "model": model,
        "trace": str(args.trace),
        "trace_format": args.trace_format,
        "rate_scale": args.rate_scale,
        "max_requests": args.max_requests,
        "max_concurrency": args.max_concurrency,
        "timeout_s": args.timeout_s,
        "prompt_mode": args.prompt_mode,
        "ignore_eos": not args.no_ignore_eos,
        "clip_prompt_tokens": args.clip_prompt_tokens,
        "clip_output_tokens": args.clip_output_tokens,
        "seed": args.seed,
        "requests": len(trace),
        "trace_rate_rps": trace.rate if len(trace) > 1 else None,
        "trace_duration_s": trace.duration,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(metrics, out / "metrics.json", failure_reasons=failure_counts(frame), benchmark=info)
    write_requests(requests_for_csv(frame), out / "requests.csv")
    print(_report(metrics, failure_counts(frame)))
    return 0 if metrics["completed"] > 0 else 1


def _report(m: dict[str, Any], failures: dict[str, int]) -> str:
    rows = [
        ("completed / failed", f"{m['completed']} / {m['failed']}" + (f"  {failures}" if failures else "")),
        ("duration (s)", f"{m['duration']:.2f}"),
        ("request throughput (req/s)", f"{m['request_throughput']:.3f}"),
        ("output throughput (tok/s)", f"{m['output_throughput']:.1f}"),
        (
            "mean / median / p99 TTFT (ms)",
            f"{m['mean_ttft_ms']:.1f} / {m['median_ttft_ms']:.1f} / {m['p99_ttft_ms']:.1f}",
        ),
        (
            "mean / median / p99 TPOT (ms)",
            f"{m['mean_tpot_ms']:.2f} / {m['median_tpot_ms']:.2f} / {m['p99_tpot_ms']:.2f}",
        ),
        ("mean / p99 ITL (ms)", f"{m['mean_itl_ms']:.2f} / {m['p99_itl_ms']:.2f}"),
        ("mean / p99 E2E latency (ms)", f"{m['mean_e2el_ms']:.1f} / {m['p99_e2el_ms']:.1f}"),
    ]
    if "goodput" in m:
        rows.append(("goodput (req/s), SLO attainment", f"{m['goodput']:.3f}, {m['slo_attainment']:.3f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
