"""One serving instance: continuous batching with chunked prefill over paged KV memory.

Scheduling of one iteration (vLLM-like, chunked prefill on):

1. every running request that has finished its prefill decodes one token; if its next token opens a
   new KV block and no block is free, the newest running request is preempted by recompute (its
   blocks are freed, it returns to the head of the queue and later prefills prompt + generated
   tokens again) until the block fits;
2. running requests still prefilling get chunks, FCFS, from the token budget
   ``max_num_batched_tokens`` minus the decodes;
3. waiting requests are admitted FCFS while budget, ``max_num_seqs`` and KV memory allow; admission
   reserves the blocks of the request's whole prefill target (minus prefix-cache hits) and keeps
   ``watermark`` of the blocks free; the first refusal stops admission (no skipping ahead).

With ``chunked_prefill=False`` an iteration is either prefill-only (admitted prompts whole, the token
budget bounding all but the first) or decode-only, prefills first — vLLM's original scheduler.

The iteration's duration is ``cost.iteration_time(P, A, D, C)`` with P = Σ chunk tokens, A =
Σ n_i·(c_i + (n_i + 1)/2) (chunk of n_i tokens after c_i cached ones), D = decoding sequences,
C = Σ (computed + 1) over them (context attended by each new token, itself included).

Time advances in whole iterations. Between two events that could read or change this instance
(the horizon ``H``), stretches of decode-only iterations in which no request can be admitted are
*fast-forwarded*: the requests are updated once per stretch, and the stretch's duration is summed
in closed form when the cost model is piecewise affine in the context (``fastpath.py``; else the
cost model is evaluated per iteration in a tight loop). A stretch stops before a request would
finish past its last token, before any request could need a KV block that might not be free
(k ≤ block_size·⌊free/n⌋ iterations), and at ``H``; the iteration straddling ``H`` is left in flight.
Its result equals the iteration-by-iteration one (exactly with the loop, up to float rounding with
the closed form; checked in the tests).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from .entities import DONE, RUNNING, TRANSFER, WAITING, Link, PrefixCache, Request
from .fastpath import Stretch

if TYPE_CHECKING:  # pragma: no cover
    from .simulator import Simulator

MIXED = "mixed"
PREFILL = "prefill"
DECODE = "decode"
ROLES = (MIXED, PREFILL, DECODE)

# lifecycle
STARTING = 0  # cold start: may queue requests, does not run
ACTIVE = 1
DRAINING = 2  # no new requests; stops once empty
STOPPED = 3
LIFECYCLE = {STARTING: "starting", ACTIVE: "active", DRAINING: "draining", STOPPED: "stopped"}

_INF = float("inf")


class Instance:
    """A model replica of ``tp`` GPUs with its own KV memory, queue, prefix cache and egress link."""

    __slots__ = (
        "sim",
        "idx",
        "role",
        "cost",
        "tp",
        "block_size",
        "max_seqs",
        "max_tokens",
        "chunked",
        "watermark",
        "capacity",
        "cap_adm",
        "used",
        "cache",
        "waiting",
        "running",
        "held",
        "state",
        "created_s",
        "ready_s",
        "stopped_s",
        "clock",
        "busy",
        "iter_end",
        "stall_until",
        "eager",
        "ff",
        "link",
        "n_prefilling",
        "n_fresh",
        "n_migrating",
        "iterations",
        "busy_s",
        "prefill_tokens",
        "decode_tokens",
        "preemptions",
        "ff_iterations",
        "hit_tokens",
        "load_tokens",
        "kv_load_s",
        "tags",
        "_dec",
        "_pf",
        "_dt",
        "_lines",
        "_lines_for",
    )

    def __init__(
        self,
        sim: Simulator,
        idx: int,
        role: str,
        cost: Any,
        *,
        block_size: int,
        max_seqs: int,
        max_tokens: int,
        chunked: bool,
        watermark: float,
        capacity_tokens: int,
        prefix_caching: bool,
        block_tokens: int,
        created_s: float,
        ready_s: float,
        eager: bool,
        fast_forward: bool,
    ):
        if role not in ROLES:
            raise ValueError(f"instance role must be one of {ROLES}, got {role!r}")
        self.sim = sim
        self.idx = idx
        self.role = role
        self.cost = cost
        self.tp = int(getattr(cost, "tp", 1) or 1)
        self.block_size = block_size
        self.max_seqs = max_seqs
        self.max_tokens = max_tokens
        self.chunked = chunked
        self.watermark = watermark
        self.used = 0  # blocks held by running requests (private + referenced prefix entries)
        self.set_capacity(capacity_tokens // block_size)
        use_cache = prefix_caching and block_tokens > 0 and block_tokens % block_size == 0
        self.cache = PrefixCache(block_tokens, block_size) if use_cache else None
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.held: dict[int, Request] = {}  # requests whose KV is being sent away (blocks still here)
        self.created_s = created_s
        self.ready_s = ready_s
        self.stopped_s = -1.0
        self.state = STARTING if ready_s > created_s else ACTIVE
        self.clock = ready_s  # end of the last committed iteration (or when it became idle)
        self.busy = False
        self.iter_end = _INF
        self.stall_until = 0.0
        self.eager = eager  # driven by the simulator's heap (else advanced lazily when touched)
        self.ff = fast_forward
        self.link = Link()
        self.n_prefilling = 0
        self.n_fresh = 0
        self.n_migrating = 0
        self.iterations = 0
        self.busy_s = 0.0
        self.prefill_tokens = 0
        self.decode_tokens = 0
        self.preemptions = 0
        self.ff_iterations = 0
        self.hit_tokens = 0  # prompt tokens admitted here as prefix-cache hits
        self.load_tokens = 0  # hits from a remote store still to be loaded by the next iteration
        self.kv_load_s = 0.0  # time added to iterations by loading remote hits
        self.tags: dict[str, Any] = {}  # free room for policies (e.g. a group or module layout)
        self._dec: list[Request] = []
        self._pf: list[tuple[Request, int]] = []
        self._dt = 0.0
        self._lines = None  # fastpath.DecodeLines of self.cost (None: closed form switched off)
        self._lines_for = None

    # ------------------------------------------------------------------ views for policies
    def __repr__(self) -> str:
        return (
            f"Instance({self.idx}, {self.role}, {LIFECYCLE[self.state]}, running={len(self.running)}, "
            f"waiting={len(self.waiting)}, kv={self.used}/{self.capacity})"
        )

    @property
    def accepting(self) -> bool:
        """Whether routers may send new requests here (starting or active)."""
        return self.state == ACTIVE or self.state == STARTING

    def num_requests(self) -> int:
        """Requests queued or running here (the least-load metric); call after ``sim.sync_all()``."""
        return len(self.running) + len(self.waiting)

    def kv_utilization(self) -> float:
        """Fraction of KV blocks held by running requests."""
        return self.used / self.capacity if self.capacity else 1.0

    def prefix_hit_tokens(self, req: Request) -> int:
        """Prompt tokens of ``req`` this instance's prefix cache would serve now."""
        cache = self.cache
        if cache is None or req.hash_ids is None:
            return 0
        max_ids = (req.prompt - 1) // cache.block_tokens
        return cache.match(req.hash_ids, max_ids)[0] * cache.block_tokens if max_ids > 0 else 0

    def set_capacity(self, blocks: int) -> None:
        """Set the KV capacity in blocks (policies that move weights change it at run time).

        Shrinking below the blocks in use preempts at the next iteration that needs a block."""
        self.capacity = int(blocks)
        self.cap_adm = self.capacity - int(self.watermark * self.capacity)

    def fits_ever(self, req: Request) -> bool:
        """Whether ``req`` could run here alone: its largest KV footprint fits under the watermark."""
        tokens = req.prompt if self.role == PREFILL else req.prompt + req.output
        return -(-tokens // self.block_size) <= self.cap_adm

    # ------------------------------------------------------------------ driving
    def sync(self) -> None:
        """Bring a lazily advanced instance up to the simulator's clock."""
        if not self.eager and self.busy and self.iter_end <= self.sim.now:
            self.run_until(self.sim.now)

    def run_until(self, horizon: float) -> None:
        """Commit every iteration ending at or before ``horizon``, forming the next ones."""
        while self.busy and self.iter_end <= horizon:
            self._commit()
            self._form(horizon)

    def kick(self) -> None:
        """Start an iteration now if idle and there is work (after an external change)."""
        self.sync()
        if self.busy or self.state == STARTING or self.state == STOPPED:
            return
        sim = self.sim
        if self.clock < sim.now:
            self.clock = sim.now
        if self.eager:
            if self._form(sim.horizon()):
                sim.push_iteration(self)
        else:
            self._form(sim.now)

    def enqueue(self, req: Request) -> bool:
        """Queue ``req`` (a new request, or one whose KV cache arrives with it); False if it can never fit."""
        if not self.fits_ever(req):
            return False
        self.sync()
        req.state = WAITING
        if self.role == DECODE or req.computed >= req.target:  # decodes here (its KV arrives with it)
            req.decode_instance = self.idx
        else:
            req.instance = self.idx
            if self.role == MIXED:
                req.decode_instance = self.idx
        self.waiting.append(req)
        if not self.busy:
            self.kick()
        return True

    def pause(self, duration_s: float) -> None:
        """Stop iterating for ``duration_s`` once the in-flight iteration (if any) ends, e.g. while
        weights are reloaded; running requests keep their KV and resume afterwards."""
        self.sync()
        start = self.iter_end if self.busy else max(self.clock, self.sim.now)
        self.stall_until = max(self.stall_until, start + duration_s)
        if not self.busy:
            self.clock = start
            self._stall()

    def _stall(self) -> None:
        """Idle until ``stall_until``: decoders' next ITL spans the pause; a wake-up is scheduled."""
        for r in self.running:
            if r.computed >= r.target and not r.fresh:
                r.fresh = True
                r.last_token_s = self.clock  # their newest token came with the last committed iteration
                self.n_fresh += 1
        self.busy = False
        self.iter_end = _INF
        self.sim.schedule(self.stall_until, self.kick, sync=False)

    def migrate(self, req: Request, dst: Instance) -> None:
        """Move running ``req``'s KV cache to ``dst`` once its current iteration ends (then it decodes
        there). Only eager instances may emit such hand-overs: policies that migrate set ``lazy_ok = False``."""
        if not self.eager:
            raise RuntimeError("migration needs eager instances: set lazy_ok = False on the policy")
        if req.state != RUNNING or req not in self.running:
            raise ValueError(f"request {req.rid} is not running on instance {self.idx}")
        if req.migrate_to is None:
            self.n_migrating += 1
        req.migrate_to = dst

    def drain(self) -> None:
        """Accept no new requests; stop (and stop counting GPU time) once everything here has left."""
        self.sync()
        if self.state == STOPPED:
            return
        self.state = DRAINING
        self._maybe_stop(max(self.clock, self.sim.now))

    def release_held(self, req: Request) -> None:
        """Free the blocks of a request whose KV transfer away from here has completed."""
        self.sync()
        del self.held[req.rid]
        self._release(req)
        self.kick()  # freed memory may admit queued work (a draining instance stops once empty)
        if self.state == DRAINING and not self.busy:
            self._maybe_stop(max(self.clock, self.sim.now))

    # ------------------------------------------------------------------ memory
    def _alloc(self, blocks: int) -> None:
        self.used += blocks
        cache = self.cache
        if cache is not None and cache.lru_blocks:
            over = self.used + cache.lru_blocks - self.capacity
            if over > 0:
                cache.evict(over)

    def _release(self, r: Request) -> None:
        self.used -= r.blocks
        r.blocks = 0
        if r.n_shared:
            cache = self.cache
            if cache.remote:  # the request's copy of remote entries is private to it
                cache.release(r.hash_ids, r.n_shared)
                self.used -= r.n_shared * cache.entry_blocks
            else:
                before = cache.lru_blocks
                cache.release(r.hash_ids, r.n_shared)
                self.used -= cache.lru_blocks - before
            r.n_shared = 0
        r.shared_tok = 0

    def _fits(self, r: Request) -> bool:
        """Admission test without side effects (see ``_admit``)."""
        if r.computed >= r.target:
            return self.used + -(-(r.computed + 1) // self.block_size) <= self.cap_adm
        cache = self.cache
        h = unref = 0
        if cache is not None and r.hash_ids is not None:
            max_ids = (r.prompt - 1) // cache.block_tokens
            if max_ids > 0:
                h, unref = cache.match(r.hash_ids, max_ids)
            need = -(-(r.target - h * cache.block_tokens) // self.block_size) + unref * cache.entry_blocks
        else:
            need = -(-r.target // self.block_size)
        return self.used + need <= self.cap_adm

    def _admit(self, r: Request) -> bool:
        """Reserve KV blocks for ``r`` if they fit under the watermark, using prefix-cache hits."""
        bs = self.block_size
        if r.computed >= r.target:  # KV arrives with the request: room for it and the next token
            need = -(-(r.computed + 1) // bs)
            if self.used + need > self.cap_adm:
                return False
            self._alloc(need)
            r.blocks = need
            r.fresh = True
            self.n_fresh += 1
        else:
            cache = self.cache
            h = unref = 0
            if cache is not None and r.hash_ids is not None:
                max_ids = (r.prompt - 1) // cache.block_tokens
                if max_ids > 0:
                    h, unref = cache.match(r.hash_ids, max_ids)
                    cache.lookups += 1
            shared = h * cache.block_tokens if h else 0
            need = -(-(r.target - shared) // bs)
            extra = unref * cache.entry_blocks if h else 0
            if self.used + need + extra > self.cap_adm:
                return False
            if h:
                cache.acquire(r.hash_ids, h)
                cache.hit_tokens += shared
                self.hit_tokens += shared
                self.used += extra
                if cache.remote:
                    self.load_tokens += shared
            r.n_shared = h
            r.shared_tok = shared
            r.computed = shared
            self._alloc(need)
            r.blocks = need
            r.prefill_start_s = self.clock
            self.n_prefilling += 1
        r.state = RUNNING
        if r.sched_s < 0:
            r.sched_s = self.clock
        return True

    def _publish(self, r: Request) -> None:
        """After a prefill: share the request's full prompt blocks through the prefix cache."""
        cache = self.cache
        full = min(len(r.hash_ids), r.prompt // cache.block_tokens)
        h0 = r.n_shared
        if full <= h0:
            return
        dup, revived = cache.insert(r.hash_ids, h0, full)
        shared = full * cache.block_tokens
        nb = -(-(r.computed - shared) // self.block_size)
        self.used += nb - r.blocks + (full - h0 - dup + revived) * cache.entry_blocks
        r.blocks = nb
        r.n_shared = full
        r.shared_tok = shared

    def _preempt(self, v: Request) -> None:
        """Preempt ``v`` by recompute: free its KV, queue it first, redo prompt + generated tokens."""
        if v.computed < v.target:
            self.n_prefilling -= 1
            if v.generated == 0:
                v.recomputed += v.computed - v.shared_tok  # the aborted first prefill is wasted work
        elif not v.fresh:
            v.last_token_s = self.clock  # decoded in the iteration that just ended
        if v.fresh:
            v.fresh = False
            self.n_fresh -= 1
        if v.migrate_to is not None:
            v.migrate_to = None
            self.n_migrating -= 1
        self._release(v)
        v.computed = 0
        v.target = v.prompt + v.generated
        v.recomputing = v.generated > 0
        v.state = WAITING
        v.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(v)

    def _finish(self, r: Request, t: float) -> None:
        r.state = DONE
        r.finish_s = t
        if r.migrate_to is not None:
            r.migrate_to = None
            self.n_migrating -= 1
        if r.decode_instance < 0:
            r.decode_instance = self.idx
        self._release(r)
        sim = self.sim
        sim.n_done += 1
        if t > sim.last_finish:
            sim.last_finish = t
        if sim.finish_hook is not None:
            sim.finish_hook(r)

    def _maybe_stop(self, t: float) -> None:
        if not self.running and not self.waiting and not self.held and not self.busy:
            self.state = STOPPED
            self.stopped_s = t

    # ------------------------------------------------------------------ iterations
    def _form(self, horizon: float) -> bool:
        """Fast-forward decode-only stretches up to ``horizon``, then form the next iteration."""
        st = self.state
        if st != ACTIVE and st != DRAINING:
            return False
        if self.stall_until > self.clock:
            self._stall()
            return False
        if (
            self.ff
            and self.running
            and not self.n_prefilling
            and not self.n_fresh
            and not self.n_migrating
            and self.clock < horizon
        ):
            if self._fast(horizon):
                return True
        if self.chunked:
            return self._schedule()
        return self._schedule_separate()

    def _fast(self, horizon: float) -> bool:
        """Run decode-only iterations ending at or before ``horizon`` in a tight loop.

        Returns True when it stopped at the horizon with the next (identical) decode iteration
        already in flight; False when the full scheduler must form the next iteration."""
        running = self.running
        n = len(running)
        waiting = self.waiting
        if waiting and n < self.max_seqs and self._fits(waiting[0]):
            return False  # an admission is due: needs the full scheduler
        q = (self.capacity - self.used) // n
        if q <= 0:
            return False
        kmax = q * self.block_size  # no request can need more than q new blocks in kmax iterations
        ctx = n
        for r in running:
            rem = r.output - r.generated
            if rem < kmax:
                kmax = rem
            ctx += r.computed
        sim = self.sim
        t0 = t = self.clock
        if self._lines_for is not self.cost:
            self._lines = sim.decode_lines(self.cost, self.capacity * self.block_size)
            self._lines_for = self.cost
        lines = self._lines.get(n) if self._lines is not None else None
        if lines is not None and ctx + kmax * n <= lines[4]:
            # closed form (fastpath.py): k iterations end by the horizon, the next one straddles it
            st = Stretch(lines, n, ctx, t0)
            k = st.count(kmax, horizon)
            t = st.end(k)
            inflight = k < kmax
            if inflight:
                e = st.end(k + 1)
                dt = e - t
            if k:
                sim.itl_pieces.extend(st.itl_pieces(k, n))
        else:
            cost = self.cost.iteration_time
            dts = sim.itl_dt
            ns = sim.itl_n
            k = 0
            inflight = False
            while k < kmax:
                dt = cost(0, 0.0, n, ctx)
                e = t + dt
                if e > horizon:
                    inflight = True  # iteration k + 1 (still within kmax) straddles the horizon
                    break
                t = e
                ctx += n
                k += 1
                dts.append(dt)
                ns.append(n)
        if not k and not inflight:
            return False
        self.clock = t
        self.iterations += k
        self.ff_iterations += k
        self.busy_s += t - t0
        self.decode_tokens += k * n
        bs = self.block_size
        used = self.used
        done = False
        grow = 1 if inflight else 0  # blocks must cover the in-flight token too
        for r in running:
            c = r.computed + k
            r.computed = c
            g = r.generated + k
            r.generated = g
            nb = -(-(c + grow - r.shared_tok) // bs)
            if nb > r.blocks:
                used += nb - r.blocks
                r.blocks = nb
            if g >= r.output:
                done = True
        self.used = used
        cache = self.cache
        if cache is not None and cache.lru_blocks and used + cache.lru_blocks > self.capacity:
            cache.evict(used + cache.lru_blocks - self.capacity)
        if inflight:
            self._dec = running.copy()
            self._pf = []
            self._dt = dt
            self.busy = True
            self.iter_end = e
            return True
        if done:
            keep = []
            for r in running:
                if r.generated >= r.output:
                    self._finish(r, t)
                else:
                    keep.append(r)
            self.running = keep
        return False

    def _grow_decodes(self, dec: list[Request]) -> None:
        """Step 1: every running decoder gets its next token's block, preempting the newest if needed."""
        running = self.running
        bs = self.block_size
        i = 0
        while i < len(running):
            r = running[i]
            if r.computed >= r.target:
                if r.computed + 1 - r.shared_tok > r.blocks * bs:
                    if self.used >= self.capacity:
                        victim = None
                        while self.used >= self.capacity:
                            victim = running.pop()
                            self._preempt(victim)
                            if victim is r:
                                break
                        if victim is r:
                            break
                    self._alloc(1)
                    r.blocks += 1
                dec.append(r)
            i += 1

    def _schedule(self) -> bool:
        """Form one mixed iteration (chunked prefill); returns whether one was started."""
        running = self.running
        dec: list[Request] = []
        if running:
            self._grow_decodes(dec)
        budget = self.max_tokens - len(dec)
        pf: list[tuple[Request, int]] = []
        if self.n_prefilling:
            for r in running:
                if r.computed < r.target:
                    if budget <= 0:
                        break
                    n = r.target - r.computed
                    if n > budget:
                        n = budget
                    pf.append((r, n))
                    budget -= n
        waiting = self.waiting
        if waiting and budget > 0:
            ms = self.max_seqs
            while waiting and budget > 0 and len(running) < ms:
                r = waiting[0]
                if not self._admit(r):
                    break
                waiting.popleft()
                running.append(r)
                if r.computed < r.target:
                    n = r.target - r.computed
                    if n > budget:
                        n = budget
                    pf.append((r, n))
                    budget -= n
                else:
                    dec.append(r)
                    budget -= 1
        return self._start(dec, pf)

    def _schedule_separate(self) -> bool:
        """Form one iteration without chunked prefill: prefill-only when a prompt is admissible."""
        running = self.running
        waiting = self.waiting
        pf: list[tuple[Request, int]] = []
        dec: list[Request] = []
        if waiting and len(running) < self.max_seqs and waiting[0].computed < waiting[0].target:
            budget = self.max_tokens
            while waiting and len(running) < self.max_seqs:
                r = waiting[0]
                if r.computed >= r.target:
                    break  # a KV-carrying request: admitted by the next decode iteration
                n = r.target - (self.prefix_hit_tokens(r) if r.hash_ids is not None else 0)
                if pf and n > budget:
                    break
                if not self._admit(r):
                    break
                waiting.popleft()
                running.append(r)
                n = r.target - r.computed
                pf.append((r, n))
                budget -= n
            if pf:
                for r in running:  # decoders sit this iteration out: their next ITL spans it
                    if r.computed >= r.target and not r.fresh:
                        r.fresh = True
                        r.last_token_s = self.clock
                        self.n_fresh += 1
                return self._start(dec, pf)
        if running:
            self._grow_decodes(dec)
        while waiting and len(running) < self.max_seqs and waiting[0].computed >= waiting[0].target:
            r = waiting[0]
            if not self._admit(r):
                break
            waiting.popleft()
            running.append(r)
            dec.append(r)
        return self._start(dec, pf)

    def _start(self, dec: list[Request], pf: list[tuple[Request, int]]) -> bool:
        if not dec and not pf:
            self.busy = False
            self.iter_end = _INF
            if self.state == DRAINING:
                self._maybe_stop(self.clock)
            return False
        p = 0
        attn = 0.0
        for r, n in pf:
            p += n
            attn += n * (r.computed + (n + 1) * 0.5)
        d = len(dec)
        ctx = d
        for r in dec:
            ctx += r.computed
        dt = self.cost.iteration_time(p, attn, d, ctx)
        if self.load_tokens:  # hits admitted from a remote KV store are loaded first (see PrefixCache.remote)
            extra = self.cache.load_extra(self.load_tokens, dt)
            self.load_tokens = 0
            self.kv_load_s += extra
            dt += extra
        self._dec = dec
        self._pf = pf
        self._dt = dt
        self.busy = True
        self.iter_end = self.clock + dt
        return True

    def _commit(self) -> None:
        """Apply the in-flight iteration at its end time."""
        e = self.iter_end
        self.clock = e
        self.busy = False
        self.iter_end = _INF
        dt = self._dt
        self.iterations += 1
        self.busy_s += dt
        sim = self.sim
        removed = False
        handoffs = migrations = None
        dec = self._dec
        if dec:
            normal = 0
            for r in dec:
                r.computed += 1
                g = r.generated + 1
                r.generated = g
                if r.fresh:
                    sim.itl_gap.append(e - r.last_token_s)
                    r.fresh = False
                    self.n_fresh -= 1
                else:
                    normal += 1
                if g >= r.output:
                    self._finish(r, e)
                    removed = True
            if normal:
                sim.itl_dt.append(dt)
                sim.itl_n.append(normal)
            self.decode_tokens += len(dec)
        pf = self._pf
        if pf:
            cache = self.cache
            for r, n in pf:
                c = r.computed + n
                r.computed = c
                r.prefill_computed += n
                self.prefill_tokens += n
                if r.generated:
                    r.recomputed += n
                if c < r.target:
                    continue
                self.n_prefilling -= 1
                g = r.generated + 1
                r.generated = g
                if g == 1:
                    r.first_token_s = e
                    r.cached_tokens = r.shared_tok
                else:
                    sim.itl_gap.append(e - r.last_token_s)
                    r.recomputing = False
                if cache is not None and r.hash_ids is not None:
                    self._publish(r)
                if g >= r.output:
                    self._finish(r, e)
                    removed = True
                elif self.role == PREFILL:
                    r.state = TRANSFER
                    self.held[r.rid] = r
                    removed = True
                    if handoffs is None:
                        handoffs = []
                    handoffs.append(r)
        if self.n_migrating:
            for r in self.running:
                if r.migrate_to is not None and r.state == RUNNING and r.computed >= r.target:
                    self.n_migrating -= 1
                    r.state = TRANSFER
                    self.held[r.rid] = r
                    removed = True
                    if migrations is None:
                        migrations = []
                    migrations.append(r)
        if removed:
            self.running = [r for r in self.running if r.state == RUNNING]
        if handoffs is not None:
            for r in handoffs:
                sim.handoff(r, self)
        if migrations is not None:
            for r in migrations:
                dst = r.migrate_to
                r.migrate_to = None
                sim.migrate_out(r, self, dst)
        if sim.iteration_hook is not None:
            sim.iteration_hook(self)
