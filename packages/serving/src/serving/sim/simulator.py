"""The discrete-event loop of the serving simulator.

Events, in time order (ties: iteration ends, then scheduled events, then arrivals):

* arrivals — read straight from the trace's sorted arrays (no heap traffic); the policy's
  ``on_arrival`` picks the instance;
* iteration ends of *eager* instances — one heap entry per busy eager instance;
* scheduled events — KV transfers landing, cold starts finishing, policy ticks and callbacks.

Instances whose iterations nobody else needs to observe are *lazy*: they hold no heap entry and are
advanced (``Instance.run_until``) only when something is about to read or change them — an arrival
routed to them, a router reading loads, a tick. An instance is eager when its iteration ends have
effects elsewhere: a prefill instance (its finished prefills are handed to decode instances), or
every instance when the policy has a per-iteration or per-finish hook. Both ways give identical
results (a test runs both); the lazy way lets an instance run long decode stretches in its tight
loop (see ``instance.py``).

GPU cost: every instance counts ``tp × (stopped − created)`` GPU-seconds from the moment it is added
(cold start included) until it stops, or until the end of the simulation.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fulcrum_core.config import ConfigError

from .entities import DONE, FAILED, STATE_NAMES, Request, layerwise_extra
from .fastpath import DecodeLines, expand_pieces
from .instance import ACTIVE, DRAINING, LIFECYCLE, PREFILL, ROLES, STARTING, STOPPED, Instance

_INF = float("inf")


@dataclass(frozen=True)
class SimConfig:
    """Engine settings shared by all instances (vLLM names where vLLM has the knob).

    kv_capacity_tokens overrides the cost model's ``kv_capacity_tokens()`` (tests, what-ifs);
    watermark is the fraction of KV blocks admission keeps free (vLLM's default 0.01);
    until_s stops the simulation early (requests not finished by then count as failed);
    fast_forward / closed_form / lazy switch off the speed-ups (results agree either way: exactly,
    except closed_form which sums decode stretches in closed form, equal up to float rounding).
    """

    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    prefix_caching: bool = True
    watermark: float = 0.01
    kv_capacity_tokens: int | None = None
    cold_start_s: float = 0.0
    until_s: float | None = None
    fast_forward: bool = True
    closed_form: bool = True
    lazy: bool = True

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ConfigError(f"sim.block_size must be >= 1, got {self.block_size}")
        if self.max_num_seqs < 1:
            raise ConfigError(f"sim.max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ConfigError(
                f"sim.max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= sim.max_num_seqs "
                f"({self.max_num_seqs}) so that every running sequence can decode each iteration"
            )
        if not 0.0 <= self.watermark < 1.0:
            raise ConfigError(f"sim.watermark must be in [0, 1), got {self.watermark}")
        if self.kv_capacity_tokens is not None and self.kv_capacity_tokens < self.block_size:
            raise ConfigError(f"sim.kv_capacity_tokens must hold at least one block, got {self.kv_capacity_tokens}")
        if self.cold_start_s < 0:
            raise ConfigError(f"sim.cold_start_s must be >= 0, got {self.cold_start_s}")
        if self.until_s is not None and self.until_s <= 0:
            raise ConfigError(f"sim.until_s must be > 0, got {self.until_s}")


@dataclass
class SimResult:
    """What a simulation produced: the per-request table, every inter-token latency, instance stats."""

    requests: pd.DataFrame
    itl_s: np.ndarray
    instances: pd.DataFrame
    duration_s: float
    gpu_seconds: float
    wall_s: float
    stats: dict[str, Any] = field(default_factory=dict)

    def metrics(
        self,
        slo_ttft_ms: float | None = None,
        slo_tpot_ms: float | None = None,
        percentiles: tuple[float, ...] = (99.0,),
    ) -> dict[str, float]:
        """vLLM-benchmark metrics of this run (see ``serving.metrics.compute_metrics``)."""
        from ..metrics import compute_metrics

        return compute_metrics(
            self.requests,
            self.itl_s,
            duration_s=self.duration_s,
            gpu_seconds=self.gpu_seconds,
            slo_ttft_ms=slo_ttft_ms,
            slo_tpot_ms=slo_tpot_ms,
            percentiles=percentiles,
        )


class Simulator:
    """Simulate serving ``trace`` with ``policy`` on ``instances`` replicas priced by ``cost_model``.

    ``trace`` needs ``arrival_s``, ``prompt_tokens``, ``output_tokens`` (arrays), ``hash_ids`` (per
    request prefix-block ids or None) and ``block_tokens`` — ``serving.traces.Trace`` has them.
    ``cost_model`` implements the protocol of ``serving.costmodel`` (``iteration_time``,
    ``kv_capacity_tokens``, ``kv_transfer_time``, ``tp``). ``policy`` is a ``serving.policies.Policy``.
    """

    def __init__(
        self,
        trace: Any,
        cost_model: Any,
        policy: Any,
        instances: int,
        config: SimConfig | None = None,
        *,
        seed: int = 0,
        progress: bool = False,
    ):
        self.config = config or SimConfig()
        self.cost_model = cost_model
        self.policy = policy
        self.progress = progress
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        arrival = np.asarray(trace.arrival_s, dtype=np.float64)
        prompt = np.asarray(trace.prompt_tokens, dtype=np.int64)
        output = np.asarray(trace.output_tokens, dtype=np.int64)
        if not (len(arrival) == len(prompt) == len(output)):
            raise ValueError("trace: arrival_s, prompt_tokens and output_tokens differ in length")
        if len(arrival) and (np.any(np.diff(arrival) < 0) or not np.all(np.isfinite(arrival))):
            raise ValueError("trace: arrival_s must be finite and sorted")
        if len(prompt) and (prompt.min() < 1 or output.min() < 1):
            raise ValueError("trace: prompt_tokens and output_tokens must be >= 1")
        hash_ids = getattr(trace, "hash_ids", None)
        self.block_tokens = int(getattr(trace, "block_tokens", 512) or 512)
        if hash_ids is not None and len(hash_ids) != len(arrival):
            raise ValueError("trace: hash_ids and arrival_s differ in length")
        hids = hash_ids if hash_ids is not None else [None] * len(arrival)
        cols = zip(arrival.tolist(), prompt.tolist(), output.tolist(), hids, strict=True)
        self.requests = [Request(i, a, p, o, tuple(h) if h else None) for i, (a, p, o, h) in enumerate(cols)]
        self._arrivals = arrival.tolist()
        self._ptr = 0
        self.now = 0.0
        self.instances: list[Instance] = []
        self._events: list[tuple] = []
        self._iters: list[tuple] = []
        self._seq = itertools.count()
        self.itl_dt: list[float] = []
        self.itl_n: list[int] = []
        self.itl_gap: list[float] = []
        self.itl_pieces: list[tuple[float, float, int, int]] = []
        self._decode_lines: dict[tuple[int, int], tuple[Any, DecodeLines]] = {}
        self.n_done = 0
        self.n_failed = 0
        self.last_finish = 0.0
        self.n_events = 0
        self.iteration_hook = getattr(policy, "on_iteration_end", None)
        self.finish_hook = getattr(policy, "on_finish", None)
        per_iteration = self.iteration_hook is not None or self.finish_hook is not None
        self._lazy_ok = self.config.lazy and getattr(policy, "lazy_ok", True) and not per_iteration
        self._ff = self.config.fast_forward and not per_iteration
        self._sync_hooks = getattr(policy, "sync_before_hooks", True)
        self._ran = False
        policy.bind(self)
        policy.setup(self, instances)
        if not self.instances:
            raise ValueError(f"policy {getattr(policy, 'name', policy)!r} created no instances")

    # ------------------------------------------------------------------ API for policies
    def add_instance(
        self,
        role: str = "mixed",
        *,
        cold_start_s: float | None = None,
        cost: Any = None,
        capacity_tokens: int | None = None,
    ) -> Instance:
        """Add a replica now; it serves after ``cold_start_s`` (default ``config.cold_start_s``)."""
        if role not in ROLES:
            raise ValueError(f"instance role must be one of {ROLES}, got {role!r}")
        cfg = self.config
        cost = cost if cost is not None else self.cost_model
        cold = cfg.cold_start_s if cold_start_s is None else float(cold_start_s)
        if capacity_tokens is None:
            capacity_tokens = cfg.kv_capacity_tokens
            if capacity_tokens is None:
                capacity_tokens = cost.kv_capacity_tokens()
        if capacity_tokens < cfg.block_size:
            raise ValueError(
                f"instance KV capacity {capacity_tokens} tokens holds no {cfg.block_size}-token block: "
                "the model does not fit this GPU/TP (raise --tp or pick a larger GPU)"
            )
        inst = Instance(
            self,
            len(self.instances),
            role,
            cost,
            block_size=cfg.block_size,
            max_seqs=cfg.max_num_seqs,
            max_tokens=cfg.max_num_batched_tokens,
            chunked=cfg.chunked_prefill,
            watermark=cfg.watermark,
            capacity_tokens=int(capacity_tokens),
            prefix_caching=cfg.prefix_caching,
            block_tokens=self.block_tokens,
            created_s=self.now,
            ready_s=self.now + cold,
            eager=(role == PREFILL) or not self._lazy_ok,
            fast_forward=self._ff,
        )
        self.instances.append(inst)
        if inst.state == STARTING:
            self.schedule(inst.ready_s, self._ready, inst, sync=False)
        return inst

    def remove_instance(self, inst: Instance) -> None:
        """Drain ``inst``: no new requests; it stops (GPU time ends) when its last request leaves."""
        inst.drain()

    def schedule(self, t: float, fn: Any, *args: Any, sync: bool = True) -> None:
        """Call ``fn(*args)`` at time ``t`` (≥ now); with ``sync`` lazy instances are brought up to ``t`` first."""
        heapq.heappush(self._events, (max(t, self.now), next(self._seq), fn, args, sync))

    def sync_all(self) -> None:
        """Advance every lazy instance to ``now`` so that its state can be read."""
        now = self.now
        for inst in self.instances:
            if inst.busy and not inst.eager and inst.iter_end <= now:
                inst.run_until(now)

    def send_kv(
        self,
        req: Request,
        src: Instance,
        dst: Instance,
        *,
        overlap: bool = False,
        first_token_on_arrival: bool = False,
    ) -> float:
        """Send ``req``'s KV cache (``req.computed`` tokens) from ``src`` to ``dst`` over ``src.link``.

        The transfer takes ``src.cost.kv_transfer_time(tokens)`` seconds, queued FIFO behind earlier
        transfers on the same link. With ``overlap`` (layer-wise transmission during the prefill) only
        ``layerwise_extra`` of it adds latency after the prefill ends. ``src`` keeps the blocks until
        the last byte lands; the request then joins ``dst``'s queue. With ``first_token_on_arrival``
        the first token reaches the client only then (TTFT includes the transfer). Returns the
        arrival time.
        """
        t = self.now
        tx = float(src.cost.kv_transfer_time(req.computed))
        if overlap and req.prefill_start_s >= 0:
            layers = getattr(getattr(src.cost, "model", None), "layers", 1)
            ready = t + layerwise_extra(tx, t - req.prefill_start_s, layers) - tx
        else:
            ready = t
        end = src.link.send(ready, tx)
        req.kv_transfer_s += end - t
        req.last_token_s = t
        if first_token_on_arrival and req.generated == 1:
            req.first_token_s = end
            req.last_token_s = end
        self.schedule(end, self._kv_arrived, req, src, dst, sync=False)
        return end

    def decode_lines(self, cost: Any, c_max: int) -> DecodeLines | None:
        """The (shared) closed-form decode model of ``cost`` over contexts up to ``c_max`` tokens."""
        if not self.config.closed_form:
            return None
        key = (id(cost), c_max)
        hit = self._decode_lines.get(key)
        if hit is None or hit[0] is not cost:
            hit = self._decode_lines[key] = (cost, DecodeLines(cost, c_max))
        return hit[1]

    def horizon(self) -> float:
        """Time of the next pending event of any kind (eager instances may run up to it)."""
        h = self._arrivals[self._ptr] if self._ptr < len(self._arrivals) else _INF
        if self._events and self._events[0][0] < h:
            h = self._events[0][0]
        if self._iters and self._iters[0][0] < h:
            h = self._iters[0][0]
        until = self.config.until_s
        return h if until is None or h < until else until

    def push_iteration(self, inst: Instance) -> None:
        heapq.heappush(self._iters, (inst.iter_end, next(self._seq), inst))

    # ------------------------------------------------------------------ internal callbacks
    def handoff(self, req: Request, src: Instance) -> None:
        """A prefill instance finished ``req``'s prefill: the policy picks where it decodes."""
        if self._sync_hooks:
            self.sync_all()
        self.policy.on_prefill_done(req, src)

    def migrate_out(self, req: Request, src: Instance, dst: Instance) -> None:
        """A running request flagged by the policy (``req.migrate_to``) moves its KV to ``dst``."""
        self.send_kv(req, src, dst, overlap=False)

    def fail(self, req: Request) -> None:
        req.state = FAILED
        self.n_failed += 1

    def _kv_arrived(self, req: Request, src: Instance, dst: Instance) -> None:
        src.release_held(req)
        if not dst.enqueue(req):
            self.fail(req)

    def _ready(self, inst: Instance) -> None:
        if inst.state == STARTING:
            inst.state = ACTIVE
            inst.clock = self.now
            inst.kick()
        elif inst.state == DRAINING:
            inst.clock = self.now
            inst.kick()

    def _tick(self) -> None:
        self.policy.on_tick(self.now)
        if self._ptr < len(self.requests) or self.n_done + self.n_failed < len(self.requests):
            self.schedule(self.now + self.policy.tick_s, self._tick)

    # ------------------------------------------------------------------ main loop
    def run(self) -> SimResult:
        """Simulate the whole trace (or up to ``config.until_s``) and return the results."""
        if self._ran:
            raise RuntimeError("a Simulator runs once; build a new one")
        self._ran = True
        from tqdm.auto import tqdm

        t_wall = time.perf_counter()
        reqs = self.requests
        arrivals = self._arrivals
        n = len(reqs)
        events = self._events
        iters = self._iters
        policy = self.policy
        reads = self._sync_hooks
        until = self.config.until_s if self.config.until_s is not None else _INF
        if getattr(policy, "tick_s", None):
            self.schedule(float(policy.tick_s), self._tick)
        pop = heapq.heappop
        bar = tqdm(total=n, disable=not self.progress, unit="req", desc="simulate", mininterval=0.5)
        shown = 0
        n_events = 0
        while True:
            while True:
                ptr = self._ptr
                ta = arrivals[ptr] if ptr < n else _INF
                te = events[0][0] if events else _INF
                ti = iters[0][0] if iters else _INF
                n_events += 1
                if ti <= te and ti <= ta:
                    if ti == _INF or ti > until:
                        break
                    inst = pop(iters)[2]
                    self.now = ti
                    inst._commit()
                    if inst._form(self.horizon()):
                        self.push_iteration(inst)
                elif te <= ta:
                    if te > until:
                        break
                    t, _, fn, args, sync = pop(events)
                    self.now = t
                    if sync:
                        self.sync_all()
                    fn(*args)
                else:
                    if ta > until:
                        break
                    req = reqs[ptr]
                    self._ptr = ptr + 1
                    self.now = ta
                    if reads:
                        self.sync_all()
                    inst = policy.on_arrival(req)
                    if inst is None or not inst.enqueue(req):
                        self.fail(req)
                    if ptr - shown >= 1000:
                        bar.update(ptr - shown)
                        shown = ptr
            # lazy instances still hold work: finish it (they emit no events, except a pause's wake-up)
            for inst in self.instances:
                if not inst.eager:
                    inst.run_until(until)
            if until < _INF:
                self.now = until
                break
            if not events and not iters:
                break
        bar.update(self._ptr - shown)
        bar.close()
        self.n_events = n_events
        return self._result(time.perf_counter() - t_wall, until)

    # ------------------------------------------------------------------ results
    def _result(self, wall_s: float, until: float) -> SimResult:
        reqs = self.requests
        t0 = self._arrivals[0] if self._arrivals else 0.0
        end = max(self.last_finish, self._arrivals[-1] if self._arrivals else 0.0)
        if until < _INF:
            end = until
        for r in reqs:  # anything not finished by the end is a failure (only possible with until_s)
            if r.state != DONE and r.state != FAILED:
                r.state = FAILED
                self.n_failed += 1
        frame = _request_frame(reqs)
        parts = []
        if self.itl_dt:
            parts.append(np.repeat(np.asarray(self.itl_dt), np.asarray(self.itl_n)))
        if self.itl_pieces:
            parts.append(expand_pieces(self.itl_pieces))
        if self.itl_gap:
            parts.append(np.asarray(self.itl_gap))
        itl = np.concatenate(parts) if parts else np.zeros(0)
        rows = []
        gpu_s = 0.0
        for inst in self.instances:
            stop = inst.stopped_s if inst.state == STOPPED else end
            alive = max(0.0, min(stop, end) - inst.created_s)
            gpu_s += inst.tp * alive
            rows.append(
                {
                    "instance": inst.idx,
                    "role": inst.role,
                    "tp": inst.tp,
                    "state": LIFECYCLE[inst.state],
                    "created_s": inst.created_s,
                    "ready_s": inst.ready_s,
                    "stopped_s": inst.stopped_s if inst.state == STOPPED else np.nan,
                    "alive_s": alive,
                    "gpu_seconds": inst.tp * alive,
                    "iterations": inst.iterations,
                    "fast_forwarded_iterations": inst.ff_iterations,
                    "busy_s": inst.busy_s,
                    "utilization": inst.busy_s / alive if alive > 0 else np.nan,
                    "prefill_tokens": inst.prefill_tokens,
                    "decode_tokens": inst.decode_tokens,
                    "preemptions": inst.preemptions,
                    "kv_capacity_blocks": inst.capacity,
                    "prefix_hit_tokens": inst.hit_tokens,
                    "kv_load_s": inst.kv_load_s,
                    "kv_transfers_sent": inst.link.transfers,
                }
            )
        inst_frame = pd.DataFrame(rows)
        stats = {
            "events": self.n_events,
            "iterations": int(inst_frame["iterations"].sum()),
            "fast_forwarded_iterations": int(inst_frame["fast_forwarded_iterations"].sum()),
            "instances_created": len(self.instances),
            "end_s": end,
        }
        return SimResult(
            requests=frame,
            itl_s=itl,
            instances=inst_frame,
            duration_s=end - t0,
            gpu_seconds=gpu_s,
            wall_s=wall_s,
            stats=stats,
        )


_STATUS = {DONE: "finished", FAILED: "failed"}


def _request_frame(reqs: list[Request]) -> pd.DataFrame:
    """Per-request table (times in seconds; NaN where a request never got that far)."""
    nan = np.nan

    def col(name: str, dtype: Any = np.float64) -> np.ndarray:
        return np.fromiter((getattr(r, name) for r in reqs), dtype=dtype, count=len(reqs))

    arrival = col("arrival")
    first = col("first_token_s")
    finish = col("finish_s")
    output = col("output", np.int64)
    finished = np.fromiter((r.state == DONE for r in reqs), dtype=bool, count=len(reqs))
    first = np.where(first >= 0, first, nan)
    finish = np.where(finished, finish, nan)
    sched = col("sched_s")
    ttft = first - arrival
    e2e = finish - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(output > 1, (e2e - ttft) / (output - 1), nan)
    return pd.DataFrame(
        {
            "request_id": col("rid", np.int64),
            "arrival_s": arrival,
            "prompt_tokens": col("prompt", np.int64),
            "output_tokens": output,
            "status": [_STATUS.get(r.state, STATE_NAMES[r.state]) for r in reqs],
            "finished": finished,
            "instance": col("instance", np.int64),
            "decode_instance": col("decode_instance", np.int64),
            "scheduled_s": np.where(sched >= 0, sched, nan),
            "first_token_s": first,
            "finish_s": finish,
            "queue_s": np.where(sched >= 0, sched - arrival, nan),
            "ttft_s": ttft,
            "tpot_s": tpot,
            "e2e_s": e2e,
            "cached_tokens": col("cached_tokens", np.int64),
            "prefill_computed_tokens": col("prefill_computed", np.int64),
            "recomputed_tokens": col("recomputed", np.int64),
            "generated_tokens": col("generated", np.int64),
            "preemptions": col("preemptions", np.int64),
            "kv_transfer_s": col("kv_transfer_s"),
        }
    )


def simulate(
    trace: Any,
    cost_model: Any,
    policy: Any,
    instances: int,
    config: SimConfig | None = None,
    *,
    seed: int = 0,
    progress: bool = False,
) -> SimResult:
    """Build a :class:`Simulator` and run it."""
    return Simulator(trace, cost_model, policy, instances, config, seed=seed, progress=progress).run()


__all__ = ["SimConfig", "SimResult", "Simulator", "simulate"]
