"""Model shape and build recipe, without torch (the disaggregated front end never loads a model).

``ModelConfig`` has the fields of ``seesaw_train.model.ModelConfig``; ``load_model_config`` reads a name or
a JSON file; ``ModelSpec`` is the picklable recipe each model process builds from
(``serving.engine.model.build_model``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the decoder: the fields of ``seesaw_train.model.ModelConfig`` (the loss fields are kept
    so that a seesaw_train config dictionary reads here unchanged; the engine does not use them)."""

    vocab_size: int = 4096
    seq_len: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    d_mlp: int = 512
    qk_norm: bool = True
    z_loss: float = 1e-4
    init_std: float = 0.02
    rope_base: float = 10_000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "n_layer", "n_head", "d_model", "d_mlp"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model config: {name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ValueError(f"model config: d_model {self.d_model} is not divisible by n_head {self.n_head}")
        if (self.d_model // self.n_head) % 2:
            raise ValueError(f"model config: head size {self.d_model // self.n_head} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_bytes_per_token(self) -> int:
        """2 (k and v) · n_layer · d_model · 4 bytes (float32)."""
        return 2 * self.n_layer * self.d_model * 4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model config: unknown field(s) {unknown} (known: {sorted(known)})")
        return cls(**data)


_TINY = ModelConfig(vocab_size=4096, seq_len=128, n_layer=4, n_head=4, d_model=128, d_mlp=512)


def named_configs() -> dict[str, ModelConfig]:
    """Named shapes: seesaw_train's ``CONFIGS`` when that package is installed (so the two cannot drift),
    else a local copy of its ``tiny`` (the only shape the CPU engine is meant for)."""
    try:
        from seesaw_train.model import CONFIGS  # type: ignore[import-not-found]
    except ImportError:
        return {"tiny": _TINY}
    return {name: ModelConfig.from_dict(asdict(cfg)) for name, cfg in CONFIGS.items()}


def load_model_config(spec: str | Path) -> ModelConfig:
    """``spec`` is a name (``tiny``) or a JSON file with ModelConfig fields (missing ones take defaults)."""
    configs = named_configs()
    if str(spec) in configs:
        return configs[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--model-config: {spec!r} is neither a known name ({', '.join(configs)}) nor a JSON file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of model config fields")
    if "model_config" in data and isinstance(data["model_config"], dict):
        data = data["model_config"]
    return ModelConfig.from_dict(data)


@dataclass(frozen=True)
class ModelSpec:
    """Everything a worker process needs to build the same model (picklable)."""

    config: ModelConfig
    max_len: int
    checkpoint: str | None = None
    seed: int = 0

    def resolved(self) -> ModelSpec:
        """The spec with the checkpoint's recorded config, when it records one."""
        if self.checkpoint is None:
            return self
        from .model import read_checkpoint  # torch is needed only here

        _, cfg = read_checkpoint(self.checkpoint)
        return self if cfg is None else replace(self, config=cfg)
