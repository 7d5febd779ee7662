import math

import pytest
import torch
from scipy.stats import norm
from torch import nn

from diffusion.precond import EDMPrecond, VEPrecond, VPPrecond


class ZeroNet(nn.Module):
    def forward(self, x, c_noise):
        return torch.zeros_like(x)


class RecordingNet(nn.Module):
    """F(x_in, c_noise) = x_in; remembers what it was called with."""

    def forward(self, x, c_noise):
        self.x_in, self.c_noise = x, c_noise
        return x


def _all(net):
    return [EDMPrecond(net, sigma_data=0.5), VPPrecond(net), VEPrecond(net)]


@pytest.mark.parametrize("sigma_kind", ["float", "0d", "vector", "column"])
def test_zero_net_gives_skip_connection(sigma_kind):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=gen)
    sig = torch.tensor([0.01, 0.3, 1.0, 7.0, 60.0])
    sigma = {"float": 0.7, "0d": torch.tensor(0.7), "vector": sig, "column": sig[:, None]}[sigma_kind]
    s = torch.full((5,), 0.7) if sigma_kind in ("float", "0d") else sig
    for pre in _all(ZeroNet()):
        c_skip = pre.coefficients(s)[0]
        D = pre(x, sigma)
        assert D.dtype == torch.float32 and D.shape == x.shape
        assert torch.allclose(D, c_skip[:, None] * x, rtol=1e-6, atol=1e-7)


def test_edm_coefficients_by_hand():
    sd = 0.5
    pre = EDMPrecond(ZeroNet(), sigma_data=sd)
    c_skip, c_out, c_in, c_noise = pre.coefficients(torch.tensor([sd], dtype=torch.float64))
    # at σ = σ_d: c_skip = 1/2, c_out = σ_d/√2, c_in = 1/(σ_d√2), c_noise = ¼ ln σ_d
    assert c_skip.item() == pytest.approx(0.5)
    assert c_out.item() == pytest.approx(sd / math.sqrt(2))
    assert c_in.item() == pytest.approx(1 / (sd * math.sqrt(2)))
    assert c_noise.item() == pytest.approx(0.25 * math.log(sd))


def test_edm_unit_variance_input_and_target():
    sd = 0.5
    pre = EDMPrecond(ZeroNet(), sigma_data=sd)
    sigmas = torch.tensor([0.002, 0.1, 0.5, 2.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, _ = pre.coefficients(sigmas)
    # analytic: Var(c_in x) = c_in²(σ_d² + σ²) and Var(target) = ((1−c_skip)²σ_d² + c_skip²σ²)/c_out² are both 1
    assert torch.allclose(c_in**2 * (sd**2 + sigmas**2), torch.ones_like(sigmas))
    assert torch.allclose(((1 - c_skip) ** 2 * sd**2 + c_skip**2 * sigmas**2) / c_out**2, torch.ones_like(sigmas))
    # Monte Carlo: x0 ~ N(0, σ_d²), x = x0 + σn, target = (x0 − c_skip x)/c_out. Both are Gaussian with variance 1
    # if the formulas are right, so each sample variance has standard error sqrt(2/(m−1)); z is the two-sided
    # Bonferroni quantile at family level 99.9% over the 2·5 checks (a correct formula fails for ≤ 0.1% of seeds).
    gen = torch.Generator().manual_seed(1)
    m = 200_000
    z = norm.ppf(1 - 1e-3 / (2 * 10))
    se = math.sqrt(2 / (m - 1))
    for j, sigma in enumerate(sigmas.tolist()):
        x0 = sd * torch.randn(m, generator=gen, dtype=torch.float64)
        x = x0 + sigma * torch.randn(m, generator=gen, dtype=torch.float64)
        target = (x0 - c_skip[j] * x) / c_out[j]
        assert abs((c_in[j] * x).var().item() - 1) < z * se
        assert abs(target.var().item() - 1) < z * se


def test_vp_by_hand():
    pre = VPPrecond(ZeroNet())
    # σ(1) = sqrt(e^{½β_d + β_min} − 1), σ(ε_t) with ε_t = 1e-5, computed with the standard library
    assert pre.sigma_max == pytest.approx(math.sqrt(math.exp(0.5 * 19.9 + 0.1) - 1), rel=1e-12)
    assert pre.sigma_min == pytest.approx(math.sqrt(math.expm1(0.5 * 19.9 * 1e-10 + 0.1 * 1e-5)), rel=1e-9)
    # c_noise = (M − 1)·t: at σ = σ(0.5) it must be 999·0.5
    sigma_half = math.sqrt(math.exp(0.5 * 19.9 * 0.25 + 0.1 * 0.5) - 1)
    c_skip, c_out, c_in, c_noise = pre.coefficients(torch.tensor([sigma_half, 1.0], dtype=torch.float64))
    assert c_noise[0].item() == pytest.approx(499.5, rel=1e-10)
    assert c_skip.tolist() == [1.0, 1.0]
    assert c_out[1].item() == -1.0 and c_in[1].item() == pytest.approx(1 / math.sqrt(2))


def test_ve_by_hand():
    pre = VEPrecond(ZeroNet())
    c_skip, c_out, c_in, c_noise = pre.coefficients(torch.tensor([2.0, 0.02], dtype=torch.float64))
    assert c_skip.tolist() == [1.0, 1.0] and c_in.tolist() == [1.0, 1.0]
    assert c_out.tolist() == [2.0, 0.02]
    assert c_noise[0].item() == 0.0 and c_noise[1].item() == pytest.approx(math.log(0.01))
    assert (pre.sigma_min, pre.sigma_max) == (0.02, 100.0)


@pytest.mark.parametrize("cls", [EDMPrecond, VPPrecond, VEPrecond])
def test_network_sees_scaled_input_and_per_sample_noise(cls):
    net = RecordingNet()
    pre = cls(net)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, 8, 8, generator=gen)
    sigma = torch.tensor([0.05, 0.5, 5.0, 50.0])
    D = pre(x, sigma)
    c_skip, c_out, c_in, c_noise = pre.coefficients(sigma)
    assert net.c_noise.shape == (4,) and torch.allclose(net.c_noise, c_noise)
    assert torch.allclose(net.x_in, c_in[:, None, None, None] * x)
    # with F = identity, D = (c_skip + c_out·c_in)·x per sample
    assert torch.allclose(D, (c_skip + c_out * c_in)[:, None, None, None] * x, rtol=1e-5, atol=1e-6)


class _LinearNet(nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.lin = lin

    def forward(self, x, c_noise):
        self.last_dtype = x.dtype
        return self.lin(x) + c_noise[:, None]


def test_float64_input_with_float32_network_and_gradients():
    wrapped = _LinearNet(nn.Linear(3, 3))
    pre = EDMPrecond(wrapped)
    x = torch.randn(6, 3, dtype=torch.float64)
    D = pre(x, torch.rand(6, dtype=torch.float64) + 0.1)
    assert D.dtype == torch.float64 and wrapped.last_dtype == torch.float32  # the net runs in its own dtype
    D.pow(2).sum().backward()
    grad = wrapped.lin.weight.grad
    assert grad is not None and torch.isfinite(grad).all()


def test_bad_sigma_size_raises():
    with pytest.raises(ValueError):
        EDMPrecond(ZeroNet())(torch.zeros(4, 2), torch.ones(3))
