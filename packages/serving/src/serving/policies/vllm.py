"""``vllm`` — colocated serving: every replica prefills and decodes (continuous batching, chunked
prefill, paged KV, prefix caching inside each replica), a router in front of them."""

from __future__ import annotations

from dataclasses import dataclass

from fulcrum_core.config import ConfigError

from ..sim.entities import Request
from ..sim.instance import Instance
from .base import Policy
from .routing import LOADS, ROUTINGS, Router


@dataclass(frozen=True)
class VllmConfig:
    """routing: round_robin | random | least_load | prefix_aware; load: requests | kv (least-load metric)."""

    routing: str = "least_load"
    load: str = "requests"

    def __post_init__(self) -> None:
        if self.routing not in ROUTINGS:
            raise ConfigError(f"policy vllm.routing must be one of {ROUTINGS}, got {self.routing!r}")
        if self.load not in LOADS:
            raise ConfigError(f"policy vllm.load must be one of {LOADS}, got {self.load!r}")


class VllmPolicy(Policy):
    name = "vllm"
    Config = VllmConfig
    sync_before_hooks = False  # the router syncs what it reads

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.router = Router(self.cfg.routing, self.cfg.load)

    def setup(self, sim, n_instances: int) -> None:
        if n_instances < 1:
            raise ConfigError(f"policy vllm needs at least one instance, got {n_instances}")
        self.replicas = [sim.add_instance("mixed") for _ in range(n_instances)]

    def on_arrival(self, req: Request) -> Instance | None:
        return self.router.pick(self.replicas, req, self.sim)
