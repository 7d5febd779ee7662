"""OpenAI-compatible HTTP front end of the engine (FastAPI + uvicorn) and the ``serve`` command.

Endpoints:

- ``POST /v1/completions`` — body fields used: ``model`` (must equal the served name when given, else
  404), ``prompt`` (a string, a list of token ids, or a one-element list of either), ``max_tokens``
  (default 16), ``temperature`` (default 1.0; 0 = greedy), ``ignore_eos`` (default false), ``seed``
  (default: derived from the server's ``--seed`` and a request counter), ``stream`` and
  ``stream_options.include_usage``. Only ``n = 1`` is served. A prompt longer than the model allows,
  ``prompt + max_tokens`` over ``--max-model-len``, or ids outside the vocabulary give 400.
  Non-streaming: one JSON ``text_completion``. Streaming (server-sent events): one ``data:`` chunk per
  token (``choices[0].text``, ``finish_reason`` on the last), then a usage chunk when asked, then
  ``data: [DONE]``. Every choice also carries ``token_ids`` (the ids of its tokens; an extension).
- ``GET /v1/models`` — the one served model and its ``max_model_len``.
- ``GET /health`` — 200 once the model is loaded (in every worker), 503 before (or after a failed load).
- ``GET /metrics`` — Prometheus text format. Gauges/counters named as vLLM's (so the same HPA and
  dashboards work): ``vllm:num_requests_running`` (requests with ≥ 1 token sent, not finished),
  ``vllm:num_requests_waiting`` (accepted, no token yet), ``vllm:prompt_tokens_total``,
  ``vllm:generation_tokens_total``, ``vllm:request_success_total{finished_reason}``; and the engine's
  own ``fulcrum_engine_*``: ``generation_tokens_per_second`` (tokens sent in the last 10 s / 10 s, or
  / uptime before 10 s), prefill and decode counters (mean decode batch = decode_tokens_total /
  decode_steps_total), KV cache bytes, and KV transfer bytes/seconds (disaggregated mode).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from .config import ModelSpec, load_model_config
from .disagg import DisaggEngine
from .protocol import EngineRequest, SamplingParams, TokenEvent
from .tokenizer import ByteTokenizer, HFTokenizer, load_tokenizer

RATE_WINDOW_S = 10.0


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "code": self.status}}


@dataclass
class Parsed:
    prompt: list[int]
    params: SamplingParams
    stream: bool
    include_usage: bool


def _int(body: dict, key: str, default: int, lo: int) -> int:
    v = body.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ApiError(400, f"'{key}' must be an integer >= {lo}, got {v!r}")
    return v


def parse_completion(
    body: Any, tokenizer: ByteTokenizer | HFTokenizer, *, vocab_size: int, max_model_len: int, default_seed: int
) -> Parsed:
    """Validate a /v1/completions body (module docstring) → prompt ids and sampling parameters."""
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        ids = tokenizer.encode(prompt)
    elif isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        ids = [int(t) for t in prompt]
    else:
        raise ApiError(400, "'prompt' must be a string or a list of token ids (one prompt per request)")
    if not ids:
        raise ApiError(400, "the prompt is empty")
    bad = [t for t in ids if not 0 <= t < vocab_size]
    if bad:
        raise ApiError(400, f"token id(s) {bad[:5]} outside the vocabulary [0, {vocab_size})")
    if _int(body, "n", 1, 1) != 1:
        raise ApiError(400, "only n = 1 is supported")
    max_tokens = _int(body, "max_tokens", 16, 1)
    if len(ids) + max_tokens > max_model_len:
        raise ApiError(
            400,
            f"this model's maximum context length is {max_model_len} tokens; the request asks for "
            f"{len(ids)} prompt + {max_tokens} output tokens",
        )
    temperature = body.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature < math.inf:
        raise ApiError(400, f"'temperature' must be a number >= 0, got {temperature!r}")
    seed = body.get("seed")
    if seed is None:
        seed = default_seed
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise ApiError(400, f"'seed' must be an integer, got {seed!r}")
    ignore_eos = bool(body.get("ignore_eos", False))
    opts = body.get("stream_options") or {}
    return Parsed(
        prompt=ids,
        params=SamplingParams(
            max_tokens=max_tokens, temperature=float(temperature), ignore_eos=ignore_eos, seed=seed % 2**63
        ),
        stream=bool(body.get("stream", False)),
        include_usage=bool(isinstance(opts, dict) and opts.get("include_usage", False)),
    )


@dataclass
class FrontStats:
    """Counters of the HTTP layer (request states and token rates)."""

    started: float = field(default_factory=time.monotonic)
    state: dict[str, str] = field(default_factory=dict)  # req_id → "waiting" | "running"
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    kv_transfer_bytes_total: int = 0
    kv_transfer_seconds_total: float = 0.0
    buckets: deque = field(default_factory=deque)  # (whole second, tokens sent in it)

    def on_token(self, ev: TokenEvent) -> None:
        self.generation_tokens_total += 1
        sec = int(time.monotonic())
        if self.buckets and self.buckets[-1][0] == sec:
            self.buckets[-1][1] += 1
        else:
            self.buckets.append([sec, 1])
        while self.buckets and self.buckets[0][0] < sec - RATE_WINDOW_S:
            self.buckets.popleft()
        self.kv_transfer_bytes_total += ev.kv_bytes
        self.kv_transfer_seconds_total += ev.kv_transfer_s

    def tokens_per_second(self) -> float:
        now = time.monotonic()
        window = min(RATE_WINDOW_S, max(now - self.started, 1e-9))
        return sum(n for s, n in self.buckets if s >= now - window) / window


def _prom(model: str, rows: list[tuple[str, str, str, float, dict[str, str] | None]]) -> str:
    out, seen = [], set()
    for name, typ, help_, value, labels in rows:
        if name not in seen:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {typ}")
            seen.add(name)
        lab = {"model_name": model, **(labels or {})}
        text = ",".join(f'{k}="{v}"' for k, v in lab.items())
        out.append(f"{name}{{{text}}} {float(value):.17g}")
    return "\n".join(out) + "\n"


def create_app(
    engine: Any,
    tokenizer: ByteTokenizer | HFTokenizer,
    *,
    model_name: str,
    vocab_size: int,
    max_model_len: int,
    seed: int = 0,
) -> FastAPI:
    """The FastAPI application over a started-on-startup engine."""
    stats = FrontStats()
    counter = {"n": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()

        async def watch() -> None:
            await asyncio.to_thread(engine.ready.wait)
            if engine.error:
                print(f"serve: {engine.error}", file=sys.stderr, flush=True)
                server = getattr(app.state, "server", None)
                if server is not None:
                    server.should_exit = True
            else:
                print(f"serve: ready ({engine.mode}, model {model_name})", file=sys.stderr, flush=True)

        watcher = asyncio.create_task(watch())
        try:
            yield
        finally:
            watcher.cancel()
            await asyncio.to_thread(engine.stop)

    app = FastAPI(title="fulcrum serving engine", lifespan=lifespan)

    def healthy() -> bool:
        return engine.ready.is_set() and engine.error is None

    @app.get("/health")
    async def health() -> Any:
        if healthy():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": engine.error or "loading"}, status_code=503)

    @app.get("/v1/models")
    async def models() -> Any:
        return {
            "object": "list",
            "data": [
                {
                    "id": model_name,
                    "object": "model",
                    "created": int(stats.started),
                    "owned_by": "fulcrum",
                    "max_model_len": max_model_len,
                }
            ],
        }

    @app.get("/metrics")
    async def metrics() -> Any:
        waiting = sum(1 for s in stats.state.values() if s == "waiting")
        running = len(stats.state) - waiting
        es = engine.stats()
        rows: list[tuple[str, str, str, float, dict[str, str] | None]] = [
            ("vllm:num_requests_running", "gauge", "Requests with a token sent and not finished.", running, None),
            ("vllm:num_requests_waiting", "gauge", "Requests accepted with no token yet.", waiting, None),
            (
                "vllm:prompt_tokens_total",
                "counter",
                "Prompt tokens of accepted requests.",
                stats.prompt_tokens_total,
                None,
            ),
            ("vllm:generation_tokens_total", "counter", "Generated tokens sent.", stats.generation_tokens_total, None),
        ]
        for reason, n in sorted(stats.finished.items()):
            rows.append(("vllm:request_success_total", "counter", "Finished requests.", n, {"finished_reason": reason}))
        rows.append(
            (
                "fulcrum_engine_generation_tokens_per_second",
                "gauge",
                f"Generated tokens sent over the last {RATE_WINDOW_S:g} s, per second.",
                stats.tokens_per_second(),
                None,
            )
        )
        for key in (
            "prefills_total",
            "prefill_tokens_total",
            "prefill_seconds_total",
            "decode_steps_total",
            "decode_tokens_total",
            "decode_seconds_total",
            "kv_cache_bytes",
            "running",
            "waiting",
        ):
            typ = "counter" if key.endswith("_total") else "gauge"
            rows.append((f"fulcrum_engine_{key}", typ, f"Engine {key.replace('_', ' ')}.", es.get(key, 0.0), None))
        rows.append(
            (
                "fulcrum_engine_kv_transfer_bytes_total",
                "counter",
                "KV bytes shipped prefill → decode.",
                stats.kv_transfer_bytes_total,
                None,
            )
        )
        rows.append(
            (
                "fulcrum_engine_kv_transfer_seconds_total",
                "counter",
                "Seconds from KV send to decode admission.",
                stats.kv_transfer_seconds_total,
                None,
            )
        )
        return PlainTextResponse(_prom(model_name, rows), media_type="text/plain; version=0.0.4")

    def error_response(err: ApiError) -> Any:
        return JSONResponse(err.body(), status_code=err.status)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        if not healthy():
            return error_response(ApiError(503, engine.error or "the model is still loading", "service_unavailable"))
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response(ApiError(400, "request body is not valid JSON"))
        if isinstance(body, dict) and body.get("model") not in (None, model_name):
            return error_response(ApiError(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError"))
        counter["n"] += 1
        try:
            parsed = parse_completion(
                body,
                tokenizer,
                vocab_size=vocab_size,
                max_model_len=max_model_len,
                default_seed=seed * 1_000_003 + counter["n"],
            )
        except ApiError as err:
            return error_response(err)
        req_id = f"cmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[TokenEvent] = asyncio.Queue()
        stats.state[req_id] = "waiting"
        stats.prompt_tokens_total += len(parsed.prompt)
        engine.submit(
            EngineRequest(req_id, parsed.prompt, parsed.params, eos_id=tokenizer.eos_id),
            lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev),
        )
        detok = tokenizer.detokenizer()
        usage_of = lambda n: {  # noqa: E731
            "prompt_tokens": len(parsed.prompt),
            "completion_tokens": n,
            "total_tokens": len(parsed.prompt) + n,
        }

        async def tokens() -> AsyncIterator[tuple[TokenEvent, str]]:
            while True:
                ev = await events.get()
                if ev.error:
                    stats.state.pop(req_id, None)
                    stats.finished["error"] = stats.finished.get("error", 0) + 1
                    raise RuntimeError(ev.error)
                stats.state[req_id] = "running"
                stats.on_token(ev)
                yield ev, detok.push(ev.token)
                if ev.finish_reason is not None:
                    stats.state.pop(req_id, None)
                    stats.finished[ev.finish_reason] = stats.finished.get(ev.finish_reason, 0) + 1
                    return

        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
            obj = {
                "id": req_id,
                "object": "text_completion",
                "created": created,
                "model": model_name,
                "choices": choices,
                "usage": usage,
            }
            return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"

        if parsed.stream:

            async def sse() -> AsyncIterator[str]:
                n, done = 0, False
                try:
                    async for ev, text in tokens():
                        n += 1
                        choice = {
                            "index": 0,
                            "text": text,
                            "logprobs": None,
                            "finish_reason": ev.finish_reason,
                            "token_ids": [ev.token],
                        }
                        yield chunk([choice])
                    done = True
                    if parsed.include_usage:
                        yield chunk([], usage_of(n))
                except RuntimeError as exc:
                    done = True
                    yield f"data: {json.dumps(ApiError(500, str(exc), 'internal_error').body())}\n\n"
                finally:
                    if not done:  # the client went away: free the engine's slot
                        stats.state.pop(req_id, None)
                        engine.abort(req_id)
                yield "data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream")

        ids, texts, reason = [], [], None
        try:
            async for ev, text in tokens():
                ids.append(ev.token)
                texts.append(text)
                reason = ev.finish_reason
        except RuntimeError as exc:
            return error_response(ApiError(500, str(exc), "internal_error"))
        finally:
            if reason is None:
                stats.state.pop(req_id, None)
                engine.abort(req_id)
        return {
            "id": req_id,
            "object": "text_completion",
            "created": created,
            "model": model_name,
            "choices": [
                {"index": 0, "text": "".join(texts), "logprobs": None, "finish_reason": reason, "token_ids": ids}
            ],
            "usage": usage_of(len(ids)),
        }

    return app


# ------------------------------------------------------------------------------------------ command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="serve", description="Serve a small decoder on the CPU behind an OpenAI-compatible HTTP API."
    )
    p.add_argument("--model-config", default="tiny", help="a named shape (tiny) or a JSON file of ModelConfig fields")
    p.add_argument("--checkpoint", default=None, help="seesaw_train Lightning .ckpt or a state-dict file")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json (default: byte-level, ids = byte + 1, eos 0)")
    p.add_argument("--served-model-name", default=None, help="name clients pass as 'model' (default fulcrum-<config>)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=8, help="most sequences in one decode step")
    p.add_argument("--max-model-len", type=int, default=8192, help="most prompt + output tokens per request")
    p.add_argument("--seed", type=int, default=0, help="weights of a random model; default sampling seeds")
    p.add_argument("--mode", choices=("colocated", "disaggregated"), default="colocated")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads per model process (default 1: for the tiny model more threads were slower)",
    )
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for name in ("max_batch", "max_model_len"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if args.threads is not None and args.threads < 1:
            raise ValueError("--threads must be >= 1")
        cfg = load_model_config(args.model_config)
        spec = ModelSpec(cfg, max_len=args.max_model_len, checkpoint=args.checkpoint, seed=args.seed).resolved()
        if spec.config != cfg:
            print(f"serve: using the model config recorded in {args.checkpoint}", file=sys.stderr)
        tokenizer = load_tokenizer(args.tokenizer)
        if tokenizer.vocab_size > spec.config.vocab_size:
            raise ValueError(
                f"the tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary is {spec.config.vocab_size}"
            )
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    if args.mode == "colocated":
        from .core import LocalEngine  # imports torch; the disaggregated front end does without

        engine: Any = LocalEngine(spec, max_batch=args.max_batch, threads=args.threads)
    else:
        engine = DisaggEngine(spec, max_batch=args.max_batch, threads=args.threads)
    stem = Path(args.model_config).stem
    name = args.served_model_name or f"fulcrum-{stem}"
    app = create_app(
        engine,
        tokenizer,
        model_name=name,
        vocab_size=spec.config.vocab_size,
        max_model_len=args.max_model_len,
        seed=args.seed,
    )
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level))
    app.state.server = server
    server.run()
    if engine.error:
        return 1
    return 0 if server.started else 1
