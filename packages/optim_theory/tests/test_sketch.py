"""The sketched model: v*, the approximation error, and the exact one-pass reduction vs brute force."""

import numpy as np
import pytest
from scipy import stats

from optim_theory.linreg import sketch, spectra
from optim_theory.linreg.multipass import geometric_decay


def _problem(d=10, m=3, a=2.0, b=1.5, seed=0):
    rng = np.random.default_rng(seed)
    lam = spectra.power_law(d, a)
    w = rng.standard_normal(d) * np.sqrt(spectra.source_prior(lam, b))
    S = sketch.gaussian_sketch(m, d, rng)
    return lam, w, S


def test_error_splits_into_approximation_plus_sketched_distance():
    # E(v) = ‖Sᵀv − w*‖²_H (definition) = A + ‖v − v*‖²_G for any v.
    lam, w, S = _problem()
    task = sketch.sketched_task(S, lam, w)
    G = sketch.sketch_gram(S, lam)
    v = np.random.default_rng(1).standard_normal((5, S.shape[0]))
    direct = sketch.test_error(S, lam, w, v)
    split = task.approx_error + np.einsum("rm,mn,rn->r", v - task.v_star, G, v - task.v_star)
    np.testing.assert_allclose(direct, split, rtol=1e-10)
    np.testing.assert_allclose(task.error_of_eig(v @ task.basis), direct, rtol=1e-10)
    # v* solves the normal equations G v* = S H w* (so the residual is uncorrelated with Sx)
    np.testing.assert_allclose(G @ task.v_star, S @ (lam * w), rtol=1e-9, atol=1e-12)
    assert task.approx_error == pytest.approx(sketch.test_error(S, lam, w, task.v_star), rel=1e-12)


def test_approximation_error_is_a_minimum_over_v():
    lam, w, S = _problem(seed=3)
    task = sketch.sketched_task(S, lam, w)
    v = task.v_star + 1e-3 * np.random.default_rng(2).standard_normal((50, S.shape[0]))
    assert np.all(sketch.test_error(S, lam, w, v) > task.approx_error)


def test_nested_sketches_have_nonincreasing_approximation_error_and_zero_at_full_rank():
    # √(M_max/M)·S_max[:M] spans a subspace of the larger sketch's row space, so the best sketched
    # predictor can only improve with M; at M = d the sketch is invertible and A = 0.
    d = 16
    lam, w, S_max = _problem(d=d, m=d, seed=4)
    G_max = sketch.sketch_gram(S_max, lam)
    approx = []
    for m in range(1, d + 1):
        S = np.sqrt(d / m) * S_max[:m]
        np.testing.assert_allclose(sketch.nested_gram(G_max, m), sketch.sketch_gram(S, lam), rtol=1e-12)
        approx.append(sketch.sketched_task(S, lam, w, gram=sketch.nested_gram(G_max, m)).approx_error)
    approx = np.array(approx)
    assert np.all(np.diff(approx) <= 1e-12 * approx[0])
    assert approx[-1] < 1e-10 * approx[0]


def test_gaussian_sketch_scale():
    S = sketch.gaussian_sketch(50, 400, np.random.default_rng(5))
    # E S_ij² = 1/M; 20,000 entries give a relative standard error of 1%.
    assert np.mean(S**2) * 50 == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError):
        sketch.gaussian_sketch(401, 400, np.random.default_rng(0))


def test_sampled_sketched_data_has_the_joint_law_of_sx_and_y():
    # (UᵀSx, ⟨w*, x⟩ + ε) from the definitions: Cov z̃ = UᵀSHSᵀU, Cov(z̃, y) = UᵀSHw*,
    # Var y = w*ᵀHw* + σ² — computed without v* or A, compared to sample moments.
    lam, w, S = _problem(d=8, m=3, seed=6)
    task = sketch.sketched_task(S, lam, w)
    sigma2 = 0.7
    n = 200_000
    Z, y = sketch.sample_sketched_data(task, n, sigma2, np.random.default_rng(7))
    U = task.basis
    joint = np.column_stack([Z, y])
    exact = np.empty((4, 4))
    exact[:3, :3] = U.T @ sketch.sketch_gram(S, lam) @ U
    exact[:3, 3] = exact[3, :3] = U.T @ S @ (lam * w)
    exact[3, 3] = lam @ (w * w) + sigma2
    products = joint[:, :, None] * joint[:, None, :]
    sample = products.mean(axis=0)
    se = products.std(axis=0) / np.sqrt(n)
    z = stats.norm.ppf(1 - 0.05 / (2 * 10))  # 10 distinct entries, simultaneous 95%
    assert np.all(np.abs(sample - exact) <= z * se + 1e-12)


def test_one_pass_exact_reduction_matches_brute_force_sgd_on_sx():
    # Brute force: x ∈ R^d drawn directly, SGD on (Sx, y), error ‖Sᵀv − w*‖²_H. Exact: A + the
    # second-moment recursion in the eigenbasis of SHSᵀ with noise σ² + A.
    lam, w, S = _problem(d=10, m=3, seed=8)
    task = sketch.sketched_task(S, lam, w)
    sigma2 = 0.5
    lrs = geometric_decay(0.4 / lam.sum(), 40)
    record = np.array([0, 1, 5, 20, 40])
    exact_curve = sketch.one_pass_error(task, sigma2, lrs)[record]
    runs = 20000
    sim = sketch.simulate_sketched_sgd(S, lam, w, sigma2, lrs, runs=runs, seed=9, record_steps=record)
    mean = sim.mean(axis=0)
    se = sim.std(axis=0, ddof=1) / np.sqrt(runs)
    assert exact_curve[0] == pytest.approx(mean[0], rel=1e-12)  # v₀ = 0: deterministic
    z = stats.norm.ppf(1 - 0.05 / (2 * 4))
    assert np.all(np.abs(exact_curve[1:] - mean[1:]) <= z * se[1:])
    # and the reduction is not trivially flat: the risk really moves over the run
    assert exact_curve[-1] < 0.8 * exact_curve[0]


def test_one_pass_error_converges_to_the_approximation_error():
    lam, w, S = _problem(d=30, m=6, seed=10)
    task = sketch.sketched_task(S, lam, w)
    final = sketch.one_pass_error(task, 1.0, geometric_decay(0.25 / lam.sum(), 200_000))[-1]
    assert task.approx_error < final < 1.05 * task.approx_error + 1e-3


def test_prior_average_over_w_star_is_exact():
    # The one-pass error f(w*) is a constant (the σ² part) plus a quadratic form in w*, so for
    # w* ~ N(0, diag p): E f(w*) = f(0) + Σ_i p_i (f(e_i) − f(0)), with e_i the unit vectors.
    d, m = 9, 3
    lam, _, S = _problem(d=d, m=m, seed=11)
    p = spectra.source_prior(lam, 1.5)
    sigma2 = 0.8
    lrs = geometric_decay(0.3 / lam.sum(), 60)

    def f(w):
        return sketch.one_pass_error(sketch.sketched_task(S, lam, w), sigma2, lrs)

    base = f(np.zeros(d))
    expected = base + sum(p[i] * (f(np.eye(d)[i]) - base) for i in range(d))
    prior_task = sketch.sketched_task_prior(S, lam, p)
    np.testing.assert_allclose(sketch.one_pass_error(prior_task, sigma2, lrs), expected, rtol=1e-9)
    approx = sum(p[i] * sketch.sketched_task(S, lam, np.eye(d)[i]).approx_error for i in range(d))
    assert prior_task.approx_error == pytest.approx(approx, rel=1e-9)
    # nested C_M = (M_max/M)·C_max[:M, :M], like G
    C = sketch.prior_cross_moment(S, lam, p)
    np.testing.assert_allclose(sketch.nested_gram(C, 2), sketch.prior_cross_moment(np.sqrt(m / 2) * S[:2], lam, p))
    with pytest.raises(ValueError):
        sketch.one_pass_error(prior_task, sigma2, lrs, v0_eig=np.ones(m))
