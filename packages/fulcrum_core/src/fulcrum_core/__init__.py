"""Shared plumbing of fulcrum: experiment CLI, config validation, provenance, claims ledger."""

from .claims import Claim, judge
from .cli import Experiment, RunResult
from .config import ConfigError, from_mapping

__all__ = ["Claim", "ConfigError", "Experiment", "RunResult", "from_mapping", "judge"]
__version__ = "0.1.0"
