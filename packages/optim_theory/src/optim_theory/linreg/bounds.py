"""Risk bounds of constant-stepsize SGD with iterate averaging (Zou, Wu, Braverman, Gu, Kakade,
"Benign overfitting of constant-stepsize SGD for linear regression", COLT 2021), the bounds that
arXiv 2506.15535 recovers.

Zou et al. state upper and matching lower bounds up to absolute constants. We use the leading
forms below with every constant set to 1, so only the *shape* in N (and the ratio exact/bound
staying within a constant band) is meaningful:

    k* = #{i : λ_i ≥ 1/(γN)}
    effective variance  V(N) = σ² (k*/N + N γ² Σ_{i>k*} λ_i²)
    effective bias      B(N) = ‖w₀ − w*‖²_{H⁻¹_{0:k*}} / (γ² N²) + ‖w₀ − w*‖²_{H_{k*:∞}}
                              + (‖w₀ − w*‖²_{I_{0:k*}} + Nγ ‖w₀ − w*‖²_{H_{k*:∞}}) / (Nγ) · V(N)/σ²

(the last bias term is the fourth-moment coupling, the bias acting as extra noise). ``m0`` is the
squared initial error in the eigenbasis, eigenvalues sorted in decreasing order.
"""

from __future__ import annotations

import numpy as np


def effective_dim(eigs: np.ndarray, lr: float, n: int) -> int:
    lam = np.asarray(eigs, dtype=float)
    return int(np.count_nonzero(lam >= 1.0 / (lr * n)))


def zou_variance_bound(eigs, noise_var: float, lr: float, n: int) -> float:
    lam = np.asarray(eigs, dtype=float)
    k = effective_dim(lam, lr, n)
    return float(noise_var * (k / n + n * lr**2 * np.sum(lam[k:] ** 2)))


def zou_bias_bound(eigs, m0, lr: float, n: int) -> float:
    lam = np.asarray(eigs, dtype=float)
    m0 = np.asarray(m0, dtype=float)
    k = effective_dim(lam, lr, n)
    head = np.sum(m0[:k] / lam[:k]) / (lr * n) ** 2
    tail = np.sum(lam[k:] * m0[k:])
    coupling = (np.sum(m0[:k]) + n * lr * tail) / (n * lr) * zou_variance_bound(lam, 1.0, lr, n)
    return float(head + tail + coupling)
