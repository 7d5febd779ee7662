"""Exact denoisers: the posterior mean E[x₀ | x₀ + σε = x] in closed form.

Gaussian mixture (:class:`GMMDenoiser`, :func:`gmm_denoiser`). For x₀ ~ Σ_k w_k N(μ_k, Σ_k) and
x = x₀ + σε, ε ~ N(0, I), the noisy marginal is p_σ(x) = Σ_k w_k N(x; μ_k, Σ_k + σ²I) and

    r_k(x; σ)  = w_k N(x; μ_k, Σ_k + σ²I) / p_σ(x)                      (posterior of the component)
    D(x; σ)    = Σ_k r_k · [μ_k + Σ_k (Σ_k + σ²I)⁻¹ (x − μ_k)]            (posterior mean)
    ∇ log p_σ  = −Σ_k r_k (Σ_k + σ²I)⁻¹ (x − μ_k) = (D(x; σ) − x)/σ²      (score; Tweedie)

Each Σ_k = U_k diag(λ_k) U_kᵀ is diagonalised once, so for any σ (also one per sample)
(Σ_k + σ²I)⁻¹ = U_k diag(1/(λ_k + σ²)) U_kᵀ and log det = Σ_d log(λ_kd + σ²) cost O(D) per component
after the rotation y = U_kᵀ(x − μ_k). Diagonal ([K, D]) and isotropic ([K]) covariances skip the
rotation. r_k is a softmax of the log-densities (log-sum-exp), so far-away points and tiny σ give no
overflow. Computation is in float64 and the result is cast back to the input dtype. Zero variances
(λ = 0, e.g. point masses) are allowed for σ > 0.

Empirical data set (:class:`EmpiricalDenoiser`, :func:`empirical_denoiser`): the exact denoiser of the
training distribution itself, (1/M) Σ_i δ(y_i):

    D(x; σ) = Σ_i softmax_i(−‖x − y_i‖²/(2σ²)) · y_i,

computed from the logits (x·y_i − ½‖y_i‖²)/σ² (the ‖x‖² term is common to all i and drops out). As σ → 0
it returns the nearest data point (a perfectly memorising model), as σ → ∞ the data mean. Queries are
processed in chunks so that chunk × M stays near 2²⁴ numbers; by default the computation is in float64
when the data set has at most 2²⁴ numbers and in float32 otherwise (float32 logits lose precision when
σ is far below the spacing between data points — pass ``compute_dtype=torch.float64`` to insist).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = [
    "Denoiser",
    "parse_covariances",
    "GMMDenoiser",
    "EmpiricalDenoiser",
    "gmm_denoiser",
    "empirical_denoiser",
    "gaussian_denoiser",
]

Denoiser = Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor]

_CHUNK_NUMBERS = 2**24  # numbers per intermediate array (~128 MB in float64)
_LOG_2PI = math.log(2.0 * math.pi)


def parse_covariances(covs: torch.Tensor, k: int, d: int) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """Eigen-form of the component covariances: (λ [K, D], U [K, D, D] or None, kind).

    ``covs`` may be [K, D, D] (full; symmetrised, then Σ_k = U_k diag(λ_k) U_kᵀ), [K, D] (diagonal
    variances; U = None) or [K] (isotropic variances; U = None, λ repeated D times). A D = 1 mixture's
    [K, 1] is read as diagonal. Negative variances (beyond round-off) raise ValueError.
    """
    covs = torch.as_tensor(covs, dtype=torch.float64)
    if covs.ndim == 3 and covs.shape == (k, d, d):
        sym = 0.5 * (covs + covs.transpose(-1, -2))
        lam, U = torch.linalg.eigh(sym)
        scale = lam.abs().amax(dim=-1, keepdim=True).clamp_min(1.0)
        if (lam < -1e-10 * scale).any():
            raise ValueError("full covariances must be positive semi-definite")
        return lam.clamp_min(0.0), U, "full"
    if covs.ndim == 2 and covs.shape == (k, d):
        if (covs < 0).any():
            raise ValueError("diagonal variances must be non-negative")
        return covs.clone(), None, "diag"
    if covs.ndim == 1 and covs.shape == (k,):
        if (covs < 0).any():
            raise ValueError("isotropic variances must be non-negative")
        return covs[:, None].expand(k, d).clone(), None, "isotropic"
    raise ValueError(f"covs must have shape [K, D, D], [K, D] or [K] with K={k}, D={d}; got {tuple(covs.shape)}")


def _sigma_vector(sigma: torch.Tensor | float, n: int, device: torch.device) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=torch.float64, device=device).reshape(-1)
    if s.numel() == 1:
        return s.expand(n)
    if s.numel() != n:
        raise ValueError(f"sigma has {s.numel()} elements; expected 1 or N = {n}")
    return s


class GMMDenoiser:
    """Exact denoiser, score and noisy log-density of a Gaussian mixture (formulas in the module docstring).

    Call as ``denoiser(x, sigma)`` with x of shape [N, D] (or [N, …] with D numbers per sample) and σ a
    float, 0-d tensor or N values. Also :meth:`posterior` (r_k), :meth:`log_prob` (log p_σ(x)) and
    :meth:`score`.
    """

    def __init__(self, means: torch.Tensor, covs: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2:
            raise ValueError(f"means must be [K, D], got shape {tuple(means.shape)}")
        k, d = means.shape
        if weights is None:
            weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        if weights.numel() != k or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be K={k} non-negative numbers with a positive sum")
        self.means = means
        self.weights = weights / weights.sum()
        self.log_weights = torch.log(self.weights)  # −inf for zero weights: those components never win
        self.lam, self.U, self.kind = parse_covariances(covs, k, d)
        self.k, self.dim = k, d
        self._cache: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def _params(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        if device not in self._cache:
            U = None if self.U is None else self.U.to(device)
            self._cache[device] = (self.means.to(device), self.log_weights.to(device), self.lam.to(device), U)
        return self._cache[device]

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.dim:
            raise ValueError(f"x must be [N, …] with {self.dim} numbers per sample, got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.dim).to(torch.float64)

    def _terms(self, xt: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For xᵀ [D, n] (float64) and σ [n] (or [1]): log w_k N(x; μ_k, Σ_k+σ²I) [K, n], y = U_kᵀ(x − μ_k)
        [K, D, n] and 1/(λ+σ²) [K, D, n or 1].

        Layout: the sample index is innermost (contiguous), which keeps the element-wise work fast on the
        CPU for small K and D; reductions over D and K run over outer dimensions.
        """
        means, log_w, lam, U = self._params(xt.device)
        diff = xt[None] - means[:, :, None]  # [K, D, n]
        y = diff if U is None else torch.bmm(U.transpose(1, 2), diff)
        var = lam[:, :, None] + (s * s)[None, None, :]
        inv_var = 1.0 / var
        log_pdf = -0.5 * ((y * y * inv_var).sum(1) + torch.log(var).sum(1) + self.dim * _LOG_2PI)
        return log_w[:, None] + log_pdf, y, inv_var

    def _rotate_back(self, v: torch.Tensor) -> torch.Tensor:
        """U_k v_k for v [K, D, n] (identity when the covariances are diagonal)."""
        U = self._params(v.device)[3]
        return v if U is None else torch.bmm(U, v)

    def _apply(self, x: torch.Tensor, sigma: torch.Tensor | float, fn: Callable) -> torch.Tensor:
        """Run ``fn(xᵀ chunk [D, n], σ chunk [n]) -> [·, n]`` over chunks of samples; returns [N, ·]."""
        xf = self._flat(x)
        s = _sigma_vector(sigma, xf.shape[0], xf.device)
        step = max(1, _CHUNK_NUMBERS // (self.k * self.dim))
        xt = xf.T.contiguous()
        n = xf.shape[0]
        # one σ for all samples (the usual sampler call): λ+σ² stays [K, D, 1] instead of [K, D, n]
        uniform = n > 0 and bool((s == s[0]).all())
        parts = [fn(xt[:, i : i + step], s[:1] if uniform else s[i : i + step]) for i in range(0, max(1, n), step)]
        return (parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)).T

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """D(x; σ) = Σ_k r_k [μ_k + U_k diag(λ_k/(λ_k+σ²)) U_kᵀ (x − μ_k)], same shape and dtype as x."""

        def fn(xt: torch.Tensor, sc: torch.Tensor) -> torch.Tensor:
            logp, y, inv_var = self._terms(xt, sc)
            r = torch.softmax(logp, dim=0)  # [K, n]
            means, _, lam, _ = self._params(xt.device)
            cond = means[:, :, None] + self._rotate_back(lam[:, :, None] * inv_var * y)  # E[x₀ | x, k], [K, D, n]
            return (r[:, None, :] * cond).sum(0)

        return self._apply(x, sigma, fn).reshape(x.shape).to(_out_dtype(x))

    def posterior(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """r_k(x; σ) = p(component k | x) as an [N, K] float64 tensor (rows sum to 1)."""
        return self._apply(x, sigma, lambda xt, sc: torch.softmax(self._terms(xt, sc)[0], dim=0)).contiguous()

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float = 0.0) -> torch.Tensor:
        """log p_σ(x) = logsumexp_k [log w_k + log N(x; μ_k, Σ_k + σ²I)] as an [N] float64 tensor."""
        return self._apply(x, sigma, lambda xt, sc: torch.logsumexp(self._terms(xt, sc)[0], dim=0)[None])[:, 0]

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """∇_x log p_σ(x) = −Σ_k r_k (Σ_k + σ²I)⁻¹ (x − μ_k), same shape and dtype as x."""

        def fn(xt: torch.Tensor, sc: torch.Tensor) -> torch.Tensor:
            logp, y, inv_var = self._terms(xt, sc)
            r = torch.softmax(logp, dim=0)
            return -(r[:, None, :] * self._rotate_back(y * inv_var)).sum(0)

        return self._apply(x, sigma, fn).reshape(x.shape).to(_out_dtype(x))


def _out_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if torch.is_floating_point(x) else torch.float32


class EmpiricalDenoiser:
    """Exact denoiser of the empirical distribution of ``data`` ([M, …]): softmax-weighted data points.

    D(x; σ) = Σ_i w_i y_i with w_i ∝ exp((x·y_i − ½‖y_i‖²)/σ²), for σ > 0. :meth:`weights` returns the w_i.
    """

    def __init__(self, data: torch.Tensor, compute_dtype: torch.dtype | None = None) -> None:
        data = torch.as_tensor(data)
        if data.ndim < 1 or data.shape[0] == 0:
            raise ValueError("data must be a non-empty [M, …] tensor")
        flat = data.reshape(data.shape[0], -1)
        if compute_dtype is None:
            compute_dtype = torch.float64 if flat.numel() <= _CHUNK_NUMBERS else torch.float32
        self.compute_dtype = compute_dtype
        self.data = flat.to(compute_dtype)
        self.sample_shape = tuple(data.shape[1:])
        self.m, self.dim = self.data.shape
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _params(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._cache:
            y = self.data.to(device)
            self._cache[device] = (y, 0.5 * (y**2).sum(1))
        return self._cache[device]

    def _logits(self, xc: torch.Tensor, sc: torch.Tensor) -> torch.Tensor:
        y, half_sq = self._params(xc.device)
        return (xc @ y.T - half_sq[None]) / (sc**2)[:, None]

    def _run(self, x: torch.Tensor, sigma: torch.Tensor | float, weights_only: bool) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.dim:
            raise ValueError(f"x must be [N, …] with {self.dim} numbers per sample, got shape {tuple(x.shape)}")
        xf = x.reshape(x.shape[0], self.dim).to(self.compute_dtype)
        s = _sigma_vector(sigma, xf.shape[0], xf.device).to(self.compute_dtype)
        step = max(1, _CHUNK_NUMBERS // self.m)
        out = []
        for i in range(0, max(1, xf.shape[0]), step):
            w = torch.softmax(self._logits(xf[i : i + step], s[i : i + step]), dim=1)
            out.append(w if weights_only else w @ self._params(xf.device)[0])
        return torch.cat(out)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """D(x; σ), same shape and dtype as x."""
        return self._run(x, sigma, weights_only=False).reshape(x.shape).to(_out_dtype(x))

    def weights(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Posterior weights w_i(x; σ) over the M data points, [N, M] in the compute dtype."""
        return self._run(x, sigma, weights_only=True)


def gmm_denoiser(means: torch.Tensor, covs: torch.Tensor, weights: torch.Tensor | None = None) -> GMMDenoiser:
    """Exact denoiser E[x₀ | x₀ + σε = x] of Σ_k w_k N(μ_k, Σ_k); covs [K, D, D], [K, D] or [K]."""
    return GMMDenoiser(means, covs, weights)


def empirical_denoiser(data: torch.Tensor, compute_dtype: torch.dtype | None = None) -> EmpiricalDenoiser:
    """Exact denoiser of the empirical distribution (1/M) Σ_i δ(y_i) of ``data`` [M, …]."""
    return EmpiricalDenoiser(data, compute_dtype)


def gaussian_denoiser(mean: torch.Tensor, cov: torch.Tensor | float) -> GMMDenoiser:
    """Exact denoiser of one Gaussian N(μ, Σ): D = μ + Σ(Σ + σ²I)⁻¹(x − μ). ``cov`` [D, D], [D] or scalar."""
    mean = torch.as_tensor(mean, dtype=torch.float64).reshape(1, -1)
    cov = torch.as_tensor(cov, dtype=torch.float64)
    return GMMDenoiser(mean, cov[None] if cov.ndim > 0 else cov.reshape(1), torch.ones(1))
