import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from diffusion.data import GaussianMixture
from diffusion.exact import gaussian_denoiser
from diffusion.samplers import sample_ddim, sample_edm, sample_euler, sample_euler_maruyama, sample_heun
from diffusion.schedules import karras_sigmas

# Family level of the Monte-Carlo checks: a correct sampler fails one test for at most 0.1% of seeds
# (two-sided Bonferroni over all the comparisons in that test).
FAMILY_ALPHA = 1e-3
N_SAMPLES = 20_000


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# --------------------------------------------------------------------- second order vs first order


def test_heun_second_order_euler_first_order_on_gaussian_ode():
    """Single Gaussian N(μ, s²I): D = μ + s²/(s²+σ²)(x − μ), and the ODE dx/dσ = (x − D)/σ has the solution
    x(σ) = μ + (x(σ_max) − μ)·sqrt((s² + σ²)/(s² + σ_max²)). Grid: Karras (ρ = 7) from 80 down to σ_min = 0.01,
    without the final 0 (the last Euler step to 0 has a fixed size σ_min, which would hide the order)."""
    mu, s = torch.tensor([0.3, -0.2], dtype=torch.float64), 0.5
    den = gaussian_denoiser(mu, s**2)
    sigma_min, sigma_max = 0.01, 80.0
    x_start = mu + sigma_max * torch.tensor([[0.2, -0.9], [-1.3, 0.4], [0.05, 1.1]], dtype=torch.float64)
    exact = mu + (x_start - mu) * math.sqrt((s**2 + sigma_min**2) / (s**2 + sigma_max**2))
    steps = [16, 32, 64, 128]
    errors = {}
    for sampler in (sample_euler, sample_heun):
        errors[sampler] = [
            (sampler(den, x_start, karras_sigmas(n, sigma_min, sigma_max)[:-1]) - exact).norm().item() for n in steps
        ]
    # No randomness: the error is C·n^(−p)·(1 + O(1/n)), so the log-log slope over n = 32…128 differs from −p by
    # O(1/32); measured here ≈ −2.07 (Heun) and −1.004 (Euler). ±0.15 separates orders 1 and 2 with room.
    slope = {f: np.polyfit(np.log(steps[1:]), np.log(errors[f][1:]), 1)[0] for f in errors}
    assert abs(slope[sample_heun] + 2.0) < 0.15, slope
    assert abs(slope[sample_euler] + 1.0) < 0.15, slope
    assert errors[sample_heun][-1] < 0.1 * errors[sample_euler][-1]


# ------------------------------------------------------------------------------ mixture reproduction


def _mixture() -> GaussianMixture:
    """Four anisotropic 2-D components with unequal weights; centres ≥ 0.6 apart, component std ≤ 0.06."""
    means = torch.tensor([[-0.6, -0.4], [0.6, -0.4], [0.0, 0.6], [0.65, 0.45]], dtype=torch.float64)
    covs = []
    for angle in (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4):
        c, s = math.cos(angle), math.sin(angle)
        R = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        covs.append(R @ torch.diag(torch.tensor([0.06**2, 0.03**2], dtype=torch.float64)) @ R.T)
    return GaussianMixture(means, torch.stack(covs), torch.tensor([0.4, 0.3, 0.2, 0.1]))


def _mixture_z_scores(y: torch.Tensor, mix: GaussianMixture) -> np.ndarray:
    """|z| of every moment check: mode weights, per-mode means, variances and covariance, pooled spread.

    Samples are assigned to the component with the largest posterior at σ = 0 (components are > 10 std apart, so
    misassignment is negligible). Standard errors for n_k i.i.d. Gaussian draws: weight sqrt(w(1−w)/N); mean
    sqrt(Σ_dd/n_k); variance Σ_dd·sqrt(2/(n_k−1)); covariance sqrt((Σ_11Σ_22 + Σ_12²)/n_k). Pooled spread: the
    whitened within-mode spread tr(Σ_k⁻¹Ĉ_k)/D averaged over samples (weights n_k/N); (n_k−1)·tr(Σ_k⁻¹Ĉ_k) is
    χ² with (n_k−1)·D degrees of freedom, so with D = 2 the pooled value has standard error ≈ sqrt(1/N).
    """
    y = y.double()
    n = y.shape[0]
    labels = mix.denoiser().posterior(y, 0.0).argmax(1)
    covs = mix.covariance_matrices()
    z, spread = [], 0.0
    for k in range(mix.n_components):
        yk = y[labels == k]
        nk, w, S = yk.shape[0], mix.weights[k].item(), covs[k]
        z.append((nk / n - w) / math.sqrt(w * (1 - w) / n))
        m = yk.mean(0)
        C = torch.cov(yk.T)
        for d in range(2):
            z.append((m[d] - mix.means[k, d]).item() / math.sqrt(S[d, d].item() / nk))
            z.append((C[d, d] - S[d, d]).item() / (S[d, d].item() * math.sqrt(2 / (nk - 1))))
        z.append((C[0, 1] - S[0, 1]).item() / math.sqrt((S[0, 0] * S[1, 1] + S[0, 1] ** 2).item() / nk))
        spread += torch.trace(torch.linalg.solve(S, C)).item() / 2 * nk / n
    z.append((spread - 1.0) / math.sqrt(1 / n))
    return np.abs(np.array(z))


def _limit(mix: GaussianMixture) -> float:
    return float(norm.ppf(1 - FAMILY_ALPHA / (2 * (6 * mix.n_components + 1))))


def _exact_start(mix: GaussianMixture, sigma_max: float, gen: torch.Generator) -> torch.Tensor:
    """x ~ p_σmax exactly: x₀ from the mixture plus σ_max·ε."""
    x0, _ = mix.sample(N_SAMPLES, generator=gen, dtype=torch.float64)
    return x0 + sigma_max * torch.randn(x0.shape, generator=gen, dtype=torch.float64)


# Sampler settings below. Their discretisation bias in the pooled whitened spread, measured on this mixture (60,000
# samples, or 8 seeds × 20,000; standard error ≈ 0.4%): Heun 128 steps from σ = 80 ≈ +0.3%, EDM 128 steps with
# S_churn = 20 +0.0%, Euler–Maruyama 512 steps +0.3% — small against the pooled tolerance 4.1·sqrt(1/N) ≈ 2.9% at
# N = 20,000. Fewer steps cost visible bias on the 0.03-std directions (Heun 64 steps +1.0 to +1.4%, EM 256 steps
# +1.5%, EDM 64 steps with churn 10 +1.5%), which would use up half the tolerance.


def test_heun_reproduces_mixture():
    mix = _mixture()
    gen = torch.Generator().manual_seed(10)
    x = 80.0 * torch.randn(N_SAMPLES, 2, generator=gen, dtype=torch.float64)
    y = sample_heun(mix.denoiser(), x, karras_sigmas(128, 0.002, 80.0))
    assert _mixture_z_scores(y, mix).max() < _limit(mix)


def test_edm_churn_reproduces_mixture():
    mix = _mixture()
    gen = torch.Generator().manual_seed(11)
    sigmas = karras_sigmas(128, 0.002, 5.0)
    y = sample_edm(mix.denoiser(), _exact_start(mix, 5.0, gen), sigmas, s_churn=20.0, generator=gen)
    assert _mixture_z_scores(y, mix).max() < _limit(mix)


def test_euler_maruyama_reproduces_mixture():
    mix = _mixture()
    gen = torch.Generator().manual_seed(12)
    sigmas = karras_sigmas(512, 0.002, 5.0)
    y = sample_euler_maruyama(mix.denoiser(), _exact_start(mix, 5.0, gen), sigmas, generator=gen)
    assert _mixture_z_scores(y, mix).max() < _limit(mix)


def test_mixture_check_rejects_a_coarse_sampler():
    """Power of the check above: 8 Euler steps inflate the within-mode spread and are rejected."""
    mix = _mixture()
    gen = torch.Generator().manual_seed(13)
    x = 80.0 * torch.randn(N_SAMPLES, 2, generator=gen, dtype=torch.float64)
    y = sample_euler(mix.denoiser(), x, karras_sigmas(8, 0.002, 80.0))
    assert _mixture_z_scores(y, mix).max() > _limit(mix)


# ------------------------------------------------------------------------------ contract details


def test_determinism_and_special_cases():
    mix = _mixture()
    den = mix.denoiser()
    sigmas = karras_sigmas(10, 0.002, 80.0)
    x = 80.0 * torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    for sampler, kw in [(sample_edm, {"s_churn": 5.0}), (sample_euler_maruyama, {}), (sample_ddim, {"eta": 1.0})]:
        a = sampler(den, x, sigmas, generator=torch.Generator().manual_seed(1), **kw)
        b = sampler(den, x, sigmas, generator=torch.Generator().manual_seed(1), **kw)
        c = sampler(den, x, sigmas, generator=torch.Generator().manual_seed(2), **kw)
        assert torch.equal(a, b) and not torch.allclose(a, c)
    # no churn: EDM's Algorithm 2 is Heun; DDIM with η = 0 is Euler
    assert torch.equal(sample_edm(den, x, sigmas), sample_heun(den, x, sigmas))
    assert torch.equal(sample_ddim(den, x, sigmas), sample_euler(den, x, sigmas))
    # churn only inside [s_tmin, s_tmax]: an empty window is Heun again
    assert torch.equal(sample_edm(den, x, sigmas, s_churn=5.0, s_tmin=100.0), sample_heun(den, x, sigmas))


def test_denoiser_call_contract_and_trajectory():
    calls = []

    def den(x, sigma):
        calls.append((sigma.shape, sigma.dtype, float(sigma[0])))
        return torch.zeros_like(x)

    sigmas = karras_sigmas(4, 0.1, 10.0)
    x = 10.0 * torch.randn(3, 2)
    y, traj = sample_heun(den, x, sigmas, return_trajectory=True)
    assert traj.shape == (5, 3, 2) and torch.equal(traj[0], x) and torch.equal(traj[-1], y)
    assert all(shape == (3,) and dtype == torch.float32 for shape, dtype, _ in calls)
    assert len(calls) == 2 * 4 - 1  # Heun: no correction on the last step to σ = 0
    # with D ≡ 0 the ODE dx/dσ = x/σ is solved exactly by x·σ/σ_max: the last Euler step lands on 0
    assert torch.allclose(traj[1], x * sigmas[1].item() / 10.0, rtol=1e-5)
    assert torch.all(y == 0)
    with pytest.raises(ValueError):
        sample_euler(den, x, torch.tensor([1.0, 2.0]))
