"""Metrics on constructed cases with known answers.

Tolerances are Monte-Carlo based: a quantity with an exact expectation is checked over R independent
repeats to within 4 standard errors (estimated from the repeats themselves), so a correct
implementation fails with probability < 1e-4 per check while a biased one is caught.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from diffusion import metrics as M

K, D, SEP = 4, 8, 8.0  # 4 modes at SEP·e_m in 8-D with unit std: neighbouring centres 11.3 std apart
MEANS = SEP * np.eye(K, D)
STD = 1.0
N_NULL, R_NULL = 1000, 40


def sample_mixture(rng: np.random.Generator, n: int, counts: list[int] | None = None):
    """n points from the equal-weight mixture (or exactly counts[m] points of mode m)."""
    if counts is None:
        labels = rng.integers(0, K, n)
    else:
        labels = np.repeat(np.arange(K), counts)
    return MEANS[labels] + STD * rng.standard_normal((len(labels), D)), labels


def within_se(values: np.ndarray, target: float, n_se: float = 4.0, slack: float = 0.0) -> bool:
    values = np.asarray(values, dtype=float)
    se = values.std(ddof=1) / math.sqrt(len(values))
    return abs(values.mean() - target) <= n_se * se + slack


@pytest.fixture(scope="module")
def null_reports() -> pd.DataFrame:
    """collapse_report for R_NULL pairs of independent samples of the same mixture."""
    rng = np.random.default_rng(1)
    mix = {"means": MEANS, "covs": np.full(K, STD**2), "weights": np.full(K, 1 / K)}
    rows = []
    for _ in range(R_NULL):
        gen, _ = sample_mixture(rng, N_NULL)
        real, _ = sample_mixture(rng, N_NULL)
        rows.append(M.collapse_report(gen, real, mix, quantile=0.05))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# plumbing
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [3, 24])
def test_knn_backends_agree_and_duplicates_give_zero(dim):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((700, dim))
    x[5] = x[17]  # an exact duplicate pair
    kd = M.knn_distances(x, 4, backend="kdtree")
    bf = M.knn_distances(x, 4, backend="brute")
    # both exact; brute force differs only by float64 rounding of ‖a‖² + ‖b‖² − 2a·b
    np.testing.assert_allclose(kd, bf, atol=1e-6)
    assert kd[5, 0] == 0.0 and kd[17, 0] == 0.0 and bf[5, 0] == 0.0
    assert np.all(np.diff(kd, axis=1) >= 0)


def test_torch_and_image_inputs_match_numpy():
    rng = np.random.default_rng(0)
    g, r = rng.standard_normal((300, 2, 2, 2)), rng.standard_normal((300, 8))
    a = M.collapse_report(g.reshape(300, -1), r)
    b = M.collapse_report(torch.from_numpy(g).float().double(), torch.from_numpy(r))
    assert set(a) == set(M.REPORT_KEYS)
    for key in M.REPORT_KEYS:
        assert a[key] == pytest.approx(b[key], nan_ok=True)
    assert math.isnan(a["spread_ratio"])  # no mixture → NaN, key still present


# ----------------------------------------------------------------------------------------------
# identical distributions
# ----------------------------------------------------------------------------------------------


def test_identical_distributions_null(null_reports):
    df = null_reports
    # log ρ = log mean d(G) − log mean d(R) with G, R exchangeable → E[log ρ] = 0 exactly
    assert within_se(np.log(df.nn_ratio), 0.0)
    assert within_se(np.log(df.nn_ratio_median), 0.0)
    # P(d_1(g) < empirical q-quantile of d_1(R)) = q + O(1/n) (interpolated quantile), slack 2/n
    assert within_se(df.near_duplicate_rate, 0.05, slack=2.0 / N_NULL)
    # Naeem et al. 2020: E[density] = 1 and E[coverage] = 1 − Π(N−i)/(N+M−i), both exact
    assert within_se(df.density, 1.0)
    expected = M.expected_coverage(N_NULL, N_NULL, 5)
    assert expected == pytest.approx(df.coverage_expected.iloc[0])
    assert within_se(df.coverage, expected)
    # precision and recall swap under G ↔ R → equal expectations
    assert within_se(df.precision - df.recall, 0.0)
    # mixture statistics of a true sample: spread ratio 1 (nearest-mode = true mode here), off-mode
    # mass 1 − 0.99 (modes separated), occupancy TV small (multinomial noise only)
    assert within_se(df.spread_ratio, 1.0)
    assert within_se(df.off_mode_mass, 0.01)
    assert df.occupancy_tv.max() < 0.1 and (df.modes_occupied == K).all()


def test_nn_ratio_subsamples_to_equal_size(null_reports):
    """Unequal sets: without subsampling the ratio would be (2000/1000)^{-1/8} ≈ 0.917."""
    sd = np.log(null_reports.nn_ratio).std(ddof=1)
    rng = np.random.default_rng(2)
    gen, _ = sample_mixture(rng, 2 * N_NULL)
    real, _ = sample_mixture(rng, N_NULL)
    # one draw from the null distribution of log ρ: within 4 of its standard deviations of 0
    assert abs(math.log(M.nn_distance_ratio(gen, real))) < 4 * sd
    assert 4 * sd < abs(math.log(0.917))  # the check above can tell the difference


# ----------------------------------------------------------------------------------------------
# collapsed sets
# ----------------------------------------------------------------------------------------------


def test_shrunk_set_is_collapsed(null_reports):
    rng = np.random.default_rng(3)
    x, labels = sample_mixture(rng, N_NULL)
    real, _ = sample_mixture(rng, N_NULL)
    c = 0.5
    gen = MEANS[labels] + c * (x - MEANS[labels])
    log_null = np.log(null_reports.nn_ratio)
    ratio = M.nn_distance_ratio(gen, real)
    # gen's NN distances are exactly c × those of x (same mode for every NN pair), so log ρ − log c
    # is a draw of the null distribution
    assert math.log(ratio) < log_null.min()
    assert abs(math.log(ratio) - math.log(c)) < 4 * log_null.std(ddof=1)
    assert M.near_duplicate_rate(gen, real, 0.05) > 0.3  # null ≈ 0.05

    ms_x = M.mode_statistics(x, MEANS, std=STD, labels_true=labels)
    ms_g = M.mode_statistics(gen, MEANS, std=STD, labels_true=labels)
    # ‖c(x − μ)‖² = c²‖x − μ‖²: the ratio scales by exactly c² = 0.25
    assert ms_g.spread_ratio == pytest.approx(c**2 * ms_x.spread_ratio, rel=1e-12)
    np.testing.assert_allclose(ms_g.spread_ratio_per_mode, c**2 * ms_x.spread_ratio_per_mode, rtol=1e-12)
    # ‖x − μ‖²/σ² ~ χ²_D: the pooled ratio has sd c²·sqrt(2/(D n))
    assert abs(ms_g.spread_ratio - c**2) < 4 * c**2 * math.sqrt(2 / (D * N_NULL))
    assert ms_g.assignment_accuracy == 1.0  # nearest mode = true mode for these separated modes
    # P(0.25·χ²_8 > χ²_8(0.99) = 20.1) = P(χ²_8 > 80) ≈ 5e-14 per point
    assert ms_g.off_mode_mass == 0.0


def test_duplicated_set_is_collapsed():
    rng = np.random.default_rng(4)
    base, _ = sample_mixture(rng, N_NULL // 2)
    gen = np.repeat(base, 2, axis=0) + 1e-6 * rng.standard_normal((N_NULL, D))
    real, _ = sample_mixture(rng, N_NULL)
    # every point has its twin ~3e-6 away, far below any real NN distance (~0.5)
    assert M.near_duplicate_rate(gen, real) == 1.0
    assert M.nn_distance_ratio(gen, real) < 1e-4


# ----------------------------------------------------------------------------------------------
# dropped mode
# ----------------------------------------------------------------------------------------------


def test_dropped_mode_occupancy_coverage_recall():
    n_real, n_gen, k, reps = 250, 200, 5, 20
    rng = np.random.default_rng(5)
    cov, rec = [], []
    for _ in range(reps):
        real, _ = sample_mixture(rng, 0, counts=[n_real] * K)
        gen, _ = sample_mixture(rng, 0, counts=[n_gen] * (K - 1) + [0])
        ms = M.mode_statistics(gen, MEANS, np.full(K, STD**2))
        # occupancy (1/3, 1/3, 1/3, 0) vs weights 1/4: TV = ½(3·(1/3 − 1/4) + 1/4) = 1/K exactly
        assert ms.occupancy_tv == pytest.approx(1 / K, abs=1e-12)
        assert ms.modes_occupied == K - 1 and math.isnan(ms.spread_ratio_per_mode[-1])
        cov.append(M.coverage_density(real, gen, k)["coverage"])
        rec.append(M.precision_recall(real, gen, k)["recall"])
    # within each kept mode the rank argument applies (n_real reals, n_gen gens; the k nearest other
    # reals are in the same mode): E[coverage] = (K−1)/K · (1 − Π(n_real−i)/(n_real+n_gen−i))
    expected = (K - 1) / K * M.expected_coverage(n_real, n_gen, k)
    assert within_se(cov, expected)
    assert max(cov) <= (K - 1) / K  # the dropped mode's reals are never covered
    assert max(rec) <= (K - 1) / K
    same = M.coverage_density(real, sample_mixture(rng, 0, counts=[n_real] * K)[0], k)
    assert same["coverage"] > (K - 1) / K


def test_occupancy_tv_with_unequal_weights_and_assignment_rules():
    rng = np.random.default_rng(6)
    gen, _ = sample_mixture(rng, 0, counts=[100, 100, 0, 0])
    w = np.array([0.4, 0.3, 0.2, 0.1])
    for assign in ("euclidean", "mahalanobis", "posterior"):
        ms = M.mode_statistics(gen, MEANS, STD**2, w, assign=assign)
        # ½(|0.5−0.4| + |0.5−0.3| + 0.2 + 0.1)
        assert ms.occupancy_tv == pytest.approx(0.3, abs=1e-12)
    frame = ms.per_mode()
    assert list(frame.columns) == ["mode", "weight", "occupancy", "count", "spread_ratio"]
    assert frame["count"].tolist() == [100, 100, 0, 0]


# ----------------------------------------------------------------------------------------------
# covariance forms and off-mode mass
# ----------------------------------------------------------------------------------------------


def test_covariance_forms_agree_and_off_mode_mass():
    rng = np.random.default_rng(7)
    x, labels = sample_mixture(rng, 4000)
    forms = [
        {"std": STD},
        {"covs": STD**2},
        {"covs": np.full(K, STD**2)},
        {"covs": np.full((K, D), STD**2)},
        {"covs": np.tile(STD**2 * np.eye(D), (K, 1, 1))},
    ]
    res = [M.mode_statistics(x, MEANS, **f) for f in forms]
    for r in res[1:]:
        assert r.off_mode_mass == res[0].off_mode_mass
        assert r.spread_ratio == pytest.approx(res[0].spread_ratio, rel=1e-12)
    # true sample: off-mode indicator ~ Bernoulli(0.01); 4 binomial standard errors
    assert abs(res[0].off_mode_mass - 0.01) < 4 * math.sqrt(0.01 * 0.99 / len(x))
    # inflated by 1.5: P(2.25·χ²_8 > 20.09) = P(χ²_8 > 8.93) ≈ 0.35
    inflated = MEANS[labels] + 1.5 * (x - MEANS[labels])
    ms = M.mode_statistics(inflated, MEANS, std=STD, labels_true=labels)
    assert ms.off_mode_mass > 0.25
    # with the true labels the spread scales by exactly 1.5² (nearest-mode assignment would move
    # a few far-out points to another mode)
    ms_x = M.mode_statistics(x, MEANS, std=STD, labels_true=labels)
    assert ms.spread_ratio == pytest.approx(2.25 * ms_x.spread_ratio, rel=1e-12)


def test_full_covariance_mahalanobis():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((D, D))
    cov = a @ a.T / D + 0.1 * np.eye(D)
    chol = np.linalg.cholesky(cov)
    x = rng.standard_normal((4000, D)) @ chol.T + MEANS[1]
    ms = M.mode_statistics(x, MEANS[1:2], cov[None], assign="mahalanobis")
    assert abs(ms.off_mode_mass - 0.01) < 4 * math.sqrt(0.01 * 0.99 / len(x))
    # E‖x − μ‖² = tr Σ; per-point variance 2 tr Σ², so the ratio's sd is sqrt(2 tr Σ²/n)/tr Σ
    sd = math.sqrt(2 * np.trace(cov @ cov) / len(x)) / np.trace(cov)
    assert abs(ms.spread_ratio - 1.0) < 4 * sd


# ----------------------------------------------------------------------------------------------
# per-σ denoising error
# ----------------------------------------------------------------------------------------------


def gaussian_denoiser(mu: torch.Tensor, s: float):
    """Exact denoiser of N(μ, s²I): D*(x; σ) = μ + s²/(s² + σ²)·(x − μ)."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sig2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
        return mu + s**2 / (s**2 + sig2) * (x - mu)

    return denoise


def test_per_sigma_error_closed_forms():
    s, dim, n = 0.5, 6, 4000
    gen = torch.Generator().manual_seed(0)
    mu = torch.linspace(-1, 1, dim, dtype=torch.float64)
    x0 = mu + s * torch.randn(n, dim, generator=gen, dtype=torch.float64)
    ref = gaussian_denoiser(mu, s)
    sigmas = [0.01, 0.3, 1.0, 5.0]

    same = M.per_sigma_error(ref, ref, x0, sigmas, generator=gen)
    assert list(same.columns) == ["sigma", "error", "stderr", "n"]
    assert (same.error == 0).all() and (same.stderr == 0).all()

    c = torch.tensor([0.1, -0.2, 0.3, 0.0, 0.5, -0.4], dtype=torch.float64)
    shifted = M.per_sigma_error(lambda x, sg: ref(x, sg) + c, ref, x0, sigmas, generator=gen, batch_size=999)
    np.testing.assert_allclose(shifted.error, float(c @ c) / dim, rtol=1e-12)
    assert shifted.stderr.max() < 1e-15

    # identity denoiser D(x) = x: x − D*(x) = σ²/(s²+σ²)(x − μ), x − μ ~ N(0, (s²+σ²)I)
    # → E error = σ⁴/(s² + σ²); checked within 4 of the reported standard errors
    ident = M.per_sigma_error(lambda x, sg: x, ref, x0, sigmas, generator=gen)
    expected = np.array(sigmas) ** 4 / (s**2 + np.array(sigmas) ** 2)
    assert np.all(np.abs(ident.error - expected) < 4 * ident.stderr)

    # reproducible for a seeded generator; numpy x0 becomes float32 and still works
    a = M.per_sigma_error(lambda x, sg: x, ref, x0, sigmas, generator=torch.Generator().manual_seed(3))
    b = M.per_sigma_error(lambda x, sg: x, ref, x0, sigmas, generator=torch.Generator().manual_seed(3))
    pd.testing.assert_frame_equal(a, b)
    ref32 = gaussian_denoiser(mu.float(), s)
    f32 = M.per_sigma_error(lambda x, sg: x, ref32, x0.numpy(), sigmas, generator=gen)
    assert np.all(np.abs(f32.error - expected) < 4 * f32.stderr + 1e-6)


# ----------------------------------------------------------------------------------------------
# bootstrap
# ----------------------------------------------------------------------------------------------


def test_bootstrap_coverage_of_true_mean():
    rng = np.random.default_rng(9)
    trials, n, mu = 200, 30, 1.0
    hits = 0
    for t in range(trials):
        est, lo, hi = M.bootstrap_ci(rng.normal(mu, 2.0, n), seed=t)
        assert lo <= est <= hi
        hits += lo <= mu <= hi
    # the percentile bootstrap of a mean at n = 30 covers ≈ 93–94 % (slightly under the nominal 95 %);
    # with 200 trials the binomial sd is ≈ 1.7 %, so [0.88, 0.99] is about ±3 sd around it
    assert 0.88 <= hits / trials <= 0.99


def test_bootstrap_width_matches_normal_theory():
    """For n = 400 the bootstrap distribution of the mean is ≈ normal with sd s·sqrt((n−1)/n)/√n, so the
    95 % percentile interval has width ≈ 2·1.96 of that. The Monte-Carlo error of the two quantiles
    with B = 2000 is ≈ 2 % of the width, so 8 % is ≈ 3.5 sd (a 90 % interval would be 16 % narrower)."""
    v = np.random.default_rng(12).exponential(1.0, 400)
    ci = M.bootstrap_ci(v, n_boot=2000, seed=1)
    se = v.std(ddof=0) / math.sqrt(len(v))
    assert (ci.hi - ci.lo) / (2 * 1.959964 * se) == pytest.approx(1.0, abs=0.08)


def test_bootstrap_edge_cases():
    one = M.bootstrap_ci([2.5])
    assert tuple(one) == (2.5, 2.5, 2.5) and one.degenerate and one.n == 1
    with_nan = M.bootstrap_ci([1.0, np.nan, 3.0, 2.0])
    assert with_nan.n == 3 and with_nan.n_nan == 1 and not with_nan.degenerate
    assert with_nan.estimate == 2.0 and 1.0 <= with_nan.lo <= with_nan.hi <= 3.0
    empty = M.bootstrap_ci([np.nan, np.nan])
    assert empty.degenerate and math.isnan(empty.estimate) and empty.n_nan == 2
    v = np.random.default_rng(0).normal(size=15)
    # a stat without `axis` falls back to a loop over the same resamples
    assert tuple(M.bootstrap_ci(v, np.median)) == tuple(M.bootstrap_ci(v, lambda a: float(np.median(a))))
    table = M.bootstrap_table(
        pd.DataFrame({"sampler": ["ode"] * 3 + ["sde"], "nn_ratio": [0.8, 0.9, 0.85, 1.0]}), "sampler", "nn_ratio"
    )
    assert table.set_index("sampler").loc["sde", "degenerate"]
    assert table.set_index("sampler").loc["ode", "estimate"] == pytest.approx(0.85)
