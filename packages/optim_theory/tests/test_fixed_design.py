"""Closed-form fixed-design risks of GD and ridge against independent computations.

Independent references: (i) the estimator as an explicit linear map of y (GD iterated step by step
on the matrix A_t with w_t = A_t y; ridge by np.linalg.solve), whose expected risk over the label
noise is exact: E‖Ay − w*‖²_H = ‖AXw* − w*‖²_H + σ² tr(AᵀHA); (ii) Monte Carlo over label-noise
draws, running GD on (X, y) and solving ridge for each draw.
"""

import numpy as np
import pytest
from scipy import stats

from optim_theory.linreg import fixed_design as fd
from optim_theory.linreg import spectra


def _problem(n, d, seed, a=1.4):
    rng = np.random.default_rng(seed)
    lam = spectra.power_law(d, a)
    w = rng.standard_normal(d) * lam**0.2
    X = rng.standard_normal((n, d)) * np.sqrt(lam)
    return lam, w, X


def _gd_map(X, lr, t):
    n, d = X.shape
    A = np.zeros((d, n))
    for _ in range(t):
        A = A - lr * X.T @ (X @ A) / n + lr * X.T / n
    return A


def _ridge_map(X, lam_r):
    n, d = X.shape
    if lam_r == 0:
        return np.linalg.pinv(X)  # minimum-norm least squares
    return np.linalg.solve(X.T @ X / n + lam_r * np.eye(d), X.T / n)


def _map_risk(A, X, w, lam, noise):
    e = A @ X @ w - w
    return e @ (lam * e), noise * np.trace(A.T @ (lam[:, None] * A))


@pytest.mark.parametrize("n,d", [(40, 12), (12, 40)], ids=["feature-space", "sample-space"])
def test_gd_closed_form_matches_iterated_linear_map(n, d):
    lam, w, X = _problem(n, d, 1)
    design = fd.FixedDesign.from_design(X, lam, w)
    noise = 0.4
    lr = 0.95 / design.s.max()
    steps = [0, 1, 3, 17, 60]
    bias, var = fd.gd_risk(design, lr, steps, noise)
    for k, t in enumerate(steps):
        b, v = _map_risk(_gd_map(X, lr, t), X, w, lam, noise)
        assert bias[k] == pytest.approx(b, rel=1e-10, abs=1e-14)
        assert var[k] == pytest.approx(v, rel=1e-10, abs=1e-14)


def test_gd_with_oscillating_step_matches_iteration():
    # 1 < η s_max < 2: (1 − η s)^t has a negative base, still stable
    lam, w, X = _problem(30, 8, 2)
    design = fd.FixedDesign.from_design(X, lam, w)
    lr = 1.7 / design.s.max()
    bias, var = fd.gd_risk(design, lr, [5, 6], 0.2)
    for k, t in enumerate([5, 6]):
        b, v = _map_risk(_gd_map(X, lr, t), X, w, lam, 0.2)
        assert (bias[k], var[k]) == pytest.approx((b, v), rel=1e-10)
    with pytest.raises(ValueError, match="unstable"):
        fd.gd_filter(design.s, 2.0 / design.s.max(), [3])


@pytest.mark.parametrize("n,d", [(40, 12), (12, 40)], ids=["feature-space", "sample-space"])
def test_ridge_closed_form_matches_direct_solve(n, d):
    lam, w, X = _problem(n, d, 3)
    design = fd.FixedDesign.from_design(X, lam, w)
    lams = [0.0, 1e-3, 0.05, 2.0]
    bias, var = fd.ridge_risk(design, lams, 0.7)
    for k, lam_r in enumerate(lams):
        b, v = _map_risk(_ridge_map(X, lam_r), X, w, lam, 0.7)
        assert bias[k] == pytest.approx(b, rel=1e-8, abs=1e-14)
        assert var[k] == pytest.approx(v, rel=1e-8, abs=1e-14)


def test_expectation_over_label_noise_by_monte_carlo():
    # Run GD on (X, y) and solve ridge for many noise draws: the exact value lies in the 99.9% interval.
    n, d, noise, runs = 25, 10, 0.5, 4000
    lam, w, X = _problem(n, d, 4)
    design = fd.FixedDesign.from_design(X, lam, w)
    rng = np.random.default_rng(5)
    Y = X @ w + np.sqrt(noise) * rng.standard_normal((runs, n))  # one row per draw
    lr, t, lam_r = 0.8 / design.s.max(), 12, 0.03
    W = np.zeros((runs, d))
    for _ in range(t):  # plain GD, all draws at once
        W = W - lr * ((W @ X.T - Y) @ X) / n
    W_ridge = np.linalg.solve(X.T @ X / n + lam_r * np.eye(d), (Y @ X).T / n).T
    z = stats.norm.ppf(1 - 0.001 / 4)  # two estimates, two-sided 99.9% simultaneous
    for est, exact_value in (
        (W, np.add(*fd.gd_risk(design, lr, [t], noise))[0]),
        (W_ridge, np.add(*fd.ridge_risk(design, [lam_r], noise))[0]),
    ):
        err = est - w
        samples = (err * err) @ lam
        half = z * samples.std(ddof=1) / np.sqrt(runs)
        assert abs(samples.mean() - exact_value) <= half


def test_bias_and_variance_split():
    lam, w, X = _problem(20, 30, 6)
    design = fd.FixedDesign.from_design(X, lam, w)
    no_signal = fd.FixedDesign.from_design(X, lam, np.zeros_like(w))
    lr = 1 / design.s.max()
    steps = fd.geometric_int_grid(1, 5000, 4)
    bias, var = fd.gd_risk(design, lr, steps, 0.3)
    # bias = the risk without noise; variance = the risk with w* = 0; both add up to the total
    np.testing.assert_allclose(np.add(*fd.gd_risk(design, lr, steps, 0.0)), bias, rtol=1e-12)
    np.testing.assert_allclose(np.add(*fd.gd_risk(no_signal, lr, steps, 0.3)), var, rtol=1e-12)
    # variance is linear in σ²
    np.testing.assert_allclose(fd.gd_risk(design, lr, steps, 0.9)[1], 3 * var, rtol=1e-12)
    # GD's bias decreases and its variance increases along the path (η s ≤ 1: monotone filters)
    assert np.all(np.diff(bias) <= 1e-15) and np.all(np.diff(var) >= -1e-15)
    # t = 0 and λ → ∞: nothing learned, risk = ‖w*‖²_H; λ = 0 is the end of the GD path
    assert fd.gd_risk(design, lr, [0], 0.3)[0][0] == pytest.approx(w @ (lam * w), rel=1e-12)
    assert fd.ridge_risk(design, [1e12], 0.3)[0][0] == pytest.approx(w @ (lam * w), rel=1e-9)
    gd_end = np.add(*fd.gd_risk(design, lr, [10**9], 0.3))[0]
    assert np.add(*fd.ridge_risk(design, [0.0], 0.3))[0] == pytest.approx(gd_end, rel=1e-9)


def test_feature_and_sample_space_routes_agree():
    lam, w, X = _problem(30, 10, 7)
    n = X.shape[0]
    feature = fd.FixedDesign.from_design(X, lam, w)  # d <= n: eigendecomposition of XᵀX/n
    XH = X * lam
    sample = fd.FixedDesign.from_gram(n, X @ X.T, XH @ X.T, X @ w, XH @ w, w @ (lam * w))
    lr = 1 / feature.s.max()
    for route in (feature, sample):
        assert route.s.size == 10
    np.testing.assert_allclose(
        fd.gd_risk(sample, lr, [1, 7, 100], 0.5), fd.gd_risk(feature, lr, [1, 7, 100], 0.5), rtol=1e-9
    )
    np.testing.assert_allclose(
        fd.ridge_risk(sample, [0, 0.1], 0.5), fd.ridge_risk(feature, [0, 0.1], 0.5), rtol=1e-9, atol=1e-14
    )  # λ = 0, d < n: least squares, bias 0 up to rounding


def test_two_scale_design_equals_explicit_design():
    n, k, D, eps = 15, 2, 40, 0.01
    head, w_head = np.array([1.0, 0.5]), np.array([0.8, -0.3])
    Z = np.random.default_rng(8).standard_normal((n, D))
    design = fd.two_scale_design(n, head, w_head, D, eps, np.random.default_rng(9), wishart=Z @ Z.T)
    Xh = np.random.default_rng(9).standard_normal((n, k)) * np.sqrt(head)  # same head draw
    X = np.hstack([Xh, np.sqrt(eps) * Z])
    eigs = np.concatenate([head, np.full(D, eps)])
    explicit = fd.FixedDesign.from_design(X, eigs, np.concatenate([w_head, np.zeros(D)]))
    lr = 1 / explicit.s.max()
    np.testing.assert_allclose(fd.gd_risk(design, lr, [1, 4, 50], 0.2), fd.gd_risk(explicit, lr, [1, 4, 50], 0.2))
    np.testing.assert_allclose(fd.ridge_risk(design, [0, 0.3], 0.2), fd.ridge_risk(explicit, [0, 0.3], 0.2))


def test_wishart_bartlett_moments():
    # ZZᵀ with Z (n × D) standard normal: E W = D·I, Var W_ii = 2D, Var W_ij = D (i ≠ j).
    n, D, reps = 3, 6, 20000
    rng = np.random.default_rng(10)
    W = np.stack([fd.wishart_bartlett(n, D, rng) for _ in range(reps)])
    mean = W.mean(axis=0)
    se = np.sqrt(np.where(np.eye(n, dtype=bool), 2 * D, D) / reps)
    assert np.all(np.abs(mean - D * np.eye(n)) <= 4.5 * se)  # 9 entries, |z| ≤ 4.5 each
    assert W[:, 0, 1].var() == pytest.approx(D, rel=0.06)  # sd of a variance estimate ≈ √(2/reps)·…
    assert W[:, 2, 2].var() == pytest.approx(2 * D, rel=0.08)
    assert np.allclose(W, np.transpose(W, (0, 2, 1)))
    with pytest.raises(ValueError, match="dof >= n"):
        fd.wishart_bartlett(5, 4, rng)


def test_time_grid_schedule():
    times = np.array([0.01, 0.5, 1.0, 1.01, 37.3])
    lr, steps = fd.gd_schedule_for_times(times, s_max=2.0)
    np.testing.assert_allclose(lr * steps, times)
    assert np.all(lr <= 0.5 + 1e-15) and np.all(steps == np.round(steps)) and np.all(steps >= 1)
    assert list(steps[:4]) == [1, 1, 2, 3]


def test_tuned_is_the_true_minimum_over_the_grid():
    rng = np.random.default_rng(11)
    for _ in range(50):
        r = rng.random(17)
        g = np.sort(rng.random(17))
        best = fd.tuned(r, g)
        assert best.risk == r.min() and best.param == g[np.argmin(r)]
        assert best.at_edge == (np.argmin(r) in (0, 16))
    r = np.array([np.nan, 3.0, np.inf, 1.0, 2.0])
    assert fd.tuned(r, np.arange(5.0)).index == 3
    # the tuned minimum over a GD path: no grid point beats it
    lam, w, X = _problem(20, 8, 12)
    design = fd.FixedDesign.from_design(X, lam, w)
    steps = fd.geometric_int_grid(1, 10**6, 8)
    risks = np.add(*fd.gd_risk(design, 1 / design.s.max(), steps, 0.5))
    best = fd.tuned(risks, steps)
    assert np.all(risks >= best.risk) and not best.at_edge


def test_geometric_int_grid():
    g = fd.geometric_int_grid(1, 1000, 4)
    assert g[0] == 1 and g[-1] == 1000 and np.all(np.diff(g) > 0)
    assert np.max(g[1:] / g[:-1]) <= 2 and len(g) <= 41
