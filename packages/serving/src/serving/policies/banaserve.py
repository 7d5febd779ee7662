"""``banaserve`` — P/D disaggregation with dynamic module migration and a global KV store
(BanaServe, arXiv 2510.13223).

What the paper names (abstract): layer-level weight migration between prefill and decode
instances, attention-level KV-cache migration, and a Global KV Cache Store shared with layer-wise
overlapped transmission, so that routers schedule by load only. How each is simulated here (the
paper's exact controller is not public; these are our documented choices, every one switchable):

* **P/D roles** as ``distserve``: ``n_prefill`` (or ``prefill_ratio``) prefill instances, the rest
  decode; finished prefills send their KV to the least-loaded decode instance.
* **Layer-level weight migration** (``weight_migration``). Prefill instance i is paired with decode
  instance i mod n_D (and decode j with prefill j mod n_P). A signed layer offset k (the same for
  all pairs) says who lends compute: k > 0 — each prefill instance's last k layers run on its
  decode partner, pipelined (``offload`` placement in ``modules.py``: prefill stage × (L − k)/L,
  the decode host time-shares); k < 0 — each decode instance's last |k| layers and their KV live on
  its prefill partner (``offload_seq``: the decode instance gains HBM for KV, the prefill host
  time-shares). Every ``tick_s`` the controller compares SLO pressures

      π_P = mean over prefill instances of (pending prompt tokens / prefill token rate) / ttft_slo_s
      π_D = mean over decode instances of max(t_iter(batch) / tpot_slo_s, KV demand / capacity / kv_high)

  (token rate = B / t_iter(B fresh prompt tokens), B = max_num_batched_tokens; t_iter with the
  instance's current cost). If π_P > (1 + hysteresis)·π_D and π_P ≥ ``act_pressure``: k += step (or
  back toward 0 first when k < 0); the symmetric rule moves k down; when both are below
  ``relax_pressure``, k steps back toward 0. |k| ≤ ``max_layer_fraction``·L; a step is refused if a
  host would keep under a quarter of its KV capacity, or (growing |k|) if a host's predicted
  pressure — its pressure × (1 − φ_now)/(1 − φ_new), KV demand × capacity_now/capacity_new —
  would exceed ``guard_pressure`` (the lender must keep its own SLOs). A step costs ``weight_transfer_time(step)``
  on the sending link (+ the moved layers' KV for k < 0), applied when the copy lands; with
  ``migration_pause`` both instances pause meanwhile.
* **Attention-level KV migration** (``kv_migration``). Every tick, decode KV loads
  ℓ = (used + queued demand)/capacity; while max ℓ > (1 + ``kv_imbalance``)·mean ℓ, running requests
  move from the most to the least loaded decode instance (largest KV first, at most
  ``kv_migrations_per_tick``; ``Instance.migrate``: KV over the source link after its current
  iteration). Modelled at request granularity (the same bytes a head-wise split would move).
* **Global KV store** (``global_kv_store``): one ``GlobalKVStore`` replaces every instance's local
  prefix cache — hits on any instance, no HBM held by the store, loading time added to the
  admitting iteration (``layerwise_store`` overlap). Bandwidth ``store_bandwidth`` (default tp × the
  GPU's NIC bandwidth). Routing stays ``routing`` (default least_load): load only.

All mechanisms off gives exactly ``distserve`` with the same routing (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

from fulcrum_core.config import ConfigError

from ..sim.entities import RUNNING, Request
from ..sim.instance import Instance
from .distserve import FIRST_TOKEN, DistServePolicy
from .modules import ModuleManager, Placement, decode_tpot, kv_demand, make_store, prefill_pending, prefill_rate
from .routing import LOADS, ROUTINGS, Router


@dataclass(frozen=True)
class BanaServeConfig:
    prefill_ratio: float = 0.5
    n_prefill: int | None = None
    routing: str = "least_load"
    decode_routing: str = "least_load"
    load: str = "requests"
    layerwise_overlap: bool = True
    first_token: str = "transfer"
    # layer-level weight migration
    weight_migration: bool = True
    tick_s: float = 5.0
    layer_step: int | None = None  # default max(1, L // 16)
    max_layer_fraction: float = 0.4
    ttft_slo_s: float = 2.0
    tpot_slo_s: float = 0.1
    kv_high: float = 0.9
    act_pressure: float = 0.5
    relax_pressure: float = 0.2
    guard_pressure: float = 1.0
    hysteresis: float = 0.25
    prefill_reserve_tokens: int = 32768
    interference: float = 1.0
    phi_max: float = 0.9
    migration_pause: bool = False
    # attention-level KV migration
    kv_migration: bool = True
    kv_imbalance: float = 0.2
    kv_migrations_per_tick: int = 8
    # global KV store
    global_kv_store: bool = True
    layerwise_store: bool = True
    store_bandwidth: float | None = None
    store_capacity_tokens: int | None = None

    def __post_init__(self) -> None:
        w = "policy banaserve"
        if not 0.0 < self.prefill_ratio < 1.0:
            raise ConfigError(f"{w}.prefill_ratio must be in (0, 1), got {self.prefill_ratio}")
        if self.n_prefill is not None and self.n_prefill < 1:
            raise ConfigError(f"{w}.n_prefill must be >= 1, got {self.n_prefill}")
        for key in ("routing", "decode_routing"):
            if getattr(self, key) not in ROUTINGS:
                raise ConfigError(f"{w}.{key} must be one of {ROUTINGS}, got {getattr(self, key)!r}")
        if self.load not in LOADS:
            raise ConfigError(f"{w}.load must be one of {LOADS}, got {self.load!r}")
        if self.first_token not in FIRST_TOKEN:
            raise ConfigError(f"{w}.first_token must be one of {FIRST_TOKEN}, got {self.first_token!r}")
        if self.tick_s <= 0:
            raise ConfigError(f"{w}.tick_s must be > 0, got {self.tick_s}")
        if self.layer_step is not None and self.layer_step < 1:
            raise ConfigError(f"{w}.layer_step must be >= 1, got {self.layer_step}")
        if not 0.0 <= self.max_layer_fraction < 0.5:
            raise ConfigError(f"{w}.max_layer_fraction must be in [0, 0.5), got {self.max_layer_fraction}")
        for key in ("ttft_slo_s", "tpot_slo_s", "kv_high", "act_pressure", "guard_pressure"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{w}.{key} must be > 0, got {getattr(self, key)}")
        if not 0 <= self.relax_pressure < self.act_pressure:
            raise ConfigError(f"{w}.relax_pressure must be in [0, act_pressure), got {self.relax_pressure}")
        if self.hysteresis < 0 or self.kv_imbalance < 0 or self.prefill_reserve_tokens < 0:
            raise ConfigError(f"{w}.hysteresis, kv_imbalance and prefill_reserve_tokens must be >= 0")
        if not 0.0 <= self.interference <= 1.0:
            raise ConfigError(f"{w}.interference must be in [0, 1], got {self.interference}")
        if not 0.0 <= self.phi_max < 1.0:
            raise ConfigError(f"{w}.phi_max must be in [0, 1), got {self.phi_max}")
        if self.kv_migrations_per_tick < 1:
            raise ConfigError(f"{w}.kv_migrations_per_tick must be >= 1, got {self.kv_migrations_per_tick}")
        if self.store_bandwidth is not None and self.store_bandwidth <= 0:
            raise ConfigError(f"{w}.store_bandwidth must be > 0 B/s, got {self.store_bandwidth}")
        if self.store_capacity_tokens is not None and self.store_capacity_tokens < 1:
            raise ConfigError(f"{w}.store_capacity_tokens must be >= 1, got {self.store_capacity_tokens}")


class BanaServePolicy(DistServePolicy):
    name = "banaserve"
    Config = BanaServeConfig
    sync_before_hooks = False

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.cfg
        self.router = Router(cfg.routing, cfg.load)
        self.decode_router = Router(cfg.decode_routing, cfg.load)
        self.lazy_ok = not cfg.kv_migration  # Instance.migrate needs eager instances
        self.tick_s = cfg.tick_s if (cfg.weight_migration or cfg.kv_migration) else None
        self.k = 0  # signed layer offset (> 0: prefill layers on decode instances), as last decided
        self.k_active = 0  # the offset in effect (a change applies when its weight copies land)
        self.history: list[dict] = []
        self.kv_moves = 0
        self.kv_moved_tokens = 0

    def setup(self, sim, n_instances: int) -> None:
        super().setup(sim, n_instances)
        cfg = self.cfg
        self.modules = ModuleManager(sim, interference=cfg.interference, phi_max=cfg.phi_max, pause=cfg.migration_pause)
        for inst in self.prefill + self.decode:
            self.modules.track(inst)
        L = sim.cost_model.model.layers
        self.layers = L
        self.step = cfg.layer_step if cfg.layer_step is not None else max(1, L // 16)
        self.k_max = int(cfg.max_layer_fraction * L)
        self.pairs_pd = [(p, self.decode[i % len(self.decode)]) for i, p in enumerate(self.prefill)]
        self.pairs_dp = [(d, self.prefill[j % len(self.prefill)]) for j, d in enumerate(self.decode)]
        self.placed: list[Placement] = []
        self._pending = False
        if cfg.global_kv_store:
            self.store = make_store(
                sim,
                bandwidth=cfg.store_bandwidth,
                layerwise=cfg.layerwise_store,
                capacity_tokens=cfg.store_capacity_tokens,
            )
            for inst in sim.instances:
                inst.cache = self.store
        else:
            self.store = None

    # ------------------------------------------------------------------ pressures
    def pressures(self) -> tuple[float, float]:
        cfg = self.cfg
        pp = [prefill_pending(i) / prefill_rate(i) / cfg.ttft_slo_s for i in self.prefill]
        pd = [max(decode_tpot(i) / cfg.tpot_slo_s, kv_demand(i) / cfg.kv_high) for i in self.decode]
        return sum(pp) / len(pp), sum(pd) / len(pd)

    def host_pressure(self, inst: Instance, placements: list[Placement]) -> float:
        """Predicted SLO pressure of ``inst`` under ``placements``: its current pressure with the
        time-sharing slowdown (1 − φ_now)/(1 − φ_new) and the capacity change applied."""
        cfg = self.cfg
        lay = self.modules.layout(inst, placements)
        phi_now = getattr(inst.cost, "phi", 0.0)
        if lay["phi"] >= self.modules.phi_max:
            return float("inf")
        slow = (1.0 - phi_now) / (1.0 - lay["phi"])
        if inst.role == "decode":
            cap_ratio = inst.capacity * inst.block_size / max(lay["capacity_tokens"], 1)
            return max(decode_tpot(inst) * slow / cfg.tpot_slo_s, kv_demand(inst) * cap_ratio / cfg.kv_high)
        return prefill_pending(inst) / prefill_rate(inst) * slow / cfg.ttft_slo_s

    # ------------------------------------------------------------------ control
    def on_tick(self, t: float) -> None:
        cfg = self.cfg
        if cfg.weight_migration:
            self.modules.measure(t)
            self.modules.refresh()  # φ follows the measured busy fractions
            self._weights(t)
        if cfg.kv_migration:
            self._balance_kv()

    def _weights(self, t: float) -> None:
        cfg = self.cfg
        pi_p, pi_d = self.pressures()
        k = self.k
        target = k
        if not self._pending:
            h = 1.0 + cfg.hysteresis
            if pi_p >= cfg.act_pressure and pi_p > h * pi_d:
                target = min(k + self.step, self.k_max) if k >= 0 else min(k + self.step, 0)
            elif pi_d >= cfg.act_pressure and pi_d > h * pi_p:
                target = max(k - self.step, -self.k_max) if k <= 0 else max(k - self.step, 0)
            elif pi_p < cfg.relax_pressure and pi_d < cfg.relax_pressure and k:
                target = max(k - self.step, 0) if k > 0 else min(k + self.step, 0)
        moved = bool(target != k and self._set_k(target))
        self.history.append(
            {"t_s": t, "pi_prefill": pi_p, "pi_decode": pi_d, "k": self.k_active, "target": target, "moved": moved}
        )

    def _set_k(self, target: int) -> bool:
        """Move the layer offset to ``target`` (same sign as, or zero with, the current one)."""
        k = self.k
        kind = "offload" if (target > 0 or k > 0) else "offload_seq"
        pairs = self.pairs_pd if kind == "offload" else self.pairs_dp
        layers = abs(target)
        if not self.placed:
            reserve = self.cfg.prefill_reserve_tokens if kind == "offload" else 0
            self.placed = [Placement(kind, src, host, 0, reserve_tokens=reserve) for src, host in pairs]
        # feasibility: every host keeps a quarter of its own KV capacity and its blocks in use, and
        # (when lending grows) its predicted SLO pressure stays under guard_pressure
        trial = [Placement(p.kind, p.src, p.host, layers, p.reserve_tokens) for p in self.placed]
        others = [p for p in self.modules.active() if p not in self.placed]
        for p in trial:
            if not self.modules.feasible(p.host, others + trial):
                return False
        if abs(target) > abs(k):
            for host in {p.host.idx: p.host for p in trial}.values():
                if self.host_pressure(host, others + trial) > self.cfg.guard_pressure:
                    return False
        self._pending = True
        left = [len(self.placed)]

        def one_done() -> None:
            left[0] -= 1
            if left[0] == 0:
                self._pending = False
                self.k_active = target
                if target == 0:
                    self.placed = []

        for p in self.placed:
            self.modules.resize(p, layers, on_done=one_done)
        self.k = target
        return True

    def _balance_kv(self) -> None:
        cfg = self.cfg
        dec = [i for i in self.decode if i.accepting]
        if len(dec) < 2:
            return
        moves = 0
        planned = {i.idx: 0 for i in dec}  # blocks leaving (−) / arriving (+) this tick
        while moves < cfg.kv_migrations_per_tick:
            loads = {i.idx: (kv_demand(i) * i.capacity + planned[i.idx]) / i.capacity for i in dec}
            mean = sum(loads.values()) / len(loads)
            src = max(dec, key=lambda i: loads[i.idx])
            dst = min(dec, key=lambda i: loads[i.idx])
            if mean <= 0 or loads[src.idx] <= (1 + cfg.kv_imbalance) * mean:
                return
            excess = (loads[src.idx] - mean) * src.capacity
            room = (mean - loads[dst.idx]) * dst.capacity
            cand = [
                r
                for r in src.running
                if r.state == RUNNING
                and r.computed >= r.target
                and r.migrate_to is None
                and not r.fresh
                and r.generated < r.output - 1
            ]
            if not cand:
                return
            bs = src.block_size
            limit = min(excess, room)
            fits = [r for r in cand if -(-(r.computed + 1) // bs) <= limit]
            if not fits:
                return
            pick = max(fits, key=lambda r: (r.computed, -r.rid))  # the largest KV that fits: fewest moves
            blocks = -(-(pick.computed + 1) // bs)
            src.migrate(pick, dst)
            planned[src.idx] -= blocks
            planned[dst.idx] += blocks
            self.kv_moves += 1
            self.kv_moved_tokens += pick.computed
            moves += 1

    def on_arrival(self, req: Request) -> Instance | None:
        return self.router.pick(self.prefill, req, self.sim)
