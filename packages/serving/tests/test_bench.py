"""The load client: prompts, replay against the real engine (subprocess), the ``bench`` command, and
failure handling against a purpose-built faulty HTTP server (raw asyncio, in-process)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

httpx = pytest.importorskip("httpx", reason="the load client needs httpx")

from serving.bench import COLUMNS, build_prompts, failure_counts, main, run_benchmark, summarize  # noqa: E402
from serving.traces import LengthDist, Trace, poisson_trace  # noqa: E402

METRIC_KEYS = [
    "completed",
    "failed",
    "duration",
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    *[f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el") for s in ("mean", "median", "p99")],
]


# --------------------------------------------------------------------------------------- prompts


def test_prompts_have_exact_lengths_and_shared_prefix_blocks():
    hash_ids = ((1, 2, 3), (1, 2, 7), (9,), (1, 5))
    trace = Trace(
        arrival_s=np.array([0.0, 0.1, 0.2, 0.3]),
        prompt_tokens=np.array([20, 17, 6, 12]),
        output_tokens=np.array([1, 1, 1, 1]),
        hash_ids=hash_ids,
        block_tokens=8,
    )
    ids = build_prompts(trace, "ids", seed=3)
    assert [len(p) for p in ids] == [20, 17, 6, 12]
    assert all(1000 <= t < 4000 for p in ids for t in p)
    assert ids[0][:16] == ids[1][:16] and ids[0][16:] != ids[1][16:17]  # blocks 1, 2 shared, block 3 not
    assert ids[0][:8] == ids[3][:8] and ids[0][8:12] != ids[3][8:12]
    assert ids == build_prompts(trace, "ids", seed=3) and ids != build_prompts(trace, "ids", seed=4)
    text = build_prompts(trace, "text", seed=3)
    assert [len(t.split(" ")) for t in text] == [20, 17, 6, 12]
    plain = build_prompts(Trace(np.array([0.0, 1.0]), np.array([50, 50]), np.array([1, 1])), "ids")
    assert plain[0][:8] != plain[1][:8]  # no hash ids: independent prompts
    with pytest.raises(ValueError):
        build_prompts(trace, "bytes")


def test_prepare_trace_order_of_edits():
    from serving.bench.command import prepare_trace

    t = Trace(np.array([0.0, 1.0, 2.0, 4.0]), np.array([10, 500, 30, 7]), np.array([5, 300, 1, 2]))
    p = prepare_trace(t, max_requests=3, rate_scale=2.0, clip_prompt=100, clip_output=50)
    assert p.arrival_s.tolist() == [0.0, 0.5, 1.0]
    assert p.prompt_tokens.tolist() == [10, 100, 30] and p.output_tokens.tolist() == [5, 50, 1]
    for bad in ({"rate_scale": 0.0}, {"max_requests": 0}, {"clip_output": 0}):
        with pytest.raises(ValueError):
            prepare_trace(t, **bad)


# --------------------------------------------------------------------------------------- real engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory):
    pytest.importorskip("torch", reason="the engine needs torch")
    pytest.importorskip("fastapi", reason="the engine needs fastapi")
    pytest.importorskip("uvicorn", reason="the engine needs uvicorn")
    log = tmp_path_factory.mktemp("engine") / "server.log"
    port = _free_port()
    cmd = [sys.executable, "-m", "serving.engine", "--port", str(port), "--threads", "1", "--max-batch", "8"]
    cmd += ["--max-model-len", "1024"]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=1.0, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_replay_against_engine(engine_url):
    trace = poisson_trace(
        10.0,
        n=16,
        prompt=LengthDist.lognormal(60, 0.6, lo=1, hi=300),
        output=LengthDist.lognormal(12, 0.4, lo=2, hi=40),
        seed=3,
    )
    df = asyncio.run(run_benchmark(engine_url, "fulcrum-tiny", trace, progress=False, seed=1))
    assert list(df.columns) == list(COLUMNS) and len(df) == 16
    assert df["finished"].all(), df[["reason", "error"]]
    assert (df["output_tokens"] == trace.output_tokens).all()
    assert (df["server_prompt_tokens"] == trace.prompt_tokens).all()  # id prompts: exact token counts
    assert (df["n_chunks"] == df["output_tokens"]).all()
    assert (df["ttft_s"] > 0).all() and (df["ttft_s"] < df["e2e_s"]).all()
    assert all(len(itl) == n - 1 for itl, n in zip(df["itl_s"], df["output_tokens"], strict=True))
    # E2E = TTFT + Σ ITL + the gap from the last token to [DONE] (≥ 0, small)
    tail = df["e2e_s"] - df["ttft_s"] - df["itl_s"].map(sum)
    assert (tail >= 0).all() and (tail < 0.5).all()
    # arrivals are replayed: never early (asyncio timers fire at or after their time), in order
    assert (df["send_s"] >= df["arrival_s"] - 1e-3).all()
    assert df["send_s"].is_monotonic_increasing
    assert np.median(df["queue_s"]) < 0.2
    m = summarize(df, slo_ttft_ms=60_000, slo_tpot_ms=60_000)
    assert all(k in m for k in METRIC_KEYS)
    assert m["completed"] == 16 and m["failed"] == 0 and m["slo_attainment"] == 1.0
    assert m["total_output_tokens"] == int(trace.output_tokens.sum())
    assert m["duration"] == pytest.approx(df["end_s"].max())
    assert m["duration"] >= trace.duration


def _azure_csv(path: Path, n: int, seed: int) -> Path:
    """An Azure-format trace with small token counts (the shared fixture's are sized for real traces)."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(0.2, n)) - 0.0
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for ti, c, g in zip(t, rng.integers(1, 200, n), rng.integers(2, 20, n), strict=True):
        sec, frac = divmod(int(round(ti * 1e7)), 10_000_000)
        rows.append(f"2023-11-16 18:{17 + sec // 60:02d}:{sec % 60:02d}.{frac:07d},{c},{g}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_bench_command_writes_outputs(engine_url, tmp_path, capsys):
    trace_file = _azure_csv(tmp_path / "azure.csv", 12, seed=5)
    out = tmp_path / "run"
    argv = ["--base-url", engine_url, "--trace", str(trace_file), "--trace-format", "azure", "--out", str(out)]
    argv += ["--rate-scale", "4", "--max-requests", "8", "--max-concurrency", "3", "--slo-ttft-ms", "60000"]
    argv += ["--slo-tpot-ms", "60000", "--no-progress"]  # no --model: taken from /v1/models
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in [*METRIC_KEYS, "goodput", "slo_attainment", "failure_reasons", "benchmark"]:
        assert key in metrics, key
    assert metrics["completed"] == 8 and metrics["failure_reasons"] == {}
    assert metrics["benchmark"]["model"] == "fulcrum-tiny" and metrics["benchmark"]["requests"] == 8
    rows = pd.read_csv(out / "requests.csv")
    assert len(rows) == 8 and set(COLUMNS) <= set(rows.columns)
    assert [len(json.loads(x)) for x in rows["itl_s"]] == list(rows["output_tokens"] - 1)
    assert "TTFT" in capsys.readouterr().out


def test_bench_command_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nnot-a-time,1,1\n")
    argv = ["--base-url", "http://127.0.0.1:9", "--model", "m", "--trace", str(bad), "--trace-format", "azure"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert "bad.csv:2" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- faulty server

# behaviour chosen by the request's max_tokens (= the trace's output tokens)
OK, HTTP500, DIES, SLOW, SHORT, NO_DONE, ERROR_OBJ, GARBAGE, HANGUP = 3, 4, 5, 6, 7, 8, 9, 10, 11
EXPECTED = {
    OK: "",
    HTTP500: "http_500",
    DIES: "stream_dropped",
    SLOW: "timeout",
    SHORT: "short_output",
    NO_DONE: "stream_dropped",
    ERROR_OBJ: "server_error",
    GARBAGE: "bad_response",
    HANGUP: "disconnected",
}


def _sse(obj: object) -> bytes:
    data = f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _token(i: int) -> dict:
    return {"choices": [{"index": 0, "text": f"t{i}", "finish_reason": None}]}


async def _faulty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
    body = json.loads(await reader.readexactly(length))
    mode = body["max_tokens"]
    if mode == HANGUP:
        writer.close()
        return
    if mode == SLOW:
        await asyncio.sleep(3.0)
    if mode == HTTP500:
        msg = b'{"error": "boom"}'
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(msg) + msg)
        await writer.drain()
        writer.close()
        return
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n")
    writer.write(b"Connection: close\r\n\r\n")
    n = {SHORT: mode - 2, DIES: 2}.get(mode, mode)
    for i in range(n):
        writer.write(_sse(_token(i)))
        await writer.drain()
        await asyncio.sleep(0.005)
        if mode == ERROR_OBJ and i == 1:
            writer.write(_sse({"error": {"message": "engine fell over", "code": 500}}))
        if mode == GARBAGE and i == 1:
            writer.write(_sse("{truncated"))
    if mode == DIES:
        writer.transport.abort()  # connection reset in the middle of the chunked body
        return
    writer.write(_sse({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": n}}))
    if mode != NO_DONE:
        writer.write(_sse("[DONE]"))
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    writer.close()


def test_failures_are_counted_with_reasons():
    modes = list(EXPECTED)
    trace = Trace(
        arrival_s=np.arange(len(modes)) * 0.01,
        prompt_tokens=np.full(len(modes), 4),
        output_tokens=np.array(modes),
    )

    async def scenario() -> pd.DataFrame:
        server = await asyncio.start_server(_faulty, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await run_benchmark(f"http://127.0.0.1:{port}", "m", trace, timeout_s=0.8, progress=False)

    t0 = time.monotonic()
    df = asyncio.run(scenario())
    assert time.monotonic() - t0 < 3.0  # the slow request is cut at its 0.8 s timeout
    assert list(df["reason"]) == [EXPECTED[m] for m in modes], df[["max_tokens", "reason", "error"]]
    ok = df[df["max_tokens"] == OK].iloc[0]
    assert ok["finished"] and ok["output_tokens"] == OK and ok["ttft_s"] < ok["e2e_s"]
    assert df.loc[df["max_tokens"] == HTTP500, "http_status"].item() == 500
    assert "boom" in df.loc[df["max_tokens"] == HTTP500, "error"].item()
    assert df.loc[df["max_tokens"] == DIES, "output_tokens"].item() == 2  # tokens before the drop are kept
    assert df.loc[df["max_tokens"] == SLOW, "e2e_s"].item() == pytest.approx(0.8, abs=0.3)
    m = summarize(df)
    assert m["completed"] == 1 and m["failed"] == len(modes) - 1
    assert m["total_output_tokens"] == OK  # failed requests add no tokens or latencies
    assert m["mean_ttft_ms"] == pytest.approx(ok["ttft_s"] * 1000)
    assert failure_counts(df)["stream_dropped"] == 2


def test_unreachable_server_fails_every_request():
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    trace = poisson_trace(50.0, n=5, prompt=LengthDist.fixed(3), output=LengthDist.fixed(2), seed=0)
    df = asyncio.run(run_benchmark(f"http://127.0.0.1:{port}", "m", trace, timeout_s=5, progress=False))
    assert list(df["reason"]) == ["connect_error"] * 5 and not df["finished"].any()
    m = summarize(df)
    assert m["completed"] == 0 and m["failed"] == 5 and math.isnan(m["mean_ttft_ms"])
