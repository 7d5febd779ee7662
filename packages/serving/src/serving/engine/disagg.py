"""Disaggregated mode: a prefill process and a decode process, the HTTP front end routes between them.

    front end ──("req", EngineRequest)──▶ prefill worker ──("prefilled", Prefilled)──▶ decode worker
        ▲                                       │ (errors)                                  │
        └────────────── out queue: ("event", TokenEvent), ("stats", …), ("ready", …) ◀──────┘

- The prefill worker takes requests one at a time (FCFS), runs ``run_prefill`` (prompt forward, first
  token, keys/values) and ships the result: the keys and values as two float32 numpy arrays
  (n_layer, n_head, T, head_dim), i.e. ``2·n_layer·d_model·4`` bytes per prompt token, pickled
  through a ``multiprocessing`` queue (a pipe), plus the sampler state and a send time.
- The decode worker runs an :class:`~serving.engine.core.EngineCore` whose waiting requests are all
  prefilled: admission copies the received KV into a cache slot and emits the first token, then the
  request joins the batched decode steps. The first token is emitted by the decode worker (not the
  prefill worker), so a request's tokens come from one process and arrive in order; its TTFT
  includes the KV hand-over, as in a disaggregated deployment where the decode side answers.
- Both workers build the model from the same :class:`ModelSpec` (same seed or checkpoint), with the
  same thread count, so greedy tokens equal the colocated engine's.
- Workers are ``spawn``-ed (fork after threads and torch is unsafe), exit on a "stop" message, and
  poll their parent's pid so they do not outlive a killed front end.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import ModelSpec
from .protocol import EngineRequest, TokenEvent

_POLL_S = 1.0


def _parent_gone(parent_pid: int) -> bool:
    return os.getppid() != parent_pid


def prefill_worker(spec: ModelSpec, threads: int, in_q: Any, kv_q: Any, out_q: Any, parent_pid: int) -> None:
    """Process body of the prefill worker."""
    import torch

    from .core import run_prefill
    from .model import build_model

    try:
        torch.set_num_threads(threads)
        model = build_model(spec)
    except Exception as exc:  # noqa: BLE001 - reported to the front end
        out_q.put(("failed", "prefill", f"{type(exc).__name__}: {exc}"))
        return
    out_q.put(("ready", "prefill", None))
    stats = {"prefills_total": 0, "prefill_tokens_total": 0, "prefill_seconds_total": 0.0}
    while True:
        try:
            kind, payload = in_q.get(timeout=_POLL_S)
        except queue.Empty:
            if _parent_gone(parent_pid):
                return
            continue
        if kind == "stop":
            return
        req: EngineRequest = payload
        try:
            pre = run_prefill(model, req)
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the worker
            out_q.put(("event", TokenEvent(req.req_id, None, 0, "error", error=f"{type(exc).__name__}: {exc}")))
            continue
        pre.k = pre.k.numpy()
        pre.v = pre.v.numpy()
        if pre.rng_state is not None:
            pre.rng_state = pre.rng_state.numpy()
        pre.sent_at = time.time()
        kv_q.put(("prefilled", pre))
        stats["prefills_total"] += 1
        stats["prefill_tokens_total"] += len(req.prompt)
        stats["prefill_seconds_total"] += pre.prefill_s
        out_q.put(("stats", "prefill", dict(stats)))


def decode_worker(spec: ModelSpec, threads: int, max_batch: int, kv_q: Any, out_q: Any, parent_pid: int) -> None:
    """Process body of the decode worker."""
    import torch

    from .core import EngineCore
    from .model import build_model

    try:
        torch.set_num_threads(threads)
        model = build_model(spec)
        core = EngineCore(model, max_batch=max_batch, emit=lambda ev: out_q.put(("event", ev)))
    except Exception as exc:  # noqa: BLE001 - reported to the front end
        out_q.put(("failed", "decode", f"{type(exc).__name__}: {exc}"))
        return
    out_q.put(("ready", "decode", None))
    kv = {"kv_transfer_bytes_total": 0, "kv_transfer_seconds_total": 0.0, "kv_transfers_total": 0}
    last_stats = 0.0
    while True:
        msgs = []
        if core.has_work():
            try:
                while True:
                    msgs.append(kv_q.get_nowait())
            except queue.Empty:
                pass
        else:
            try:
                msgs.append(kv_q.get(timeout=_POLL_S))
            except queue.Empty:
                if _parent_gone(parent_pid):
                    return
        for kind, payload in msgs:
            if kind == "stop":
                return
            if kind == "abort":
                core.abort(payload)
            else:
                kv["kv_transfer_bytes_total"] += payload.kv_bytes
                kv["kv_transfer_seconds_total"] += max(0.0, time.time() - payload.sent_at)
                kv["kv_transfers_total"] += 1
                core.add(payload)
        core.step()
        now = time.monotonic()
        if now - last_stats > 0.2 or not core.has_work():
            last_stats = now
            out_q.put(("stats", "decode", {**core.stats.as_dict(), **kv}))


class DisaggEngine:
    """Front-end handle of the two workers; same interface as :class:`~serving.engine.core.LocalEngine`."""

    mode = "disaggregated"

    def __init__(self, spec: ModelSpec, *, max_batch: int = 8, threads: int = 1) -> None:
        self.spec, self.max_batch, self.threads = spec, max_batch, int(threads)
        self.sinks: dict[str, Callable[[TokenEvent], None]] = {}
        self.ready = threading.Event()
        self.error: str | None = None
        self._stats: dict[str, dict[str, float]] = {"prefill": {}, "decode": {}}
        self._ready_roles: set[str] = set()
        self.procs: list[Any] = []

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        self.in_q, self.kv_q, self.out_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
        pid = os.getpid()
        self.procs = [
            ctx.Process(
                target=prefill_worker,
                args=(self.spec, self.threads, self.in_q, self.kv_q, self.out_q, pid),
                name="engine-prefill",
                daemon=True,
            ),
            ctx.Process(
                target=decode_worker,
                args=(self.spec, self.threads, self.max_batch, self.kv_q, self.out_q, pid),
                name="engine-decode",
                daemon=True,
            ),
        ]
        for p in self.procs:
            p.start()
        self._dispatcher = threading.Thread(target=self._dispatch, name="engine-dispatch", daemon=True)
        self._dispatcher.start()

    def stats(self) -> dict[str, float]:
        d = dict(self._stats["decode"])
        d.update(self._stats["prefill"])
        return d

    def submit(self, req: EngineRequest, sink: Callable[[TokenEvent], None]) -> None:
        self.sinks[req.req_id] = sink
        self.in_q.put(("req", req))

    def abort(self, req_id: str) -> None:
        self.sinks.pop(req_id, None)
        self.kv_q.put(("abort", req_id))

    def stop(self, timeout: float = 5.0) -> None:
        for q in (self.in_q, self.kv_q):
            q.put(("stop", None))
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(1.0)
        self.out_q.put(("quit", None, None))
        self._dispatcher.join(2.0)
        for q in (self.in_q, self.kv_q, self.out_q):
            q.close()
            q.cancel_join_thread()
        # drop the queues now so their semaphores are released before exit (no resource_tracker warning)
        self.in_q = self.kv_q = self.out_q = None
        self.procs = []
        gc.collect()

    def _fail_all(self, message: str) -> None:
        for req_id in list(self.sinks):
            sink = self.sinks.pop(req_id, None)
            if sink is not None:
                sink(TokenEvent(req_id, None, 0, "error", error=message))

    def _dispatch(self) -> None:
        while True:
            try:
                msg = self.out_q.get(timeout=_POLL_S)
            except queue.Empty:
                dead = [p.name for p in self.procs if not p.is_alive()]
                if dead and self.error is None:
                    self.error = f"worker(s) {dead} exited"
                    self.ready.set()
                    self._fail_all(self.error)
                continue
            kind = msg[0]
            if kind == "event":
                ev: TokenEvent = msg[1]
                get = self.sinks.pop if ev.finish_reason is not None else self.sinks.get
                sink = get(ev.req_id, None)
                if sink is not None:
                    sink(ev)
            elif kind == "stats":
                self._stats[msg[1]] = msg[2]
            elif kind == "ready":
                self._ready_roles.add(msg[1])
                if self._ready_roles == {"prefill", "decode"}:
                    self.ready.set()
            elif kind == "failed":
                self.error = f"{msg[1]} worker: model load failed: {msg[2]}"
                self.ready.set()
            elif kind == "quit":
                return
