"""The exact SGD risk recursions: closed forms, structure, and agreement with Monte Carlo."""

import numpy as np
import pytest

from optim_theory.linreg import bounds, exact, spectra
from optim_theory.montecarlo import simulate_sgd


def test_one_dimension_matches_gaussian_fourth_moment():
    # d = 1, B = 1, σ = 0: e' = (1 − η x²) e with x ~ N(0, λ), E x⁴ = 3λ², so
    # E e'² = (1 − 2ηλ + 3η²λ²) E e². Independent of the general recursion's derivation.
    lam, eta, m0, T = 0.7, 0.2, 2.0, 7
    risk = exact.sgd_excess_risk([lam], [m0], 0.0, np.full(T, eta))
    factor = 1 - 2 * eta * lam + 3 * eta**2 * lam**2
    np.testing.assert_allclose(risk, lam * m0 * factor ** np.arange(T + 1), rtol=1e-13)


def test_one_dimension_batch_b_closed_form():
    # Batch B: E(1 − η Ĥ)² with Ĥ = mean of B i.i.d. x²: E Ĥ² = λ² + 2λ²/B.
    lam, eta, m0, B, T = 1.3, 0.1, 0.5, 4, 5
    risk = exact.sgd_excess_risk([lam], [m0], 0.0, np.full(T, eta), B)
    factor = 1 - 2 * eta * lam + eta**2 * lam**2 * (1 + 2 / B)
    assert risk[-1] == pytest.approx(lam * m0 * factor**T, rel=1e-13)


def test_bias_plus_variance_is_total():
    lam = spectra.power_law(50, 1.5)
    m0 = spectra.source_prior(lam, 2.0)
    lrs = np.geomspace(0.3, 0.01, 200)
    total = exact.sgd_excess_risk(lam, m0, 0.7, lrs, 3)
    bias, var = exact.sgd_bias_variance(lam, m0, 0.7, lrs, 3)
    np.testing.assert_allclose(bias + var, total, rtol=1e-12)
    tail = exact.sgd_tail_average_risk(lam, m0, 0.7, lrs, 3, start=50)
    tb, tv = exact.sgd_tail_average_bias_variance(lam, m0, 0.7, lrs, 3, start=50)
    assert tb + tv == pytest.approx(tail, rel=1e-12)


def test_stationary_risk_is_the_limit_of_the_recursion():
    lam = spectra.power_law(30, 2.0)
    for B in (1, 5):
        eta = 0.4
        limit = exact.sgd_stationary_risk(lam, 0.5, eta, B)
        risk = exact.sgd_excess_risk(lam, np.zeros_like(lam), 0.5, np.full(20000, eta), B)
        assert risk[-1] == pytest.approx(limit, rel=1e-6)
    # far too large a stepsize: no fixed point
    assert exact.sgd_stationary_risk(lam, 0.5, 5.0) == float("inf")


def test_huge_batch_is_gradient_descent():
    lam = np.array([1.0, 0.3, 0.01])
    m0 = np.array([1.0, 2.0, 3.0])
    T, eta = 40, 0.5
    risk = exact.sgd_excess_risk(lam, m0, 1.0, np.full(T, eta), 10**12)
    gd = np.array([np.sum(lam * m0 * (1 - eta * lam) ** (2 * t)) for t in range(T + 1)])
    np.testing.assert_allclose(risk, gd, rtol=1e-9)


def test_tail_average_of_noiseless_gradient_descent_closed_form():
    # B → ∞ and σ = 0: w̄ − w* = (1/n) Σ_{t=s+1}^{T} (1 − ηλ)^t e0 coordinate-wise.
    lam = np.array([0.9, 0.2, 0.05])
    m0 = np.array([1.0, 1.0, 4.0])
    T, s, eta = 30, 11, 0.7
    tail = exact.sgd_tail_average_risk(lam, m0, 0.0, np.full(T, eta), 10**12, start=s)
    t = np.arange(s + 1, T + 1)
    mean_factor = np.array([np.mean((1 - eta * li) ** t) for li in lam])
    assert tail == pytest.approx(np.sum(lam * m0 * mean_factor**2), rel=1e-9)


def test_grid_of_schedules_matches_one_by_one():
    lam = spectra.power_law(20, 1.5)
    m0 = np.ones(20)
    grid = np.stack([np.full(60, 0.2), np.geomspace(0.4, 0.02, 60), np.r_[np.full(30, 0.3), np.full(30, 0.1)]])
    batches = np.stack([np.full(60, 1), np.full(60, 2), np.r_[np.full(30, 1), np.full(30, 4)]])
    together = exact.sgd_excess_risk(lam, m0, 0.3, grid, batches)
    assert together.shape == (3, 61)
    for k in range(3):
        np.testing.assert_allclose(together[k], exact.sgd_excess_risk(lam, m0, 0.3, grid[k], batches[k]), rtol=1e-14)
    tails = exact.sgd_tail_average_risk(lam, m0, 0.3, grid, batches, start=20)
    for k in range(3):
        assert tails[k] == pytest.approx(exact.sgd_tail_average_risk(lam, m0, 0.3, grid[k], batches[k], start=20))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eigs": [-1.0, 1.0]}, "eigs"),
        ({"m0": [1.0]}, "m0"),
        ({"lrs": np.ones((2, 2, 2))}, "lrs"),
        ({"lrs": []}, "lrs"),
        ({"batch_sizes": 0}, "batch_sizes"),
        ({"batch_sizes": 1.5}, "batch_sizes"),
        ({"noise_var": -1.0}, "noise_var"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, message):
    args = {"eigs": [1.0, 0.5], "m0": [1.0, 1.0], "noise_var": 1.0, "lrs": [0.1, 0.1], "batch_sizes": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        exact.sgd_excess_risk(**args)


def test_divergence_is_reported():
    with pytest.raises(FloatingPointError, match="diverged"):
        exact.sgd_excess_risk([1.0, 1.0], [1.0, 1.0], 1.0, np.full(5000, 3.0))


@pytest.mark.parametrize("batch", [1, 3])
def test_exact_risk_inside_monte_carlo_intervals(batch):
    """Exact values lie inside simultaneous 95% Monte-Carlo intervals (last iterate + tail)."""
    lam = spectra.power_law(6, 1.5)
    m0 = spectra.source_prior(lam, 2.0)
    noise = 0.5
    lrs = np.r_[np.full(40, 0.35), np.full(40, 0.12)]  # a step decay: exercises varying η_t
    record = np.array([5, 20, 40, 60, 80])  # t = 0 is deterministic: no interval
    sim = simulate_sgd(lam, m0, noise, lrs, batch, runs=20000, seed=7 + batch, record_steps=record, tail_start=30)
    exact_curve = exact.sgd_excess_risk(lam, m0, noise, lrs, batch)[record]
    exact_tail = exact.sgd_tail_average_risk(lam, m0, noise, lrs, batch, start=30)
    lo, hi = sim.interval(sim.last, simultaneous=record.size)
    assert np.all((lo <= exact_curve) & (exact_curve <= hi)), (lo, exact_curve, hi)
    tlo, thi = sim.interval(sim.tail[:, None])
    assert tlo[0] <= exact_tail <= thi[0]
    # and the interval is informative: a 5% error in the exact tail value would be detected
    assert thi[0] - tlo[0] < 0.05 * exact_tail


def test_zou_effective_dimension_and_variance_form():
    lam = np.array([1.0, 0.5, 0.1, 0.01])
    # γN = 20: λ ≥ 0.05 → k* = 3
    assert bounds.effective_dim(lam, 0.1, 200) == 3
    assert bounds.zou_variance_bound(lam, 2.0, 0.1, 200) == pytest.approx(2.0 * (3 / 200 + 200 * 0.01 * 1e-4))


def test_spectra():
    lam = spectra.power_law(4, 2.0)
    np.testing.assert_allclose(lam, [1, 1 / 4, 1 / 9, 1 / 16])
    m0 = spectra.source_prior(lam, 3.0)
    np.testing.assert_allclose(lam * m0, np.arange(1, 5) ** -3.0)
    with pytest.raises(ValueError, match="dim"):
        spectra.power_law(0, 2.0)


def _random_problem(d=40, K=3, T=120, seed=0):
    rng = np.random.default_rng(seed)
    lam = np.sort(rng.uniform(0.01, 1.0, d))[::-1]
    m0 = rng.uniform(0, 2, (K, d))
    lrs = rng.uniform(0.05, 0.4, (K, T)) / lam.sum() * 3
    batches = rng.integers(1, 5, (K, T))
    return lam, m0, lrs, batches


@pytest.mark.parametrize("normalised", [False, True])
def test_fused_kernel_matches_numpy_reference(normalised):
    lam, m0, lrs, batches = _random_problem()
    noise = np.array([0.0, 0.5, 2.0])
    args = exact._prepare(lam, m0, noise, lrs, batches)[:5]
    fast = exact._run(*args, 50, lrs.shape[1], normalised=normalised, mult=np.arange(1, 41) % 3 + 1.0)
    ref = exact._run(*args, 50, lrs.shape[1], normalised=normalised, reference=True, mult=np.arange(1, 41) % 3 + 1.0)
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11)


def test_nsgd_normaliser_and_risk_inside_monte_carlo_intervals():
    """NSGD = SGD with stepsize η/sqrt(E‖g‖²): check E‖g‖² and the risk against simulation."""
    lam = spectra.power_law(6, 1.5)
    m0 = spectra.source_prior(lam, 2.0)
    noise, B = 0.5, 2
    lrs = np.r_[np.full(30, 0.4), np.full(30, 0.2)]
    taken = exact.nsgd_effective_lrs(lam, m0, noise, lrs, B)
    risk = exact.nsgd_excess_risk(lam, m0, noise, lrs, B)
    record = np.array([0, 10, 30, 45])
    sim = simulate_sgd(lam, m0, noise, taken, B, runs=20000, seed=3, record_steps=np.r_[record, 60])
    # E‖g_t‖² from the formula equals (η_t / taken_t)²
    g2_exact = (lrs[record] / taken[record]) ** 2
    lo, hi = sim.interval(sim.grad_sq[:, : record.size], simultaneous=record.size)
    assert np.all((lo <= g2_exact) & (g2_exact <= hi)), (lo, g2_exact, hi)
    lo, hi = sim.interval(sim.last[:, 1:], simultaneous=record.size)
    exact_risk = risk[np.r_[record[1:], 60]]
    assert np.all((lo <= exact_risk) & (exact_risk <= hi)), (lo, exact_risk, hi)


def test_nsgd_is_scale_free_in_the_stepsize_normaliser():
    # Doubling σ² and m0 doubles E‖g‖², so NSGD with η·√2 takes the same steps relative to the
    # problem: risks scale exactly by 2.
    lam = spectra.power_law(30, 2.0)
    m0 = np.ones(30)
    lrs = np.full(80, 0.3)
    a = exact.nsgd_excess_risk(lam, m0, 0.7, lrs, 3)
    b = exact.nsgd_excess_risk(lam, 2 * m0, 1.4, np.sqrt(2) * lrs, 3)
    np.testing.assert_allclose(b, 2 * a, rtol=1e-12)


def test_batch_ramp_schedule_inside_monte_carlo_intervals():
    lam = spectra.power_law(5, 1.5)
    m0 = spectra.source_prior(lam, 2.0)
    lrs = np.r_[np.full(20, 0.3), np.full(20, 0.3 / np.sqrt(2)), np.full(20, 0.15)]
    batches = np.r_[np.full(20, 1), np.full(20, 2), np.full(20, 4)]
    record = np.array([10, 20, 40, 60])
    sim = simulate_sgd(lam, m0, 0.5, lrs, batches, runs=20000, seed=11, record_steps=record, tail_start=40)
    exact_curve = exact.sgd_excess_risk(lam, m0, 0.5, lrs, batches)[record]
    lo, hi = sim.interval(sim.last, simultaneous=record.size + 1)
    assert np.all((lo <= exact_curve) & (exact_curve <= hi)), (lo, exact_curve, hi)
    tail = exact.sgd_tail_average_risk(lam, m0, 0.5, lrs, batches, start=40)
    tlo, thi = sim.interval(sim.tail[:, None], simultaneous=record.size + 1)
    assert tlo[0] <= tail <= thi[0]


@pytest.mark.parametrize("normalised", [False, True])
def test_multiplicity_equals_the_expanded_spectrum(normalised):
    lam = np.array([1.0, 0.3, 0.05])
    mult = np.array([1, 4, 30])
    m0 = np.array([1.0, 0.5, 2.0])
    lrs = np.geomspace(0.2, 0.02, 90) / np.sum(mult * lam)
    expanded = (np.repeat(lam, mult), np.repeat(m0, mult))
    fns = (
        (exact.nsgd_excess_risk, exact.nsgd_tail_average_risk)
        if normalised
        else (exact.sgd_excess_risk, exact.sgd_tail_average_risk)
    )
    np.testing.assert_allclose(
        fns[0](lam, m0, 0.4, lrs, 2, multiplicity=mult), fns[0](*expanded, 0.4, lrs, 2), rtol=1e-12
    )
    assert fns[1](lam, m0, 0.4, lrs, 2, 45, multiplicity=mult) == pytest.approx(
        fns[1](*expanded, 0.4, lrs, 2, 45), rel=1e-12
    )
