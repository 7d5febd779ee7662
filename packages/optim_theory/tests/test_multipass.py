"""Multi-pass SGD with replacement: exact recursion vs enumeration and simulation; GD closed form."""

import itertools

import numpy as np
import pytest
from scipy import stats

from optim_theory.linreg import multipass


def _data(n, m, seed):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, m)) * np.sqrt(1.0 / np.arange(1, m + 1) ** 1.5)
    y = Z @ rng.standard_normal(m) + 0.5 * rng.standard_normal(n)
    return Z, y


def _gd_loop(Z, y, lrs, v0):
    u = v0.copy()
    for eta in lrs:
        u = u - eta * Z.T @ (Z @ u - y) / Z.shape[0]
    return u


def test_geometric_decay_blocks():
    lrs = multipass.geometric_decay(0.3, 1000)  # ⌈log₂1000⌉ = 10 blocks of 100 steps
    assert lrs.size == 1000
    values, lengths = np.unique(lrs, return_counts=True)
    np.testing.assert_allclose(np.sort(values)[::-1], 0.3 * 0.5 ** np.arange(10))
    assert set(lengths) == {100}
    assert multipass.geometric_decay(0.3, 1).tolist() == [0.3]
    with pytest.raises(ValueError):
        multipass.geometric_decay(0.3, 0)


@pytest.mark.parametrize("n, m", [(40, 6), (4, 6)])  # full rank and rank-deficient Ĥ
def test_gd_closed_form_matches_the_gd_loop(n, m):
    Z, y = _data(n, m, seed=n)
    v0 = np.random.default_rng(1).standard_normal(m)
    lrs = multipass.geometric_decay(0.5, 300)
    gd = multipass.EmpiricalGD.from_data(Z, y)
    np.testing.assert_allclose(gd.iterate(lrs, v0), _gd_loop(Z, y, lrs, v0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gd.iterate(lrs), _gd_loop(Z, y, lrs, np.zeros(m)), rtol=1e-9, atol=1e-12)


def test_exact_recursion_equals_enumeration_of_all_index_sequences():
    # N = 3 samples, T = 6 steps: all 3⁶ = 729 equally likely index sequences, run and averaged.
    n, m, T = 3, 2, 6
    Z, y = _data(n, m, seed=2)
    G = np.array([[1.0, 0.3], [0.3, 0.5]])
    v_star = np.array([0.4, -1.0])
    lrs = np.array([0.6, 0.6, 0.4, 0.3, 0.3, 0.1])
    errors = []
    for seq in itertools.product(range(n), repeat=T):
        v = np.zeros(m)
        for t, i in enumerate(seq):
            v = v - lrs[t] * Z[i] * (Z[i] @ v - y[i])
        errors.append((v - v_star) @ G @ (v - v_star))
    gd_part, fluct = multipass.multipass_expected_error(Z, y, lrs, G, v_star, record_steps=[T])
    assert gd_part[0] + fluct[0] == pytest.approx(np.mean(errors), rel=1e-12)
    assert fluct[0] > 0.01 * gd_part[0]  # the fluctuation term is really exercised


def test_one_sample_has_no_sampling_noise():
    Z, y = _data(1, 3, seed=3)
    lrs = multipass.geometric_decay(0.3, 50)
    gd_part, fluct = multipass.multipass_expected_error(Z, y, lrs, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(fluct, 0.0, atol=1e-15)
    iters = multipass.simulate_multipass_sgd(Z, y, lrs, runs=2, seed=0)
    np.testing.assert_allclose(iters[:, -1], np.broadcast_to(_gd_loop(Z, y, lrs, np.zeros(3)), (2, 3)), rtol=1e-12)


def test_simulation_mean_matches_exact_recursion():
    n, m = 12, 4
    Z, y = _data(n, m, seed=4)
    mu = 1.0 / np.arange(1, m + 1) ** 1.5
    v_star = np.random.default_rng(5).standard_normal(m)
    lrs = multipass.geometric_decay(0.8 / (Z**2).sum(axis=1).mean(), 120)
    record = np.array([1, 10, 40, 120])
    gd_part, fluct = multipass.multipass_expected_error(Z, y, lrs, mu, v_star, record_steps=record)
    runs = 20000
    iters = multipass.simulate_multipass_sgd(Z, y, lrs, runs=runs, seed=6, record_steps=record)
    err = ((iters - v_star) ** 2) @ mu
    mean, se = err.mean(axis=0), err.std(axis=0, ddof=1) / np.sqrt(runs)
    z = stats.norm.ppf(1 - 0.05 / (2 * record.size))
    assert np.all(np.abs(gd_part + fluct - mean) <= z * se)
    # the GD mean iterate of the exact recursion is the closed form's
    u = multipass.EmpiricalGD.from_data(Z, y).iterate(lrs)
    assert gd_part[-1] == pytest.approx(((u - v_star) ** 2) @ mu, rel=1e-9)


def test_simulation_is_reproducible_and_validates_steps():
    Z, y = _data(5, 2, seed=7)
    lrs = np.full(20, 0.1)
    a = multipass.simulate_multipass_sgd(Z, y, lrs, runs=3, seed=11)
    b = multipass.simulate_multipass_sgd(Z, y, lrs, runs=3, seed=11)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        multipass.simulate_multipass_sgd(Z, y, lrs, runs=1, seed=0, record_steps=[21])
