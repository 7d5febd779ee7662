"""``distserve`` — static prefill/decode disaggregation (DistServe, arXiv 2401.09670).

``n_prefill`` instances (or ``round(prefill_ratio·N)``, at least one of each kind) only prefill; the
rest only decode. A finished prefill's KV cache goes over the prefill instance's link to the
least-loaded decode instance; with ``layerwise_overlap`` the transfer runs layer by layer during the
prefill and only the non-overlapped part adds latency. ``first_token``: "transfer" — the client gets
the first token once the KV has landed on the decode instance, so TTFT = queueing + prefill + the
transfer's added latency; "prefill" — at the end of the prefill (DistServe's own accounting).
Decode instances run prefills only to recompute preempted requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from fulcrum_core.config import ConfigError

from ..sim.entities import Request
from ..sim.instance import Instance
from .base import Policy
from .routing import LOADS, ROUTINGS, Router

FIRST_TOKEN = ("transfer", "prefill")


@dataclass(frozen=True)
class DistServeConfig:
    prefill_ratio: float = 0.5
    n_prefill: int | None = None
    routing: str = "least_load"
    decode_routing: str = "least_load"
    load: str = "requests"
    layerwise_overlap: bool = False
    first_token: str = "transfer"

    def __post_init__(self) -> None:
        if not 0.0 < self.prefill_ratio < 1.0:
            raise ConfigError(f"policy distserve.prefill_ratio must be in (0, 1), got {self.prefill_ratio}")
        if self.n_prefill is not None and self.n_prefill < 1:
            raise ConfigError(f"policy distserve.n_prefill must be >= 1, got {self.n_prefill}")
        for key in ("routing", "decode_routing"):
            if getattr(self, key) not in ROUTINGS:
                raise ConfigError(f"policy distserve.{key} must be one of {ROUTINGS}, got {getattr(self, key)!r}")
        if self.load not in LOADS:
            raise ConfigError(f"policy distserve.load must be one of {LOADS}, got {self.load!r}")
        if self.first_token not in FIRST_TOKEN:
            raise ConfigError(f"policy distserve.first_token must be one of {FIRST_TOKEN}, got {self.first_token!r}")


class DistServePolicy(Policy):
    name = "distserve"
    Config = DistServeConfig
    sync_before_hooks = False  # the routers sync what they read

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.router = Router(self.cfg.routing, self.cfg.load)
        self.decode_router = Router(self.cfg.decode_routing, self.cfg.load)

    def split(self, n_instances: int) -> int:
        """Number of prefill instances out of ``n_instances``."""
        if n_instances < 2:
            raise ConfigError(f"policy distserve needs at least 2 instances (prefill + decode), got {n_instances}")
        n_p = self.cfg.n_prefill if self.cfg.n_prefill is not None else round(self.cfg.prefill_ratio * n_instances)
        if not 1 <= n_p <= n_instances - 1:
            raise ConfigError(
                f"policy distserve: {n_p} prefill instances out of {n_instances} leaves no room for both kinds"
            )
        return int(n_p)

    def setup(self, sim, n_instances: int) -> None:
        n_p = self.split(n_instances)
        self.prefill = [sim.add_instance("prefill") for _ in range(n_p)]
        self.decode = [sim.add_instance("decode") for _ in range(n_instances - n_p)]

    def on_arrival(self, req: Request) -> Instance | None:
        return self.router.pick(self.prefill, req, self.sim)

    def on_prefill_done(self, req: Request, src: Instance) -> None:
        dst = self.decode_router.pick(self.decode, req, self.sim)
        self.sim.send_kv(
            req,
            src,
            dst,
            overlap=self.cfg.layerwise_overlap,
            first_token_on_arrival=self.cfg.first_token == "transfer",
        )
