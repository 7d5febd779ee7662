"""Preconditioning: turn a raw network F into a denoiser D(x; σ).

Every wrapper computes (Karras et al. 2022, arXiv 2206.00364, Eq. 7 and Table 1)

    D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ))

with the coefficients of Table 1 (σ_d = ``sigma_data``):

======  =====================  ======================  ======================  =================================
name    c_skip                 c_out                   c_in                    c_noise
======  =====================  ======================  ======================  =================================
VP      1                      −σ                      1/sqrt(σ²+1)            (M−1)·t(σ)
VE      1                      σ                       1                       ln(½σ)
EDM     σ_d²/(σ²+σ_d²)         σ·σ_d/sqrt(σ²+σ_d²)     1/sqrt(σ²+σ_d²)         ¼·ln σ
======  =====================  ======================  ======================  =================================

where for VP t(σ) = (sqrt(β_min² + 2β_d·ln(σ²+1)) − β_min)/β_d inverts σ(t) = sqrt(exp(½β_d t² + β_min t) − 1).
The VP network therefore predicts the noise ε (D = x − σ·F), the VE network predicts −ε (D = x + σ·F),
and EDM mixes skip and output so that the network's input c_in·x and its effective training target
(x₀ − c_skip·x)/c_out both have unit variance when the data have per-coordinate variance σ_d²
(see :meth:`EDMPrecond.coefficients`).

Conventions shared by the three classes:

- ``net(x_in, c_noise)`` receives ``x_in`` with the shape of ``x`` and ``c_noise`` of shape [N];
- ``sigma`` may be a Python float, a 0-d tensor, or any tensor with N elements (e.g. [N] or [N,1,1,1]);
- the coefficients are computed in float64 when ``x`` is float64 and in float32 otherwise, and the
  output has that dtype; ``x_in`` and ``c_noise`` are cast to the dtype of the network's parameters
  (if it has any) and F's output is cast back;
- ``sigma_min`` / ``sigma_max`` attributes give the noise range the parametrisation was designed for
  (VP: σ(ε_t) and σ(1); VE: 0.02 and 100, as in Table 1; EDM: 0 and ∞ — it has no built-in limits).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["Precond", "EDMPrecond", "VPPrecond", "VEPrecond", "sigma_per_sample"]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def sigma_per_sample(sigma: torch.Tensor | float, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """σ as a tensor of shape [N] (N = x.shape[0]) on x's device; a scalar is repeated N times."""
    n = x.shape[0]
    dtype = _compute_dtype(x) if dtype is None else dtype
    s = torch.as_tensor(sigma, dtype=dtype, device=x.device).reshape(-1)
    if s.numel() == 1:
        return s.expand(n)
    if s.numel() != n:
        raise ValueError(f"sigma has {s.numel()} elements; expected 1 or N = {n} (x has shape {tuple(x.shape)})")
    return s


def _bcast(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample [N] coefficient to [N, 1, …, 1] so it broadcasts against x."""
    return c.reshape(-1, *([1] * (x.ndim - 1)))


class Precond(nn.Module):
    """Base class: subclasses define ``coefficients(sigma) -> (c_skip, c_out, c_in, c_noise)``."""

    sigma_min: float = 0.0
    sigma_max: float = math.inf

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise)."""
        dtype = _compute_dtype(x)
        s = sigma_per_sample(sigma, x, dtype)
        c_skip, c_out, c_in, c_noise = self.coefficients(s)
        x = x.to(dtype)
        param = next(self.net.parameters(), None) if isinstance(self.net, nn.Module) else None
        net_dtype = dtype if param is None or not param.is_floating_point() else param.dtype
        F_x = self.net((_bcast(c_in, x) * x).to(net_dtype), c_noise.to(net_dtype))
        return _bcast(c_skip, x) * x + _bcast(c_out, x) * F_x.to(dtype)


class EDMPrecond(Precond):
    """EDM: c_skip = σ_d²/(σ²+σ_d²), c_out = σσ_d/sqrt(σ²+σ_d²), c_in = 1/sqrt(σ²+σ_d²), c_noise = ¼ ln σ.

    With x = x₀ + σε, x₀ of per-coordinate variance σ_d² independent of ε: Var(c_in·x) = 1 and the
    target of F, (x₀ − c_skip·x)/c_out, has variance ((1−c_skip)²σ_d² + c_skip²σ²)/c_out² = 1.
    """

    def __init__(
        self, net: nn.Module, sigma_data: float = 0.5, sigma_min: float = 0.0, sigma_max: float = math.inf
    ) -> None:
        super().__init__(net)
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.sigma_data = float(sigma_data)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / torch.sqrt(sigma**2 + sd2)
        c_in = 1.0 / torch.sqrt(sigma**2 + sd2)
        c_noise = 0.25 * torch.log(sigma)
        return c_skip, c_out, c_in, c_noise


class VPPrecond(Precond):
    """VP (DDPM-style): c_skip = 1, c_out = −σ, c_in = 1/sqrt(σ²+1), c_noise = (M−1)·t(σ).

    σ(t) = sqrt(exp(½β_d t² + β_min t) − 1) and its inverse
    t(σ) = (sqrt(β_min² + 2β_d ln(σ²+1)) − β_min)/β_d; sigma_min = σ(ε_t), sigma_max = σ(1).
    """

    def __init__(
        self, net: nn.Module, beta_d: float = 19.9, beta_min: float = 0.1, M: int = 1000, epsilon_t: float = 1e-5
    ) -> None:
        super().__init__(net)
        self.beta_d = float(beta_d)
        self.beta_min = float(beta_min)
        self.M = int(M)
        self.epsilon_t = float(epsilon_t)
        self.sigma_min = float(self.sigma(torch.tensor(epsilon_t, dtype=torch.float64)))
        self.sigma_max = float(self.sigma(torch.tensor(1.0, dtype=torch.float64)))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ(t) = sqrt(exp(½β_d t² + β_min t) − 1)."""
        return torch.sqrt(torch.expm1(0.5 * self.beta_d * t**2 + self.beta_min * t))

    def sigma_inv(self, sigma: torch.Tensor) -> torch.Tensor:
        """t(σ) = (sqrt(β_min² + 2β_d ln(1+σ²)) − β_min)/β_d."""
        return (torch.sqrt(self.beta_min**2 + 2.0 * self.beta_d * torch.log1p(sigma**2)) - self.beta_min) / self.beta_d

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c_skip = torch.ones_like(sigma)
        c_out = -sigma
        c_in = 1.0 / torch.sqrt(sigma**2 + 1.0)
        c_noise = (self.M - 1) * self.sigma_inv(sigma)
        return c_skip, c_out, c_in, c_noise


class VEPrecond(Precond):
    """VE (NCSN-style): c_skip = 1, c_out = σ, c_in = 1, c_noise = ln(½σ); σ ∈ [0.02, 100] by default."""

    def __init__(self, net: nn.Module, sigma_min: float = 0.02, sigma_max: float = 100.0) -> None:
        super().__init__(net)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c_skip = torch.ones_like(sigma)
        c_out = sigma
        c_in = torch.ones_like(sigma)
        c_noise = torch.log(0.5 * sigma)
        return c_skip, c_out, c_in, c_noise
