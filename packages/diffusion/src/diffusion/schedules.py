"""Noise-level (σ) grids for sampling and σ bins for per-noise-level reporting.

All functions return float64 tensors on the CPU; samplers read them one value at a time, so the
grid's precision never depends on the data's dtype.

Sampling grids (decreasing, ending in 0, length n + 1 for n steps):

- :func:`karras_sigmas` — Karras et al. 2022 (arXiv 2206.00364, Eq. 5): for i = 0..n−1

      σ_i = (σ_max^{1/ρ} + i/(n−1) · (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,   σ_n = 0,

  so σ_0 = σ_max, σ_{n−1} = σ_min; ρ = 7 spends most steps at low noise (ρ → ∞ tends to the
  geometric grid, ρ = 1 is uniform in σ).
- :func:`geometric_sigmas` — log-uniform spacing σ_i = σ_max·(σ_min/σ_max)^{i/(n−1)} (the VE grid
  of Song et al. 2021 as used in the EDM paper's Table 1), then 0.
- :func:`vp_sigmas` — the VP grid of the EDM paper's Table 1: uniform times t_i = 1 + i/(n−1)·(ε_s − 1)
  mapped through σ(t) = sqrt(exp(½β_d t² + β_min t) − 1), then 0.

σ bins (for losses or denoising errors reported per noise level): :func:`sigma_bins` gives n_bins + 1
log-spaced edges, :func:`sigma_bin_centers` their geometric midpoints and :func:`sigma_bin_index` the
bin of each σ (values outside [edges[0], edges[-1]] are clipped into the first/last bin).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "karras_sigmas",
    "geometric_sigmas",
    "vp_sigmas",
    "vp_sigma",
    "append_zero",
    "sigma_bins",
    "sigma_bin_centers",
    "sigma_bin_index",
]


def _check_range(n: int, sigma_min: float, sigma_max: float) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"number of steps n must be a positive integer, got {n}")
    if not (0.0 < sigma_min <= sigma_max < math.inf):
        raise ValueError(f"need 0 < sigma_min <= sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if n > 1 and sigma_min == sigma_max:
        raise ValueError("sigma_min == sigma_max only makes sense for n = 1")


def _ramp(n: int) -> torch.Tensor:
    """i/(n−1) for i = 0..n−1 (just [0] when n = 1)."""
    if n == 1:
        return torch.zeros(1, dtype=torch.float64)
    return torch.linspace(0.0, 1.0, n, dtype=torch.float64)


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """Append σ = 0 to a decreasing grid (the final, noise-free level)."""
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022 grid: σ_i = (σ_max^{1/ρ} + i/(n−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, then σ_n = 0.

    Returns a float64 tensor of length n + 1, strictly decreasing, with σ_0 = σ_max, σ_{n−1} = σ_min and
    σ_n = 0 (for n = 1 the grid is [σ_max, 0]).
    """
    _check_range(n, sigma_min, sigma_max)
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")
    a, b = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    sigmas = (a + _ramp(n) * (b - a)) ** rho
    sigmas[0] = sigma_max  # exact end points (the power can be off by an ulp)
    if n > 1:
        sigmas[-1] = sigma_min
    return append_zero(sigmas)


def geometric_sigmas(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Log-uniform grid σ_i = σ_max·(σ_min/σ_max)^{i/(n−1)}, i = 0..n−1, then 0 (length n + 1)."""
    _check_range(n, sigma_min, sigma_max)
    sigmas = sigma_max * (sigma_min / sigma_max) ** _ramp(n)
    sigmas[0] = sigma_max
    if n > 1:
        sigmas[-1] = sigma_min
    return append_zero(sigmas)


def vp_sigma(t: torch.Tensor | float, beta_d: float = 19.9, beta_min: float = 0.1) -> torch.Tensor:
    """VP noise level at time t: σ(t) = sqrt(exp(½β_d t² + β_min t) − 1) (EDM paper, Table 1)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return torch.sqrt(torch.expm1(0.5 * beta_d * t**2 + beta_min * t))


def vp_sigmas(n: int, beta_d: float = 19.9, beta_min: float = 0.1, epsilon_s: float = 1e-3) -> torch.Tensor:
    """VP grid: t_i = 1 + i/(n−1)·(ε_s − 1), σ_i = σ(t_i) for i = 0..n−1, then 0 (length n + 1)."""
    if int(n) != n or n < 1:
        raise ValueError(f"number of steps n must be a positive integer, got {n}")
    if not 0.0 < epsilon_s < 1.0:
        raise ValueError(f"epsilon_s must be in (0, 1), got {epsilon_s}")
    t = 1.0 + _ramp(n) * (epsilon_s - 1.0)
    return append_zero(vp_sigma(t, beta_d, beta_min))


def sigma_bins(n_bins: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """n_bins + 1 log-spaced bin edges from σ_min to σ_max (float64, increasing)."""
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    if not (0.0 < sigma_min < sigma_max < math.inf):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
    edges = torch.logspace(math.log10(sigma_min), math.log10(sigma_max), n_bins + 1, dtype=torch.float64)
    edges[0], edges[-1] = sigma_min, sigma_max
    return edges


def sigma_bin_centers(edges: torch.Tensor) -> torch.Tensor:
    """Geometric midpoints sqrt(e_j · e_{j+1}) of consecutive edges (length n_bins)."""
    edges = torch.as_tensor(edges, dtype=torch.float64)
    return torch.sqrt(edges[:-1] * edges[1:])


def sigma_bin_index(sigma: torch.Tensor | float, edges: torch.Tensor) -> torch.Tensor:
    """Bin j with e_j <= σ < e_{j+1} for each σ (int64); σ outside the edges goes to the first/last bin."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    edges = torch.as_tensor(edges, dtype=torch.float64)
    idx = torch.bucketize(sigma, edges[1:-1], right=True)
    return idx.clamp(0, len(edges) - 2)
