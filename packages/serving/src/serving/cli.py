"""``python -m serving simulate``: replay a trace through the simulator and write the metrics.

    python -m serving simulate --trace T.csv --trace-format azure --policy vllm --instances 8 \\
        --model llama2-70b --gpu h100-80gb --tp 4 --slo-ttft-ms 2000 --slo-tpot-ms 100 --out DIR

writes ``DIR/metrics.json`` (vLLM-benchmark metrics + the settings + simulator statistics),
``DIR/requests.csv`` (or .parquet; one row per request), ``DIR/instances.csv`` and
``DIR/provenance.json``. Every bad input stops with exit status 2 and a message naming the option
or the file.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fulcrum_core.config import ConfigError, from_mapping, load_mapping
from fulcrum_core.provenance import build_provenance, write_json

TRACE_FORMATS = ("azure", "mooncake", "burstgpt")
COST_MODELS = ("roofline", "table", "polynomial")


class CliError(Exception):
    """A user error: printed as ``error: ...`` with exit status 2."""


def shared_dir() -> Path:
    """$FULCRUM_SHARED, else the ``shared`` folder next to the repository."""
    env = os.environ.get("FULCRUM_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[4].parent / "shared"


def build_parser() -> argparse.ArgumentParser:
    from .policies import POLICIES

    p = argparse.ArgumentParser(
        prog="python -m serving simulate",
        description="Simulate serving a request trace and write vLLM-benchmark metrics.",
    )
    p.add_argument("--trace", required=True, type=Path, help="trace file")
    p.add_argument("--trace-format", choices=TRACE_FORMATS, help="trace format (default: from the file)")
    p.add_argument("--policy", default="vllm", choices=sorted(POLICIES), help="serving policy (default vllm)")
    p.add_argument("--instances", required=True, type=int, help="number of instances (replicas)")
    p.add_argument("--model", required=True, help="model name (serving.costmodel.MODELS)")
    p.add_argument("--gpu", required=True, help="GPU name (serving.costmodel.GPUS)")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel GPUs per instance (default 1)")
    p.add_argument("--cost-model", choices=COST_MODELS, default="roofline", help="latency model (default roofline)")
    p.add_argument("--perf-csv", type=Path, help="Splitwise profile CSV for --cost-model table/polynomial")
    p.add_argument("--rate-scale", type=float, default=1.0, help="multiply the arrival rate (default 1)")
    p.add_argument("--max-requests", type=int, help="use only the first N requests")
    p.add_argument("--slo-ttft-ms", type=float, help="TTFT SLO for goodput / attainment")
    p.add_argument("--slo-tpot-ms", type=float, help="TPOT SLO for goodput / attainment")
    p.add_argument("--seed", type=int, default=0, help="seed of the policies' random choices (default 0)")
    p.add_argument("--policy-config", help="policy settings: inline JSON object or YAML/JSON file")
    p.add_argument("--sim-config", help="engine settings (serving.sim.SimConfig): inline JSON or file")
    p.add_argument("--requests-format", choices=("csv", "parquet"), default="csv", help="per-request table format")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    return p


def _cost_model(args: argparse.Namespace) -> Any:
    from .costmodel import GPUS, MODELS, make_cost_model

    if args.model not in MODELS:
        raise CliError(f"--model: unknown model {args.model!r} (known: {', '.join(sorted(MODELS))})")
    if args.gpu not in GPUS:
        raise CliError(f"--gpu: unknown GPU {args.gpu!r} (known: {', '.join(sorted(GPUS))})")
    kw: dict[str, Any] = {}
    csv = args.perf_csv
    if csv is not None and not csv.is_file():
        raise CliError(f"--perf-csv: file not found: {csv}")
    if args.cost_model == "table":
        csv = csv or shared_dir() / "data/perf/splitwise_perf_model.csv"
        if not csv.is_file():
            raise CliError("--cost-model table needs --perf-csv (a Splitwise perf-model CSV)")
        kw["path"] = csv
    elif args.cost_model == "polynomial" and csv is not None:
        kw.update(fit_to="table", path=csv)
    try:
        cm = make_cost_model(args.cost_model, args.model, args.gpu, args.tp, **kw)
        cm.kv_capacity_tokens()
    except (ValueError, KeyError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        where = f"--cost-model {args.cost_model} --model {args.model} --gpu {args.gpu} --tp {args.tp}"
        raise CliError(f"{where}: {msg}") from None
    return cm


def _mapping(option: str, text: str | None) -> dict[str, Any]:
    try:
        return load_mapping(text)
    except ConfigError as exc:
        raise CliError(f"{option}: {exc}") from None


def run_simulate(args: argparse.Namespace) -> dict[str, Any]:
    """Do the work of ``simulate``; raises CliError on bad input. Returns the metrics."""
    from .metrics import write_metrics, write_requests
    from .policies import make_policy
    from .sim import SimConfig, Simulator
    from .traces import TraceError, read_trace

    if args.instances < 1:
        raise CliError(f"--instances must be >= 1, got {args.instances}")
    if not args.rate_scale > 0:
        raise CliError(f"--rate-scale must be > 0, got {args.rate_scale}")
    if args.max_requests is not None and args.max_requests < 1:
        raise CliError(f"--max-requests must be >= 1, got {args.max_requests}")
    for opt in ("slo_ttft_ms", "slo_tpot_ms"):
        v = getattr(args, opt)
        if v is not None and not v > 0:
            raise CliError(f"--{opt.replace('_', '-')} must be > 0, got {v}")
    if args.requests_format == "parquet" and not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
        raise CliError("--requests-format parquet needs pyarrow (pip install pyarrow); use csv")
    if not args.trace.is_file():
        raise CliError(f"--trace: file not found: {args.trace}")
    try:
        trace = read_trace(args.trace, args.trace_format)
    except TraceError as exc:
        raise CliError(f"--trace: {exc}") from None
    except (ValueError, OSError) as exc:
        raise CliError(f"--trace {args.trace}: {exc}") from None
    if len(trace) == 0:
        raise CliError(f"--trace {args.trace}: no requests")
    if args.max_requests is not None:
        trace = trace.head(args.max_requests)
    if args.rate_scale != 1.0:
        trace = trace.scaled(args.rate_scale)
    cost = _cost_model(args)
    policy_cfg = _mapping("--policy-config", args.policy_config)
    sim_cfg_map = _mapping("--sim-config", args.sim_config)
    try:
        policy = make_policy(args.policy, policy_cfg)
    except ConfigError as exc:
        raise CliError(f"--policy-config: {exc}") from None
    try:
        sim_cfg = from_mapping(SimConfig, sim_cfg_map, where="sim")
    except ConfigError as exc:
        raise CliError(f"--sim-config: {exc}") from None
    try:
        sim = Simulator(trace, cost, policy, args.instances, sim_cfg, seed=args.seed, progress=not args.no_progress)
    except ConfigError as exc:
        raise CliError(f"--policy {args.policy} / --instances {args.instances}: {exc}") from None
    except ValueError as exc:
        raise CliError(f"--model {args.model} --gpu {args.gpu} --tp {args.tp}: {exc}") from None
    started = _dt.datetime.now(_dt.UTC)
    result = sim.run()
    finished = _dt.datetime.now(_dt.UTC)
    metrics = result.metrics(slo_ttft_ms=args.slo_ttft_ms, slo_tpot_ms=args.slo_tpot_ms)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "trace": str(args.trace),
        "trace_format": args.trace_format,
        "requests": len(trace),
        "rate_scale": args.rate_scale,
        "policy": args.policy,
        "policy_config": policy_cfg,
        "sim_config": sim_cfg_map,
        "instances": args.instances,
        "model": args.model,
        "gpu": args.gpu,
        "tp": args.tp,
        "cost_model": args.cost_model,
        "perf_csv": str(args.perf_csv) if args.perf_csv else None,
        "seed": args.seed,
    }
    write_metrics(
        metrics,
        out / "metrics.json",
        settings=settings,
        simulator={**result.stats, "wall_s": result.wall_s},
    )
    write_requests(result.requests, out / f"requests.{args.requests_format}")
    result.instances.to_csv(out / "instances.csv", index=False)
    write_json(
        out / "provenance.json",
        build_provenance(
            package="serving",
            experiment="simulate",
            config=settings,
            seed=args.seed,
            started=started,
            finished=finished,
            extra_packages=("fulcrum-serving", "tqdm"),
            source=Path(__file__).parent,
        ),
    )
    return metrics


def simulate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m serving simulate``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        metrics = run_simulate(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keys = ("completed", "failed", "request_throughput", "mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "goodput")
    print(json.dumps({k: metrics[k] for k in keys if k in metrics}))
    print(f"wrote {args.out}")
    return 0
