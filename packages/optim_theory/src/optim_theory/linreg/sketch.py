r"""Sketched linear regression and the exact risk of one-pass SGD in the sketched model.

Setting (arXiv 2506.08415, after Lin et al. 2024): features x ∈ R^d, x ~ N(0, H) with H =
diag(λ) (a Gaussian design is rotation invariant, so the eigenbasis loses nothing), labels
y = ⟨w*, x⟩ + ε, ε ~ N(0, σ²) independent of x. The model sees the sketched features Sx with a
random Gaussian sketch S ∈ R^{M×d}, S_ij ~ N(0, 1/M) i.i.d., and predicts ⟨v, Sx⟩.

Sketched covariance and best sketched predictor. For fixed S, z = Sx ~ N(0, G) with

    G = S H Sᵀ  (M×M),   v* = argmin_v E(⟨v, Sx⟩ − y)² = G⁻¹ S H w*.

Test error. With the paper's convention (no ½; excess over the noise σ²):

    E(v) = E(⟨v, Sx⟩ − ⟨w*, x⟩)² = ‖Sᵀv − w*‖²_H = A + ‖v − v*‖²_G,
    A = ‖Sᵀv* − w*‖²_H = w*ᵀHw* − (SHw*)ᵀ G⁻¹ (SHw*)      (approximation error),

the cross term vanishing because v* solves the normal equations G v* = S H w*.

Reduction of one-pass SGD to the exact recursion. The residual r = y − ⟨v*, z⟩ =
⟨w* − Sᵀv*, x⟩ + ε is a linear function of the jointly Gaussian (x, ε), and E[z r] = SHw* − Gv* = 0;
jointly Gaussian and uncorrelated means independent. So for fixed S (and w*)

    (z, y) =ᵈ (z, ⟨v*, z⟩ + r),   z ~ N(0, G),   r ~ N(0, σ² + A) independent of z,

which is exactly the well-specified Gaussian model of :mod:`optim_theory.linreg.exact` with
covariance G, target v* and noise variance σ² + A. In the eigenbasis G = U diag(μ) Uᵀ, one-pass
SGD (fresh (x, y) every step, v₀ = 0) started from e₀ = Uᵀ(v₀ − v*) has

    E[E(v_t)] = A + sgd_excess_risk(μ, e₀², σ² + A, η)_t         (exact, O(M) per step).

The same identity lets :func:`sample_sketched_data` draw a dataset of sketched features directly
in the eigenbasis of G (z̃ = Uᵀz ~ N(0, diag μ), y = ⟨ṽ*, z̃⟩ + r), in O(N·M) instead of O(N·d·M).
:func:`simulate_sketched_sgd` checks all of this by brute force: it draws x ∈ R^d, applies S and
evaluates ‖Sᵀv − w*‖²_H directly, with no use of G, v* or A.

Average over the prior. For w* ~ N(0, P), P = diag(p), both v* = G⁻¹SHw* and A are linear /
quadratic in w*, and the one-pass error is linear in (e₀², σ² + A); so its expectation over w*
(given S) is exact with E[(Uᵀv*)_k²] = (UᵀCU)_kk / μ_k², C = S H P H Sᵀ, and
E[A] = tr(HP) − tr(G⁻¹C) = Σ_i λ_i p_i − Σ_k (UᵀCU)_kk / μ_k (:func:`sketched_task_prior`).

Nested sketches: if S_max ∈ R^{M_max×d} has N(0, 1/M_max) entries, its first M rows times
√(M_max/M) have N(0, 1/M) entries, so one draw of S_max gives a valid sketch for every M ≤ M_max
(correlated across M, which makes error-vs-M curves smooth), and G_M = (M_max/M) G_max[:M, :M]
(likewise C_M = (M_max/M) C_max[:M, :M]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import exact

__all__ = [
    "PriorSketchedTask",
    "SketchedTask",
    "gaussian_sketch",
    "nested_gram",
    "one_pass_error",
    "prior_cross_moment",
    "sample_sketched_data",
    "simulate_sketched_sgd",
    "sketch_gram",
    "sketched_task",
    "sketched_task_prior",
    "test_error",
]


def gaussian_sketch(m: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """S ∈ R^{m×d} with i.i.d. N(0, 1/m) entries."""
    if not 1 <= m <= d:
        raise ValueError(f"need 1 <= M <= d, got M={m}, d={d}")
    return rng.standard_normal((m, d)) / np.sqrt(m)


def sketch_gram(sketch: np.ndarray, eigs: np.ndarray) -> np.ndarray:
    """G = S H Sᵀ for H = diag(eigs)."""
    S = np.asarray(sketch, dtype=float)
    return (S * np.asarray(eigs, dtype=float)) @ S.T


def nested_gram(gram_max: np.ndarray, m: int) -> np.ndarray:
    """G for the sketch √(M_max/m)·S_max[:m]: (M_max/m)·G_max[:m, :m]."""
    m_max = gram_max.shape[0]
    if not 1 <= m <= m_max:
        raise ValueError(f"need 1 <= m <= {m_max}, got {m}")
    return (m_max / m) * gram_max[:m, :m]


@dataclass(frozen=True)
class SketchedTask:
    """One (S, w*): everything SGD in the sketched model depends on, in the eigenbasis of G.

    ``mu`` (M,) eigenvalues of G (descending), ``basis`` U with G = U diag(μ) Uᵀ, ``v_star`` the
    best sketched predictor in the original coordinates, ``v_star_eig`` = Uᵀv*, ``approx_error``
    A = ‖Sᵀv* − w*‖²_H.
    """

    mu: np.ndarray
    basis: np.ndarray
    v_star: np.ndarray
    v_star_eig: np.ndarray
    approx_error: float

    @property
    def dim(self) -> int:
        return self.mu.size

    def error_of_eig(self, v_eig: np.ndarray) -> np.ndarray:
        """E(v) = A + Σ_k μ_k (ṽ − ṽ*)_k² for iterates ṽ = Uᵀv given in the eigenbasis (…, M)."""
        diff = np.asarray(v_eig, dtype=float) - self.v_star_eig
        return self.approx_error + (diff * diff) @ self.mu


def sketched_task(sketch: np.ndarray, eigs: np.ndarray, w_star: np.ndarray, gram: np.ndarray | None = None):
    """Best sketched predictor v* = G⁻¹SHw*, its approximation error and the eigenbasis of G.

    ``gram`` may pass a precomputed G = SHSᵀ (e.g. from :func:`nested_gram`). A is evaluated as
    ‖Sᵀv* − w*‖²_H, a sum of squares, rather than as the difference w*ᵀHw* − cᵀG⁻¹c.
    """
    S = np.asarray(sketch, dtype=float)
    lam = np.asarray(eigs, dtype=float)
    w = np.asarray(w_star, dtype=float)
    G = sketch_gram(S, lam) if gram is None else np.asarray(gram, dtype=float)
    mu, U = np.linalg.eigh(G)
    mu, U = mu[::-1].copy(), U[:, ::-1].copy()
    if mu[-1] <= 0:
        raise np.linalg.LinAlgError("G = SHSᵀ is singular: the sketch needs M <= rank(H)")
    c = S @ (lam * w)
    v_eig = (U.T @ c) / mu
    v = U @ v_eig
    resid = S.T @ v - w
    approx = float(lam @ (resid * resid))
    return SketchedTask(mu=mu, basis=U, v_star=v, v_star_eig=v_eig, approx_error=approx)


@dataclass(frozen=True)
class PriorSketchedTask:
    """One S with w* ~ N(0, diag p) averaged out exactly: ``mu``, ``basis`` as in SketchedTask,
    ``m0_eig`` = E[(Uᵀv*)²] (the initial second moment for ṽ₀ = 0), ``approx_error`` = E[A]."""

    mu: np.ndarray
    basis: np.ndarray
    m0_eig: np.ndarray
    approx_error: float

    @property
    def dim(self) -> int:
        return self.mu.size


def prior_cross_moment(sketch: np.ndarray, eigs: np.ndarray, prior_var: np.ndarray) -> np.ndarray:
    """C = S H P H Sᵀ = E[(SHw*)(SHw*)ᵀ] for w* ~ N(0, diag(prior_var))."""
    S = np.asarray(sketch, dtype=float)
    lam = np.asarray(eigs, dtype=float)
    return (S * (lam * lam * np.asarray(prior_var, dtype=float))) @ S.T


def sketched_task_prior(sketch, eigs, prior_var, gram=None, cross=None) -> PriorSketchedTask:
    """E over w* ~ N(0, diag p) of v*'s second moment and of A, for a fixed sketch (exact).

    ``gram`` / ``cross`` may pass precomputed G = SHSᵀ and C = SHPHSᵀ (e.g. nested).
    """
    S = np.asarray(sketch, dtype=float)
    lam = np.asarray(eigs, dtype=float)
    p = np.asarray(prior_var, dtype=float)
    G = sketch_gram(S, lam) if gram is None else np.asarray(gram, dtype=float)
    C = prior_cross_moment(S, lam, p) if cross is None else np.asarray(cross, dtype=float)
    mu, U = np.linalg.eigh(G)
    mu, U = mu[::-1].copy(), U[:, ::-1].copy()
    if mu[-1] <= 0:
        raise np.linalg.LinAlgError("G = SHSᵀ is singular: the sketch needs M <= rank(H)")
    c_eig = np.einsum("ik,ij,jk->k", U, C, U)  # diag(UᵀCU)
    approx = float(lam @ p - np.sum(c_eig / mu))
    return PriorSketchedTask(mu=mu, basis=U, m0_eig=c_eig / mu**2, approx_error=max(approx, 0.0))


def test_error(sketch: np.ndarray, eigs: np.ndarray, w_star: np.ndarray, v: np.ndarray) -> np.ndarray:
    """E(v) = ‖Sᵀv − w*‖²_H computed from its definition (v: (M,) or (runs, M))."""
    resid = np.asarray(v, dtype=float) @ np.asarray(sketch, dtype=float) - np.asarray(w_star, dtype=float)
    return (resid * resid) @ np.asarray(eigs, dtype=float)


test_error.__test__ = False  # a function of the model, not a pytest test


def one_pass_error(task: SketchedTask | PriorSketchedTask, noise_var: float, lrs, v0_eig=None) -> np.ndarray:
    """Exact E[E(v_t)] of one-pass SGD (batch 1, fresh samples) in the sketched model, t = 0..T.

    A + sgd_excess_risk(μ, (ṽ₀ − ṽ*)², σ² + A, η); ``lrs`` (T,) or (K, T) as in
    :func:`optim_theory.linreg.exact.sgd_excess_risk`; ṽ₀ = 0 unless ``v0_eig`` is given. For a
    :class:`PriorSketchedTask` the same formula with E[(ṽ*)²] and E[A] is the exact average over
    w* (the error is linear in (e₀², σ² + A)); then ṽ₀ must be 0.
    """
    if isinstance(task, PriorSketchedTask):
        if v0_eig is not None:
            raise ValueError("a prior-averaged task starts from v0 = 0")
        m0 = task.m0_eig
    else:
        v0 = np.zeros(task.dim) if v0_eig is None else np.asarray(v0_eig, dtype=float)
        e0 = v0 - task.v_star_eig
        m0 = e0 * e0
    return task.approx_error + exact.sgd_excess_risk(task.mu, m0, noise_var + task.approx_error, lrs)


def sample_sketched_data(task: SketchedTask, n: int, noise_var: float, rng: np.random.Generator):
    """N i.i.d. sketched samples in the eigenbasis of G: z̃ ~ N(0, diag μ), y = ⟨ṽ*, z̃⟩ + r.

    r ~ N(0, σ² + A) independent of z̃ — the same joint law as (UᵀSx, ⟨w*, x⟩ + ε) (module
    docstring). Returns (Z̃ (n, M), y (n,)).
    """
    Z = rng.standard_normal((n, task.dim)) * np.sqrt(task.mu)
    y = Z @ task.v_star_eig + np.sqrt(noise_var + task.approx_error) * rng.standard_normal(n)
    return Z, y


def simulate_sketched_sgd(
    sketch: np.ndarray,
    eigs: np.ndarray,
    w_star: np.ndarray,
    noise_var: float,
    lrs,
    *,
    runs: int,
    seed: int,
    record_steps,
    chunk: int = 2048,
) -> np.ndarray:
    """Brute-force one-pass SGD on (Sx, y) with x ~ N(0, diag λ) ∈ R^d; E(v_t) per run and step.

    Independent of :func:`sketched_task`: no G, v* or A is used; the error is ‖Sᵀv − w*‖²_H.
    Returns an array (runs, len(record_steps)). v₀ = 0.
    """
    S = np.asarray(sketch, dtype=float)
    lam = np.asarray(eigs, dtype=float)
    w = np.asarray(w_star, dtype=float)
    eta = np.asarray(lrs, dtype=float)
    steps = np.asarray(record_steps, dtype=int)
    if steps.min() < 0 or steps.max() > eta.size:
        raise ValueError(f"record_steps must lie in [0, {eta.size}]")
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(noise_var)
    sqrt_lam = np.sqrt(lam)
    out = np.empty((runs, steps.size))
    record_at = {int(t): j for j, t in enumerate(steps)}
    for lo in range(0, runs, chunk):
        r = min(chunk, runs - lo)
        v = np.zeros((r, S.shape[0]))
        if 0 in record_at:
            out[lo : lo + r, record_at[0]] = test_error(S, lam, w, v)
        for t in range(eta.size):
            x = rng.standard_normal((r, lam.size)) * sqrt_lam
            z = x @ S.T
            y = x @ w + sigma * rng.standard_normal(r)
            resid = np.einsum("rm,rm->r", z, v) - y
            v -= eta[t] * resid[:, None] * z
            j = record_at.get(t + 1)
            if j is not None:
                out[lo : lo + r, j] = test_error(S, lam, w, v)
    return out
