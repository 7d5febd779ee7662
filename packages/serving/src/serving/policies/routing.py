"""Routers: pick one instance among candidates for a request.

A router that reads loads first advances the lazy candidates to the current time (and only them).

* ``round_robin`` — cycle through the candidates (reads no state);
* ``random`` — uniform, from the simulator's seeded generator (reads no state);
* ``least_load`` — fewest queued + running requests (``load="requests"``) or fewest KV blocks held
  plus blocks the queue will need (``load="kv"``); ties go to the first candidate after the one
  picked last time (rotating), so an idle cluster is filled evenly;
* ``prefix_aware`` — most prompt tokens served by the candidate's prefix cache; ties least load.
"""

from __future__ import annotations

from typing import Any

from ..sim.entities import Request
from ..sim.instance import Instance

ROUTINGS = ("round_robin", "random", "least_load", "prefix_aware")
LOADS = ("requests", "kv")
STATELESS = ("round_robin", "random")


def instance_load(inst: Instance, load: str = "requests") -> float:
    """Load of ``inst`` for routing: requests queued + running, or KV blocks held + needed by the queue."""
    if load == "requests":
        return len(inst.running) + len(inst.waiting)
    bs = inst.block_size
    return inst.used + sum(-(-(r.target - r.computed) // bs) for r in inst.waiting)


class Router:
    """Stateful instance picker (its rotation pointer is the only state)."""

    __slots__ = ("kind", "load", "_next")

    def __init__(self, kind: str = "least_load", load: str = "requests"):
        if kind not in ROUTINGS:
            raise ValueError(f"routing must be one of {ROUTINGS}, got {kind!r}")
        if load not in LOADS:
            raise ValueError(f"load metric must be one of {LOADS}, got {load!r}")
        self.kind = kind
        self.load = load
        self._next = 0

    @property
    def reads_state(self) -> bool:
        return self.kind not in STATELESS

    def pick(self, candidates: list[Instance], req: Request, sim: Any) -> Instance:
        """The chosen candidate; state-reading kinds first bring lazy candidates up to ``sim.now``."""
        m = len(candidates)
        if m == 1:
            return candidates[0]
        kind = self.kind
        if kind == "round_robin":
            inst = candidates[self._next % m]
            self._next = (self._next + 1) % m
            return inst
        if kind == "random":
            return candidates[int(sim.rng.integers(m))]
        now = sim.now
        start = self._next % m
        by_requests = self.load == "requests"
        prefix = kind == "prefix_aware"
        best = candidates[start]
        best_key = None
        pos = 0
        for j in range(m):
            inst = candidates[(start + j) % m]
            if inst.busy and not inst.eager and inst.iter_end <= now:
                inst.run_until(now)
            lv = len(inst.running) + len(inst.waiting) if by_requests else instance_load(inst, self.load)
            key = (-inst.prefix_hit_tokens(req), lv) if prefix else lv
            if best_key is None or key < best_key:
                best = inst
                best_key = key
                pos = j
        self._next = (start + pos + 1) % m
        return best
