"""Noise-level distributions, EDM weighting identity, and the denoising loss.

Monte-Carlo tolerances are z·SE with z = 5 (two-sided p ≈ 6e-7 per check, so the file's ~15 MC
checks together fail by chance with probability < 1e-5); every generator is seeded, so a run is
reproducible, and the SEs are computed from the samples themselves.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from diffusion.data import ring_mixture
from diffusion.loss import (
    BandLimited,
    LogNormalSigma,
    LogUniformSigma,
    denoising_loss,
    edm_weight,
    inverse_sigma2_weight,
    unit_weight,
)
from diffusion.precond import EDMPrecond

Z = 5.0
N = 200_000


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_mean(values: torch.Tensor, expected: float) -> None:
    v = values.double()
    se = float(v.std()) / math.sqrt(v.numel())
    assert abs(float(v.mean()) - expected) < Z * se, (float(v.mean()), expected, se)


class FixedSigma:
    """Degenerate p(σ) = δ(σ − s), to evaluate the loss at one noise level."""

    def __init__(self, s: float):
        self.s, self.name = s, f"fixed({s})"

    def sample(self, n, generator=None):
        return torch.full((n,), self.s)


# ----------------------------------------------------------------------------------------- distributions


def test_lognormal_moments():
    dist = LogNormalSigma(-1.2, 1.2)
    log_s = dist.sample(N, _gen(0)).double().log()
    _assert_mean(log_s, -1.2)
    # SE of a sample variance of a normal: s²·sqrt(2/(n−1))
    var = float(log_s.var())
    assert abs(var - 1.44) < Z * 1.44 * math.sqrt(2 / (N - 1))
    assert dist.name == "lognormal(-1.2,1.2)"


def test_loguniform_moments_and_range():
    dist = LogUniformSigma(0.002, 80.0)
    s = dist.sample(N, _gen(1)).double()
    a, b = math.log(0.002), math.log(80.0)
    assert s.min() >= 0.002 * (1 - 1e-6) and s.max() <= 80.0 * (1 + 1e-6)  # float32 rounding of the ends
    _assert_mean(s.log(), (a + b) / 2)
    # variance of U(a, b) is (b − a)²/12; SE of the sample variance of a uniform ≈ sqrt((μ₄ − σ⁴)/n),
    # μ₄ = (b − a)⁴/80
    var_true = (b - a) ** 2 / 12
    se_var = math.sqrt(((b - a) ** 4 / 80 - var_true**2) / N)
    assert abs(float(s.log().var()) - var_true) < Z * se_var


@pytest.mark.parametrize(("lo", "hi"), [(0.5, 2.0), (20.0, math.inf), (0.0, 0.01)])
def test_band_limited_lognormal(lo, hi):
    p_mean, p_std = -1.2, 1.2
    dist = BandLimited(LogNormalSigma(p_mean, p_std), lo, hi)
    s = dist.sample(N // 4, _gen(2)).double()
    # float32 output: the band edges hold up to float32 rounding
    assert s.min() >= lo * (1 - 1e-6) and s.max() <= hi * (1 + 1e-6)
    # ln σ is a truncated normal: mean μ + s·(φ(α) − φ(β))/(Φ(β) − Φ(α)), α, β the standardised ends
    alpha = (math.log(lo) - p_mean) / p_std if lo > 0 else -math.inf
    beta = (math.log(hi) - p_mean) / p_std if hi < math.inf else math.inf
    mass = norm.cdf(beta) - norm.cdf(alpha)
    expected = p_mean + p_std * (norm.pdf(alpha) - norm.pdf(beta)) / mass
    _assert_mean(s.log(), expected)
    assert dist.mass == pytest.approx(mass, rel=1e-9)


def test_band_limited_loguniform_and_errors():
    dist = BandLimited(LogUniformSigma(0.01, 100.0), 1.0, 1000.0)  # effective band [1, 100]
    s = dist.sample(N // 4, _gen(3)).double()
    assert s.min() >= 1.0 * (1 - 1e-6) and s.max() <= 100.0 * (1 + 1e-6)
    _assert_mean(s.log(), math.log(100.0) / 2)  # uniform in [ln 1, ln 100]
    with pytest.raises(ValueError, match="no mass"):
        BandLimited(LogUniformSigma(0.01, 1.0), 2.0, 3.0)
    with pytest.raises(ValueError):
        BandLimited(LogNormalSigma(), 2.0, 1.0)


def test_sampling_is_reproducible():
    for dist in (LogNormalSigma(), LogUniformSigma(), BandLimited(LogNormalSigma(), 0.1, 1.0)):
        assert torch.equal(dist.sample(100, _gen(7)), dist.sample(100, _gen(7)))
        assert not torch.equal(dist.sample(100, _gen(7)), dist.sample(100, _gen(8)))


# ----------------------------------------------------------------------------------------- weighting


def test_edm_weight_times_c_out_squared_is_one():
    sigma = torch.logspace(-3, 2, 41, dtype=torch.float64)
    for sigma_data in (0.5, 1.3):
        _, c_out, _, _ = EDMPrecond(torch.nn.Identity(), sigma_data).coefficients(sigma)
        assert torch.allclose(edm_weight(sigma, sigma_data) * c_out**2, torch.ones_like(sigma), rtol=1e-12)

    # the same through the public forward: with F ≡ 1 and x = 0, D(0; σ) = c_out(σ)
    class One(torch.nn.Module):
        def forward(self, x, c_noise):
            return torch.ones_like(x)

    d = EDMPrecond(One(), 0.5)(torch.zeros(41, 1, dtype=torch.float64), sigma)[:, 0]
    assert torch.allclose(edm_weight(sigma, 0.5) * d**2, torch.ones_like(sigma), rtol=1e-12)


class Zero(torch.nn.Module):
    def forward(self, x, c_noise):
        return torch.zeros_like(x)


@pytest.mark.parametrize("sigma", [0.002, 0.1, 0.5, 2.0, 80.0])
def test_edm_loss_has_unit_effective_weight_at_init(sigma):
    """F ≡ 0, x₀ ~ N(0, σ_d² I): E λ‖c_skip·x − x₀‖²/D = λ·c_out² = 1 at every σ (derivation in loss docs)."""
    sigma_data = 0.5
    x0 = sigma_data * torch.randn(20_000, 8, generator=_gen(4))
    loss = denoising_loss(EDMPrecond(Zero(), sigma_data), x0, FixedSigma(sigma), edm_weight, _gen(5))
    assert loss.shape == (20_000,)
    _assert_mean(loss, 1.0)


def test_weights_and_return_sigma():
    sigma = torch.tensor([0.1, 1.0, 10.0])
    assert torch.equal(unit_weight(sigma), torch.ones(3))
    assert torch.allclose(inverse_sigma2_weight(sigma), torch.tensor([100.0, 1.0, 0.01]))
    x0 = torch.randn(64, 3, generator=_gen(6))
    den = EDMPrecond(Zero())
    unit, s = denoising_loss(den, x0, LogNormalSigma(), unit_weight, _gen(9), return_sigma=True)
    edm = denoising_loss(den, x0, LogNormalSigma(), edm_weight, _gen(9))
    assert torch.allclose(edm, unit * edm_weight(s), rtol=1e-5)


# ----------------------------------------------------------------------------------------- loss


def test_exact_gmm_denoiser_beats_zero_network():
    """The exact posterior mean minimises the loss at every σ, so its loss is below F ≡ 0 (D = c_skip·x)."""
    gm = ring_mixture(4)
    x0, _ = gm.sample(20_000, _gen(10))
    x0 = x0.double()
    dist = LogNormalSigma()
    exact = denoising_loss(gm.denoiser(), x0, dist, edm_weight, _gen(11))
    zero = denoising_loss(EDMPrecond(Zero()), x0, dist, edm_weight, _gen(11))  # same σ and ε: paired
    diff = zero - exact
    se = float(diff.std()) / math.sqrt(diff.numel())
    assert float(diff.mean()) > Z * se
    assert float(exact.mean()) < float(zero.mean())
