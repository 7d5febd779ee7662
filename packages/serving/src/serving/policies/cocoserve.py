"""``cocoserve`` — colocated replicas with module-level replication/migration and an auto-scaler
(CoCoServe, arXiv 2507.18006).

What the paper names (abstract): replication and migration of modules (decoder layers,
projections) and an auto-scaler that regulates module-level resources, more cheaply than whole
instances. The paper's controller is not public here; our documented, switchable version:

* **Serving**: ``mixed`` (colocated) replicas behind a ``routing`` router (default least_load).
* **Pressure** of instance i (SLO-normalised; ≥ 1 means an SLO is at risk):
  π_i = max(queue_i / ttft_slo_s, t_iter(batch_i) / tpot_slo_s, KV demand_i / kv_high) with
  queue_i = pending prompt tokens / prefill token rate (``modules.py`` helpers).
* **Module replication** (``replication``): every ``sync_s``, an instance with π > ``rep_high`` gets
  a replica of its last ``replica_fraction``·L decoder layers on a ready instance with π <
  ``rep_low`` that takes part in no other placement (``replica`` placement: the source's iteration
  time becomes (1 − f)·T(batch) + f·T(half batch) + hops; the host pays f·layer weights of HBM and
  time-shares half the replicated work). Copy time ``weight_transfer_time(l)`` over the source's
  link. A replica is dropped (free) when its source's π < ``rep_low`` or its host's π > ``rep_high``.
* **Module migration** (``migration``): an instance whose KV demand exceeds ``kv_migrate_high`` moves
  its last ``migrate_fraction``·L layers and their KV to a ready instance whose KV demand is under
  ``kv_migrate_low`` (``offload_seq``: the source gains HBM for KV; the host stores the moved
  layers' KV and time-shares); moved back when the source's demand falls under ``kv_migrate_low``.
* **Auto-scaler** (``autoscale``): every ``sync_s``, the Kubernetes HPA rule on the mean per-instance
  ``metric`` over ready instances — ``requests`` (running + queued, as ``hpa``; default, so that a
  comparison with ``hpa`` at the same ``target`` isolates the module mechanisms) or ``pressure`` (π;
  not proportional to load: a decode batch's TPOT has a floor, so small targets overshoot) — with
  starting instances counted as 0 when scaling up; desired = ceil(current · metric / ``target``)
  unless |metric/target − 1| ≤ ``tolerance``; scale-up by at most max(``scale_up_pods``, current) per sync;
  scale-down to the largest recommendation of the last ``scale_in_stabilization_s``. *Replication
  before scaling out*: when the scaler wants more instances but a replica could be placed this
  sync, only the replica is placed, unless the mean pressure π̄ ≥ ``urgent_pressure``. New instances start in
  ``container_start_s`` + ``weight_transfer_time(L)`` with ``peer_start`` (weights copied from a
  running peer over its link, occupying it — the module-level copy path), else ``cold_start_s``
  (as ``hpa``, weights from storage). Scale-in drains the least loaded instances after dropping
  their placements.

GPU cost is per instance (tp × alive), as for every policy: module hosts are existing instances.
All mechanisms off gives a static colocated deployment identical to ``vllm`` (tested).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from fulcrum_core.config import ConfigError

from ..sim.entities import Request
from ..sim.instance import ACTIVE, STARTING, Instance
from .base import Policy
from .modules import ModuleManager, Placement, decode_tpot, kv_demand, prefill_pending, prefill_rate
from .routing import LOADS, ROUTINGS, Router

METRICS = ("requests", "pressure")


@dataclass(frozen=True)
class CoCoServeConfig:
    routing: str = "least_load"
    load: str = "requests"
    sync_s: float = 15.0
    ttft_slo_s: float = 2.0
    tpot_slo_s: float = 0.1
    kv_high: float = 0.9
    interference: float = 1.0
    phi_max: float = 0.9
    migration_pause: bool = False
    # module replication
    replication: bool = True
    replica_fraction: float = 0.25
    rep_high: float = 0.8
    rep_low: float = 0.3
    # module migration
    migration: bool = True
    migrate_fraction: float = 0.25
    kv_migrate_high: float = 0.9
    kv_migrate_low: float = 0.5
    # auto-scaler
    autoscale: bool = True
    metric: str = "requests"
    target: float = 16.0
    tolerance: float = 0.1
    urgent_pressure: float = 1.0
    min_replicas: int = 1
    max_replicas: int = 64
    scale_up_pods: int = 4
    scale_in_stabilization_s: float = 300.0
    peer_start: bool = True
    container_start_s: float = 15.0
    cold_start_s: float = 60.0

    def __post_init__(self) -> None:
        w = "policy cocoserve"
        if self.routing not in ROUTINGS:
            raise ConfigError(f"{w}.routing must be one of {ROUTINGS}, got {self.routing!r}")
        if self.load not in LOADS:
            raise ConfigError(f"{w}.load must be one of {LOADS}, got {self.load!r}")
        if self.metric not in METRICS:
            raise ConfigError(f"{w}.metric must be one of {METRICS}, got {self.metric!r}")
        for key in ("sync_s", "ttft_slo_s", "tpot_slo_s", "kv_high", "target", "urgent_pressure"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{w}.{key} must be > 0, got {getattr(self, key)}")
        for key in ("replica_fraction", "migrate_fraction"):
            if not 0.0 < getattr(self, key) < 0.5:
                raise ConfigError(f"{w}.{key} must be in (0, 0.5), got {getattr(self, key)}")
        if not 0 <= self.rep_low < self.rep_high:
            raise ConfigError(f"{w} needs 0 <= rep_low < rep_high, got {self.rep_low}, {self.rep_high}")
        if not 0 <= self.kv_migrate_low < self.kv_migrate_high:
            raise ConfigError(
                f"{w} needs 0 <= kv_migrate_low < kv_migrate_high, got {self.kv_migrate_low}, {self.kv_migrate_high}"
            )
        if not 0.0 <= self.interference <= 1.0:
            raise ConfigError(f"{w}.interference must be in [0, 1], got {self.interference}")
        if not 0.0 <= self.phi_max < 1.0:
            raise ConfigError(f"{w}.phi_max must be in [0, 1), got {self.phi_max}")
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"{w}.tolerance must be in [0, 1), got {self.tolerance}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ConfigError(
                f"{w} needs 1 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}"
            )
        if self.scale_up_pods < 1:
            raise ConfigError(f"{w}.scale_up_pods must be >= 1, got {self.scale_up_pods}")
        for key in ("scale_in_stabilization_s", "container_start_s", "cold_start_s"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{w}.{key} must be >= 0, got {getattr(self, key)}")


class CoCoServePolicy(Policy):
    name = "cocoserve"
    Config = CoCoServeConfig
    sync_before_hooks = False  # the router syncs what it reads; ticks sync every instance

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.cfg
        self.router = Router(cfg.routing, cfg.load)
        self.tick_s = cfg.sync_s if (cfg.replication or cfg.migration or cfg.autoscale) else None
        self.recommendations: deque[tuple[float, int]] = deque()
        self.history: list[dict] = []
        self.replicas_placed = 0
        self.migrations_placed = 0
        self.scale_outs = 0
        self.scale_ins = 0

    def setup(self, sim, n_instances: int) -> None:
        cfg = self.cfg
        if n_instances < 1:
            raise ConfigError(f"policy cocoserve needs at least one instance, got {n_instances}")
        n0 = min(max(n_instances, cfg.min_replicas), cfg.max_replicas) if cfg.autoscale else n_instances
        self.modules = ModuleManager(sim, interference=cfg.interference, phi_max=cfg.phi_max, pause=cfg.migration_pause)
        self.live: list[Instance] = []
        for _ in range(n0):
            self._add(cold=0.0)
        self.recommendations.append((sim.now, n0))
        self.layers = sim.cost_model.model.layers

    def _add(self, cold: float) -> Instance:
        inst = self.sim.add_instance("mixed", cold_start_s=cold)
        self.modules.track(inst)
        self.live.append(inst)
        return inst

    # ------------------------------------------------------------------ signals
    def pressure(self, inst: Instance) -> float:
        cfg = self.cfg
        queue = prefill_pending(inst) / prefill_rate(inst)
        return max(queue / cfg.ttft_slo_s, decode_tpot(inst) / cfg.tpot_slo_s, kv_demand(inst) / cfg.kv_high)

    def ready(self) -> list[Instance]:
        return [i for i in self.live if i.state == ACTIVE]

    # ------------------------------------------------------------------ hooks
    def on_arrival(self, req: Request) -> Instance | None:
        ready = self.ready()
        if ready:
            return self.router.pick(ready, req, self.sim)
        starting = [i for i in self.live if i.state == STARTING]
        return min(starting, key=lambda i: (i.ready_s, i.idx)) if starting else None

    def on_tick(self, t: float) -> None:
        cfg = self.cfg
        mods = self.modules
        mods.measure(t)
        mods.refresh()
        ready = self.ready()
        if not ready:
            return
        press = {i.idx: self.pressure(i) for i in ready}
        self._maintain(press)
        placed = 0
        if cfg.migration:
            placed += self._migrate(ready)
        want_more = False
        desired = len(self.live)
        if cfg.autoscale:
            desired, mean = self._desired(t, ready, press)
            want_more = desired > len(self.live)
        if cfg.replication and (want_more or not cfg.autoscale):
            placed += self._replicate(ready, press)
        current = len(self.live)
        out = into = 0
        if cfg.autoscale:
            if desired > current and (placed == 0 or mean >= cfg.urgent_pressure):
                out = self._scale_out(desired - current, ready)
            elif desired < current:
                into = self._scale_in(current - desired)
        self.history.append(
            {
                "t_s": t,
                "replicas": current,
                "ready": len(ready),
                "mean_pressure": sum(press.values()) / len(press),
                "desired": desired,
                "placed": placed,
                "scaled_out": out,
                "scaled_in": into,
                "placements": len(mods.placements),
            }
        )

    # ------------------------------------------------------------------ module operations
    def _maintain(self, press: dict[int, float]) -> None:
        """Drop replicas that are no longer useful; move migrated layers home when memory is free."""
        cfg = self.cfg
        for p in list(self.modules.placements):
            if p.pending:
                continue
            if p.kind == "replica":
                ps, ph = press.get(p.src.idx, 0.0), press.get(p.host.idx, math.inf)
                if ps < cfg.rep_low or ph > cfg.rep_high or p.host.state != ACTIVE or p.src.state != ACTIVE:
                    self.modules.drop(p)
            elif p.kind == "offload_seq":
                home = kv_demand(p.src) < cfg.kv_migrate_low or p.host.state != ACTIVE
                if home and self.modules.feasible(p.src, self._without(p)):
                    self.modules.drop(p)

    def _without(self, p: Placement) -> list[Placement]:
        return [q for q in self.modules.active() if q is not p]

    def _free(self, inst: Instance) -> bool:
        return inst.state == ACTIVE and not self.modules.involved(inst)

    def _replicate(self, ready: list[Instance], press: dict[int, float]) -> int:
        cfg = self.cfg
        hot = sorted((i for i in ready if press[i.idx] > cfg.rep_high and self._free(i)), key=lambda i: -press[i.idx])
        spare = sorted((i for i in ready if press[i.idx] < cfg.rep_low and self._free(i)), key=lambda i: press[i.idx])
        layers = max(1, round(cfg.replica_fraction * self.layers))
        n = 0
        for src, host in zip(hot, spare, strict=False):
            p = Placement("replica", src, host, 0)
            if not self.modules.feasible(host, [*self.modules.active(), Placement("replica", src, host, layers)]):
                continue
            self.modules.resize(p, layers)
            n += 1
        self.replicas_placed += n
        return n

    def _migrate(self, ready: list[Instance]) -> int:
        cfg = self.cfg
        demand = {i.idx: kv_demand(i) for i in ready}
        full = sorted(
            (i for i in ready if demand[i.idx] > cfg.kv_migrate_high and self._free(i)), key=lambda i: -demand[i.idx]
        )
        roomy = sorted(
            (i for i in ready if demand[i.idx] < cfg.kv_migrate_low and self._free(i)), key=lambda i: demand[i.idx]
        )
        layers = max(1, round(cfg.migrate_fraction * self.layers))
        n = 0
        for src, host in zip(full, roomy, strict=False):
            trial = Placement("offload_seq", src, host, layers)
            if not self.modules.feasible(host, [*self.modules.active(), trial]):
                continue
            self.modules.resize(Placement("offload_seq", src, host, 0), layers)
            n += 1
        self.migrations_placed += n
        return n

    # ------------------------------------------------------------------ auto-scaler
    def _desired(self, t: float, ready: list[Instance], press: dict[int, float]) -> tuple[int, float]:
        cfg = self.cfg
        current = len(self.live)
        starting = [i for i in self.live if i.state == STARTING]
        if cfg.metric == "requests":
            total = float(sum(i.num_requests() for i in ready))
        else:
            total = sum(press.values())
        ratio = total / len(ready) / cfg.target
        if ratio > 1 and starting:
            ratio = total / (len(ready) + len(starting)) / cfg.target
        desired = current if abs(ratio - 1.0) <= cfg.tolerance else math.ceil(current * ratio)
        desired = min(max(desired, cfg.min_replicas), cfg.max_replicas)
        self.recommendations.append((t, desired))
        while self.recommendations and self.recommendations[0][0] <= t - cfg.scale_in_stabilization_s:
            self.recommendations.popleft()
        if desired < current:
            desired = min(current, max(d for _, d in self.recommendations))
        else:
            desired = min(desired, current + max(cfg.scale_up_pods, current))
        return desired, sum(press.values()) / len(press)

    def _scale_out(self, n: int, ready: list[Instance]) -> int:
        cfg = self.cfg
        sim = self.sim
        for _ in range(n):
            if cfg.peer_start and ready:
                peer = min(ready, key=lambda i: (i.link.busy_until, i.idx))
                copy = sim.cost_model.weight_transfer_time(self.layers)
                end = peer.link.send(sim.now + cfg.container_start_s, copy)
                cold = end - sim.now
            else:
                cold = cfg.cold_start_s
            self._add(cold)
            self.scale_outs += 1
        return n

    def _scale_in(self, n: int) -> int:
        mods = self.modules
        order = sorted(self.live, key=lambda i: (mods.involved(i), i.state == ACTIVE, i.num_requests(), -i.idx))
        for inst in order[:n]:
            for p in list(self.modules.placements):
                if (p.src is inst or p.host is inst) and not p.pending:
                    self.modules.drop(p)
            self.sim.remove_instance(inst)
            self.live.remove(inst)
            self.scale_ins += 1
        return min(n, len(order))
