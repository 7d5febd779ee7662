"""Messages between the HTTP front end and the model workers (plain dataclasses, no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    """``temperature`` 0 = greedy; ``seed`` seeds the request's sampler (used when temperature > 0)."""

    max_tokens: int = 16
    temperature: float = 1.0
    ignore_eos: bool = False
    seed: int = 0


@dataclass
class EngineRequest:
    req_id: str
    prompt: list[int]
    params: SamplingParams
    eos_id: int = 0


@dataclass
class Prefilled:
    """A prefilled request: its first token, the prompt's keys/values (n_layer, n_head, T, head_dim) as
    torch tensors or numpy arrays, and the sampler state after the first draw; ``sent_at``
    (``time.time()``, set when shipped to another process) lets the receiver time the hand-over."""

    request: EngineRequest
    first_token: int
    k: Any
    v: Any
    rng_state: Any = None
    prefill_s: float = 0.0
    sent_at: float = 0.0

    @property
    def kv_bytes(self) -> int:
        return int(self.k.nbytes + self.v.nbytes)


@dataclass
class TokenEvent:
    """One generated token (``index`` 0-based) or an error; ``finish_reason`` is set on the last one
    ("length", "stop" or "error"). ``kv_bytes``/``kv_transfer_s``: the hand-over of a disaggregated
    request, on its first token."""

    req_id: str
    token: int | None
    index: int
    finish_reason: str | None = None
    error: str | None = None
    kv_bytes: int = 0
    kv_transfer_s: float = 0.0
