"""The engine core: requests, sampling, and the continuous-batching scheduler.

One scheduler iteration (``EngineCore.step``):

1. admit waiting requests in arrival order while fewer than ``max_batch`` sequences run; each admitted
   request that has no KV yet is prefilled (one forward of its prompt, ``run_prefill``), its first
   token sampled from the last position's logits, and its keys/values written into a free cache slot;
2. one decode step for every running sequence at once (``Decoder.decode`` on a padded batch: B
   tokens, B positions, a mask per sequence), one new token each;
3. finished sequences (``max_tokens`` reached, or the end-of-sequence id unless ``ignore_eos``) leave
   and the last slot moves into the hole, so running sequences always hold slots 0..B−1.

Every token is reported through the ``emit`` callback as a :class:`TokenEvent` (index 0 = the token
sampled at prefill). A new request therefore waits at most one decode step before its prefill, and
a running request is delayed by the prefills admitted in front of its next step (prefill priority,
as vLLM's default scheduler without chunked prefill).

Sampling: temperature 0 → argmax (greedy); otherwise a draw from softmax(logits / temperature) with a
per-request ``torch.Generator`` seeded by the request's seed. The generator's state travels with the
KV of a prefilled request, so a seeded request samples the same tokens colocated or disaggregated.

The prefill result (:class:`Prefilled`) is the same object in both modes: colocated, the core makes
it and stores it at once; disaggregated, a prefill process makes it and a decode process's core
receives it (``add``). Both run the same arithmetic, so greedy tokens agree between the modes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .config import ModelSpec
from .model import Decoder, KVCache, build_model
from .protocol import EngineRequest, Prefilled, SamplingParams, TokenEvent


def make_generator(params: SamplingParams) -> torch.Generator | None:
    return torch.Generator().manual_seed(int(params.seed)) if params.temperature > 0 else None


def sample(logits: torch.Tensor, temperature: float, gen: torch.Generator | None) -> int:
    """argmax when temperature == 0, else one draw from softmax(logits / temperature)."""
    if temperature <= 0 or gen is None:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))


def run_prefill(model: Decoder, req: EngineRequest) -> Prefilled:
    """Prefill one request: its first token, keys and values, and the sampler state after that draw."""
    t0 = time.perf_counter()
    gen = make_generator(req.params)
    logits, k, v = model.prefill(torch.tensor(req.prompt, dtype=torch.long))
    tok = sample(logits, req.params.temperature, gen)
    return Prefilled(
        request=req,
        first_token=tok,
        k=k,
        v=v,
        rng_state=None if gen is None else gen.get_state(),
        prefill_s=time.perf_counter() - t0,
    )


@dataclass
class _Seq:
    req: EngineRequest
    pos: int  # positions cached = position of the next token to feed
    n_out: int
    last: int
    gen: torch.Generator | None


def _finish_reason(seq: _Seq, token: int, max_len: int) -> str | None:
    p = seq.req.params
    if token == seq.req.eos_id and not p.ignore_eos:
        return "stop"
    if seq.n_out >= p.max_tokens or seq.pos >= max_len:
        return "length"
    return None


@dataclass
class CoreStats:
    prefills_total: int = 0
    prefill_tokens_total: int = 0
    prefill_seconds_total: float = 0.0
    decode_steps_total: int = 0
    decode_tokens_total: int = 0
    decode_seconds_total: float = 0.0
    running: int = 0
    waiting: int = 0
    kv_cache_bytes: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d.update(self.extra)
        return d


class EngineCore:
    """The scheduler of the module docstring; single-threaded (drive it from one thread)."""

    def __init__(self, model: Decoder, *, max_batch: int, emit: Callable[[TokenEvent], None]) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.model, self.max_batch, self.emit = model, int(max_batch), emit
        self.cache = KVCache(model.cfg, slots=self.max_batch, max_len=model.max_len)
        self.waiting: deque[EngineRequest | Prefilled] = deque()
        self.running: list[_Seq] = []
        self.aborted: set[str] = set()
        self.stats = CoreStats()

    # ---------------------------------------------------------------- inputs
    def add(self, item: EngineRequest | Prefilled) -> None:
        self.waiting.append(item)

    def abort(self, req_id: str) -> None:
        self.aborted.add(req_id)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    # ---------------------------------------------------------------- one iteration
    def step(self) -> bool:
        """One scheduler iteration; False when there was nothing to do."""
        self._drop_aborted()
        worked = False
        while self.waiting and len(self.running) < self.max_batch:
            item = self.waiting.popleft()
            req = item.request if isinstance(item, Prefilled) else item
            try:
                pre = item if isinstance(item, Prefilled) else run_prefill(self.model, item)
                self._start(pre)
            except Exception as exc:  # noqa: BLE001 - one bad request must not stop the engine
                self.emit(TokenEvent(req.req_id, None, 0, "error", error=f"{type(exc).__name__}: {exc}"))
            worked = True
        if self.running:
            self._decode()
            worked = True
        self.stats.running, self.stats.waiting = len(self.running), len(self.waiting)
        self.stats.kv_cache_bytes = self.cache.nbytes
        return worked

    def _drop_aborted(self) -> None:
        if not self.aborted:
            return
        self.waiting = deque(
            w for w in self.waiting if (w.request if isinstance(w, Prefilled) else w).req_id not in self.aborted
        )
        for i in range(len(self.running) - 1, -1, -1):
            if self.running[i].req.req_id in self.aborted:
                self._remove(i)
        self.aborted.clear()

    def _start(self, pre: Prefilled) -> None:
        req = pre.request
        k = torch.as_tensor(pre.k)
        v = torch.as_tensor(pre.v)
        T = k.shape[2]
        gen = None
        if pre.rng_state is not None:
            gen = torch.Generator()
            gen.set_state(torch.as_tensor(pre.rng_state))
        seq = _Seq(req, pos=T, n_out=1, last=pre.first_token, gen=gen)
        self.stats.prefills_total += 1
        self.stats.prefill_tokens_total += T
        self.stats.prefill_seconds_total += pre.prefill_s
        transfer = max(0.0, time.time() - pre.sent_at) if pre.sent_at else 0.0
        reason = _finish_reason(seq, pre.first_token, self.model.max_len)
        if reason is None:
            self.cache.put(len(self.running), k, v)
            self.running.append(seq)
        kv_bytes = pre.kv_bytes if pre.sent_at else 0
        self.emit(TokenEvent(req.req_id, pre.first_token, 0, reason, kv_bytes=kv_bytes, kv_transfer_s=transfer))

    def _decode(self) -> None:
        t0 = time.perf_counter()
        tokens = torch.tensor([s.last for s in self.running], dtype=torch.long)
        positions = torch.tensor([s.pos for s in self.running], dtype=torch.long)
        logits = self.model.decode(tokens, positions, self.cache)
        done = []
        events = []
        for i, s in enumerate(self.running):
            tok = sample(logits[i], s.req.params.temperature, s.gen)
            s.pos += 1
            s.n_out += 1
            s.last = tok
            reason = _finish_reason(s, tok, self.model.max_len)
            events.append(TokenEvent(s.req.req_id, tok, s.n_out - 1, reason))
            if reason is not None:
                done.append(i)
        self.stats.decode_steps_total += 1
        self.stats.decode_tokens_total += len(self.running)
        self.stats.decode_seconds_total += time.perf_counter() - t0
        for i in reversed(done):
            self._remove(i)
        for ev in events:
            self.emit(ev)

    def _remove(self, i: int) -> None:
        last = len(self.running) - 1
        if i != last:
            self.cache.move(last, i, self.running[last].pos)
            self.running[i] = self.running[last]
        self.running.pop()


def generate(model: Decoder, requests: list[EngineRequest], max_batch: int = 8) -> dict[str, list[int]]:
    """Run ``requests`` to completion in one core (offline helper for tests and measurements)."""
    out: dict[str, list[int]] = {r.req_id: [] for r in requests}

    def emit(ev: TokenEvent) -> None:
        if ev.error:
            raise RuntimeError(ev.error)
        out[ev.req_id].append(int(ev.token))

    core = EngineCore(model, max_batch=max_batch, emit=emit)
    for r in requests:
        core.add(r)
    while core.step():
        pass
    return out


# ------------------------------------------------------------------------------------------ colocated


class LocalEngine:
    """Colocated mode: one thread owns the model and runs the scheduler loop.

    ``submit``/``abort`` put messages on a thread-safe inbox; each token is passed to the sink
    registered for its request (called on the engine thread — the HTTP layer hands it to asyncio).
    """

    mode = "colocated"

    def __init__(self, spec: ModelSpec, *, max_batch: int = 8, threads: int = 1) -> None:
        self.spec, self.max_batch, self.threads = spec, max_batch, int(threads)
        self.inbox: queue.Queue = queue.Queue()
        self.sinks: dict[str, Callable[[TokenEvent], None]] = {}
        self.ready = threading.Event()
        self.error: str | None = None
        self.core: EngineCore | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="engine-core", daemon=True)
        self.thread.start()

    def stats(self) -> dict[str, float]:
        return self.core.stats.as_dict() if self.core is not None else {}

    def submit(self, req: EngineRequest, sink: Callable[[TokenEvent], None]) -> None:
        self.sinks[req.req_id] = sink
        self.inbox.put(("add", req))

    def abort(self, req_id: str) -> None:
        self.sinks.pop(req_id, None)
        self.inbox.put(("abort", req_id))

    def stop(self, timeout: float = 5.0) -> None:
        self.inbox.put(("stop", None))
        if self.thread is not None:
            self.thread.join(timeout)

    def _emit(self, ev: TokenEvent) -> None:
        sink = self.sinks.pop(ev.req_id, None) if ev.finish_reason is not None else self.sinks.get(ev.req_id)
        if sink is not None:
            sink(ev)

    def _run(self) -> None:
        try:
            torch.set_num_threads(self.threads)
            model = build_model(self.spec)
            self.core = EngineCore(model, max_batch=self.max_batch, emit=self._emit)
        except Exception as exc:  # noqa: BLE001 - reported through /health and the server log
            self.error = f"model load failed: {type(exc).__name__}: {exc}"
            self.ready.set()
            return
        self.ready.set()
        core = self.core
        while True:
            if core.has_work():
                try:
                    msg = self.inbox.get_nowait()
                except queue.Empty:
                    msg = None
            else:
                msg = self.inbox.get()  # idle: sleep until a request (or stop) arrives
            while msg is not None:
                kind, payload = msg
                if kind == "stop":
                    return
                if kind == "add":
                    core.add(payload)
                else:
                    core.abort(payload)
                try:
                    msg = self.inbox.get_nowait()
                except queue.Empty:
                    msg = None
            core.step()
