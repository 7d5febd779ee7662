"""The logistic-regression math (``optim_theory.logistic``) against independent references:
finite differences, a quasi-Newton solve, plain GD, a dual margin solve and closed forms."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from optim_theory.logistic import data, gd


@pytest.fixture(scope="module")
def Z():
    return data.pinned_margin_dataset(30, 4, 0.2, skew=1.0, seed=7).Z


def test_gradient_and_hessian_match_finite_differences(Z):
    rng = np.random.default_rng(1)
    lam, h = 1e-2, 1e-6
    for _ in range(3):
        w = rng.standard_normal(Z.shape[1])
        g = gd.gradient(Z, w, lam)
        fd = np.array(
            [(gd.objective(Z, w + h * e, lam) - gd.objective(Z, w - h * e, lam)) / (2 * h) for e in np.eye(4)]
        )
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
        H = gd.hessian(Z, w, lam)
        fdH = np.array([(gd.gradient(Z, w + h * e, lam) - gd.gradient(Z, w - h * e, lam)) / (2 * h) for e in np.eye(4)])
        np.testing.assert_allclose(H, fdH, rtol=1e-6, atol=1e-9)


def test_batched_objective_and_gradient_agree_with_single_calls(Z):
    rng = np.random.default_rng(2)
    W = rng.standard_normal((5, Z.shape[1]))
    lams = np.geomspace(1e-1, 1e-5, 5)
    f = gd.objective(Z, W, lams)
    G = gd.gradient(Z, W, lams)
    for k in range(5):
        assert f[k] == pytest.approx(gd.objective(Z, W[k], lams[k]), rel=1e-14)
        np.testing.assert_allclose(G[k], gd.gradient(Z, W[k], lams[k]), rtol=1e-13, atol=1e-15)


def test_smoothness_bounds_the_hessian_everywhere(Z):
    beta = gd.smoothness(Z)
    rng = np.random.default_rng(3)
    for _ in range(20):
        w = 3 * rng.standard_normal(Z.shape[1])
        assert np.linalg.eigvalsh(gd.hessian(Z, w, 0.0))[-1] <= beta * (1 + 1e-12)
    assert np.linalg.eigvalsh(gd.hessian(Z, np.zeros(4), 0.0))[-1] == pytest.approx(beta, rel=1e-12)


@pytest.mark.parametrize("lam", [1e-2, 1e-4, 1e-6])
def test_newton_matches_an_independent_quasi_newton_solve(Z, lam):
    res = gd.newton_minimize(Z, lam)
    assert np.linalg.norm(gd.gradient(Z, res.w, lam)) < 1e-12
    ref = minimize(
        lambda w: gd.objective(Z, w, lam),
        np.zeros(Z.shape[1]),
        jac=lambda w: gd.gradient(Z, w, lam),
        method="BFGS",
        options={"gtol": 1e-11, "maxiter": 20000},
    )
    assert ref.fun >= res.value - 1e-15 * res.value  # Newton is never beaten
    assert ref.fun == pytest.approx(res.value, rel=1e-9)


def test_gd_limit_is_newtons_minimiser(Z):
    lam = 1e-2
    res = gd.newton_minimize(Z, lam)
    w, steps = gd.gd_limit(Z, lam, 1.0 / (gd.smoothness(Z) + lam), max_steps=100_000, grad_tol=1e-12)
    assert steps < 100_000
    assert np.linalg.norm(w - res.w) < 1e-8
    assert abs(gd.objective(Z, w, lam) - res.value) <= 1e-13 * res.value


def test_compiled_gd_counts_match_a_plain_numpy_loop(Z):
    beta = gd.smoothness(Z)
    lams = np.array([1e-2, 1e-3])
    f_star = np.array([gd.newton_minimize(Z, lam).value for lam in lams])
    etas = np.array([1.0 / (beta + lams[0]), 0.5 / (beta + lams[1])])
    runs = gd.gd_steps_to_accuracy(Z, lams, etas, f_star, rel_tol=1e-6, max_steps=100_000, record=[0], record_steps=50)
    for k in range(2):
        w, t = np.zeros(Z.shape[1]), 0
        while gd.objective(Z, w, lams[k]) - f_star[k] > 1e-6 * f_star[k]:
            w = w - etas[k] * gd.gradient(Z, w, lams[k])
            t += 1
        assert runs.steps[k] == t
    # the classical stepsize ≤ 1/smoothness decreases F monotonically (descent lemma)
    assert not runs.nonmonotone.any() and not runs.diverged.any()
    gaps = runs.gaps[0][np.isfinite(runs.gaps[0])]
    assert gaps[0] == pytest.approx(math.log(2) - f_star[0], rel=1e-12)
    assert (np.diff(gaps) < 0).all()


def test_huge_stepsize_is_reported_as_divergence(Z):
    lam = 1e-2
    f_star = gd.newton_minimize(Z, lam).value
    runs = gd.gd_steps_to_accuracy(Z, [lam], [1e6], [f_star], rel_tol=1e-6, max_steps=1000)
    assert runs.diverged[0] and runs.steps[0] == -1


@pytest.mark.parametrize("margin, skew", [(0.3, 0.0), (0.1, 1.5), (0.05, 3.0)])
def test_pinned_dataset_has_the_stated_margin(margin, skew):
    ds = data.pinned_margin_dataset(80, 6, margin, skew, seed=11)
    assert ds.radius <= 1 + 1e-12
    assert set(np.unique(ds.y)) <= {-1.0, 1.0}
    lower, upper, w = data.margin_bounds(ds.Z)
    assert lower <= ds.margin + 1e-12 and ds.margin <= upper + 1e-12
    assert upper - lower < 1e-8
    assert abs(w[0]) == pytest.approx(1.0, abs=1e-6)  # max-margin direction e₁


@pytest.mark.parametrize("margin", [0.3, 0.14, 0.07])
def test_chain_dataset_closed_form_margin_and_perceptron_count(margin):
    ds = data.chain_dataset(margin, decoy_factor=1.0, seed=3)
    lower, upper, _ = data.margin_bounds(ds.Z)
    assert lower - 1e-10 <= ds.margin <= upper + 1e-10
    assert upper - lower < 1e-8
    assert ds.radius == pytest.approx(1.0, abs=1e-12)
    # margins chosen so that (1 − γ²)/(2γ²) is not an integer (no ties)
    result = gd.perceptron(ds.Z)
    assert result.converged
    assert result.updates == data.chain_perceptron_updates(margin)
    assert result.updates <= gd.novikoff_bound(ds.Z, ds.margin)


@pytest.mark.parametrize("seed", range(6))
def test_perceptron_never_exceeds_novikoff_on_random_separable_data(seed):
    rng = np.random.default_rng(seed)
    n, d = 60, 8
    teacher = rng.standard_normal(d)
    teacher /= np.linalg.norm(teacher)
    X = rng.standard_normal((4 * n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True) * rng.uniform(1.0, 2.0, (4 * n, 1))
    keep = np.abs(X @ teacher) > 0.02
    X = X[keep][:n]
    y = np.sign(X @ teacher)
    Z = X * y[:, None]
    lower, upper, _ = data.margin_bounds(Z)
    assert lower > 0
    result = gd.perceptron(Z)
    assert result.converged and (Z @ result.w > 0).all()
    # Novikoff: updates ≤ R²/γ*² ≤ R²/lower²
    assert result.updates <= gd.novikoff_bound(Z, lower)


def test_log_risk_is_exact_and_survives_underflow(Z):
    rng = np.random.default_rng(4)
    w = rng.standard_normal(Z.shape[1])
    direct = math.log(np.logaddexp(0.0, -(Z @ w)).mean())
    assert gd.log_risk(Z, w) == pytest.approx(direct, rel=1e-13)
    # far along the max-margin direction every loss term is ≈ e^{−m}: log L ≈ log mean e^{−m}
    w_star = np.zeros(Z.shape[1])
    w_star[0] = 5000.0
    m = Z @ w_star
    expected = -m.min() + math.log(np.exp(-(m - m.min())).sum()) - math.log(Z.shape[0])
    assert gd.log_risk(Z, w_star) == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(gd.log_risk(Z, w_star)) and gd.log_risk(Z, w_star) < -700


def test_adaptive_step_is_minus_gradient_over_risk(Z):
    rng = np.random.default_rng(5)
    W = rng.standard_normal((3, Z.shape[1]))
    direct = []
    for w in W:
        m = Z @ w
        risk = np.logaddexp(0.0, -m).mean()
        grad = -(Z.T @ (1.0 / (1.0 + np.exp(m)))) / Z.shape[0]
        direct.append(-grad / risk)
    np.testing.assert_allclose(gd.adaptive_direction(Z, W), np.array(direct), rtol=1e-12)


def test_adaptive_gd_trajectory_and_separation_time(Z):
    etas = [0.5, 4.0]
    runs = gd.adaptive_gd(Z, etas, 60)
    assert runs.log_risk[:, 0] == pytest.approx(math.log(math.log(2)))
    w = np.zeros((2, Z.shape[1]))
    for t in range(60):
        assert gd.log_risk(Z, w) == pytest.approx(runs.log_risk[:, t], rel=1e-10, abs=1e-12)
        for k in range(2):
            separated = (Z @ w[k] > 0).all()
            assert separated == (0 <= runs.separated_at[k] <= t)
        w = w + np.array(etas)[:, None] * gd.adaptive_direction(Z, w)
