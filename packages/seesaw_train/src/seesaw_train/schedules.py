"""Learning-rate and batch-size schedules as pure functions of the tokens consumed.

Every schedule answers, for the number of tokens consumed before a step: the stepsize
(``lr``), the batch in sequences (``batch_size``); ``serial_steps()`` counts the optimizer steps
needed to consume ``total_tokens`` (the last step may overshoot by less than one batch). A step
that starts at or after a milestone uses the new values.

Warmup (all schedules): the first W = ``warmup_tokens`` tokens ramp the LR linearly from 0.1·η₀
to η₀ at fixed batch.

- ``cosine``: after warmup, η(t) = α_f η₀ + (1 − α_f) η₀ (1 + cos(π (t − W)/(T − W)))/2.
- Milestone schedules share the cosine's discretisation used by the Seesaw authors (arXiv
  2510.14717, facts from DESIGN.md §2): with k_max = ⌊log α_f / log f⌋, milestone k = 1..k_max sits
  where the cosine above reaches η₀ f^k,

      t_k = W + round((T − W) · arccos(2 (f^k − α_f)/(1 − α_f) − 1) / π),

  and from t_k on the LR is η₀ α^(−k) and the batch ⌊B₀ β^k⌋ (floored once from B₀, so floors do
  not compound — our choice where the source says only "floored").
  - ``seesaw``: general (α, β), defaults α = √(1/f), β = 1/f (f = 1/1.1): LR ÷ √c, batch × c
    where cosine would divide the LR by c. Halving variant: f = 1/2 with α√β = 2.
  - ``step``: step decay, α = 1/f, β = 1 (the base schedule the ramps replace).
  - ``constant_ramp``: Smith et al. (2018) "don't decay the LR, increase the batch": α = 1, β = 1/f.
- ``wsd``: warmup–stable–decay; η₀ until the last ``decay_fraction`` of tokens, then linear to
  α_f η₀ at T.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Schedule", "make_schedule", "cosine_milestones", "SCHEDULES"]

SCHEDULES = ("cosine", "step", "wsd", "constant_ramp", "seesaw")


def cosine_milestones(total_tokens: int, warmup_tokens: int, f: float, alpha_f: float) -> list[int]:
    """Tokens t_k, k = 1..k_max, where the cosine decay reaches η₀ f^k."""
    if not 0 < f < 1:
        raise ValueError(f"milestone factor f must lie in (0, 1), got {f}")
    if not 0 < alpha_f < 1:
        raise ValueError(f"alpha_f must lie in (0, 1), got {alpha_f}")
    k_max = math.floor(math.log(alpha_f) / math.log(f) + 1e-12)
    span = total_tokens - warmup_tokens
    out = []
    for k in range(1, k_max + 1):
        arg = min(1.0, max(-1.0, 2 * (f**k - alpha_f) / (1 - alpha_f) - 1))
        out.append(warmup_tokens + round(span * math.acos(arg) / math.pi))
    return out


@dataclass(frozen=True)
class Schedule:
    """A schedule over tokens. Use :func:`make_schedule` to build one."""

    name: str
    peak_lr: float
    total_tokens: int
    warmup_tokens: int
    batch0: int
    seq_len: int
    alpha_f: float = 0.1
    milestones: tuple[int, ...] = ()
    alpha: float = 1.0
    beta: float = 1.0
    decay_fraction: float = 0.2
    params: dict = field(default_factory=dict, compare=False)

    def phase(self, tokens: int) -> int:
        """Number of milestones at or before ``tokens``."""
        return bisect_right(self.milestones, tokens)

    def lr(self, tokens: int) -> float:
        t, W, T, lr0 = tokens, self.warmup_tokens, self.total_tokens, self.peak_lr
        if W > 0 and t < W:
            return lr0 * (0.1 + 0.9 * t / W)
        if self.name == "cosine":
            progress = min(1.0, (t - W) / max(1, T - W))
            return lr0 * (self.alpha_f + (1 - self.alpha_f) * 0.5 * (1 + math.cos(math.pi * progress)))
        if self.name == "wsd":
            decay_start = T - self.decay_fraction * T
            if t < decay_start:
                return lr0
            progress = min(1.0, (t - decay_start) / max(1.0, T - decay_start))
            return lr0 * (1 - (1 - self.alpha_f) * progress)
        return lr0 * self.alpha ** (-self.phase(t))

    def batch_size(self, tokens: int) -> int:
        if self.name in ("cosine", "wsd"):
            return self.batch0
        return max(1, math.floor(self.batch0 * self.beta ** self.phase(tokens) + 1e-9))

    def steps(self):
        """Yield (step, tokens_before, lr, batch_size) for every optimizer step."""
        tokens, step = 0, 0
        while tokens < self.total_tokens:
            bs = self.batch_size(tokens)
            yield step, tokens, self.lr(tokens), bs
            tokens += bs * self.seq_len
            step += 1

    def serial_steps(self) -> int:
        return sum(1 for _ in self.steps())

    def table(self) -> dict[str, np.ndarray]:
        """The whole step ledger as arrays: step, tokens (before the step), lr, batch_size."""
        rows = list(self.steps())
        cols = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
        return {
            "step": np.asarray(cols[0], dtype=np.int64),
            "tokens": np.asarray(cols[1], dtype=np.int64),
            "lr": np.asarray(cols[2], dtype=float),
            "batch_size": np.asarray(cols[3], dtype=np.int64),
        }


def make_schedule(
    name: str,
    *,
    peak_lr: float,
    total_tokens: int,
    warmup_tokens: int,
    batch_size: int,
    seq_len: int,
    **params,
) -> Schedule:
    """Build a schedule by name; ``params``: ``f``, ``alpha``, ``beta``, ``alpha_f``, ``decay_fraction``.

    Defaults: f = 1/1.1, α_f = 0.1; seesaw α = √(1/f), β = 1/f; step α = 1/f, β = 1;
    constant_ramp α = 1, β = 1/f; wsd decay_fraction = 0.2.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    allowed = {"cosine": {"alpha_f"}, "wsd": {"alpha_f", "decay_fraction"}}.get(name, {"f", "alpha", "beta", "alpha_f"})
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"schedule {name!r}: unknown parameter {unknown[0]!r} (allowed: {sorted(allowed)})")
    if not (peak_lr > 0 and math.isfinite(peak_lr)):
        raise ValueError(f"peak_lr must be a positive number, got {peak_lr}")
    if total_tokens <= 0 or seq_len <= 0 or batch_size <= 0:
        raise ValueError("total_tokens, seq_len and batch_size must be positive")
    if not 0 <= warmup_tokens < total_tokens:
        raise ValueError(f"warmup_tokens must lie in [0, total_tokens), got {warmup_tokens}")
    alpha_f = float(params.get("alpha_f", 0.1))
    common = dict(
        name=name,
        peak_lr=peak_lr,
        total_tokens=int(total_tokens),
        warmup_tokens=int(warmup_tokens),
        batch0=int(batch_size),
        seq_len=int(seq_len),
        alpha_f=alpha_f,
        params=dict(params),
    )
    if name == "cosine":
        return Schedule(**common)
    if name == "wsd":
        frac = float(params.get("decay_fraction", 0.2))
        if not 0 < frac <= 1 - warmup_tokens / total_tokens:
            raise ValueError(f"decay_fraction must lie in (0, 1 − warmup fraction], got {frac}")
        return Schedule(**common, decay_fraction=frac)
    f = float(params.get("f", 1 / 1.1))
    if not 0 < f < 1:
        raise ValueError(f"milestone factor f must lie in (0, 1), got {f}")
    default_ab = {"seesaw": (math.sqrt(1 / f), 1 / f), "step": (1 / f, 1.0), "constant_ramp": (1.0, 1 / f)}[name]
    alpha = float(params.get("alpha", default_ab[0]))
    beta = float(params.get("beta", default_ab[1]))
    if alpha <= 0 or beta < 1:
        raise ValueError(f"need alpha > 0 and beta >= 1, got alpha={alpha}, beta={beta}")
    milestones = tuple(cosine_milestones(total_tokens, warmup_tokens, f, alpha_f))
    return Schedule(**common, milestones=milestones, alpha=alpha, beta=beta)
