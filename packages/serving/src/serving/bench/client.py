"""Asyncio load client for any OpenAI-compatible server: replay a trace, time every token.

``run_benchmark`` sends request i at ``t0 + arrival_s[i]`` (an open loop: the schedule does not wait
for earlier answers; with ``max_concurrency`` a request past its arrival waits for a free slot, and
that wait is reported as ``queue_s``, outside its latencies, as vLLM's benchmark does). Each request
is a streaming ``POST /v1/completions`` with ``max_tokens`` = the trace's output tokens,
``ignore_eos`` (so the server generates exactly that many), temperature 0, and a prompt of exactly
the trace's prompt tokens (``prompts.build_prompts``). The client reads the server-sent events and
stamps every ``data:`` chunk that carries a choice with ``time.perf_counter``:

    TTFT  = first chunk − send               ITL_k = chunk_k − chunk_{k−1}  (k ≥ 2)
    E2E   = [DONE] − send                    TPOT  = (E2E − TTFT) / (output tokens − 1)

Output tokens are ``usage.completion_tokens`` when the server sends usage (requested with
``stream_options.include_usage``), else the number of chunks with a choice.

A request is completed when the stream ended with ``data: [DONE]``, had no error object and brought
at least ``max_tokens`` tokens. Otherwise it failed, with ``reason`` one of:

    http_<status>   status other than 200 (body start in ``error``)
    timeout         no answer within ``timeout_s`` for the whole request (or an httpx timeout)
    connect_error   the connection could not be opened
    disconnected    the server closed the connection before a response
    stream_dropped  the stream ended, or the connection broke, before [DONE]
    short_output    [DONE] arrived with fewer tokens than asked
    server_error    an ``error`` object arrived in the stream
    bad_response    a data line that is not JSON
    client_error    anything else (the exception in ``error``)

The run never raises for a request's failure; every request gets one row. Proxy variables of the
environment are ignored (``trust_env=False``): a load test should reach the server directly.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import httpx
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..traces import Trace
from .prompts import DEFAULT_ID_RANGE, build_prompts

COLUMNS = (
    "request_id",
    "arrival_s",
    "send_s",
    "end_s",
    "queue_s",
    "prompt_tokens",
    "max_tokens",
    "output_tokens",
    "server_prompt_tokens",
    "n_chunks",
    "finished",
    "reason",
    "http_status",
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "itl_s",
    "error",
)


def _new_record() -> dict[str, Any]:
    return {
        "output_tokens": 0,
        "server_prompt_tokens": -1,
        "n_chunks": 0,
        "finished": False,
        "reason": "",
        "http_status": 0,
        "ttft_s": math.nan,
        "tpot_s": math.nan,
        "e2e_s": math.nan,
        "itl_s": [],
        "error": "",
    }


async def _stream_one(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], timeout_s: float, require_full: bool
) -> dict[str, Any]:
    """One streaming request → its record (timings in seconds from the send)."""
    rec = _new_record()
    expected = int(payload["max_tokens"])
    st = time.perf_counter()
    last: float | None = None
    usage_tokens: int | None = None
    done = False

    def fail(reason: str, error: str = "") -> None:
        if not rec["reason"]:
            rec["reason"], rec["error"] = reason, error[:500]

    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("POST", url, json=payload) as resp:
                rec["http_status"] = resp.status_code
                if resp.status_code != 200:
                    body = (await resp.aread()).decode("utf-8", "replace")
                    fail(f"http_{resp.status_code}", body)
                else:
                    async for line in resp.aiter_lines():
                        if not line.startswith("data:"):
                            continue  # blank separators, comments, event:/id: fields
                        data = line[5:].strip()
                        if data == "[DONE]":
                            done = True
                            break
                        try:
                            obj = json.loads(data)
                        except json.JSONDecodeError:
                            fail("bad_response", data[:200])
                            break
                        if not isinstance(obj, dict):
                            fail("bad_response", data[:200])
                            break
                        if obj.get("error"):
                            fail("server_error", json.dumps(obj["error"])[:500])
                            continue
                        if obj.get("choices"):
                            now = time.perf_counter()
                            if last is None:
                                rec["ttft_s"] = now - st
                            else:
                                rec["itl_s"].append(now - last)
                            last = now
                            rec["n_chunks"] += 1
                        usage = obj.get("usage")
                        if isinstance(usage, dict):
                            if usage.get("completion_tokens") is not None:
                                usage_tokens = int(usage["completion_tokens"])
                            if usage.get("prompt_tokens") is not None:
                                rec["server_prompt_tokens"] = int(usage["prompt_tokens"])
    except TimeoutError:
        fail("timeout", f"no complete answer within {timeout_s:g} s")
    except httpx.TimeoutException as exc:
        fail("timeout", f"{type(exc).__name__}: {exc}")
    except httpx.ConnectError as exc:
        fail("connect_error", f"{type(exc).__name__}: {exc}")
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        fail("stream_dropped" if rec["http_status"] == 200 else "disconnected", f"{type(exc).__name__}: {exc}")
    except httpx.HTTPError as exc:
        fail("client_error", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a request's failure must not end the run
        fail("client_error", f"{type(exc).__name__}: {exc}")
    end = time.perf_counter()
    rec["e2e_s"] = end - st
    rec["output_tokens"] = usage_tokens if usage_tokens is not None else rec["n_chunks"]
    if not rec["reason"]:
        if not done:
            fail("stream_dropped", "the stream ended before data: [DONE]")
        elif require_full and rec["output_tokens"] < expected:
            fail("short_output", f"{rec['output_tokens']} of {expected} tokens")
    rec["finished"] = not rec["reason"]
    n = rec["output_tokens"]
    if rec["finished"] and n > 1:
        rec["tpot_s"] = (rec["e2e_s"] - rec["ttft_s"]) / (n - 1)
    return rec


async def run_benchmark(
    base_url: str,
    model: str,
    trace: Trace,
    *,
    max_concurrency: int | None = None,
    timeout_s: float = 600.0,
    progress: bool = True,
    seed: int = 0,
    prompt_mode: str = "ids",
    id_range: tuple[int, int] = DEFAULT_ID_RANGE,
    ignore_eos: bool = True,
    require_full_output: bool = True,
    temperature: float = 0.0,
    extra_body: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Replay ``trace`` against ``base_url`` (e.g. ``http://127.0.0.1:8000``); one row per request (``COLUMNS``).

    ``arrival_s`` is the scheduled arrival, ``send_s``/``end_s`` the actual send and end times, all in
    seconds from the run's start; ``itl_s`` holds the request's inter-token gaps (a list). The run's
    duration is ``end_s.max()`` (the time until the last request returned).
    """
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1 or None, got {max_concurrency}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    prompts = build_prompts(trace, prompt_mode, seed, id_range)
    url = base_url.rstrip("/") + "/v1/completions"
    n = len(trace)
    arrivals = trace.arrival_s.tolist()
    sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency or 100)
    bar = tqdm(total=n, desc="bench", unit="req", disable=not progress)
    records: list[dict[str, Any]] = [{} for _ in range(n)]

    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), limits=limits, trust_env=False) as client:
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            payload = {
                "model": model,
                "prompt": prompts[i],
                "max_tokens": int(trace.output_tokens[i]),
                "temperature": temperature,
                "stream": True,
                "stream_options": {"include_usage": True},
                **({"ignore_eos": True} if ignore_eos else {}),
                **(extra_body or {}),
            }
            try:
                if sem is not None:
                    async with sem:
                        send = time.perf_counter() - t0
                        rec = await _stream_one(client, url, payload, timeout_s, require_full_output)
                else:
                    send = time.perf_counter() - t0
                    rec = await _stream_one(client, url, payload, timeout_s, require_full_output)
            finally:
                bar.update(1)
            rec.update(
                request_id=i,
                arrival_s=arrivals[i],
                send_s=send,
                end_s=send + rec["e2e_s"],
                queue_s=send - arrivals[i],
                prompt_tokens=int(trace.prompt_tokens[i]),
                max_tokens=int(trace.output_tokens[i]),
            )
            records[i] = rec

        tasks = []
        for i in range(n):
            delay = t0 + arrivals[i] - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        try:
            await asyncio.gather(*tasks)
        finally:
            bar.close()
    return pd.DataFrame(records, columns=list(COLUMNS))


def pooled_itl(frame: pd.DataFrame) -> np.ndarray:
    """All inter-token gaps of the completed requests, in seconds (vLLM pools ITLs the same way)."""
    done = frame[frame["finished"].astype(bool)]
    parts = [np.asarray(x, dtype=np.float64) for x in done["itl_s"]]
    return np.concatenate(parts) if parts else np.zeros(0)


def summarize(
    frame: pd.DataFrame, *, slo_ttft_ms: float | None = None, slo_tpot_ms: float | None = None
) -> dict[str, float]:
    """``serving.metrics.compute_metrics`` on a run's table: duration = the last request's end."""
    from ..metrics import compute_metrics

    duration = float(np.nanmax(frame["end_s"].to_numpy(dtype=np.float64))) if len(frame) else 0.0
    return compute_metrics(
        frame, pooled_itl(frame), duration_s=duration, slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms
    )


def failure_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Failed requests per reason."""
    failed = frame.loc[~frame["finished"].astype(bool), "reason"]
    return {str(k): int(v) for k, v in failed.value_counts().sort_index().items()}


def requests_for_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """The table with ``itl_s`` as a JSON list string (one CSV cell)."""
    out = frame.copy()
    out["itl_s"] = [json.dumps([round(float(x), 9) for x in v]) for v in out["itl_s"]]
    return out
