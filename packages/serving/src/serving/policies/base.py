"""The policy interface: how a serving system routes, hands over and scales.

A policy is an object with these hooks, called by the simulator (``self.sim`` is bound first):

* ``setup(sim, n_instances)`` — create the instances (``sim.add_instance(role, cold_start_s=...)``,
  roles "mixed" | "prefill" | "decode");
* ``on_arrival(req) -> Instance | None`` — route a new request (None: reject, counted failed);
* ``on_prefill_done(req, src)`` — a *prefill* instance finished ``req``'s prefill: choose the decode
  instance and move the KV there, normally ``self.sim.send_kv(req, src, dst, overlap=...)``;
* ``on_tick(t)`` — periodic control every ``tick_s`` seconds (autoscalers, migration planners);
* optional ``on_iteration_end(instance)`` / ``on_finish(req)`` — define them as methods only when
  needed: their presence makes every instance eager and switches off fast-forwarding (slower).

Class attributes tell the simulator what the policy observes: ``sync_before_hooks`` (True: every
lazy instance is brought up to the current time before ``on_arrival``/``on_prefill_done`` — always
correct; policies whose hooks read state only through a :class:`Router`, which syncs the candidates
it reads, set False) and ``lazy_ok`` (False if the policy mutates instances outside its hooks).
Scheduled events (``sim.schedule``) and ticks always sync every instance first.

Run-time levers the simulator offers (enough for BanaServe/CoCoServe-style policies):
``sim.add_instance`` / ``sim.remove_instance`` (drain, GPU time stops when empty),
``inst.set_capacity(blocks)``, ``inst.cost = ...`` (a per-instance cost model, e.g. a different
layer count), ``inst.pause(seconds)`` (e.g. while weights move; cost from
``cost.weight_transfer_time(layers)``), ``inst.migrate(req, dst)`` (move a running request's KV
to ``dst`` after its current iteration; needs ``lazy_ok = False``), ``sim.send_kv``,
``sim.schedule(t, fn, *args)``.

Every policy has a frozen ``Config`` dataclass; ``make_policy(name, mapping)`` validates it with
errors that name the key, so each mechanism can be switched off for ablations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fulcrum_core.config import from_mapping

from ..sim.entities import Request
from ..sim.instance import Instance
from .routing import Router


@dataclass(frozen=True)
class NoConfig:
    """A policy without settings."""


class Policy:
    """Base class of serving policies (see the module docstring for the hooks)."""

    name = "base"
    Config: type = NoConfig
    sync_before_hooks = True
    lazy_ok = True
    tick_s: float | None = None
    on_iteration_end = None  # define as a method to get a call after every iteration of every instance
    on_finish = None  # define as a method to get a call when a request finishes

    def __init__(self, config: Mapping[str, Any] | None = None, **overrides: Any):
        data = dict(config or {})
        data.update(overrides)
        self.cfg = from_mapping(self.Config, data, where=f"policy {self.name}")
        self.sim: Any = None
        self._decode_router = Router("least_load")

    def bind(self, sim: Any) -> None:
        self.sim = sim

    def setup(self, sim: Any, n_instances: int) -> None:
        """Default: ``n_instances`` colocated ("mixed") replicas."""
        for _ in range(n_instances):
            sim.add_instance("mixed")

    def on_arrival(self, req: Request) -> Instance | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_prefill_done(self, req: Request, src: Instance) -> None:
        """Default hand-over: least-loaded accepting decode instance, KV sent without overlap."""
        decoders = [i for i in self.sim.instances if i.role == "decode" and i.accepting]
        if not decoders:
            raise RuntimeError(f"policy {self.name}: no decode instance to hand request {req.rid} to")
        self.sim.send_kv(req, src, self._decode_router.pick(decoders, req, self.sim))

    def on_tick(self, t: float) -> None:
        """Periodic control; called every ``tick_s`` seconds when ``tick_s`` is set."""
