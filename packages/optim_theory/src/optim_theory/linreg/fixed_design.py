r"""Exact expected excess risk of early-stopped GD and ridge on a fixed Gaussian design.

Model (as in ``linreg.exact``): rows x_k ~ N(0, H) of a design X ∈ ℝ^{n×d}, H = diag(λ) in its
own eigenbasis (nothing is lost: a Gaussian design is rotation invariant), y = X w* + ε with
E ε = 0, Cov ε = σ² I, ε independent of X. Excess population risk (no ½, as in ``exact``):
R(ŵ) = ‖ŵ − w*‖²_H. Everything here is an expectation over the label noise ε *given X*.

Both estimators are spectral filters of the empirical covariance Σ̂ = XᵀX/n = Σ_j s_j u_j u_jᵀ
(s_j > 0 the non-zero eigenvalues, m = rank X of them):

    ŵ = Σ_j (φ(s_j)/s_j) u_j u_jᵀ Xᵀy/n = Σ_j φ(s_j) (u_jᵀ w*) u_j + Σ_j (φ(s_j)/s_j) u_j u_jᵀ Xᵀε/n,

    GD,  step η, t steps, w₀ = 0:  w_{k+1} = w_k − η Xᵀ(X w_k − y)/n
                                    ⇒ w_t = (I − (I − ηΣ̂)^t) Σ̂⁺ Xᵀy/n,  φ_t(s) = 1 − (1 − ηs)^t,
    ridge, λ ≥ 0:  ŵ_λ = (Σ̂ + λI)^{-1} Xᵀy/n,  φ_λ(s) = s/(s + λ)  (λ = 0: minimum-norm solution).

With v_j = u_jᵀw*, h_j = u_jᵀHw*, H̃_jk = u_jᵀHu_k and u_jᵀXᵀXu_k = n s_j δ_jk:

    bias(φ)     = ‖(I − Σ_j φ_j u_j u_jᵀ) w*‖²_H = ‖w*‖²_H − 2 Σ_j φ_j v_j h_j + Σ_jk φ_j v_j H̃_jk φ_k v_k,
    variance(φ) = E‖Σ_j (φ_j/s_j) u_j u_jᵀXᵀε/n‖²_H = (σ²/n) Σ_j (φ_j² / s_j) H̃_jj,

and R = bias + variance exactly. Only (s, v, h, H̃, ‖w*‖²_H) enter: the :class:`FixedDesign`.
It is built either in feature space (eigendecomposition of the d×d matrix XᵀX/n, when d ≤ n) or
in sample space (the n×n Gram matrix XXᵀ/n = Σ_j s_j a_j a_jᵀ, with u_j = Xᵀa_j/√(n s_j), when
n < d) — the same numbers, the cheaper route. :func:`two_scale_design` never forms X for an
isotropic tail block of D coordinates with eigenvalue ε: that block enters XXᵀ as εW and XHXᵀ as
ε²W with W = ZZᵀ ~ Wishart_n(D, I), which is sampled directly (Bartlett decomposition), so D can
be far larger than could be stored.

Filters are evaluated on a whole grid at once (``phi`` of shape (G, m)), so "optimally tuned"
means the minimum over the grid; :func:`tuned` also reports whether the minimiser sits on the
edge of the grid (then the grid was too short and the minimum is not an interior one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..grids import geometric_int_grid

__all__ = [
    "FixedDesign",
    "Tuned",
    "gd_filter",
    "gd_risk",
    "gd_schedule_for_times",
    "geometric_int_grid",
    "ridge_filter",
    "ridge_risk",
    "risk_parts",
    "tuned",
    "two_scale_design",
    "wishart_bartlett",
]

_RANK_TOL = 1e-12  # eigenvalues of Σ̂ below this fraction of the largest count as zero (rank cut)


@dataclass(frozen=True)
class FixedDesign:
    """Sufficient statistics of (X, H, w*) for every spectral-filter estimator; see module doc."""

    n: int
    s: np.ndarray  # (m,) non-zero eigenvalues of Σ̂ = XᵀX/n
    v: np.ndarray  # (m,) u_jᵀ w*
    h: np.ndarray  # (m,) u_jᵀ H w*
    Ht: np.ndarray  # (m, m) u_jᵀ H u_k
    signal: float  # ‖w*‖²_H (the risk of ŵ = 0)

    @classmethod
    def from_design(cls, X, eigs, w_star) -> FixedDesign:
        """From an explicit design X (n×d) in the eigenbasis of H = diag(``eigs``)."""
        X = np.asarray(X, dtype=float)
        lam = np.asarray(eigs, dtype=float)
        w = np.asarray(w_star, dtype=float)
        n, d = X.shape
        if lam.shape != (d,) or w.shape != (d,):
            raise ValueError(f"eigs and w_star must have shape ({d},)")
        if d <= n:
            s, U = np.linalg.eigh(X.T @ X / n)
            keep = s > _RANK_TOL * max(s.max(), 0.0)
            s, U = s[keep], U[:, keep]
            HU = lam[:, None] * U
            return cls(n, s, U.T @ w, U.T @ (lam * w), U.T @ HU, float(w @ (lam * w)))
        XH = X * lam
        return cls.from_gram(n, X @ X.T, XH @ X.T, X @ w, XH @ w, float(w @ (lam * w)))

    @classmethod
    def from_gram(cls, n: int, gram, gram_h, xw, xhw, signal: float) -> FixedDesign:
        """From sample-space statistics: XXᵀ, XHXᵀ, Xw*, XHw* and ‖w*‖²_H (n < d route)."""
        s, A = np.linalg.eigh(np.asarray(gram, dtype=float) / n)
        keep = s > _RANK_TOL * max(s.max(), 0.0)
        s, A = s[keep], A[:, keep]
        scale = 1.0 / np.sqrt(n * s)  # u_j = Xᵀ a_j · scale_j
        v = (A.T @ xw) * scale
        h = (A.T @ xhw) * scale
        Ht = (A.T @ gram_h @ A) * np.outer(scale, scale)
        return cls(n, s, v, h, 0.5 * (Ht + Ht.T), float(signal))


def wishart_bartlett(n: int, dof: int, rng: np.random.Generator) -> np.ndarray:
    """W = ZZᵀ for Z ∈ ℝ^{n×dof} with i.i.d. N(0, 1) entries, sampled in O(n²) + one n×n product.

    Bartlett: W = LLᵀ with L lower triangular, L_ii = √χ²_{dof−i} (i = 0..n−1), L_ij ~ N(0, 1)
    for i > j, all independent. Needs dof ≥ n.
    """
    if dof < n:
        raise ValueError(f"Bartlett sampling needs dof >= n, got dof={dof}, n={n}")
    L = np.tril(rng.standard_normal((n, n)), k=-1)
    L[np.diag_indices(n)] = np.sqrt(rng.chisquare(dof - np.arange(n)))
    return L @ L.T


def two_scale_design(
    n: int, head_eigs, head_w, tail_dim: int, tail_eig: float, rng: np.random.Generator, wishart=None
) -> FixedDesign:
    """Design with a head block (explicit, eigenvalues ``head_eigs``, target ``head_w``) and an
    isotropic tail block of ``tail_dim`` coordinates with eigenvalue ``tail_eig`` and w*_tail = 0.

    With X = [X_h, √ε Z]: XXᵀ = X_hX_hᵀ + εW, XHXᵀ = X_hΛ_hX_hᵀ + ε²W, Xw* = X_hw_h,
    XHw* = X_hΛ_hw_h, W = ZZᵀ. ``wishart`` may pass W (for tests); otherwise it is sampled.
    """
    lam = np.asarray(head_eigs, dtype=float)
    w = np.asarray(head_w, dtype=float)
    Xh = rng.standard_normal((n, lam.size)) * np.sqrt(lam)
    W = wishart_bartlett(n, tail_dim, rng) if wishart is None else np.asarray(wishart, dtype=float)
    XhL = Xh * lam
    gram = Xh @ Xh.T + tail_eig * W
    gram_h = XhL @ Xh.T + tail_eig**2 * W
    return FixedDesign.from_gram(n, gram, gram_h, Xh @ w, XhL @ w, float(w @ (lam * w)))


# --------------------------------------------------------------------------- filters and risks


def gd_filter(s, lr, steps) -> np.ndarray:
    """φ(s) = 1 − (1 − η s)^t for each grid point (η, t): shape (len(steps), len(s)).

    ``lr`` is one stepsize or one per grid point (broadcast against ``steps``); ``steps`` are
    integers ≥ 0. Needs 0 < η·max(s) < 2 (stable GD); η·max(s) ≤ 1 gives monotone filters.
    """
    s = np.asarray(s, dtype=float)
    t = np.atleast_1d(np.asarray(steps, dtype=float))
    if np.any(t < 0) or np.any(t != np.round(t)):
        raise ValueError("steps must be integers >= 0")
    eta = np.broadcast_to(np.asarray(lr, dtype=float), t.shape)
    x = eta[:, None] * s[None, :]
    if np.any(eta <= 0) or np.any(x >= 2):
        raise ValueError(f"GD step is unstable: need 0 < η·max(s) < 2 (max s = {s.max():g}, max η = {eta.max():g})")
    return 1.0 - np.power(1 - x, t[:, None])  # integer t: a negative base is fine


def gd_schedule_for_times(times, s_max: float) -> tuple[np.ndarray, np.ndarray]:
    """(η, t) reaching the GD "time" T = η t for each T in ``times`` with the stepsize η ≤ 1/s_max:
    t = max(1, ⌈T s_max⌉), η = T/t. A time grid on a geometric scale is then a GD tuning grid whose
    resolution does not depend on how few steps the optimum needs (early stopping after 1–3 full
    steps of size 1/s_max is common); every grid point is plain GD with a constant stepsize.
    """
    T = np.asarray(times, dtype=float)
    if np.any(T <= 0) or s_max <= 0:
        raise ValueError("times and s_max must be > 0")
    steps = np.maximum(1.0, np.ceil(T * s_max * (1 - 1e-12)))
    return T / steps, steps


def ridge_filter(s, lams) -> np.ndarray:
    """φ_λ(s) = s/(s + λ) for every λ in ``lams``: shape (len(lams), len(s)); λ = 0 allowed."""
    s = np.asarray(s, dtype=float)
    lam = np.asarray(lams, dtype=float)
    if np.any(lam < 0):
        raise ValueError("ridge λ must be >= 0")
    return s[None, :] / (s[None, :] + lam[:, None])


def risk_parts(design: FixedDesign, phi, noise_var: float) -> tuple[np.ndarray, np.ndarray]:
    """(bias, variance), each of shape (G,), for the filter values ``phi`` (G, m); see module doc."""
    phi = np.atleast_2d(np.asarray(phi, dtype=float))
    pv = phi * design.v
    cross = pv @ design.h
    quad = np.einsum("gj,gj->g", pv @ design.Ht, pv)
    bias = design.signal - 2 * cross + quad
    variance = noise_var / design.n * ((phi * phi) / design.s) @ np.diag(design.Ht)
    return np.maximum(bias, 0.0), variance  # the expansion can round a zero bias to about −1e-16


def gd_risk(design: FixedDesign, lr, steps, noise_var: float) -> tuple[np.ndarray, np.ndarray]:
    """(bias, variance) of GD with stepsize ``lr`` (scalar or per grid point) after ``steps`` steps."""
    return risk_parts(design, gd_filter(design.s, lr, steps), noise_var)


def ridge_risk(design: FixedDesign, lams, noise_var: float) -> tuple[np.ndarray, np.ndarray]:
    """(bias, variance) of ridge for each λ in ``lams``."""
    return risk_parts(design, ridge_filter(design.s, lams), noise_var)


@dataclass(frozen=True)
class Tuned:
    """The minimum of a risk curve over its grid: value, minimiser, index, on-the-edge flag."""

    risk: float
    param: float
    index: int
    at_edge: bool


def tuned(risks, grid) -> Tuned:
    """Minimum over the grid (NaN/inf entries ignored); ``at_edge`` when it sits at either end."""
    r = np.asarray(risks, dtype=float)
    g = np.asarray(grid, dtype=float)
    if r.shape != g.shape or r.size == 0:
        raise ValueError("risks and grid must be non-empty and of the same shape")
    finite = np.where(np.isfinite(r), r, np.inf)
    i = int(np.argmin(finite))
    if not np.isfinite(finite[i]):
        raise ValueError("no finite risk on the grid")
    return Tuned(float(r[i]), float(g[i]), i, i in (0, r.size - 1))
