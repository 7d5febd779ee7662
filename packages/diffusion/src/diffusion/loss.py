"""Denoising score-matching loss with a pluggable noise-level distribution and weighting.

For data x₀, noise ε ~ N(0, I) and a noise level σ ~ p(σ), the per-sample loss is
(Karras et al. 2022, arXiv 2206.00364, Eq. 8)

    L(x₀) = λ(σ) · mean_j (D(x₀ + σε; σ)_j − x₀_j)²,

the mean running over the coordinates j of one sample. Its minimiser at each σ is the posterior
mean E[x₀ | x], i.e. the exact denoiser.

Noise-level distributions (all with ``.sample(n, generator=None) -> Tensor[n]`` and ``.name``):

* :class:`LogNormalSigma` — ln σ ~ N(P_mean, P_std²); EDM's default P_mean = −1.2, P_std = 1.2.
* :class:`LogUniformSigma` — ln σ ~ U(ln σ_min, ln σ_max) (the VE training distribution).
* :class:`BandLimited` — a base distribution conditioned on σ ∈ [lo, hi], sampled exactly by the
  inverse CDF, σ = F⁻¹(U(F(lo), F(hi))); used to train on high-σ only or low-σ only.

Weightings λ(σ):

* :func:`edm_weight` — λ = (σ² + σ_d²)/(σ·σ_d)² = 1/c_out(σ)² of the EDM preconditioning, so that
  the loss in terms of the network's output F has unit weight at every σ.
* :func:`unit_weight` — λ = 1.
* :func:`inverse_sigma2_weight` — λ = 1/σ² (the VP/VE choice of Song et al., as in EDM Table 1).

Samples are drawn on the generator's device (CPU without one) in float32; the inverse CDFs are
evaluated in float64 so that narrow tail bands keep their resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = [
    "SigmaDistribution",
    "LogNormalSigma",
    "LogUniformSigma",
    "BandLimited",
    "edm_weight",
    "unit_weight",
    "inverse_sigma2_weight",
    "denoising_loss",
]


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _uniform(n: int, generator: torch.Generator | None, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """n float64 draws from U(lo, hi) on the generator's device."""
    u = torch.rand(n, generator=generator, device=_device(generator), dtype=torch.float64)
    return lo + (hi - lo) * u


class SigmaDistribution:
    """A distribution of noise levels σ > 0 with a CDF and its inverse (both in σ)."""

    name: str = "sigma"

    def cdf(self, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n i.i.d. draws σ = F⁻¹(U), U ~ U(0, 1), float32 on the generator's device."""
        return self.icdf(_uniform(n, generator)).float()

    def __repr__(self) -> str:
        return self.name


class LogNormalSigma(SigmaDistribution):
    """ln σ ~ N(p_mean, p_std²); F(σ) = Φ((ln σ − p_mean)/p_std)."""

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2):
        if p_std <= 0:
            raise ValueError(f"p_std must be positive, got {p_std}")
        self.p_mean, self.p_std = float(p_mean), float(p_std)
        self.name = f"lognormal({self.p_mean:g},{self.p_std:g})"

    def cdf(self, sigma: torch.Tensor) -> torch.Tensor:
        z = (torch.log(torch.as_tensor(sigma, dtype=torch.float64)) - self.p_mean) / self.p_std
        return torch.special.ndtr(z)

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.p_mean + self.p_std * torch.special.ndtri(u.double()))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """σ = exp(p_mean + p_std·z), z ~ N(0, 1)."""
        z = torch.randn(n, generator=generator, device=_device(generator), dtype=torch.float64)
        return torch.exp(self.p_mean + self.p_std * z).float()


class LogUniformSigma(SigmaDistribution):
    """ln σ ~ U(ln σ_min, ln σ_max); F(σ) = (ln σ − ln σ_min)/(ln σ_max − ln σ_min) clipped to [0, 1]."""

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0):
        if not 0 < sigma_min < sigma_max < math.inf:
            raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.name = f"loguniform({self.sigma_min:g},{self.sigma_max:g})"
        self._a, self._b = math.log(self.sigma_min), math.log(self.sigma_max)

    def cdf(self, sigma: torch.Tensor) -> torch.Tensor:
        log_s = torch.log(torch.as_tensor(sigma, dtype=torch.float64))
        return ((log_s - self._a) / (self._b - self._a)).clamp(0.0, 1.0)

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        return torch.exp(self._a + (self._b - self._a) * u.double())


class BandLimited(SigmaDistribution):
    """``base`` conditioned on lo ≤ σ ≤ hi: σ = F⁻¹(F(lo) + U·(F(hi) − F(lo))), U ~ U(0, 1).

    Exact (no rejection), so a band far in the tail costs nothing extra. ``lo = 0`` / ``hi = inf``
    leave that side open. Raises ``ValueError`` when the band has no probability mass under ``base``.
    """

    def __init__(self, base: SigmaDistribution, lo: float = 0.0, hi: float = math.inf):
        if not 0 <= lo < hi:
            raise ValueError(f"need 0 <= lo < hi, got lo={lo}, hi={hi}")
        self.base, self.lo, self.hi = base, float(lo), float(hi)
        self._u_lo = float(base.cdf(torch.tensor(lo, dtype=torch.float64))) if lo > 0 else 0.0
        self._u_hi = float(base.cdf(torch.tensor(hi, dtype=torch.float64))) if hi < math.inf else 1.0
        if not self._u_hi > self._u_lo:
            raise ValueError(f"the band [{lo}, {hi}] has no mass under {base.name}")
        self.name = f"{base.name}|[{self.lo:g},{self.hi:g}]"

    @property
    def mass(self) -> float:
        """Probability of the band under the base distribution, F(hi) − F(lo)."""
        return self._u_hi - self._u_lo

    def cdf(self, sigma: torch.Tensor) -> torch.Tensor:
        return ((self.base.cdf(sigma) - self._u_lo) / self.mass).clamp(0.0, 1.0)

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        # clamp guards the float64 round-off of F⁻¹(F(lo)) at the band's edges
        return self.base.icdf(self._u_lo + self.mass * u.double()).clamp(self.lo, self.hi)


# ----------------------------------------------------------------------------------------- weights


def edm_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """λ(σ) = (σ² + σ_d²)/(σ·σ_d)² — equal to 1/c_out(σ)² of EDM's preconditioning."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def unit_weight(sigma: torch.Tensor) -> torch.Tensor:
    """λ(σ) = 1."""
    return torch.ones_like(sigma)


def inverse_sigma2_weight(sigma: torch.Tensor) -> torch.Tensor:
    """λ(σ) = 1/σ² (VP and VE training in EDM's Table 1)."""
    return 1.0 / sigma**2


# ----------------------------------------------------------------------------------------- loss


def denoising_loss(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    sigma_dist: SigmaDistribution,
    weight_fn: Callable[[torch.Tensor], torch.Tensor] = edm_weight,
    generator: torch.Generator | None = None,
    *,
    return_sigma: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Per-sample loss λ(σ)·mean_j (D(x₀ + σε; σ) − x₀)_j², shape [N].

    σ ~ ``sigma_dist`` (one per sample) and ε ~ N(0, I) are drawn from ``generator`` (on its
    device, then moved to x₀'s device and dtype). With ``return_sigma`` also returns the σ used.
    """
    n = x0.shape[0]
    sigma = sigma_dist.sample(n, generator).to(device=x0.device, dtype=x0.dtype)
    eps = torch.randn(x0.shape, generator=generator, device=_device(generator), dtype=x0.dtype).to(x0.device)
    sig = sigma.reshape(-1, *([1] * (x0.ndim - 1)))
    d = denoiser(x0 + sig * eps, sigma)
    loss = weight_fn(sigma) * (d - x0).square().reshape(n, -1).mean(dim=1)
    return (loss, sigma) if return_sigma else loss
