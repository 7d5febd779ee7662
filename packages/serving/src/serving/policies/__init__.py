"""Serving policies by name: ``POLICIES[name](config_mapping)`` or ``make_policy(name, config)``.

Implemented: ``vllm`` (colocated), ``distserve`` (static prefill/decode split), ``hpa`` (colocated +
Kubernetes-style autoscaling), ``banaserve`` (P/D + layer/KV migration + global KV store),
``cocoserve`` (module replication/migration + autoscaler). See ``base.py`` for the hooks a new policy implements.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fulcrum_core.config import ConfigError

from .banaserve import BanaServePolicy
from .base import Policy
from .cocoserve import CoCoServePolicy
from .distserve import DistServePolicy
from .hpa import HPAPolicy
from .routing import ROUTINGS, Router
from .vllm import VllmPolicy

POLICIES: dict[str, type[Policy]] = {
    VllmPolicy.name: VllmPolicy,
    DistServePolicy.name: DistServePolicy,
    HPAPolicy.name: HPAPolicy,
    BanaServePolicy.name: BanaServePolicy,
    CoCoServePolicy.name: CoCoServePolicy,
}


def make_policy(name: str, config: Mapping[str, Any] | None = None) -> Policy:
    """Instantiate the policy ``name`` with its config mapping (errors name the key)."""
    if name not in POLICIES:
        raise ConfigError(f"unknown policy {name!r} (known: {', '.join(sorted(POLICIES))})")
    return POLICIES[name](config)


__all__ = ["POLICIES", "Policy", "ROUTINGS", "Router", "make_policy"]
