"""Module-level levers shared by ``banaserve`` and ``cocoserve``: decoder layers placed on other
instances (moved or replicated), and a global KV-cache store.

**Placements.** A :class:`Placement` puts ``l`` of the L decoder layers of instance ``src`` on
instance ``host``. Three kinds (f = l/L):

* ``offload`` — the last l layers of ``src`` run on ``host``, pipelined: ``src`` hands each
  iteration's activations to ``host`` and starts its next iteration (valid when consecutive
  iterations are independent up to a layer, as chunked prefills are). ``src``'s stage shrinks to
  (1 − f) of its iteration time (+ one activation hop); ``host`` does f of ``src``'s work.
  BanaServe's prefill → decode layer migration.
* ``offload_seq`` — the same layers move, but ``src`` waits for them (autoregressive decode: the
  next token needs every layer of the last one), so ``src``'s iteration time does not shrink (+ two
  hops); what ``src`` gains is HBM: the moved weights, and its KV per token shrinks to (1 − f) since
  the moved layers' KV lives on ``host``. BanaServe's decode → prefill direction, CoCoServe's
  memory-driven module migration.
* ``replica`` — ``host`` holds a copy of the last l layers of ``src``; each ``src`` iteration splits
  its batch over the two copies for those layers: time (1 − f)·T(batch) + f·T(half batch) (+ two
  hops), where T is the instance's cost model; ``host`` computes the other half. CoCoServe's
  module replication.

**Fluid time-sharing.** A host runs foreign layers on the same GPUs as its own work. Per control
tick the foreign share of its GPU time is estimated from the sources' measured busy fractions u
over the last tick:

    φ_host = κ · Σ_placements  w_src · f · s        (capped at ``phi_max``)

with w_src = u_src / own_src the source's work rate at full cost (``offload``), u_src
(``offload_seq``), and s = ½ for a replica (the host computes half the replicated layers), else 1.
κ (``interference``, default 1) scales how much foreign work delays the host: 1 is pure time
sharing; below 1 assumes overlap of compute-bound and memory-bound kernels. The host's own
iterations take T / (1 − φ_host). This is a fluid approximation (no per-iteration coupling); it
keeps total GPU time conserved at κ = 1.

**Per-instance cost** (:class:`ModuleCost`, wraps the shared cost model):

    t = [own · T(P, A, D, C) + rep · T(⌈P/2⌉, A·⌈P/2⌉/P, ⌈D/2⌉, C·⌈D/2⌉/D)] / (1 − φ) + hops · (λ + (P + D)·a)

own = 1 − Σ f (offload, replica from here), rep = Σ f (replica from here), a = hidden·dtype_bytes
per token over the instance's link (derived from its ``kv_transfer_time`` rate scaled by hidden·dtype /
kv_bytes_per_token), λ the link latency. Without replicas t is the base time times a constant plus
a constant per batch, so the simulator's closed-form decode stretches still apply.

**HBM** (instance base free bytes B₀ = base KV capacity × kv bytes per token):

    bytes  = B₀ + Σ_{offload*, from here} l·layer_bytes − Σ_{hosted here} (l·layer_bytes + f·kv·R)
    kv_tok = kv · (1 − Σ_{offload*, from here} f)
    capacity = ⌊bytes / kv_tok⌋ tokens

R = KV tokens of ``src`` whose moved layers the host stores: the source's capacity for
``offload_seq`` (a decode instance fills its memory), ``prefill_reserve_tokens`` for ``offload``
(a prefill instance holds only in-flight prompts), 0 for a replica (the source keeps the KV; the
replica reads activations, an approximation). A replica costs the host l·layer_bytes.

**Moving weights.** Changing a placement by Δl layers sends ``weight_transfer_time(Δl)`` (+ for
``offload_seq`` the moved layers' share of the source's current KV, ``kv_transfer_time(used)·Δl/L``)
over the sending instance's link (FIFO with KV hand-offs); the new layout takes effect when the
last byte lands. With ``pause`` both instances stop iterating meanwhile (else the copy runs in the
background). Dropping a replica is free (the host deletes its copy).

**Global KV store** (:class:`GlobalKVStore`): one prefix store shared by every instance, outside
HBM: a hit is visible on every instance; its KV is copied into the admitting request's private
blocks in ``load_latency + tokens·kv_bytes / bandwidth`` seconds, added to the admitting
iteration; with ``layerwise`` only ``max(T/L, T − t_iter·(L−1)/L)`` is added (layer l's KV loads
while layer l − 1 computes; same pipeline algebra as ``layerwise_extra``). Capacity: unbounded, or
``capacity_tokens`` with LRU eviction. Writes into the store are assumed free (asynchronous).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..sim.entities import PrefixCache, layerwise_extra
from ..sim.instance import Instance

KINDS = ("offload", "offload_seq", "replica")


class ModuleCost:
    """Cost model of one instance under a placement layout (formula in the module docstring)."""

    __slots__ = ("base", "own", "rep", "phi", "hops", "hop_latency", "hop_per_token", "_scale", "_hop0")

    def __init__(
        self,
        base: Any,
        own: float = 1.0,
        rep: float = 0.0,
        phi: float = 0.0,
        hops: int = 0,
        hop_latency: float = 0.0,
        hop_per_token: float = 0.0,
    ):
        if not 0.0 < own + rep <= 1.0 + 1e-12 or own < 0 or rep < 0:
            raise ValueError(f"own ({own}) and rep ({rep}) must be >= 0 with 0 < own + rep <= 1")
        if not 0.0 <= phi < 1.0:
            raise ValueError(f"phi must be in [0, 1), got {phi}")
        self.base = base
        self.own = float(own)
        self.rep = float(rep)
        self.phi = float(phi)
        self.hops = int(hops)
        self.hop_latency = float(hop_latency)
        self.hop_per_token = float(hop_per_token)
        self._scale = self.own / (1.0 - self.phi)
        self._hop0 = self.hops * self.hop_latency

    def __repr__(self) -> str:
        return f"ModuleCost(own={self.own:.4g}, rep={self.rep:.4g}, phi={self.phi:.4g}, hops={self.hops})"

    def __getattr__(self, name: str) -> Any:  # model, gpu, tp and anything else of the base
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def iteration_time(self, prefill_tokens: int, prefill_attn: float, decode_seqs: int, decode_context: int) -> float:
        t = self.base.iteration_time(prefill_tokens, prefill_attn, decode_seqs, decode_context)
        if t == 0.0:
            return 0.0
        t *= self._scale
        if self.rep:
            p2 = (prefill_tokens + 1) // 2
            d2 = (decode_seqs + 1) // 2
            a2 = prefill_attn * p2 / prefill_tokens if prefill_tokens else 0.0
            c2 = decode_context * d2 / decode_seqs if decode_seqs else 0
            t += self.rep * self.base.iteration_time(p2, a2, d2, c2) / (1.0 - self.phi)
        if self.hops:
            t += self._hop0 + self.hops * self.hop_per_token * (prefill_tokens + decode_seqs)
        return t

    def kv_capacity_tokens(self) -> int:
        return self.base.kv_capacity_tokens()

    def kv_transfer_time(self, tokens: int) -> float:
        return self.base.kv_transfer_time(tokens)

    def weight_transfer_time(self, layers: int) -> float:
        return self.base.weight_transfer_time(layers)


def hop_terms(base: Any) -> tuple[float, float]:
    """(latency, seconds per token) of one activation hop over the instance's link.

    Read off ``kv_transfer_time`` (latency + n·kv/(tp·bw)): per-token rate r = t(2n) − t(n) over n,
    scaled from kv bytes to hidden·dtype bytes per token."""
    m = base.model
    n = 1 << 20
    t1, t2 = base.kv_transfer_time(n), base.kv_transfer_time(2 * n)
    r = (t2 - t1) / n
    latency = max(t1 - r * n, 0.0)
    return latency, r * m.hidden * m.dtype_bytes / m.kv_bytes_per_token


@dataclass
class Placement:
    """``layers`` decoder layers of instance ``src`` placed on ``host`` (kind in KINDS)."""

    kind: str
    src: Instance
    host: Instance
    layers: int
    reserve_tokens: int = 0  # offload: KV tokens of src the host stores for the moved layers
    pending: bool = False  # a transfer for this placement is in flight
    created_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"placement kind must be one of {KINDS}, got {self.kind!r}")
        if self.src is self.host:
            raise ValueError("a placement needs two different instances")


class ModuleManager:
    """Placements of one simulation, the per-instance cost/capacity they imply, and their transfers.

    ``measure(now)`` records busy fractions since the last call; ``refresh()`` rebuilds every
    touched instance's cost wrapper and KV capacity from the active placements (costs are cached
    by their parameters, φ rounded to 1/256, so unchanged layouts reuse the same object and the
    simulator's closed-form tables)."""

    def __init__(self, sim: Any, *, interference: float = 1.0, phi_max: float = 0.9, pause: bool = False):
        if not 0.0 <= interference <= 1.0:
            raise ValueError(f"interference must be in [0, 1], got {interference}")
        if not 0.0 <= phi_max < 1.0:
            raise ValueError(f"phi_max must be in [0, 1), got {phi_max}")
        self.sim = sim
        self.interference = float(interference)
        self.phi_max = float(phi_max)
        self.pause = bool(pause)
        self.placements: list[Placement] = []
        self.base_tokens: dict[int, int] = {}
        self.busy: dict[int, float] = {}
        self.util: dict[int, float] = {}
        self._last_t: float | None = None
        self._costs: dict[tuple, ModuleCost] = {}
        self.transfer_s = 0.0  # link seconds spent moving weights / KV for placements
        self.transfers = 0
        self.log: list[dict] = []

    # ------------------------------------------------------------------ bookkeeping
    def track(self, inst: Instance) -> None:
        """Remember ``inst``'s own KV capacity (tokens) before any placement touches it."""
        self.base_tokens[inst.idx] = inst.capacity * inst.block_size
        self.busy[inst.idx] = inst.busy_s
        self.util.setdefault(inst.idx, 0.0)

    def measure(self, now: float) -> None:
        """Busy fraction of each tracked instance since the previous call (0 on the first)."""
        dt = None if self._last_t is None else now - self._last_t
        for inst in self.sim.instances:
            if inst.idx not in self.base_tokens:
                continue
            prev = self.busy.get(inst.idx, inst.busy_s)
            self.util[inst.idx] = min(1.0, (inst.busy_s - prev) / dt) if dt and dt > 0 else 0.0
            self.busy[inst.idx] = inst.busy_s
        self._last_t = now

    def active(self) -> list[Placement]:
        return [p for p in self.placements if not p.pending and p.layers > 0]

    def of_src(self, inst: Instance) -> list[Placement]:
        return [p for p in self.active() if p.src is inst]

    def of_host(self, inst: Instance) -> list[Placement]:
        return [p for p in self.active() if p.host is inst]

    def involved(self, inst: Instance) -> bool:
        return any(p.src is inst or p.host is inst for p in self.placements)

    # ------------------------------------------------------------------ layout → cost and capacity
    def layout(self, inst: Instance, placements: list[Placement] | None = None) -> dict[str, float]:
        """own, rep, hops, phi, capacity tokens of ``inst`` under ``placements`` (default: the active ones)."""
        ps = self.active() if placements is None else placements
        model = self.sim.cost_model.model
        L = model.layers
        kv = model.kv_bytes_per_token
        lb = model.layer_bytes
        own, rep, hops, kv_frac = 1.0, 0.0, 0, 1.0
        extra_bytes = 0.0
        for p in ps:
            if p.src is not inst:
                continue
            f = p.layers / L
            if p.kind == "offload":
                own -= f
                hops += 1
                kv_frac -= f
                extra_bytes += p.layers * lb
            elif p.kind == "offload_seq":
                hops += 2
                kv_frac -= f
                extra_bytes += p.layers * lb
            else:
                own -= f
                rep += f
                hops += 2
        phi = 0.0
        for p in ps:
            if p.host is not inst:
                continue
            f = p.layers / L
            u = self.util.get(p.src.idx, 0.0)
            if p.kind == "offload":
                src_own = self.layout_terms(p.src, ps)[0]
                phi += u / max(src_own, 1e-9) * f
                extra_bytes -= p.layers * lb + f * kv * p.reserve_tokens
            elif p.kind == "offload_seq":
                phi += u * f
                extra_bytes -= p.layers * lb + f * kv * self.capacity_tokens(p.src, ps)
            else:
                phi += 0.5 * u * f
                extra_bytes -= p.layers * lb
        phi = min(self.interference * phi, self.phi_max)
        base = self.base_tokens.get(inst.idx, inst.capacity * inst.block_size)
        cap = math.floor((base * kv + extra_bytes) / (kv * max(kv_frac, 1e-9)))
        return {"own": own, "rep": rep, "hops": hops, "phi": phi, "capacity_tokens": cap, "kv_frac": kv_frac}

    def layout_terms(self, inst: Instance, ps: list[Placement]) -> tuple[float, float]:
        """(own, kv_frac) of ``inst`` as a source (no host terms; avoids recursion)."""
        L = self.sim.cost_model.model.layers
        own, kv_frac = 1.0, 1.0
        for p in ps:
            if p.src is inst:
                f = p.layers / L
                if p.kind != "offload_seq":
                    own -= f
                if p.kind != "replica":
                    kv_frac -= f
        return own, kv_frac

    def capacity_tokens(self, inst: Instance, ps: list[Placement]) -> int:
        """Capacity of a source from its own placements only (what its hosts must store KV for)."""
        model = self.sim.cost_model.model
        kv = model.kv_bytes_per_token
        extra = sum(p.layers * model.layer_bytes for p in ps if p.src is inst and p.kind != "replica")
        kv_frac = self.layout_terms(inst, ps)[1]
        base = self.base_tokens.get(inst.idx, inst.capacity * inst.block_size)
        return math.floor((base * kv + extra) / (kv * max(kv_frac, 1e-9)))

    def cost_for(self, own: float, rep: float, phi: float, hops: int) -> Any:
        base = self.sim.cost_model
        if own == 1.0 and rep == 0.0 and hops == 0 and phi < 1.0 / 512:
            return base
        key = (round(own, 9), round(rep, 9), round(phi * 256), hops)
        cost = self._costs.get(key)
        if cost is None:
            lat, per_tok = hop_terms(base)
            cost = ModuleCost(base, own, rep, round(phi * 256) / 256, hops, lat, per_tok)
            self._costs[key] = cost
        return cost

    def refresh(self, insts: list[Instance] | None = None) -> None:
        """Apply the active layout to ``insts`` (default: every tracked instance)."""
        sim = self.sim
        targets = insts if insts is not None else [i for i in sim.instances if i.idx in self.base_tokens]
        for inst in targets:
            lay = self.layout(inst)
            cost = self.cost_for(lay["own"], lay["rep"], lay["phi"], int(lay["hops"]))
            blocks = max(int(lay["capacity_tokens"]) // inst.block_size, 1)
            if cost is not inst.cost or blocks != inst.capacity:
                inst.sync()
                inst.cost = cost
                inst.set_capacity(blocks)
                inst.kick()  # more memory may admit queued work now

    def feasible(self, inst: Instance, placements: list[Placement], min_fraction: float = 0.25) -> bool:
        """Whether ``inst`` keeps at least ``min_fraction`` of its own capacity and its blocks in use."""
        cap = self.layout(inst, placements)["capacity_tokens"]
        base = self.base_tokens.get(inst.idx, inst.capacity * inst.block_size)
        return cap >= min_fraction * base and cap // inst.block_size >= inst.used

    # ------------------------------------------------------------------ changes
    def transfer_time(self, p: Placement, delta: int) -> float:
        """Link time to move ``delta`` layers of placement ``p`` (+ their KV for offload_seq)."""
        cost = self.sim.cost_model
        t = cost.weight_transfer_time(abs(delta))
        if p.kind == "offload_seq":
            used = p.src.used * p.src.block_size if delta > 0 else p.host.used * p.host.block_size
            t += cost.kv_transfer_time(used) * abs(delta) / cost.model.layers
        return t

    def resize(self, p: Placement, layers: int, on_done: Any = None) -> float:
        """Set placement ``p`` to ``layers`` layers; returns when the change takes effect.

        Growing sends the layers from ``src`` to ``host`` over ``src.link``; shrinking an offload
        sends them back over ``host.link``; shrinking a replica is immediate. ``p`` is added to the
        manager if new; a placement resized to 0 is removed once done."""
        sim = self.sim
        now = sim.now
        if p not in self.placements:
            self.placements.append(p)
            p.created_s = now
            old = 0
        else:
            old = p.layers
        delta = layers - old
        if delta == 0:
            return now
        if delta < 0 and p.kind == "replica":
            t = 0.0
            end = now
        else:
            t = self.transfer_time(p, delta)
            link = p.src.link if delta > 0 else p.host.link
            end = link.send(now, t)
            self.transfer_s += t
            self.transfers += 1
            if self.pause:
                for inst in (p.src, p.host):
                    inst.pause(end - now)
        self.log.append(
            {
                "t_s": now,
                "kind": p.kind,
                "src": p.src.idx,
                "host": p.host.idx,
                "from": old,
                "to": layers,
                "transfer_s": t,
                "effective_s": end,
            }
        )
        p.pending = True

        def done() -> None:
            p.layers = layers
            p.pending = False
            if layers == 0 and p in self.placements:
                self.placements.remove(p)
            self.refresh([p.src, p.host])
            if on_done is not None:
                on_done()

        if end <= now:
            done()
        else:
            sim.schedule(end, done)
        return end

    def drop(self, p: Placement) -> float:
        return self.resize(p, 0)


# ---------------------------------------------------------------------- load signals for controllers
def prefill_pending(inst: Instance) -> int:
    """Prompt tokens still to compute on ``inst`` (queued + partially prefilled)."""
    n = 0
    for r in inst.waiting:
        if r.computed < r.target:
            n += r.target - r.computed
    if inst.n_prefilling:
        for r in inst.running:
            if r.computed < r.target:
                n += r.target - r.computed
    return n


def prefill_rate(inst: Instance) -> float:
    """Prompt tokens per second of a full fresh chunk of ``max_num_batched_tokens`` on ``inst``."""
    b = inst.max_tokens
    t = inst.cost.iteration_time(b, b * (b + 1) / 2.0, 0, 0)
    return b / t if t > 0 else float("inf")


def kv_demand(inst: Instance) -> float:
    """(blocks held + blocks the queue needs) / capacity."""
    bs = inst.block_size
    need = inst.used + sum(-(-(r.target - r.computed + 1) // bs) for r in inst.waiting)
    return need / inst.capacity if inst.capacity else 1.0


def decode_tpot(inst: Instance) -> float:
    """Time of one decode iteration of the current running batch (0 when idle)."""
    n = len(inst.running)
    if not n:
        return 0.0
    ctx = n + sum(r.computed for r in inst.running)
    return inst.cost.iteration_time(0, 0.0, n, ctx)


class GlobalKVStore(PrefixCache):
    """A prefix store shared by all instances, outside their HBM (see the module docstring)."""

    __slots__ = (
        "bandwidth",
        "latency",
        "kv_bytes",
        "layers",
        "layerwise",
        "capacity_entries",
        "store",
        "loaded_tokens",
        "load_s",
    )
    remote = True

    def __init__(
        self,
        block_tokens: int,
        block_size: int,
        *,
        kv_bytes_per_token: int,
        layers: int,
        bandwidth: float,
        latency: float = 0.0,
        layerwise: bool = True,
        capacity_tokens: int | None = None,
    ):
        super().__init__(block_tokens, block_size)
        if bandwidth <= 0:
            raise ValueError(f"store bandwidth must be > 0 B/s, got {bandwidth}")
        self.bandwidth = float(bandwidth)
        self.latency = float(latency)
        self.kv_bytes = int(kv_bytes_per_token)
        self.layers = max(int(layers), 1)
        self.layerwise = bool(layerwise)
        self.capacity_entries = None if capacity_tokens is None else max(int(capacity_tokens) // block_tokens, 1)
        self.store: dict[int, None] = {}  # resident ids, least recently used first
        self.loaded_tokens = 0
        self.load_s = 0.0

    def match(self, ids: tuple[int, ...], max_ids: int) -> tuple[int, int]:
        """Leading resident ids; every hit is 'unreferenced' so admission reserves a private copy."""
        store = self.store
        h = 0
        for hid in ids[:max_ids]:
            if hid not in store:
                break
            h += 1
        return h, h

    def acquire(self, ids: tuple[int, ...], h: int) -> None:
        store = self.store
        for hid in ids[:h]:  # touch: most recently used
            del store[hid]
            store[hid] = None

    def release(self, ids: tuple[int, ...], h: int) -> None:
        """Nothing to do: the request's copy lived in its instance (the instance frees it)."""

    def insert(self, ids: tuple[int, ...], h0: int, h1: int) -> tuple[int, int]:
        store = self.store
        for hid in ids[h0:h1]:
            if hid in store:
                del store[hid]
            store[hid] = None
        cap = self.capacity_entries
        if cap is not None:
            while len(store) > cap:
                del store[next(iter(store))]
                self.evictions += 1
        return 0, 0

    def evict(self, blocks: int) -> None:
        """The store holds no instance memory: nothing to evict on an instance's behalf."""

    def load_time(self, tokens: int) -> float:
        return self.latency + tokens * self.kv_bytes / self.bandwidth

    def load_extra(self, tokens: int, compute_s: float) -> float:
        """Latency that loading ``tokens`` hit tokens adds to an iteration of ``compute_s`` seconds."""
        t = self.load_time(tokens)
        extra = layerwise_extra(t, compute_s, self.layers) if self.layerwise else t
        self.loaded_tokens += tokens
        self.load_s += extra
        return extra


def make_store(sim: Any, *, bandwidth: float | None, layerwise: bool, capacity_tokens: int | None) -> GlobalKVStore:
    """A store for ``sim``'s trace and model; bandwidth default: tp × the GPU's NIC bandwidth."""
    cost = sim.cost_model
    model = cost.model
    if bandwidth is None:
        nic = getattr(getattr(cost, "gpu", None), "nic_bw", 0.0) or 0.0
        if nic <= 0:
            raise ValueError("global KV store: the GPU spec has no nic_bw; set store_bandwidth (B/s)")
        bandwidth = nic * getattr(cost, "tp", 1)
    bt = sim.block_tokens
    bs = sim.config.block_size
    if bt % bs:
        raise ValueError(f"global KV store needs the trace block ({bt} tokens) to be a multiple of block_size {bs}")
    return GlobalKVStore(
        bt,
        bs,
        kv_bytes_per_token=model.kv_bytes_per_token,
        layers=model.layers,
        bandwidth=bandwidth,
        latency=getattr(cost, "link_latency_s", 0.0),
        layerwise=layerwise,
        capacity_tokens=capacity_tokens,
    )
