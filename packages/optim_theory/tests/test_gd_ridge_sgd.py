"""The gd_ridge_sgd experiment: its SGD tuning (also with eigenvalue multiplicities), the GD-vs-ridge constant,
and a tiny end-to-end run through the framework (data, summary with computed verdicts, figure)."""

import json

import numpy as np
import pandas as pd
import pytest

from fulcrum_core import ConfigError, from_mapping
from fulcrum_core.claims import rejudge
from fulcrum_core.cli import plot_experiment, run_experiment
from optim_theory.experiments import gd_ridge_sgd as exp
from optim_theory.linreg import exact
from optim_theory.linreg import fixed_design as fd

TINY = {
    "random": {"count": 4, "dim": 24, "n_min": 16, "n_max": 64},
    "power": {"dim": 60, "n_min": 32, "n_max": 128, "designs": 2},
    "two_scale": {"n_min": 32, "n_max": 128, "designs": 2},
    "fast": {"exp_dim": 20, "power_dim": 40, "n_min": 32, "n_max": 128},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("grs")
    run_experiment("optim_theory", exp.EXPERIMENT, TINY, out)
    return out


def test_run_writes_data_and_summary(run_dir):
    assert {p.name for p in run_dir.iterdir()} >= {"instances.csv", "curves.csv", "summary.json", "provenance.json"}
    inst = pd.read_csv(run_dir / "instances.csv")
    assert len(inst) == 4 * 2 and inst.instance.nunique() == 4
    assert np.allclose(inst.ratio_tuned, inst.gd_best / inst.ridge_best)
    curves = pd.read_csv(run_dir / "curves.csv")
    assert set(curves.panel) == {"b", "c", "d"}
    assert set(curves[curves.panel == "c"].method) == {"GD", "ridge", "SGD"}
    assert (curves.risk_lo <= curves.risk * (1 + 1e-12)).all()  # min of a mean ≥ smallest per-design min
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["claims"]) == 11
    for rec in summary["claims"]:
        assert rec["paper"] == "2509.17251"
        assert rec["verdict"] == rejudge(rec)
    numbers, checks = summary["numbers"], summary["checks"]
    for key in ("a_max_ratio_tuned", "b_gd_slope", "b_ridge_slope", "c_gd_slope", "c_sgd_slope", "d_exp_ratio_max"):
        assert np.isfinite(numbers[key])
    assert checks["closed_form_vs_direct_max_rel_err"] < 1e-10
    assert checks["random_strong_edge_minima"] == 0 and checks["curve_strong_edge_minima"] == 0
    assert checks["grid_refinement_max_rel_change"] < 0.01


def test_tuned_curve_is_min_of_design_average_and_spread_is_per_design():
    times = np.geomspace(0.1, 100, 9)
    gd = np.array([[5, 4, 3, 2, 1.5, 2, 3, 4, 5], [6, 5, 4, 1.0, 2.5, 3, 4, 5, 6.0]])
    ridge = np.full((2, 10), 7.0)
    ridge[:, 5] = [2.0, 4.0]
    rows, edges = exp._curve_rows("b", "s", 100, exp.PathRisks(times, gd, ridge))
    by = {r["method"]: r for r in rows}
    mean = gd.mean(axis=0)
    assert by["GD"]["risk"] == mean.min() and by["GD"]["param"] == times[np.argmin(mean)]
    assert (by["GD"]["risk_lo"], by["GD"]["risk_hi"]) == (1.0, 1.5)
    assert by["ridge"]["risk"] == 3.0 and by["ridge"]["param"] == 1 / times[5]
    assert edges == 0


def test_sgd_tuned_is_the_minimum_over_schedules_and_stepsizes():
    lam = np.array([1.0, 0.3, 0.1, 0.03, 0.01])
    m0, noise, n = np.array([1.0, 0.5, 0.2, 0.0, 0.1]), 0.5, 64
    tuning = exp.Tuning(sgd_per_octave=2)
    best = exp.sgd_tuned(lam, m0, noise, n, tuning)
    grid = exp.sgd_lr_grid(lam.sum(), tuning)
    constant, decay, _ = exp.sgd_schedules(n, grid)
    candidates = []
    for k in range(grid.size):  # one schedule at a time, straight from linreg.exact
        for kind, lrs in (("tail", constant[k]), ("last", decay[k])):
            try:
                if kind == "tail":
                    candidates.append(exact.sgd_tail_average_risk(lam, m0, noise, lrs, start=n // 2))
                else:
                    candidates.append(exact.sgd_excess_risk(lam, m0, noise, lrs)[-1])
            except FloatingPointError:
                pass
    assert best["risk"] == pytest.approx(min(candidates), rel=1e-12)
    # the same answer with explicit multiplicities of 1
    grouped = exp.sgd_tuned(lam, m0, noise, n, tuning, mult=np.ones(5))
    assert grouped["risk"] == pytest.approx(best["risk"], rel=1e-11)


def test_rowwise_fallback_marks_diverged_rows_inf():
    def fn(L):  # stands in for an exact.* call: raises if any row diverges, like linreg.exact
        if np.any(L[:, 0] > 1):
            raise FloatingPointError("diverged")
        return L[:, 0] * 2

    out = exp._rowwise(fn, np.array([[0.5, 0], [3.0, 0], [0.25, 0]]))
    np.testing.assert_array_equal(out, [1.0, np.inf, 0.5])
    # and a real divergence of linreg.exact is caught
    lam, m0 = np.array([1.0, 0.5]), np.array([1.0, 1.0])
    lrs = np.array([np.full(400, 0.1), np.full(400, 3.0)])
    out = exp._rowwise(lambda L: exact.sgd_excess_risk(lam, m0, 0.1, L)[:, -1], lrs)
    assert np.isfinite(out[0]) and np.isinf(out[1])


def test_step_decay_schedule_shape():
    constant, decay, halvings = exp.sgd_schedules(256, np.array([0.1, 0.2]))
    assert constant.shape == decay.shape == (2, 256) and halvings == 3
    assert decay[0, 0] == 0.1 and decay[0, -1] == pytest.approx(0.1 / 8)
    assert np.all(np.diff(decay, axis=1) <= 0)


def test_commuting_case_constant_is_four():
    # Per eigen-direction (y = ηs ≤ 1, t ≥ 1 steps, λ = 1/(ηt)): GD's variance factor over ridge's
    # has supremum 4 (at t = 1, y = 1) and GD's bias factor never exceeds ridge's.
    y = np.linspace(1e-4, 1, 2001)[:, None]
    t = np.arange(1, 200)[None, :]
    x = y * t
    var_ratio = ((1 - (1 - y) ** t) * (1 + x) / x) ** 2
    bias_ratio = ((1 - y) ** t * (1 + x)) ** 2
    assert var_ratio.max() == pytest.approx(4.0) and np.unravel_index(var_ratio.argmax(), var_ratio.shape) == (2000, 0)
    assert bias_ratio.max() <= 1 + 1e-12
    # a design whose Σ̂ commutes with H: GD(T) ≤ 4·ridge(1/T) along the whole grid
    n, d = 40, 6
    lam = 0.7 ** np.arange(d)
    Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((n, d)))
    X = np.sqrt(n) * Q * np.sqrt(lam) * np.linspace(0.5, 1.5, d)  # XᵀX/n diagonal
    design = fd.FixedDesign.from_design(X, lam, np.ones(d))
    times = exp.time_grid([design], exp.Tuning())
    paths = exp.path_risks([design], 0.2, times)
    assert np.max(paths.gd[0] / paths.ridge[0, :-1]) <= 4.0


def test_two_scale_spectrum_scaling():
    tc = exp.TwoScale()
    head, w, D, eps, r = exp.two_scale_spectrum(tc, 256)
    assert w @ (head * w) == pytest.approx(1.0)
    assert D == 8 * 256**2 and D * eps == pytest.approx(r) and r == pytest.approx(0.5 * 256**0.75)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="gd_ridge_sgd.fast.n_maxx"):
        from_mapping(exp.Config, {"fast": {"n_maxx": 3}}, where="gd_ridge_sgd")
    with pytest.raises(ConfigError, match="tail_trace_exponent"):
        from_mapping(exp.Config, {"two_scale": {"tail_trace_exponent": 1.2}}, where="gd_ridge_sgd")
    with pytest.raises(ConfigError, match="source_exponent"):
        from_mapping(exp.Config, {"power": {"spectrum_exponent": 2.0, "source_exponent": 4.0}}, where="gd_ridge_sgd")


def test_plot_writes_png_and_pdf(run_dir):
    paths = plot_experiment(exp.EXPERIMENT, run_dir, run_dir / "fig" / "figure")
    for p in paths:
        assert p.stat().st_size > 10_000
