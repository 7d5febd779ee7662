"""Logistic objectives, Newton's method, constant-stepsize GD, risk-adaptive GD and the Perceptron.

All functions take the signed points Z (rows zᵢ = yᵢxᵢ, n × d). Formulas (ℓ(m) = log(1 + e^{−m}),
σ the sigmoid, so ℓ'(m) = −σ(−m) and ℓ''(m) = σ(m)σ(−m)):

- risk        L(w) = (1/n) Σᵢ ℓ(zᵢᵀw)
- objective   F(w) = L(w) + (λ/2)‖w‖²                         (arXiv 2506.02336's ℓ2-regularised loss)
- gradient    ∇F(w) = −(1/n) Σᵢ σ(−zᵢᵀw) zᵢ + λw
- Hessian     ∇²F(w) = (1/n) Σᵢ σ(zᵢᵀw)σ(−zᵢᵀw) zᵢzᵢᵀ + λI
- smoothness  β = λ_max(ZᵀZ/n)/4 bounds ∇²L everywhere (σσ ≤ ¼), so F is (β+λ)-smooth and
  λ-strongly convex: κ = (β+λ)/λ. The classical ("stable") stepsize is η = 1/(β+λ), for which the
  descent lemma makes F(w_t) decrease monotonically.
- constant-stepsize GD   w_{t+1} = w_t − η∇F(w_t), w₀ = 0
- risk-adaptive GD       w_{t+1} = w_t − (η/L(w_t)) ∇L(w_t), w₀ = 0   (arXiv 2504.04105; unregularised)
  The step −∇L/L = Σᵢ σ(−mᵢ)zᵢ / Σᵢ ℓ(mᵢ) is evaluated in log space, so it stays exact when the risk
  underflows (L ≈ e^{−700} and below).
- Perceptron   cyclic passes over the data; on zᵢᵀw ≤ 0 set w ← w + zᵢ. Novikoff (1962): at most
  R²/γ² updates, R = maxᵢ‖zᵢ‖.

Newton's method (with Armijo backtracking) gives the exact minimiser w_λ and F* = F(w_λ) to machine
precision; it shares no code path with GD beyond ``objective``/``gradient``, whose formulas are
checked against finite differences in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.special import expit, log_expit
from threadpoolctl import threadpool_limits

# --------------------------------------------------------------------------------------------
# Regularised logistic objective
# --------------------------------------------------------------------------------------------


def objective(Z: np.ndarray, W: np.ndarray, lam) -> np.ndarray | float:
    """F(w) for one w (d,) or for K rows W (K, d) with ``lam`` scalar or (K,)."""
    W = np.asarray(W, dtype=float)
    M = W @ Z.T
    value = np.logaddexp(0.0, -M).mean(axis=-1) + 0.5 * np.asarray(lam) * (W * W).sum(axis=-1)
    return float(value) if W.ndim == 1 else value


def gradient(Z: np.ndarray, W: np.ndarray, lam) -> np.ndarray:
    """∇F(w) = −(1/n)Σ σ(−zᵢᵀw)zᵢ + λw, for w (d,) or rows W (K, d)."""
    W = np.asarray(W, dtype=float)
    M = W @ Z.T
    lam = np.asarray(lam, dtype=float)
    reg = lam[:, None] * W if W.ndim == 2 and lam.ndim == 1 else lam * W
    return -(expit(-M) @ Z) / Z.shape[0] + reg


def hessian(Z: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """∇²F(w) = (1/n)Σ σ(m)σ(−m) zᵢzᵢᵀ + λI at one w (d,)."""
    m = Z @ w
    c = expit(m) * expit(-m)
    return (Z.T * c) @ Z / Z.shape[0] + lam * np.eye(Z.shape[1])


def smoothness(Z: np.ndarray) -> float:
    """β = λ_max(ZᵀZ/n)/4, the smoothness of the unregularised risk L."""
    return float(np.linalg.eigvalsh(Z.T @ Z / Z.shape[0])[-1] / 4.0)


@dataclass(frozen=True)
class NewtonResult:
    w: np.ndarray
    value: float
    iterations: int
    decrement: float  # Newton decrement √(gᵀH⁻¹g) at the returned point


def newton_minimize(Z: np.ndarray, lam: float, tol: float = 1e-14, max_iter: int = 500) -> NewtonResult:
    """Minimise F by damped Newton steps (Armijo backtracking, c = 1e-4) from w = 0.

    Stops when the Newton decrement δ = √(gᵀH⁻¹g) < ``tol``, or when no step decreases F at float
    precision any more; either way F(w) − F* ≈ δ²/2, far below the float resolution of F (the
    returned ``decrement`` says which).
    """
    if lam <= 0:
        raise ValueError("newton_minimize needs lam > 0 (the minimiser is finite only then)")
    w = np.zeros(Z.shape[1])
    f = objective(Z, w, lam)
    decrement = np.inf
    for it in range(1, max_iter + 1):
        g = gradient(Z, w, lam)
        H = hessian(Z, w, lam)
        p = -np.linalg.solve(H, g)
        decrement = float(np.sqrt(max(-(g @ p), 0.0)))
        if decrement < tol:
            return NewtonResult(w, f, it, decrement)
        t = 1.0
        while True:
            f_new = objective(Z, w + t * p, lam)
            if f_new <= f + 1e-4 * t * (g @ p) or t < 1e-12:
                break
            t *= 0.5
        if f_new > f:  # no decrease possible at float precision: we are at the minimum
            return NewtonResult(w, f, it, decrement)
        w, f = w + t * p, f_new
    return NewtonResult(w, f, max_iter, decrement)


# --------------------------------------------------------------------------------------------
# Constant-stepsize GD, many (λ, η) runs at once
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GDRuns:
    """Per run k: first step t with F(w_t) − F* ≤ rel_tol·F* (−1 if never), divergence, and
    whether F increased at some step before that (non-monotone); ``gaps`` holds F(w_t) − F* for
    t = 0 … ``record_steps`` of the runs listed in ``record`` (rows in that order; NaN once a run
    has converged or diverged)."""

    steps: np.ndarray
    diverged: np.ndarray
    nonmonotone: np.ndarray
    gaps: np.ndarray | None
    steps_run: int


@njit(cache=True)
def _gd_kernel(Z, lams, etas, f_star, rel_tol, max_steps, limit, record_row, gaps):  # pragma: no cover - numba
    n, d = Z.shape
    K = lams.size
    W = np.zeros((K, d))
    g = np.zeros(d)
    steps = -np.ones(K, dtype=np.int64)
    diverged = np.zeros(K, dtype=np.bool_)
    nonmono = np.zeros(K, dtype=np.bool_)
    prev = np.full(K, np.inf)
    t = 0
    for t in range(max_steps + 1):
        active = False
        for k in range(K):
            if steps[k] >= 0 or diverged[k]:
                continue
            f = 0.0
            g[:] = 0.0
            for i in range(n):
                m = 0.0
                for j in range(d):
                    m += Z[i, j] * W[k, j]
                if m >= 0.0:
                    e = np.exp(-m)
                    f += np.log1p(e)
                    s = e / (1.0 + e)  # σ(−m)
                else:
                    e = np.exp(m)
                    f += -m + np.log1p(e)
                    s = 1.0 / (1.0 + e)
                for j in range(d):
                    g[j] -= s * Z[i, j]
            norm2 = 0.0
            for j in range(d):
                norm2 += W[k, j] * W[k, j]
            f = f / n + 0.5 * lams[k] * norm2
            if not np.isfinite(f) or f > limit:
                diverged[k] = True
                continue
            if f > prev[k] + 1e-12 * abs(prev[k]):
                nonmono[k] = True
            prev[k] = f
            r = record_row[k]
            if r >= 0 and t < gaps.shape[1]:
                gaps[r, t] = f - f_star[k]
            if f - f_star[k] <= rel_tol * f_star[k]:
                steps[k] = t
                continue
            active = True
            for j in range(d):
                W[k, j] -= etas[k] * (g[j] / n + lams[k] * W[k, j])
        if not active:
            break
    return steps, diverged, nonmono, t


def gd_steps_to_accuracy(
    Z: np.ndarray,
    lams,
    etas,
    f_star,
    *,
    rel_tol: float,
    max_steps: int,
    divergence_factor: float = 1e6,
    record=None,
    record_steps: int = 0,
) -> GDRuns:
    """Run K GD trajectories w_{t+1} = w_t − η_k∇F_{λ_k}(w_t) from 0 (a compiled loop, same formulas
    as ``objective``/``gradient``; the tests check the two agree).

    A run diverges when F becomes non-finite or exceeds ``divergence_factor``·F(0) (F(0) = log 2);
    it is then frozen. The loop stops when every run has converged or diverged, or at ``max_steps``.
    """
    lams = np.ascontiguousarray(lams, dtype=float)
    K = lams.size
    etas = np.ascontiguousarray(np.broadcast_to(np.asarray(etas, dtype=float), (K,)))
    f_star = np.ascontiguousarray(np.broadcast_to(np.asarray(f_star, dtype=float), (K,)))
    record_row = -np.ones(K, dtype=np.int64)
    rows = 0
    if record is not None:
        record = np.asarray(record, dtype=int)
        record_row[record] = np.arange(record.size)
        rows = record.size
    gaps = np.full((rows, record_steps + 1 if rows else 0), np.nan)
    steps, diverged, nonmono, t = _gd_kernel(
        np.ascontiguousarray(Z, dtype=float),
        lams,
        etas,
        f_star,
        float(rel_tol),
        int(max_steps),
        float(divergence_factor * np.log(2.0)),
        record_row,
        gaps,
    )
    return GDRuns(steps, diverged, nonmono, gaps if rows else None, int(t))


def gd_limit(Z: np.ndarray, lam: float, eta: float, max_steps: int, grad_tol: float = 1e-13) -> tuple[np.ndarray, int]:
    """Plain GD until ‖∇F‖ ≤ ``grad_tol`` (or ``max_steps``); returns (w, steps)."""
    w = np.zeros(Z.shape[1])
    for t in range(max_steps):
        g = gradient(Z, w, lam)
        if np.linalg.norm(g) <= grad_tol:
            return w, t
        w = w - eta * g
    return w, max_steps


# --------------------------------------------------------------------------------------------
# Risk-adaptive GD and the Perceptron (unregularised)
# --------------------------------------------------------------------------------------------


def _log_loss_terms(M: np.ndarray) -> np.ndarray:
    """log ℓ(m) = log log(1 + e^{−m}), accurate for very large margins m (where ℓ underflows)."""
    x = -M
    out = np.empty_like(x)
    mid = x > -30.0
    out[mid] = np.log(np.logaddexp(0.0, x[mid]))
    xs = x[~mid]
    out[~mid] = xs + np.log1p(-0.5 * np.exp(xs))  # log1p(e^x) = e^x(1 − e^x/2 + O(e^{2x}))
    return out


def _exp_flushed(x: np.ndarray) -> np.ndarray:
    """exp(x) with results below e^{−700} set to 0: subnormal floats are exact enough to drop and
    make BLAS and ufuncs orders of magnitude slower."""
    out = np.exp(np.maximum(x, -700.0))
    out[x < -700.0] = 0.0
    return out


def _logsumexp_rows(x: np.ndarray) -> np.ndarray:
    """log Σ_j exp(x_j) along the last axis (terms below e^{−700} of the largest dropped)."""
    top = x.max(axis=-1, keepdims=True)
    return (top + np.log(_exp_flushed(x - top).sum(axis=-1, keepdims=True)))[..., 0]


def log_risk(Z: np.ndarray, W: np.ndarray) -> np.ndarray | float:
    """log L(w), for w (d,) or rows W (K, d); finite even when L underflows."""
    W = np.asarray(W, dtype=float)
    value = _logsumexp_rows(_log_loss_terms(W @ Z.T)) - np.log(Z.shape[0])
    return float(value) if W.ndim == 1 else value


def adaptive_direction(Z: np.ndarray, W: np.ndarray) -> np.ndarray:
    """−∇L(w)/L(w) = Σᵢ σ(−mᵢ)zᵢ / Σᵢ ℓ(mᵢ) for rows W (K, d), evaluated in log space."""
    M = W @ Z.T
    log_terms = _log_loss_terms(M)
    log_total = _logsumexp_rows(log_terms)[:, None]
    weights = _exp_flushed(log_expit(-M) - log_total)
    return weights @ Z


@dataclass(frozen=True)
class AdaptiveRuns:
    """Rows: one η each. ``log_risk[k, t]`` = log L(w_t), t = 0 … steps; ``separated_at[k]`` is the
    first t with all margins zᵢᵀw_t > 0 (−1 if never within ``steps``)."""

    etas: np.ndarray
    log_risk: np.ndarray
    separated_at: np.ndarray
    W: np.ndarray


def single_threaded_blas():
    """Context limiting BLAS to one thread: the products here are small, and a multi-threaded BLAS
    on a busy 2-core machine was measured 4–15× slower."""
    return threadpool_limits(limits=1, user_api="blas")


def adaptive_gd(Z: np.ndarray, etas, steps: int) -> AdaptiveRuns:
    """GD with the risk-adaptive stepsize η_t = η/L(w_t) from w₀ = 0, one run per η (vectorised)."""
    etas = np.atleast_1d(np.asarray(etas, dtype=float))
    Z = np.ascontiguousarray(Z, dtype=float)
    K = etas.size
    W = np.zeros((K, Z.shape[1]))
    logs = np.empty((K, steps + 1))
    separated = np.full(K, -1)
    with single_threaded_blas():
        for t in range(steps + 1):
            M = W @ Z.T
            logs[:, t] = _logsumexp_rows(_log_loss_terms(M)) - np.log(Z.shape[0])
            newly = (separated < 0) & (M > 0).all(axis=1)
            separated[newly] = t
            if t == steps:
                break
            W = W + etas[:, None] * adaptive_direction(Z, W)
    return AdaptiveRuns(etas, logs, separated, W)


@dataclass(frozen=True)
class PerceptronResult:
    updates: int
    passes: int
    converged: bool
    w: np.ndarray


def perceptron(Z: np.ndarray, max_passes: int = 10_000) -> PerceptronResult:
    """Cyclic Perceptron from w = 0 in the stored order; stops after a pass without mistakes."""
    Z = np.asarray(Z, dtype=float)
    w = np.zeros(Z.shape[1])
    updates = 0
    for p in range(1, max_passes + 1):
        mistakes = 0
        for z in Z:
            if z @ w <= 0.0:
                w += z
                mistakes += 1
        updates += mistakes
        if mistakes == 0:
            return PerceptronResult(updates, p, True, w)
    return PerceptronResult(updates, max_passes, False, w)


def novikoff_bound(Z: np.ndarray, margin: float) -> float:
    """R²/γ², R = maxᵢ‖zᵢ‖."""
    R = float(np.linalg.norm(Z, axis=1).max())
    return R**2 / margin**2
