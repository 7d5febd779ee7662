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

started at c_i(s+1) = P_i(s+1) = m_i(s+1), and E‖w̄ − w*‖²_H = Σ_i λ_i P_i(T) / n². Only the
scalar Σ_i λ_i P_i is needed, so P is accumulated as Σ_t (2 Σ_i λ_i (1 − η_{t−1}λ_i) c_i(t−1) + R_t)
and the state per schedule is just (m, c). Cost: O(d) per step, no storage of the trajectory.

Normalised SGD (NSGD): w ← w − η g / sqrt(E‖g‖²), the expectation taken over the minibatch and
the iterate's distribution, so the normaliser is a deterministic function of m:

    E‖g‖² = Σ_i m_i (λ_i² (1 + 1/B) + λ_i tr(H)/B) + σ² tr(H)/B,

(from E[Ĥ²] = H² + (H² + tr(H) H)/B), and NSGD is SGD with the stepsize η_t / sqrt(E‖g_t‖²).

Implementation: a fused numba kernel makes one pass over (m, c) per step and per schedule,
accumulating the next step's Σλm (and Σλ²m for NSGD) on the way; schedules run in parallel
threads, each keeping its own state in cache. ``_reference`` is the plain numpy version of the
same recursion, used by the tests as an independent implementation.

Shapes: ``lrs`` is (T,) for one schedule or (K, T) for K schedules computed together; ``m0`` is
(d,) or (K, d); ``noise_var`` a scalar or (K,); ``batch_sizes`` an int, (T,) or (K, T).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "nsgd_excess_risk",
    "nsgd_tail_average_risk",
    "sgd_bias_variance",
    "sgd_excess_risk",
    "sgd_stationary_risk",
    "sgd_tail_average_bias_variance",
    "sgd_tail_average_risk",
]


def sgd_excess_risk(eigs, m0, noise_var, lrs, batch_sizes=1, *, multiplicity=None) -> np.ndarray:
    """E‖w_t − w*‖²_H for t = 0..T: shape (T+1,) for 1-D ``lrs``, (K, T+1) for 2-D ``lrs``.

    ``multiplicity`` (optional, (d,)): eigenvalue i stands for μ_i equal directions with the same
    m0_i (they stay equal), so huge flat spectra cost O(#distinct eigenvalues) per step.
    """
    lam, m, noise, eta, batch, squeeze = _prepare(eigs, m0, noise_var, lrs, batch_sizes)
    risks = _run(lam, m, noise, eta, batch, 0, None, mult=multiplicity)[0]
    return risks[0] if squeeze else risks


def nsgd_excess_risk(eigs, m0, noise_var, lrs, batch_sizes=1, *, multiplicity=None) -> np.ndarray:
    """Like :func:`sgd_excess_risk` for normalised SGD w ← w − η g / sqrt(E‖g‖²)."""
    lam, m, noise, eta, batch, squeeze = _prepare(eigs, m0, noise_var, lrs, batch_sizes)
    risks = _run(lam, m, noise, eta, batch, 0, None, normalised=True, mult=multiplicity)[0]
    return risks[0] if squeeze else risks


def nsgd_effective_lrs(eigs, m0, noise_var, lrs, batch_sizes=1) -> np.ndarray:
    """The stepsizes η_t / sqrt(E‖g_t‖²) that NSGD actually takes, shaped like ``lrs``."""
    lam, m, noise, eta, batch, squeeze = _prepare(eigs, m0, noise_var, lrs, batch_sizes)
    effective = _run(lam, m, noise, eta, batch, 0, None, normalised=True)[2]
    return effective[0] if squeeze else effective


def sgd_bias_variance(eigs, m0, noise_var, lrs, batch_sizes=1) -> tuple[np.ndarray, np.ndarray]:
    """(bias, variance) risk curves, each shaped like :func:`sgd_excess_risk`'s output.

    Bias: the same recursion with σ² = 0; variance: with m₀ = 0. They add up to the total.
    """
    return _bias_variance(sgd_excess_risk, eigs, m0, noise_var, lrs, batch_sizes)


def sgd_tail_average_risk(eigs, m0, noise_var, lrs, batch_sizes=1, start=None, *, multiplicity=None):
    """E‖w̄ − w*‖²_H for w̄ the mean of w_{s+1}, …, w_T (``start`` = s, default ⌊T/2⌋).

    Returns a float for 1-D ``lrs`` and a (K,) array for 2-D ``lrs``.
    """
    return _tail(eigs, m0, noise_var, lrs, batch_sizes, start, normalised=False, mult=multiplicity)


def nsgd_tail_average_risk(eigs, m0, noise_var, lrs, batch_sizes=1, start=None, *, multiplicity=None):
    """Tail-average risk of normalised SGD, as :func:`sgd_tail_average_risk`."""
    return _tail(eigs, m0, noise_var, lrs, batch_sizes, start, normalised=True, mult=multiplicity)


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


def _tail(eigs, m0, noise_var, lrs, batch_sizes, start, normalised, mult=None):
    lam, m, noise, eta, batch, squeeze = _prepare(eigs, m0, noise_var, lrs, batch_sizes)
    T = eta.shape[1]
    s = T // 2 if start is None else int(start)
    if not 0 <= s < T:
        raise ValueError(f"start must satisfy 0 <= start < T={T}, got {start}")
    tail = _run(lam, m, noise, eta, batch, s, T, normalised=normalised, mult=mult)[1]
    return float(tail[0]) if squeeze else tail


def _run(lam, m, noise, eta, batch, tail_start, tail_end, normalised=False, reference=False, mult=None):
    """Risks (K, T+1), tail-average risk (K,) or None, and the stepsizes taken (K, T)."""
    K, T = eta.shape
    if mult is None:
        mult = np.ones_like(lam)
    mult = np.asarray(mult, dtype=float)
    if mult.shape != lam.shape or np.any(mult < 0) or not np.all(np.isfinite(mult)):
        raise ValueError(f"multiplicity must be finite, non-negative, of shape {lam.shape}")
    if tail_end is not None and tail_end != T:
        raise ValueError("the tail average ends at the last step")
    impl = _reference if (reference or _kernel is None) else _kernel
    risks = np.empty((K, T + 1))
    tail = np.zeros(K)
    taken = np.empty((K, T))
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported just below
        impl(
            np.ascontiguousarray(lam),
            np.ascontiguousarray(mult),
            np.ascontiguousarray(m),
            np.ascontiguousarray(noise),
            np.ascontiguousarray(eta),
            np.ascontiguousarray(1.0 / batch),
            -1 if tail_end is None else int(tail_start),
            bool(normalised),
            risks,
            tail,
            taken,
        )
    bad = ~np.isfinite(risks)
    if bad.any():
        step = int(np.argmax(bad.any(axis=0)))
        raise FloatingPointError(f"SGD risk diverged at step {step}: stepsize too large for the spectrum")
    return risks, (tail if tail_end is not None else None), taken


def _reference(lam, mult, m0, noise, eta, inv_b, tail_start, normalised, risks, tail, taken):
    """Plain numpy recursion over all schedules at once (the tests' independent implementation)."""
    K, T = eta.shape
    m = m0.copy()
    c = np.zeros_like(m)
    w = mult * lam  # weight of coordinate i in Σ_j λ_j m_j
    trace = w.sum()
    risks[:, 0] = m @ w
    p_sum = np.zeros(K)
    for t in range(T):
        ib = inv_b[:, t : t + 1]
        e = eta[:, t : t + 1]
        if normalised:
            weights = lam * lam * (1 + ib) + lam * trace * ib
            g2 = (m * mult * weights).sum(axis=1, keepdims=True) + noise[:, None] * trace * ib
            e = e / np.sqrt(g2)
        taken[:, t] = e[:, 0]
        m_next = (1 - 2 * e * lam + e * e * lam * lam * (1 + ib)) * m + (e * e * ib) * (
            risks[:, t : t + 1] + noise[:, None]
        ) * lam
        risks[:, t + 1] = m_next @ w
        if tail_start >= 0 and t + 1 > tail_start:
            if t == tail_start:  # first averaged iterate, w_{s+1}
                c = m_next.copy()
                p_sum += risks[:, t + 1]
            else:
                carried = (1 - e * lam) * c  # (1 − η_{t'−1} λ) c(t'−1) with t' = t + 1
                p_sum += 2 * (carried @ w) + risks[:, t + 1]
                c = carried + m_next
        m = m_next
    if tail_start >= 0:
        tail[:] = p_sum / (T - tail_start) ** 2


def _make_kernel():
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a declared dependency
        return None

    @numba.njit(parallel=True, fastmath=True, cache=True)
    def kernel(lam, mult, m0, noise, eta, inv_b, tail_start, normalised, risks, tail, taken):
        K, d = m0.shape
        T = eta.shape[1]
        w = mult * lam  # weight of coordinate i in Σ_j λ_j m_j
        w2 = w * lam
        trace = 0.0
        for i in range(d):
            trace += w[i]
        for k in numba.prange(K):
            m = m0[k].copy()
            c = np.zeros(d)
            r = 0.0
            q = 0.0
            for i in range(d):
                r += w[i] * m[i]
                q += w2[i] * m[i]
            risks[k, 0] = r
            p_sum = 0.0
            for t in range(T):
                ib = inv_b[k, t]
                e = eta[k, t]
                if normalised:
                    e = e / np.sqrt((1 + ib) * q + trace * ib * (r + noise[k]))
                taken[k, t] = e
                lin = 2.0 * e
                quad = e * e * (1.0 + ib)
                drive = e * e * ib * (r + noise[k])
                r_next = 0.0
                q_next = 0.0
                if tail_start < 0 or t < tail_start:
                    for i in range(d):
                        li = lam[i]
                        mi = (1.0 - lin * li + quad * li * li) * m[i] + drive * li
                        m[i] = mi
                        r_next += w[i] * mi
                        q_next += w2[i] * mi
                elif t == tail_start:
                    for i in range(d):
                        li = lam[i]
                        mi = (1.0 - lin * li + quad * li * li) * m[i] + drive * li
                        m[i] = mi
                        c[i] = mi
                        r_next += w[i] * mi
                        q_next += w2[i] * mi
                    p_sum += r_next
                else:
                    cross = 0.0
                    for i in range(d):
                        li = lam[i]
                        mi = (1.0 - lin * li + quad * li * li) * m[i] + drive * li
                        carried = (1.0 - e * li) * c[i]
                        cross += w[i] * carried
                        c[i] = carried + mi
                        m[i] = mi
                        r_next += w[i] * mi
                        q_next += w2[i] * mi
                    p_sum += 2.0 * cross + r_next
                r = r_next
                q = q_next
                risks[k, t + 1] = r
                if not np.isfinite(r):
                    for u in range(t + 2, T + 1):
                        risks[k, u] = np.nan
                    break
            if tail_start >= 0:
                tail[k] = p_sum / (T - tail_start) ** 2

    return kernel


_kernel = _make_kernel()
