"""``hpa`` — colocated replicas scaled by the Kubernetes Horizontal Pod Autoscaler rule.

Every ``sync_s`` (15 s) the controller reads the per-replica metric averaged over ready replicas
(``metric="requests"``: running + queued requests; ``"kv"``: KV-cache utilisation in percent) and
computes ``desired = ceil(current · metric / target)``, skipped while |metric/target − 1| ≤
``tolerance`` (0.1). As in Kubernetes, replicas still starting count as metric 0 when scaling up;
scale-down uses the largest recommendation of the last ``stabilization_s`` (300 s; the window
starts with the initial replica count as a recommendation); scale-up is
limited to max(``scale_up_pods``, ``scale_up_percent``% of current) per sync. New replicas serve
after ``cold_start_s`` (GPU time counts from their creation); removed replicas drain (no new
requests, GPU time stops when their last request leaves). Routing: ``routing`` among ready
replicas; while none is ready, to the starting replica that will be ready first.
Rule and defaults: kubernetes.io HPA documentation (algorithm details, default behaviour).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from fulcrum_core.config import ConfigError

from ..sim.entities import Request
from ..sim.instance import ACTIVE, STARTING, Instance
from .base import Policy
from .routing import LOADS, ROUTINGS, Router

METRICS = ("requests", "kv")


@dataclass(frozen=True)
class HPAConfig:
    metric: str = "requests"
    target: float = 16.0
    tolerance: float = 0.1
    sync_s: float = 15.0
    stabilization_s: float = 300.0
    min_replicas: int = 1
    max_replicas: int = 64
    cold_start_s: float = 60.0
    scale_up_pods: int = 4
    scale_up_percent: float = 100.0
    routing: str = "least_load"
    load: str = "requests"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"policy hpa.metric must be one of {METRICS}, got {self.metric!r}")
        if self.target <= 0:
            raise ConfigError(f"policy hpa.target must be > 0, got {self.target}")
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"policy hpa.tolerance must be in [0, 1), got {self.tolerance}")
        if self.sync_s <= 0:
            raise ConfigError(f"policy hpa.sync_s must be > 0, got {self.sync_s}")
        if self.stabilization_s < 0 or self.cold_start_s < 0:
            raise ConfigError("policy hpa.stabilization_s and hpa.cold_start_s must be >= 0")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ConfigError(
                f"policy hpa needs 1 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}"
            )
        if self.routing not in ROUTINGS:
            raise ConfigError(f"policy hpa.routing must be one of {ROUTINGS}, got {self.routing!r}")
        if self.load not in LOADS:
            raise ConfigError(f"policy hpa.load must be one of {LOADS}, got {self.load!r}")


class HPAPolicy(Policy):
    name = "hpa"
    Config = HPAConfig
    sync_before_hooks = False  # routing syncs what it reads; ticks sync every instance

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.router = Router(self.cfg.routing, self.cfg.load)
        self.tick_s = self.cfg.sync_s
        self.recommendations: deque[tuple[float, int]] = deque()
        self.history: list[dict] = []  # per sync: time, metric, replicas, raw recommendation, desired

    def setup(self, sim, n_instances: int) -> None:
        n0 = min(max(n_instances, self.cfg.min_replicas), self.cfg.max_replicas)
        self.live = [sim.add_instance("mixed", cold_start_s=0.0) for _ in range(n0)]
        # as the Kubernetes controller, start the window with the current count as a recommendation
        self.recommendations.append((sim.now, n0))

    def _metric(self, inst: Instance) -> float:
        if self.cfg.metric == "requests":
            return float(len(inst.running) + len(inst.waiting))
        return 100.0 * inst.kv_utilization()

    def on_arrival(self, req: Request) -> Instance | None:
        ready = [i for i in self.live if i.state == ACTIVE]
        if ready:
            return self.router.pick(ready, req, self.sim)
        starting = [i for i in self.live if i.state == STARTING]
        return min(starting, key=lambda i: (i.ready_s, i.idx)) if starting else None

    def desired_replicas(self, t: float) -> int:
        """One HPA sync: the replica count the controller asks for at time ``t``."""
        cfg = self.cfg
        ready = [i for i in self.live if i.state == ACTIVE]
        starting = [i for i in self.live if i.state == STARTING]
        current = len(self.live)
        if not ready:
            return current
        total = sum(self._metric(i) for i in ready)
        ratio = total / len(ready) / cfg.target
        if ratio > 1 and starting:  # unready pods count as 0 when the controller would scale up
            ratio = total / (len(ready) + len(starting)) / cfg.target
        desired = current if abs(ratio - 1.0) <= cfg.tolerance else math.ceil(current * ratio)
        desired = min(max(desired, cfg.min_replicas), cfg.max_replicas)
        raw = desired
        self.recommendations.append((t, desired))
        while self.recommendations and self.recommendations[0][0] <= t - cfg.stabilization_s:
            self.recommendations.popleft()
        if desired < current:  # scale-down: the highest recommendation in the window
            desired = min(current, max(d for _, d in self.recommendations))
        else:
            limit = max(current + cfg.scale_up_pods, math.floor(current * (1 + cfg.scale_up_percent / 100)))
            desired = min(desired, limit)
        self.history.append(
            {"t_s": t, "metric": ratio * cfg.target, "replicas": current, "recommended": raw, "desired": desired}
        )
        return desired

    def on_tick(self, t: float) -> None:
        sim = self.sim
        desired = self.desired_replicas(t)
        current = len(self.live)
        if desired > current:
            for _ in range(desired - current):
                self.live.append(sim.add_instance("mixed", cold_start_s=self.cfg.cold_start_s))
        elif desired < current:
            # remove starting replicas first, then the least loaded, newest first
            order = sorted(self.live, key=lambda i: (i.state == ACTIVE, i.num_requests(), -i.idx))
            for inst in order[: current - desired]:
                sim.remove_instance(inst)
                self.live.remove(inst)
