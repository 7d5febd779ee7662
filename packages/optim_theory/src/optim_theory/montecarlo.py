"""Vectorised Monte-Carlo simulation of SGD on Gaussian linear regression.

Independent of the exact recursions in :mod:`optim_theory.linreg.exact`: it draws the data and
runs SGD, many independent runs at once, so every exact formula can be checked against an
estimate with a confidence interval. Works in the eigenbasis (H = diag(λ)), which loses nothing
because a Gaussian design is rotation invariant; the initial error is the fixed vector
e₀ = √m0 (the risk only depends on the diagonal of E[e₀e₀ᵀ], see ``exact``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class MCResult:
    """Per-run values at ``record_steps``: ``last`` risks (runs, n_rec); ``grad_sq`` ‖g_t‖² of the
    minibatch gradient taken at step t (NaN at t = T, where no step is taken); ``tail`` (runs,)."""

    record_steps: np.ndarray
    last: np.ndarray
    grad_sq: np.ndarray
    tail: np.ndarray | None

    def interval(self, values: np.ndarray, level: float = 0.95, simultaneous: int = 1):
        """Normal-approximation interval of the mean over runs (Bonferroni over ``simultaneous``)."""
        z = stats.norm.ppf(1 - (1 - level) / (2 * simultaneous))
        mean = values.mean(axis=0)
        half = z * values.std(axis=0, ddof=1) / np.sqrt(values.shape[0])
        return mean - half, mean + half


def simulate_sgd(
    eigs,
    m0,
    noise_var: float,
    lrs,
    batch_sizes=1,
    *,
    runs: int,
    seed: int,
    record_steps=None,
    tail_start: int | None = None,
    chunk: int = 4096,
) -> MCResult:
    """Run ``runs`` independent SGD trajectories; record ‖w_t − w*‖²_H at ``record_steps``.

    ``tail_start`` = s also records the risk of the mean of w_{s+1}, …, w_T for every run.
    Gaussian label noise with variance ``noise_var``. Deterministic for a given ``seed``.
    """
    lam = np.asarray(eigs, dtype=float)
    eta = np.asarray(lrs, dtype=float)
    if eta.ndim != 1:
        raise ValueError("simulate_sgd takes one schedule: lrs must be 1-D")
    T = eta.size
    batch = np.broadcast_to(np.asarray(batch_sizes, dtype=int), (T,))
    steps = np.arange(T + 1) if record_steps is None else np.asarray(record_steps, dtype=int)
    if steps.min() < 0 or steps.max() > T:
        raise ValueError(f"record_steps must lie in [0, {T}]")
    if tail_start is not None and not 0 <= tail_start < T:
        raise ValueError(f"tail_start must lie in [0, {T})")
    rng = np.random.default_rng(seed)
    sqrt_lam = np.sqrt(lam)
    sigma = np.sqrt(noise_var)
    e0 = np.sqrt(np.asarray(m0, dtype=float))
    last = np.empty((runs, steps.size))
    grad_sq = np.full((runs, steps.size), np.nan)
    tail = np.empty(runs) if tail_start is not None else None
    record_at = {int(t): j for j, t in enumerate(steps)}
    for lo in range(0, runs, chunk):
        r = min(chunk, runs - lo)
        e = np.broadcast_to(e0, (r, lam.size)).copy()
        acc = np.zeros_like(e) if tail_start is not None else None
        if 0 in record_at:
            last[lo : lo + r, record_at[0]] = (e * e) @ lam
        for t in range(T):
            B = int(batch[t])
            x = rng.standard_normal((r, B, lam.size)) * sqrt_lam
            resid = np.einsum("rbd,rd->rb", x, e) - sigma * rng.standard_normal((r, B))
            g = np.einsum("rbd,rb->rd", x, resid) / B
            j = record_at.get(t)
            if j is not None:
                grad_sq[lo : lo + r, j] = (g * g).sum(axis=1)
            e -= eta[t] * g
            if acc is not None and t + 1 > tail_start:
                acc += e
            j = record_at.get(t + 1)
            if j is not None:
                last[lo : lo + r, j] = (e * e) @ lam
        if acc is not None:
            mean_e = acc / (T - tail_start)
            tail[lo : lo + r] = (mean_e * mean_e) @ lam
    return MCResult(record_steps=steps, last=last, grad_sq=grad_sq, tail=tail)
