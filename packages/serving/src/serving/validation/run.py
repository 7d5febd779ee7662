"""Measure the real engine under a Poisson trace: start it, burst it, replay the trace, stop it.

    python -m serving.validation.run (--profile-dir PROFILE | --server-command 'vllm serve M --port {port}') --out DIR
        [--size ci|local|paper] [--trace poisson|FILE [--trace-format F]] [--requests N]
        [--rate R | --rate-fraction 0.55] [--saturation-requests N]
        [--prompt-median 128 --prompt-sigma 0.5 --prompt-min 16 --prompt-max 1024]
        [--output-median 32 --output-sigma 0.5 --output-min 8 --output-max 128] [--seed 0]

Steps (one engine process for all of them, so the burst also warms it up):

1. start ``python -m serving.engine`` with the profile's engine settings (model config, threads,
   max batch, max model length, seed) on a free loopback port — or, with ``--server-command``, any
   OpenAI-compatible server (vLLM: ``vllm serve MODEL --port {port} ...``; ``{port}`` is filled in), in
   its own session so that stopping it also ends its workers — and wait for ``/health``;
2. **saturation burst**: ``--saturation-requests`` requests with the trace's length laws, all arriving
   within a few milliseconds (Poisson at 1000 req/s); measured saturation throughput μ = completed /
   duration (``request_throughput`` of the burst). It includes the burst's drain, where the batch is
   no longer full, so μ slightly underestimates the sustained maximum — the chosen load is then a
   little lower than the nominal fraction, unless the machine slows down between burst and run (on a
   shared machine it can: see serving_validation.md);
3. **the run**: a Poisson trace at ``--rate`` req/s, or at ``--rate-fraction`` × μ (default 0.55), with
   lognormal prompt/output lengths (``serving.traces.poisson_trace``); or the first ``--requests`` of a
   trace file (``--trace FILE``), lengths capped at ``--prompt-max``/``--output-max``, rescaled to that
   rate (its burst then draws from lognormal laws fitted to the file's lengths). The trace actually
   replayed is written as ``trace.csv`` (BurstGPT schema, so any ``read_trace`` reads it back exactly)
   and replayed with ``python -m serving.bench`` (a separate process, as a real client would be);
4. scrape the engine's ``/metrics`` before and after each phase (its own prefill/decode counters give
   the mean prefill and decode-step times *inside the server* — the in-server counterpart of the
   profile; for another server every series at the end goes to run.json), then stop the server
   (SIGINT to its process group, SIGKILL after a grace period).

Outputs in DIR: ``trace.csv``, ``requests.csv``, ``metrics.json`` (the bench's, for the run),
``saturation/{trace.csv,requests.csv,metrics.json}``, ``engine_stats.json`` (counter deltas per phase),
``run.json`` (settings, μ, rate, wall and CPU seconds of the server and of each client process from
``os.wait4``, load averages), ``server.log``, ``bench.log``. Exit status 0 when the run completed at least
one request, 1 on a failure (server not healthy, no request completed), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..traces import LengthDist, Trace, TraceError, poisson_trace, read_trace
from .profile import read_profile

__all__ = [
    "RUN_SIZES",
    "engine_delta",
    "main",
    "measure_engine",
    "scrape",
    "start_engine",
    "wait_healthy",
    "write_burstgpt",
]

# requests of the run and of the saturation burst per size
RUN_SIZES = {
    "ci": {"requests": 24, "saturation_requests": 16},
    "local": {"requests": 240, "saturation_requests": 64},
    "paper": {"requests": 1500, "saturation_requests": 160},
}
BURST_RATE = 1000.0  # req/s: the burst arrives within a few ms
ENGINE_COUNTERS = (
    "prefills_total",
    "prefill_tokens_total",
    "prefill_seconds_total",
    "decode_steps_total",
    "decode_tokens_total",
    "decode_seconds_total",
)


def write_burstgpt(trace: Trace, path: str | Path) -> Path:
    """Write ``trace`` as a BurstGPT CSV (``Timestamp`` in seconds, repr precision, so reading it back
    with ``read_trace(path, "burstgpt")`` gives the same arrivals and lengths)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "Timestamp": [repr(float(a)) for a in trace.arrival_s],
            "Model": "engine",
            "Request tokens": trace.prompt_tokens,
            "Response tokens": trace.output_tokens,
            "Total tokens": trace.prompt_tokens + trace.output_tokens,
            "Log Type": "validation",
        }
    )
    frame.to_csv(path, index=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_child(proc: subprocess.Popen, timeout_s: float) -> dict[str, float]:
    """Reap ``proc`` with ``os.wait4`` (its own CPU seconds); kill it after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    killed = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() > deadline and not killed:
            try:
                if os.getpgid(proc.pid) == proc.pid:  # started in its own session: end its workers too
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            except ProcessLookupError:
                pass
            killed, deadline = True, time.monotonic() + 10.0
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"returncode": proc.returncode, "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "killed": killed}


def stop_engine(proc: subprocess.Popen, grace_s: float = 30.0) -> dict[str, float]:
    """SIGINT to the server's process group (uvicorn and vLLM shut down gracefully on it), SIGKILL after
    ``grace_s``; then SIGKILL whatever is left of that group (workers of a server that died first)."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    usage = _wait_child(proc, grace_s)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return usage


def start_engine(eng: dict[str, Any], log: Path, port: int = 0) -> tuple[subprocess.Popen, str]:
    """Start ``python -m serving.engine`` with the settings ``eng`` (model_config, threads, max_batch,
    max_model_len, seed, checkpoint) on 127.0.0.1:``port`` (0: a free one); returns (process, base URL)."""
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "serving.engine",
        "--model-config",
        str(eng["model_config"]),
        "--threads",
        str(eng["threads"]),
        "--max-batch",
        str(eng["max_batch"]),
        "--max-model-len",
        str(eng["max_model_len"]),
        "--seed",
        str(eng["seed"]),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if eng.get("checkpoint"):
        cmd += ["--checkpoint", str(eng["checkpoint"])]
    threads = str(eng["threads"])
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
    with Path(log).open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def start_server_command(template: str, log: Path, port: int = 0) -> tuple[subprocess.Popen, str]:
    """Start any OpenAI-compatible server from a command template (``{port}`` is replaced by a free loopback
    port, or ``port``), e.g. ``vllm serve meta-llama/Llama-3.1-8B-Instruct --port {port}``; in its own
    session, so that ``stop_engine`` also ends the workers it spawns. Returns (process, base URL)."""
    port = port or free_port()
    cmd = shlex.split(template.replace("{port}", str(port)))
    if not cmd:
        raise ValueError("--server-command is empty")
    with Path(log).open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _get(url: str, timeout_s: float = 5.0) -> tuple[int, str]:
    import httpx

    r = httpx.get(url, timeout=timeout_s, trust_env=False)
    return r.status_code, r.text


def wait_healthy(proc: subprocess.Popen, base_url: str, timeout_s: float, log: Path, path: str = "/health") -> float:
    """Seconds until ``path`` answered 200; RuntimeError (with the log tail) if the server died or timed out."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(
                f"engine exited with status {proc.returncode} before /health:\n{log.read_text()[-3000:]}"
            )
        try:
            if _get(base_url + path, 1.0)[0] == 200:
                return time.monotonic() - t0
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server not healthy ({path}) after {timeout_s:g} s:\n{log.read_text()[-3000:]}")


_PROM_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def scrape(base_url: str) -> dict[str, float]:
    """``/metrics`` as {name: value}, summed over label sets."""
    out: dict[str, float] = {}
    _, text = _get(base_url + "/metrics")
    for line in text.splitlines():
        m = _PROM_LINE.match(line.strip())
        if m and not line.startswith("#"):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


def engine_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counter deltas of one phase and the derived means (seconds; batch in sequences)."""
    d = {k: after.get(f"fulcrum_engine_{k}", 0.0) - before.get(f"fulcrum_engine_{k}", 0.0) for k in ENGINE_COUNTERS}

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else math.nan

    d["mean_prefill_s"] = ratio(d["prefill_seconds_total"], d["prefills_total"])
    d["mean_prefill_tokens"] = ratio(d["prefill_tokens_total"], d["prefills_total"])
    d["mean_decode_step_s"] = ratio(d["decode_seconds_total"], d["decode_steps_total"])
    d["mean_decode_batch"] = ratio(d["decode_tokens_total"], d["decode_steps_total"])
    return d


def _bench(
    base_url: str, trace_csv: Path, out: Path, log: Path, timeout_s: float, progress: bool, model: str | None = None
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "serving.bench",
        "--base-url",
        base_url,
        "--trace",
        str(trace_csv),
        "--trace-format",
        "burstgpt",
        "--out",
        str(out),
        "--timeout-s",
        f"{timeout_s:g}",
    ]
    if not progress:
        cmd.append("--no-progress")
    if model:
        cmd += ["--model", model]
    w0 = time.perf_counter()
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=fh if not progress else None)
        usage = _wait_child(proc, timeout_s + 120.0)
    usage["wall_s"] = time.perf_counter() - w0
    if not (out / "metrics.json").is_file():
        raise RuntimeError(
            f"the bench wrote no {out / 'metrics.json'} (status {usage['returncode']}):\n{log.read_text()[-3000:]}"
        )
    return usage


def _lengths(args: argparse.Namespace) -> tuple[LengthDist, LengthDist]:
    prompt = LengthDist.lognormal(args.prompt_median, args.prompt_sigma, args.prompt_min, args.prompt_max)
    output = LengthDist.lognormal(args.output_median, args.output_sigma, args.output_min, args.output_max)
    return prompt, output


def measure_engine(args: argparse.Namespace) -> dict[str, Any]:
    """The four steps of the module docstring; returns run.json's content."""
    if args.server_command:
        eng = {"server_command": args.server_command, "max_model_len": args.max_model_len}
    else:
        eng = read_profile(args.profile_dir)["engine"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompt, output = _lengths(args)
    if eng.get("max_model_len") and args.prompt_max + args.output_max > eng["max_model_len"]:
        raise ValueError(
            f"--prompt-max + --output-max = {args.prompt_max + args.output_max} exceeds the engine's "
            f"max_model_len {eng['max_model_len']}"
        )
    file_trace = None
    if args.trace != "poisson":  # a real trace: its lengths capped to the server's limits, its laws for the burst
        file_trace = read_trace(args.trace, args.trace_format)
        file_trace = replace(
            file_trace,
            prompt_tokens=np.minimum(file_trace.prompt_tokens, args.prompt_max),
            output_tokens=np.minimum(file_trace.output_tokens, args.output_max),
        )
        prompt, output = LengthDist.fit(file_trace.prompt_tokens), LengthDist.fit(file_trace.output_tokens)
    server_log, bench_log = out / "server.log", out / "bench.log"
    bench_log.write_text("")
    info: dict[str, Any] = {
        "profile_dir": str(args.profile_dir) if args.profile_dir else None,
        "engine": eng,
        "loadavg": {"start": list(os.getloadavg())},
        "cpu_count": os.cpu_count(),
    }
    w_all = time.perf_counter()
    if args.server_command:
        server, base_url = start_server_command(args.server_command, server_log, args.port)
    else:
        server, base_url = start_engine(eng, server_log, args.port)
    info["engine_command"], info["base_url"] = server.args, base_url
    try:
        info["startup_s"] = wait_healthy(server, base_url, args.startup_timeout_s, server_log, args.health_path)
        phases: dict[str, Any] = {}
        stats: dict[str, Any] = {}
        before = scrape(base_url)
        mu = math.nan
        if args.saturation_requests > 0:
            burst = poisson_trace(
                BURST_RATE, n=args.saturation_requests, prompt=prompt, output=output, seed=args.seed + 1, name="burst"
            )
            sat_dir = out / "saturation"
            write_burstgpt(burst, sat_dir / "trace.csv")
            info["loadavg"]["saturation"] = list(os.getloadavg())
            phases["saturation"] = _bench(
                base_url, sat_dir / "trace.csv", sat_dir, bench_log, args.timeout_s, args.progress, args.served_model
            )
            after = scrape(base_url)
            stats["saturation"] = engine_delta(before, after)
            before = after
            sat = json.loads((sat_dir / "metrics.json").read_text())
            mu = float(sat["request_throughput"]) if sat.get("request_throughput") else math.nan
            info["saturation"] = {
                "requests": len(burst),
                "completed": sat.get("completed"),
                "request_throughput_rps": mu,
                "output_throughput_tps": sat.get("output_throughput"),
            }
        if args.rate is not None:
            rate = float(args.rate)
        else:
            if not math.isfinite(mu) or mu <= 0:
                raise RuntimeError("no saturation throughput measured: give --rate or --saturation-requests > 0")
            rate = args.rate_fraction * mu
        if file_trace is None:
            trace = poisson_trace(
                rate, n=args.requests, prompt=prompt, output=output, seed=args.seed, name="validation"
            )
        else:
            trace = file_trace.head(min(args.requests, len(file_trace))).to_rate(rate)
        write_burstgpt(trace, out / "trace.csv")
        info["trace"] = {
            "source": args.trace,
            "requests": len(trace),
            "rate_rps": rate,
            "rate_fraction_of_saturation": rate / mu if math.isfinite(mu) and mu > 0 else None,
            "prompt": {
                "median": args.prompt_median,
                "sigma": args.prompt_sigma,
                "lo": args.prompt_min,
                "hi": args.prompt_max,
            },
            "output": {
                "median": args.output_median,
                "sigma": args.output_sigma,
                "lo": args.output_min,
                "hi": args.output_max,
            },
            "seed": args.seed,
            "mean_prompt_tokens": float(np.mean(trace.prompt_tokens)),
            "mean_output_tokens": float(np.mean(trace.output_tokens)),
        }
        info["loadavg"]["run"] = list(os.getloadavg())
        phases["run"] = _bench(
            base_url, out / "trace.csv", out, bench_log, args.timeout_s, args.progress, args.served_model
        )
        after = scrape(base_url)
        stats["run"] = engine_delta(before, after)
        info["server_metrics_end"] = after  # every /metrics series (vLLM's too), for the record
        info["loadavg"]["end"] = list(os.getloadavg())
    finally:
        info["server"] = stop_engine(server)
    info["wall_s"] = time.perf_counter() - w_all
    info["clients"] = phases
    if not args.server_command:  # the fulcrum engine's own step counters
        (out / "engine_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    (out / "run.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m serving.validation.run",
        description="Start the CPU engine, measure saturation, replay a Poisson trace with the bench client, stop it.",
    )
    p.add_argument("--profile-dir", type=Path, help="folder of serving.validation.profile (the engine's settings)")
    p.add_argument(
        "--server-command",
        default=None,
        help="instead of the CPU engine: a server command with {port}, e.g. 'vllm serve MODEL --port {port}'",
    )
    p.add_argument("--max-model-len", type=int, default=None, help="the server's limit (checked against the lengths)")
    p.add_argument("--health-path", default="/health", help="readiness endpoint (vLLM's P/D toy proxy: /healthcheck)")
    p.add_argument("--served-model", default=None, help="model name for the requests (default: GET /v1/models)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--size", choices=sorted(RUN_SIZES), default="local", help="default request counts")
    p.add_argument("--trace", default="poisson", help="'poisson' (generated) or a trace file")
    p.add_argument("--trace-format", default=None, help="format of a trace file (azure, mooncake, burstgpt)")
    p.add_argument("--requests", type=int, default=None, help="requests in the run (default by --size)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--rate", type=float, default=None, help="arrival rate in req/s")
    rate.add_argument("--rate-fraction", type=float, default=0.55, help="rate as a fraction of measured saturation")
    p.add_argument("--saturation-requests", type=int, default=None, help="requests in the burst (0: none)")
    p.add_argument("--prompt-median", type=float, default=128.0)
    p.add_argument("--prompt-sigma", type=float, default=0.5)
    p.add_argument("--prompt-min", type=int, default=16)
    p.add_argument("--prompt-max", type=int, default=1024)
    p.add_argument("--output-median", type=float, default=32.0)
    p.add_argument("--output-sigma", type=float, default=0.5)
    p.add_argument("--output-min", type=int, default=8)
    p.add_argument("--output-max", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port", type=int, default=0, help="engine port (default: a free one)")
    p.add_argument("--startup-timeout-s", type=float, default=180.0)
    p.add_argument("--timeout-s", type=float, default=600.0, help="per-request limit of the bench client")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sizes = RUN_SIZES[args.size]
    if args.requests is None:
        args.requests = sizes["requests"]
    if args.saturation_requests is None:
        args.saturation_requests = sizes["saturation_requests"]
    problems = []
    if args.requests < 1:
        problems.append(f"--requests must be >= 1, got {args.requests}")
    if args.saturation_requests < 0:
        problems.append(f"--saturation-requests must be >= 0, got {args.saturation_requests}")
    if args.rate is not None and not args.rate > 0:
        problems.append(f"--rate must be > 0, got {args.rate}")
    if not 0 < args.rate_fraction <= 1.5:
        problems.append(f"--rate-fraction must be in (0, 1.5], got {args.rate_fraction}")
    if args.trace != "poisson" and args.trace_format is None:
        problems.append("--trace-format is needed with a trace file")
    if (args.profile_dir is None) == (args.server_command is None):
        problems.append("give --profile-dir (the CPU engine) or --server-command (another server), not both")
    if args.rate is None and args.saturation_requests == 0:
        problems.append("--rate is needed when --saturation-requests is 0")
    if problems:
        parser.print_usage(sys.stderr)
        print(f"run: error: {problems[0]}", file=sys.stderr)
        return 2
    try:
        info = measure_engine(args)
    except (ValueError, FileNotFoundError, TraceError) as exc:
        print(f"run: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"run: failed: {exc}", file=sys.stderr)
        return 1
    metrics = json.loads((Path(args.out) / "metrics.json").read_text())
    sat = info.get("saturation", {})
    server_cpu = info["server"]["user_s"] + info["server"]["sys_s"]
    print(
        f"saturation {sat.get('request_throughput_rps', math.nan):.2f} req/s; "
        f"run at {info['trace']['rate_rps']:.2f} req/s: {metrics['completed']}/{info['trace']['requests']} completed, "
        f"median TTFT {metrics['median_ttft_ms']:.1f} ms, median TPOT {metrics['median_tpot_ms']:.2f} ms; "
        f"server CPU {server_cpu:.1f} s in {info['wall_s']:.1f} s; wrote {args.out}"
    )
    return 0 if metrics.get("completed", 0) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
