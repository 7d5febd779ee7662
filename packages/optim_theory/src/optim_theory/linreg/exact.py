r"""Exact expected excess risk of SGD on Gaussian linear regression.

Model: x ~ N(0, H) with H = Q diag(λ) Qᵀ, y = xᵀw* + ε, E ε = 0, Var ε = σ², ε independent of
x. Minibatch SGD with batch B_t and stepsize η_t on the square loss ½(xᵀw − y)², fresh samples
every step:

    w_{t+1} = w_t − η_t (1/B_t) Σ_b x_b (x_bᵀ w_t − y_b).

Write e_t = w_t − w* and M_t = E[e_t e_tᵀ]. For Gaussian x, E[x xᵀ A x xᵀ] = 2HAH + tr(HA)H, so
with Ĥ the minibatch second moment, E[Ĥ A Ĥ] = HAH + (HAH + tr(HA)H)/B and

    M_{t+1} = M_t − η(H M_t + M_t H) + η² [H M_t H + (H M_t H + tr(H M_t) H)/B] + (η² σ²/B) H.

In the eigenbasis the diagonal m_i = (Qᵀ M Q)_ii evolves on its own (the off-diagonal entries
never feed back into it):

    m_i ← (1 − 2η λ_i + η² λ_i² (1 + 1/B)) m_i + (η²/B) λ_i (Σ_j λ_j m_j + σ²).

Excess risk convention (no ½): R_t = E‖w_t − w*‖²_H = Σ_i λ_i m_i(t). The map is linear in
(m₀, σ²), so bias (σ² = 0) plus variance (m₀ = 0) equals the total exactly.

Tail averages. For w̄ = (1/n) Σ_{t=s+1}^{T} w_t (the iterates produced by the last n = T − s
steps), E[e_{t'} | F_t] = Π_{k=t}^{t'−1}(I − η_k H) e_t for t' > t, so only diagonals enter again.
With S_t = Σ_{τ=s+1}^{t} e_τ, the diagonals c_i(t) = E[(S_t)_i (e_t)_i] and P_i(t) = E[(S_t)_i²]
obey the forward recursion

    c_i(t) = (1 − η_{t−1} λ_i) c_i(t−1) + m_i(t),
    P_i(t) = P_i(t−1) + 2 (1 − η_{t−1} λ_i) c_i(t−1) + m_i(t),

started at c_i(s+1) = P_i(s+1) = m_i(s+1), and E‖w̄ − w*‖²_H = Σ_i λ_i P_i(T) / n². Cost: O(d)
per step, no storage of the trajectory.

Shapes: ``lrs`` is (T,) for one schedule or (K, T) for K schedules computed together; ``m0`` is
(d,) or (K, d); ``noise_var`` a scalar or (K,); ``batch_sizes`` an int, (T,) or (K, T).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "sgd_bias_variance",
    "sgd_excess_risk",
    "sgd_stationary_risk",
    "sgd_tail_average_bias_variance",
    "sgd_tail_average_risk",
]


def sgd_excess_risk(eigs, m0, noise_var, lrs, batch_sizes=1) -> np.ndarray:
    """E‖w_t − w*‖²_H for t = 0..T: shape (T+1,) for 1-D ``lrs``, (K, T+1) for 2-D ``lrs``."""
    lam, m, noise, eta, batch, squeeze = _prepare(eigs, m0, noise_var, lrs, batch_sizes)
    risks = _run(lam, m, noise, eta, batch, 0, None)[0]
    return risks[0] if squeeze else risks


def sgd_bias_variance(eigs, m0, noise_var, lrs, batch_sizes=1) -> tuple[np.ndarray, np.ndarray]:
    """(bias, variance) risk curves, each shaped like :func:`sgd_excess_risk`'s output.

    Bias: the same recursion with σ² = 0; variance: with m₀ = 0. They add up to the total.
    """
    return _bias_variance(sgd_excess_risk, eigs, m0, noise_var, lrs, batch_sizes)


def sgd_tail_average_risk(eigs, m0, noise_var, lrs, batch_sizes=1, start=None):
    """E‖w̄ − w*‖²_H for w̄ the mean of w_{s+1}, …, w_T (``start`` = s, default ⌊T/2⌋).

    Returns a float for 1-D ``lrs`` and a (K,) array for 2-D ``lrs``.
    """
    lam, m, noise, eta, batch, squeeze = _prepare(eigs, m0, noise_var, lrs, batch_sizes)
    T = eta.shape[1]
    s = T // 2 if start is None else int(start)
    if not 0 <= s < T:
        raise ValueError(f"start must satisfy 0 <= start < T={T}, got {start}")
    tail = _run(lam, m, noise, eta, batch, s, T)[1]
    return float(tail[0]) if squeeze else tail


def sgd_tail_average_bias_variance(eigs, m0, noise_var, lrs, batch_sizes=1, start=None):
    """(bias, variance) of the tail average, as in :func:`sgd_tail_average_risk`."""
    return _bias_variance(sgd_tail_average_risk, eigs, m0, noise_var, lrs, batch_sizes, start)


def sgd_stationary_risk(eigs, noise_var, lr, batch_size=1) -> float:
    """Limit of the last-iterate risk for a constant stepsize (closed form of the fixed point).

    At the fixed point m_i (2ηλ_i − η²λ_i²(1 + 1/B)) = (η²/B) λ_i (R + σ²), so with
    s = Σ_i η / (B (2 − ηλ_i(1 + 1/B))) · λ_i one gets R = s σ² / (1 − s). Requires s < 1 and
    |1 − 2ηλ_i + η²λ_i²(1 + 1/B)| < 1 (otherwise the iteration diverges: returns inf).
    """
    lam = _check_eigs(eigs)
    eta, B = float(lr), float(batch_size)
    if eta <= 0 or B < 1:
        raise ValueError("lr must be > 0 and batch_size >= 1")
    contraction = 1 - 2 * eta * lam + eta**2 * lam**2 * (1 + 1 / B)
    denom = 2 - eta * lam * (1 + 1 / B)
    s = float(np.sum(eta * lam / (B * denom)))
    if np.any(np.abs(contraction) >= 1) or s >= 1:
        return float("inf")
    return s * float(noise_var) / (1 - s)


# --------------------------------------------------------------------------- internals


def _bias_variance(fn, eigs, m0, noise_var, lrs, batch_sizes, *rest):
    """Run ``fn`` once on stacked schedules: K bias rows (σ² = 0) then K variance rows (m₀ = 0)."""
    lam = _check_eigs(eigs)
    eta = np.asarray(lrs, dtype=float)
    squeeze = eta.ndim == 1
    eta = np.atleast_2d(eta)
    K = eta.shape[0]
    m = np.broadcast_to(np.asarray(m0, dtype=float), (K, lam.size))
    noise = np.broadcast_to(np.asarray(noise_var, dtype=float), (K,))
    batch = np.asarray(batch_sizes)
    if batch.ndim == 2:
        batch = np.concatenate([batch, batch])
    both = fn(
        lam,
        np.concatenate([m, np.zeros_like(m)]),
        np.concatenate([np.zeros(K), noise]),
        np.concatenate([eta, eta]),
        batch,
        *rest,
    )
    bias, variance = both[:K], both[K:]
    return (bias[0], variance[0]) if squeeze else (bias, variance)


def _check_eigs(eigs) -> np.ndarray:
    lam = np.asarray(eigs, dtype=float)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"eigs must be a non-empty 1-D array, got shape {lam.shape}")
    if not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError("eigs must be finite and non-negative")
    return lam


def _prepare(eigs, m0, noise_var, lrs, batch_sizes):
    lam = _check_eigs(eigs)
    d = lam.size
    eta = np.asarray(lrs, dtype=float)
    squeeze = eta.ndim == 1
    if eta.ndim not in (1, 2):
        raise ValueError(f"lrs must be 1-D (T,) or 2-D (K, T), got shape {eta.shape}")
    eta = np.atleast_2d(eta)
    K, T = eta.shape
    if T == 0:
        raise ValueError("lrs is empty: need at least one step")
    if not np.all(np.isfinite(eta)) or np.any(eta < 0):
        raise ValueError("lrs must be finite and non-negative")

    m = np.asarray(m0, dtype=float)
    if m.shape not in ((d,), (K, d)):
        raise ValueError(f"m0 must have shape ({d},) or ({K}, {d}), got {m.shape}")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ValueError("m0 holds squared coordinates: it must be finite and non-negative")
    m = np.broadcast_to(m, (K, d)).copy()

    noise = np.asarray(noise_var, dtype=float)
    if noise.shape not in ((), (K,)) or np.any(noise < 0):
        raise ValueError(f"noise_var must be a non-negative scalar or shape ({K},)")
    noise = np.broadcast_to(noise, (K,)).copy()

    batch = np.asarray(batch_sizes)
    if batch.shape not in ((), (T,), (K, T)):
        raise ValueError(f"batch_sizes must be an int, shape ({T},) or ({K}, {T}); got {batch.shape}")
    if not np.all(np.equal(np.mod(batch, 1), 0)) or np.any(batch < 1):
        raise ValueError("batch_sizes must be integers >= 1")
    batch = np.broadcast_to(batch.astype(float), (K, T))
    return lam, m, noise, eta, batch, squeeze


def _run(lam, m, noise, eta, batch, tail_start, tail_end):
    """Second-moment recursion; risks (K, T+1) and, if ``tail_end``, the tail-average risk (K,)."""
    K, T = eta.shape
    risks = np.empty((K, T + 1))
    risks[:, 0] = m @ lam
    lam2 = lam * lam
    c = P = None
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported just below
        for t in range(T):
            et = eta[:, t : t + 1]
            inv_b = 1.0 / batch[:, t : t + 1]
            drive = (et * et * inv_b) * (risks[:, t : t + 1] + noise[:, None])
            m_next = (1 - 2 * et * lam + et * et * lam2 * (1 + inv_b)) * m + drive * lam
            if tail_end is not None and t + 1 > tail_start:
                if c is None:  # first averaged iterate, w_{s+1}
                    c, P = m_next.copy(), m_next.copy()
                else:
                    carried = (1 - et * lam) * c  # (1 − η_{t'−1} λ) c(t'−1) with t' = t + 1
                    P = P + 2 * carried + m_next
                    c = carried + m_next
            m = m_next
            risks[:, t + 1] = m @ lam
            if not np.all(np.isfinite(risks[:, t + 1])):
                raise FloatingPointError(f"SGD risk diverged at step {t + 1}: stepsize too large for the spectrum")
    tail = None
    if tail_end is not None:
        n = tail_end - tail_start
        tail = (P @ lam) / n**2
    return risks, tail
