"""Samplers: plain functions ``sample_x(denoiser, x, sigmas, …)`` over a decreasing σ grid.

Common contract. ``denoiser(x, sigma)`` returns D(x; σ) ≈ E[x₀ | x₀ + σε = x]; it is called with σ as a
tensor of shape [N] (one value per sample, x's dtype and device). ``x`` is the initial noise already
scaled by ``sigmas[0]`` (e.g. ``sigmas[0] * torch.randn(...)``). The sampler walks over consecutive pairs
(σ_i, σ_{i+1}) of ``sigmas`` (any decreasing sequence; it need not end in 0 — ending at σ_min > 0 is useful
for convergence studies), runs without autograd and returns the final x; with
``return_trajectory=True`` it returns (x, trajectory) where trajectory[i] is x at σ_i ([len(sigmas), *x.shape]).

Dynamics (Karras et al. 2022, arXiv 2206.00364, with σ(t) = t and s(t) = 1):

- probability-flow ODE  dx/dσ = (x − D(x; σ))/σ = −σ ∇log p_σ(x);
- reverse-time SDE      dx = −2σ ∇log p_σ(x) dσ + sqrt(2σ) dW̄, integrated from σ_max down to 0,
  with the score ∇log p_σ(x) = (D(x; σ) − x)/σ².

Functions:

- :func:`sample_euler` — explicit Euler on the ODE: x ← x + (σ_{i+1} − σ_i)·d_i, d_i = (x − D(x; σ_i))/σ_i.
- :func:`sample_heun` — Heun's 2nd-order method (EDM Algorithm 1): Euler predictor x', then
  x ← x + (σ_{i+1} − σ_i)·½(d_i + d'_i) with d'_i = (x' − D(x'; σ_{i+1}))/σ_{i+1}; the correction is
  skipped when σ_{i+1} = 0 (that last step is plain Euler). 2n − 1 denoiser calls for n steps to 0.
- :func:`sample_edm` — EDM Algorithm 2 (stochastic churn): with n = len(sigmas) − 1 steps and
  γ_i = min(S_churn/n, √2 − 1) if S_tmin ≤ σ_i ≤ S_tmax else 0, raise the noise to σ̂ = σ_i(1 + γ_i) by
  x̂ = x + sqrt(σ̂² − σ_i²)·ε, ε ~ N(0, S_noise² I), then take a Heun step from σ̂ to σ_{i+1}. With
  S_churn = 0 it equals :func:`sample_heun`.
- :func:`sample_euler_maruyama` — Euler–Maruyama on the reverse SDE with Δ_i = σ_i − σ_{i+1} > 0:
  x ← x + 2Δ_i/σ_i · (D(x; σ_i) − x) + sqrt(2σ_iΔ_i)·z, z ~ N(0, I). (On the last step to σ = 0 this
  is x ← 2D − x + sqrt(2)σ_{n−1} z: it leaves noise of order σ_min, first-order accurate like the rest.)
- :func:`sample_ddim` — DDIM (Song et al. 2021, arXiv 2010.02502). With η = 0 DDIM is exactly Euler on
  the ODE in this σ-parametrisation (EDM paper, §3), so it calls :func:`sample_euler`. For η > 0 it is
  DDIM's stochastic update rewritten in σ: σ_up = η·sqrt(σ_{i+1}²(σ_i² − σ_{i+1}²)/σ_i²),
  σ_down = sqrt(σ_{i+1}² − σ_up²), x ← D + σ_down·(x − D)/σ_i + σ_up·z (η = 1 is ancestral sampling).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["sample_euler", "sample_heun", "sample_edm", "sample_euler_maruyama", "sample_ddim"]

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Result = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _grid(sigmas: torch.Tensor | list[float]) -> list[float]:
    s = [float(v) for v in torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)]
    if len(s) < 2:
        raise ValueError("sigmas needs at least two values (one step)")
    if any(b >= a for a, b in zip(s[:-1], s[1:], strict=False)) or s[-1] < 0:
        raise ValueError("sigmas must be strictly decreasing and non-negative")
    return s


def _denoise(denoiser: Denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    return denoiser(x, x.new_full((x.shape[0],), sigma))


def _ode_slope(denoiser: Denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """d = dx/dσ = (x − D(x; σ))/σ."""
    return (x - _denoise(denoiser, x, sigma)) / sigma


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _finish(x: torch.Tensor, traj: list[torch.Tensor] | None) -> Result:
    return x if traj is None else (x, torch.stack(traj))


@torch.no_grad()
def sample_euler(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, return_trajectory: bool = False) -> Result:
    """Euler on the probability-flow ODE: x ← x + (σ_{i+1} − σ_i)(x − D(x; σ_i))/σ_i."""
    s = _grid(sigmas)
    traj = [x] if return_trajectory else None
    for sigma, sigma_next in zip(s[:-1], s[1:], strict=True):
        x = x + (sigma_next - sigma) * _ode_slope(denoiser, x, sigma)
        if traj is not None:
            traj.append(x)
    return _finish(x, traj)


def _heun_step(denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    d = _ode_slope(denoiser, x, sigma)
    x_next = x + (sigma_next - sigma) * d
    if sigma_next > 0:
        d_next = _ode_slope(denoiser, x_next, sigma_next)
        x_next = x + (sigma_next - sigma) * 0.5 * (d + d_next)
    return x_next


@torch.no_grad()
def sample_heun(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, return_trajectory: bool = False) -> Result:
    """Heun (EDM Alg. 1): Euler predictor, trapezoidal corrector unless σ_{i+1} = 0."""
    s = _grid(sigmas)
    traj = [x] if return_trajectory else None
    for sigma, sigma_next in zip(s[:-1], s[1:], strict=True):
        x = _heun_step(denoiser, x, sigma, sigma_next)
        if traj is not None:
            traj.append(x)
    return _finish(x, traj)


@torch.no_grad()
def sample_edm(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
) -> Result:
    """EDM Alg. 2: churn σ_i → σ̂ = σ_i(1+γ_i) with fresh noise, then a Heun step σ̂ → σ_{i+1}.

    γ_i = min(s_churn/n, √2 − 1) for s_tmin ≤ σ_i ≤ s_tmax (else 0), n = len(sigmas) − 1;
    x̂ = x + sqrt(σ̂² − σ_i²)·s_noise·z. The trajectory records x after each full step (at σ_{i+1}).
    """
    if s_churn < 0 or s_noise < 0:
        raise ValueError("s_churn and s_noise must be non-negative")
    s = _grid(sigmas)
    n = len(s) - 1
    gamma_max = min(s_churn / n, math.sqrt(2.0) - 1.0)
    traj = [x] if return_trajectory else None
    for sigma, sigma_next in zip(s[:-1], s[1:], strict=True):
        gamma = gamma_max if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (1.0 + gamma)
        if gamma > 0:
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * _noise(x, generator)
        x = _heun_step(denoiser, x, sigma_hat, sigma_next)
        if traj is not None:
            traj.append(x)
    return _finish(x, traj)


@torch.no_grad()
def sample_euler_maruyama(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
) -> Result:
    """Euler–Maruyama on dx = −2σ∇log p_σ dσ + sqrt(2σ)dW̄: x ← x + 2Δ/σ·(D − x) + sqrt(2σΔ)·z, Δ = σ_i − σ_{i+1}."""
    s = _grid(sigmas)
    traj = [x] if return_trajectory else None
    for sigma, sigma_next in zip(s[:-1], s[1:], strict=True):
        delta = sigma - sigma_next
        x = x + (2.0 * delta / sigma) * (_denoise(denoiser, x, sigma) - x)
        x = x + math.sqrt(2.0 * sigma * delta) * _noise(x, generator)
        if traj is not None:
            traj.append(x)
    return _finish(x, traj)


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
) -> Result:
    """DDIM in σ-parametrisation; η = 0 is exactly :func:`sample_euler` (deterministic DDIM).

    For η > 0: σ_up = η·sqrt(σ_{i+1}²(σ_i² − σ_{i+1}²)/σ_i²), σ_down = sqrt(σ_{i+1}² − σ_up²),
    x ← D + σ_down·(x − D)/σ_i + σ_up·z.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if eta == 0.0:
        return sample_euler(denoiser, x, sigmas, return_trajectory=return_trajectory)
    s = _grid(sigmas)
    traj = [x] if return_trajectory else None
    for sigma, sigma_next in zip(s[:-1], s[1:], strict=True):
        d = _denoise(denoiser, x, sigma)
        sigma_up = eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
        sigma_down = math.sqrt(max(sigma_next**2 - sigma_up**2, 0.0))
        x = d + (sigma_down / sigma) * (x - d)
        if sigma_up > 0:
            x = x + sigma_up * _noise(x, generator)
        if traj is not None:
            traj.append(x)
    return _finish(x, traj)
