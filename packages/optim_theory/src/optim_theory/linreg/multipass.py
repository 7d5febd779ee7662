r"""Multi-pass SGD on a fixed dataset: exact expected risk, exact GD mean, fast simulation.

Algorithm (the form used here, stated because arXiv 2506.08415's code is not public): given a
dataset (z_j, y_j), j = 1..N, fixed once, multi-pass SGD takes L steps

    v_{t+1} = v_t − η_t z_i (⟨z_i, v_t⟩ − y_i),   i = i_t ~ Uniform{1..N} i.i.d. (with replacement),

batch 1, from v₀ (default 0). One-pass SGD is the case where every step sees a fresh sample.

Decomposition over the sampling (dataset fixed). Let Ĥ = ZᵀZ/N, b̂ = Zᵀy/N and g_j(u) =
z_j(⟨z_j, u⟩ − y_j), so that ḡ(u) = (1/N)Σ_j g_j(u) = Ĥu − b̂. Because the update is affine in v
and i_t is independent of the past, the mean ū_t = E[v_t | data] is exactly gradient descent on
the empirical risk (1/2N)Σ_j(⟨z_j, v⟩ − y_j)² with the same stepsizes:

    ū_{t+1} = ū_t − η_t (Ĥ ū_t − b̂).

The fluctuation δ_t = v_t − ū_t obeys δ_{t+1} = (I − η_t z_i z_iᵀ) δ_t + η_t (ḡ(ū_t) − g_i(ū_t)).
As E δ_t = 0 and δ_t is independent of i_t, the cross terms vanish and Σ_t = E[δ_t δ_tᵀ] follows

    Σ_{t+1} = Σ_t − η_t(ĤΣ_t + Σ_tĤ) + η_t² (1/N) Σ_j (z_jᵀΣ_t z_j) z_j z_jᵀ
              + η_t² [(1/N) Σ_j g_j g_jᵀ − ḡ ḡᵀ](ū_t).

For any test covariance G and target v*, E‖v_t − v*‖²_G = ‖ū_t − v*‖²_G + tr(GΣ_t): "GD part"
plus "fluctuation part" (:func:`multipass_expected_error`, exact, O(N M²) per step — for checks
at small N, M). The GD part has a closed form in the eigenbasis Ĥ = V diag(ν) Vᵀ
(:class:`EmpiricalGD`, O(M) per schedule after one eigendecomposition):

    Vᵀū_T = P ⊙ Vᵀv₀ + ((1 − P)/ν) ⊙ Vᵀb̂,   P_k = Π_t (1 − η_t ν_k),

with (1 − P_k)/ν_k → Σ_t η_t as ν_k → 0 (directions with ν_k = 0 carry no b̂). At scale the
fluctuation part is estimated by simulation (:func:`simulate_multipass_sgd`, a numba loop,
O(M) per step): ‖ū_T − v*‖²_G + ‖v_T − ū_T‖²_G is an unbiased estimate of E‖v_T − v*‖²_G with
the zero-mean cross term 2⟨ū_T − v*, v_T − ū_T⟩_G removed (a control variate).

Stepsizes: :func:`geometric_decay` — η₀ for the first ⌈L/⌈log₂L⌉⌉ steps, halved after every
further block of that length (⌈log₂L⌉ blocks; the last stepsize is ≈ η₀/L), the step-decay
schedule of the one-pass analyses this paper builds on; the exact block length is our choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

__all__ = [
    "EmpiricalGD",
    "geometric_decay",
    "multipass_expected_error",
    "simulate_multipass_sgd",
]


def geometric_decay(lr: float, steps: int) -> np.ndarray:
    """η_t = lr · 2^(−⌊t/K⌋), K = ⌈L/⌈log₂ L⌉⌉, t = 0..L−1 (constant lr for L ≤ 2)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    blocks = max(1, math.ceil(math.log2(steps)))
    block = math.ceil(steps / blocks)
    return lr * 0.5 ** (np.arange(steps) // block)


def _run_lengths(lrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-constant schedule as (values, lengths)."""
    eta = np.asarray(lrs, dtype=float)
    starts = np.flatnonzero(np.r_[True, eta[1:] != eta[:-1]])
    lengths = np.diff(np.r_[starts, eta.size])
    return eta[starts], lengths


@dataclass(frozen=True)
class EmpiricalGD:
    """Gradient descent on the empirical risk of (Z, y), closed form in the eigenbasis of Ĥ."""

    nu: np.ndarray  # eigenvalues of Ĥ = ZᵀZ/N
    basis: np.ndarray  # V
    b_eig: np.ndarray  # Vᵀ b̂, b̂ = Zᵀy/N

    @classmethod
    def from_data(cls, Z: np.ndarray, y: np.ndarray) -> EmpiricalGD:
        Z = np.asarray(Z, dtype=float)
        n = Z.shape[0]
        nu, V = np.linalg.eigh(Z.T @ Z / n)
        nu = np.clip(nu, 0.0, None)
        return cls(nu=nu, basis=V, b_eig=V.T @ (Z.T @ np.asarray(y, dtype=float) / n))

    def iterate(self, lrs, v0=None) -> np.ndarray:
        """ū_T after the whole schedule ``lrs`` (closed form, see module docstring)."""
        values, lengths = _run_lengths(lrs)
        P = np.ones_like(self.nu)
        for eta, k in zip(values, lengths, strict=True):
            P *= (1.0 - eta * self.nu) ** k
        total = float(values @ lengths)
        small = self.nu * total < 1e-8
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(small, total, (1.0 - P) / np.where(small, 1.0, self.nu))
        a = gain * self.b_eig
        if v0 is not None:
            a = a + P * (self.basis.T @ np.asarray(v0, dtype=float))
        return self.basis @ a


def multipass_expected_error(Z, y, lrs, gram, v_star, v0=None, record_steps=None):
    """Exact (GD part, fluctuation part) of E‖v_t − v*‖²_G over with-replacement sampling.

    ``gram`` is G as an (M, M) matrix or its diagonal (M,). Returns two arrays over
    ``record_steps`` (default: 0..T): ‖ū_t − v*‖²_G and tr(GΣ_t). O(N M²) per step.
    """
    Z = np.asarray(Z, dtype=float)
    y = np.asarray(y, dtype=float)
    eta = np.asarray(lrs, dtype=float)
    n, m = Z.shape
    G = np.asarray(gram, dtype=float)
    G = np.diag(G) if G.ndim == 1 else G
    vs = np.asarray(v_star, dtype=float)
    steps = np.arange(eta.size + 1) if record_steps is None else np.asarray(record_steps, dtype=int)
    if steps.min() < 0 or steps.max() > eta.size:
        raise ValueError(f"record_steps must lie in [0, {eta.size}]")
    record_at = {int(t): j for j, t in enumerate(steps)}
    H_hat = Z.T @ Z / n
    u = np.zeros(m) if v0 is None else np.asarray(v0, dtype=float).copy()
    Sigma = np.zeros((m, m))
    gd_part = np.empty(steps.size)
    fluct = np.empty(steps.size)

    def record(t):
        j = record_at.get(t)
        if j is not None:
            diff = u - vs
            gd_part[j] = diff @ G @ diff
            fluct[j] = float(np.sum(G * Sigma))

    record(0)
    for t in range(eta.size):
        e = eta[t]
        g = Z * (Z @ u - y)[:, None]  # g_j(ū_t), (N, M)
        g_bar = g.mean(axis=0)
        cov_xi = g.T @ g / n - np.outer(g_bar, g_bar)
        q = np.einsum("jk,jk->j", Z @ Sigma, Z)  # z_jᵀ Σ z_j
        fourth = Z.T @ (Z * q[:, None]) / n
        HS = H_hat @ Sigma
        Sigma = Sigma - e * (HS + HS.T) + e * e * (fourth + cov_xi)
        u = u - e * g_bar
        record(t + 1)
    return gd_part, fluct


@numba.njit(cache=True, fastmath=True)
def _sgd_kernel(Z, y, eta, idx, v0, record, out):  # pragma: no cover - compiled
    runs, T = idx.shape
    m = Z.shape[1]
    for r in range(runs):
        v = v0.copy()
        j = 0
        if record.size > 0 and record[0] == 0:
            out[r, 0, :] = v
            j = 1
        for t in range(T):
            i = idx[r, t]
            s = -y[i]
            for k in range(m):
                s += Z[i, k] * v[k]
            step = eta[t] * s
            for k in range(m):
                v[k] -= step * Z[i, k]
            if j < record.size and record[j] == t + 1:
                out[r, j, :] = v
                j += 1


def simulate_multipass_sgd(Z, y, lrs, *, runs: int, seed: int, v0=None, record_steps=None) -> np.ndarray:
    """Run multi-pass SGD with replacement ``runs`` times on one dataset; iterates (runs, R, M).

    Indices i_t are drawn with ``numpy.random.default_rng(seed)``; ``record_steps`` (sorted,
    default: only the last step T) picks the iterates returned.
    """
    Z = np.ascontiguousarray(Z, dtype=float)
    y = np.ascontiguousarray(y, dtype=float)
    eta = np.ascontiguousarray(lrs, dtype=float)
    n, m = Z.shape
    T = eta.size
    steps = np.array([T]) if record_steps is None else np.unique(np.asarray(record_steps, dtype=np.int64))
    if steps.min() < 0 or steps.max() > T:
        raise ValueError(f"record_steps must lie in [0, {T}]")
    start = np.zeros(m) if v0 is None else np.ascontiguousarray(v0, dtype=float)
    rng = np.random.default_rng(seed)
    out = np.empty((runs, steps.size, m))
    chunk = max(1, (1 << 22) // max(T, 1))
    for lo in range(0, runs, chunk):
        r = min(chunk, runs - lo)
        idx = rng.integers(0, n, size=(r, T))
        _sgd_kernel(Z, y, eta, idx, start, steps.astype(np.int64), out[lo : lo + r])
    return out
