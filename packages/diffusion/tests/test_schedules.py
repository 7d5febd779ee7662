import math

import pytest
import torch

from diffusion.schedules import (
    geometric_sigmas,
    karras_sigmas,
    sigma_bin_centers,
    sigma_bin_index,
    sigma_bins,
    vp_sigma,
    vp_sigmas,
)


def test_karras_shape_ends_and_order():
    s = karras_sigmas(18, 0.002, 80.0)
    assert s.dtype == torch.float64 and s.shape == (19,)
    assert s[0].item() == 80.0 and s[-2].item() == 0.002 and s[-1].item() == 0.0
    assert bool((s[1:] < s[:-1]).all())


def test_karras_matches_formula_by_hand():
    # n = 3, rho = 7: the middle level is the average of the end points in σ^{1/7}, raised to the 7th power
    a, b = 80.0 ** (1 / 7), 0.002 ** (1 / 7)
    s = karras_sigmas(3, 0.002, 80.0)
    assert s[1].item() == pytest.approx(((a + b) / 2) ** 7, rel=1e-12)
    # rho = 1 is the uniform grid in σ
    assert torch.allclose(
        karras_sigmas(5, 1.0, 5.0, rho=1.0)[:-1], torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    )


def test_karras_single_step_and_bad_arguments():
    assert karras_sigmas(1, 0.5, 3.0).tolist() == [3.0, 0.0]
    for args in [(0, 0.002, 80.0), (5, 0.0, 80.0), (5, 1.0, 0.5), (5, 0.002, math.inf)]:
        with pytest.raises(ValueError):
            karras_sigmas(*args)
    with pytest.raises(ValueError):
        karras_sigmas(5, 0.002, 80.0, rho=0.0)


def test_geometric_has_constant_ratio():
    s = geometric_sigmas(11, 0.01, 100.0)
    ratios = s[1:-1] / s[:-2]
    assert torch.allclose(ratios, torch.full_like(ratios, (0.01 / 100.0) ** (1 / 10)), rtol=1e-12)
    assert s[0].item() == 100.0 and s[-2].item() == 0.01 and s[-1].item() == 0.0


def test_vp_grid_end_points_by_hand():
    s = vp_sigmas(10, epsilon_s=1e-3)
    # σ(1) = sqrt(exp(½·19.9 + 0.1) − 1) and σ(ε_s) computed with the standard library
    assert s[0].item() == pytest.approx(math.sqrt(math.exp(0.5 * 19.9 + 0.1) - 1), rel=1e-12)
    assert s[-2].item() == pytest.approx(math.sqrt(math.expm1(0.5 * 19.9 * 1e-6 + 0.1 * 1e-3)), rel=1e-12)
    assert s[-1].item() == 0.0 and bool((s[1:] < s[:-1]).all())
    assert vp_sigma(0.0).item() == 0.0


def test_sigma_bins_edges_centres_and_index():
    edges = sigma_bins(4, 0.01, 100.0)
    assert torch.allclose(edges, torch.tensor([0.01, 0.1, 1.0, 10.0, 100.0], dtype=torch.float64), rtol=1e-12)
    centres = sigma_bin_centers(edges)
    assert torch.allclose(centres, torch.sqrt(edges[:-1] * edges[1:]))
    assert sigma_bin_index(centres, edges).tolist() == [0, 1, 2, 3]
    # edges belong to the bin on their right; values outside the range are clipped into the end bins
    assert sigma_bin_index(torch.tensor([1e-5, 0.1, 1.0, 99.9, 1e6]), edges).tolist() == [0, 1, 2, 3, 3]
    with pytest.raises(ValueError):
        sigma_bins(0, 0.01, 1.0)
