"""The logreg_large_stepsize experiment end to end, in process (run → data + summary → figure)."""

import json

import numpy as np
import pandas as pd
import pytest

from fulcrum_core import ConfigError
from fulcrum_core.claims import rejudge
from fulcrum_core.cli import plot_experiment, run_experiment
from fulcrum_core.config import from_mapping
from optim_theory.experiments import logreg_large_stepsize as exp

TINY = {
    "lambda_min": 1e-4,
    "trajectory_steps": 3000,
    "heatmap": {"etas_per_decade": 1, "max_steps": 3000},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lls")
    run_experiment("optim_theory", exp.EXPERIMENT, TINY, out)
    return out


def test_run_writes_the_data_files_and_summary(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert names == {*exp.OUTPUTS, "summary.json", "provenance.json"}
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["seed"] == 0 and prov["config"]["lambda_min"] == 1e-4
    steps = pd.read_csv(run_dir / "steps.csv")
    small = steps[steps.method == "small"].sort_values("kappa")
    assert small.converged.all() and not small.nonmonotone.any()
    assert (np.diff(small.steps) > 0).all()  # more ill-conditioned ⇒ more steps
    primary = steps[(steps.method == "large") & (steps.c == 4.0)].sort_values("kappa")
    fit = primary.kappa.to_numpy() >= 100
    # the large stepsize is far beyond the classical limit and faster at every fitted κ
    assert (primary.eta_times_smoothness[fit] > 2).all()
    assert (primary.steps.to_numpy()[fit] < small.steps.to_numpy()[fit]).all()
    optimum = pd.read_csv(run_dir / "optimum.csv")
    assert (optimum.newton_decrement < 1e-9).all()
    assert (np.diff(optimum.f_star) < 0).all()  # F* decreases with λ
    traj = pd.read_csv(run_dir / "trajectories.csv")
    assert set(traj.method) == {"small", "large"} and (traj.gap > 0).all()
    heat = pd.read_csv(run_dir / "heatmap.csv")
    assert set(heat.status) <= {"converged", "diverged", "not converged in budget"}
    assert (heat.status == "diverged").any() and (heat.status == "converged").any()


def test_summary_claims_and_checks(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["experiment"] == "logreg_large_stepsize"
    assert len(summary["claims"]) == 3
    for rec in summary["claims"]:
        assert rec["paper"] == "2506.02336"
        assert rec["verdict"] == rejudge(rec)
    numbers = summary["numbers"]
    for key in ("small_step_slope", "large_step_slope_c1", "large_step_slope_c2", "large_step_slope_c4"):
        assert np.isfinite(numbers[key])
    assert numbers["small_step_slope"] > numbers["large_step_slope_c4"]
    checks = summary["checks"]
    assert checks["gd_limit_rel_objective_diff"] < 1e-12
    assert checks["gd_limit_w_distance"] < 1e-8
    assert checks["small_step_all_monotone"] is True


def test_plot_writes_png_and_pdf(run_dir):
    paths = plot_experiment(exp.EXPERIMENT, run_dir, run_dir / "fig" / "figure")
    for path in paths:
        assert path.stat().st_size > 10_000


def test_bad_config_key_is_named_and_nothing_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"logreg_large_stepsize\.heatmap\.max_stepz"):
        run_experiment("optim_theory", exp.EXPERIMENT, {"heatmap": {"max_stepz": 10}}, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"lambda_min": 1.0}, "lambda_min"),
        ({"primary_constant": 3.0}, "primary_constant"),
        ({"data": {"margin": 1.5}}, "data.margin"),
        ({"rel_tol": 0.0}, "rel_tol"),
    ],
)
def test_invalid_values_are_rejected(bad, key):
    with pytest.raises(ConfigError, match=key.split(".")[-1]):
        from_mapping(exp.Config, bad, where="logreg_large_stepsize")
