"""Discrete-event simulator of LLM serving: requests, instances with paged KV memory, links, the loop.

from serving.sim import Simulator, SimConfig
result = Simulator(trace, cost_model, make_policy("vllm", {"routing": "least_load"}), instances=8).run()
result.metrics(slo_ttft_ms=2000, slo_tpot_ms=100)
"""

from .entities import DONE, FAILED, RUNNING, TRANSFER, WAITING, Link, PrefixCache, Request, layerwise_extra
from .instance import ACTIVE, DECODE, DRAINING, MIXED, PREFILL, ROLES, STARTING, STOPPED, Instance
from .simulator import SimConfig, SimResult, Simulator, simulate

__all__ = [
    "ACTIVE",
    "DECODE",
    "DONE",
    "DRAINING",
    "FAILED",
    "Instance",
    "Link",
    "MIXED",
    "PREFILL",
    "PrefixCache",
    "ROLES",
    "RUNNING",
    "Request",
    "STARTING",
    "STOPPED",
    "SimConfig",
    "SimResult",
    "Simulator",
    "TRANSFER",
    "WAITING",
    "layerwise_extra",
    "simulate",
]
