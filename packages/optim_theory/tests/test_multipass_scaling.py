"""The multipass_scaling experiment end to end (in process; through the CLI once it is registered)."""

import json

import numpy as np
import pandas as pd
import pytest

from fulcrum_core import ConfigError, from_mapping
from fulcrum_core.claims import rejudge
from fulcrum_core.cli import plot_experiment, run_experiment
from fulcrum_core.testing import run_cli
from optim_theory.experiments import multipass_scaling as mps

TINY = {
    "dim": 400,
    "trials": 3,
    "by_m": {"m_min": 4, "m_max": 64, "samples": [1024], "fit_m_min": 4, "fit_m_max": 32},
    "one_pass": {
        "sketch_dim": 64,
        "n_min": 32,
        "n_max": 2048,
        "fit_n_min": 32,
        "fit_n_max": 512,
        "multipass_n_max": 512,
    },
    "multi_pass": {"sketch_dim": 64, "samples": 128, "l_max_factor": 8, "points_per_octave": 1},
    "check": {"runs": 3000, "multipass_runs": 3000, "steps": 24, "multipass_steps": 30},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("mps")
    summary = run_experiment("optim_theory", mps.EXPERIMENT, TINY, out)
    return out, summary


def test_run_writes_tidy_data_summary_and_provenance(run_dir):
    out, _ = run_dir
    assert {p.name for p in out.iterdir()} == {*mps.OUTPUTS, "summary.json", "provenance.json"}
    by_m = pd.read_csv(out / "by_m.csv")
    assert set(by_m.samples) == {0, 1024} and by_m.trial.nunique() == 3
    # the N = ∞ row is the approximation error itself, and every finite-N error lies above it
    inf = by_m[by_m.samples == 0]
    np.testing.assert_allclose(inf.error, inf.approx_error)
    assert (by_m[by_m.samples > 0].above_approx > 0).all()
    by_n = pd.read_csv(out / "by_n.csv")
    assert set(by_n.method) == {"one pass (exact)", "multi-pass, L = N^(a/b)"}
    assert by_n[by_n.method != "one pass (exact)"].samples.max() <= 512
    by_l = pd.read_csv(out / "by_l.csv")
    multi = by_l[by_l.method == "multi-pass"]
    # SGD's expected error is GD's plus a non-negative fluctuation term
    assert (multi.error >= multi.gd_error).all() and (multi.gd_error > multi.approx_error).all()
    pivot = 128 ** (2.0 / 1.5)
    assert round(pivot) in set(multi.steps)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["config"]["one_pass"]["sketch_dim"] == 64 and prov["seed"] == 0


def test_summary_claims_have_computed_verdicts_and_checks_pass(run_dir):
    _, summary = run_dir
    assert summary["experiment"] == "multipass_scaling"
    assert len(summary["claims"]) == 5
    for rec in summary["claims"]:
        assert rec["paper"] == "2506.08415"
        assert rec["verdict"] == rejudge(rec)
    numbers = summary["numbers"]
    for key in ("slope_M", "slope_N_one_pass", "slope_L_multi_pass", "slope_N_multi_pass"):
        assert np.isfinite(numbers[key])
    assert numbers["predicted_slope_L"] == pytest.approx(-0.25)
    checks = summary["checks"]
    assert checks["mc_exact_inside_all"] is True
    assert checks["gd_closed_form_vs_recursion_rel_diff"] < 1e-9


def test_run_is_deterministic_for_a_seed(run_dir, tmp_path):
    out, summary = run_dir
    again = run_experiment("optim_theory", mps.EXPERIMENT, TINY, tmp_path)
    assert again["numbers"] == summary["numbers"]


def test_plot_writes_png_and_pdf(run_dir):
    out, _ = run_dir
    paths = plot_experiment(mps.EXPERIMENT, out, out / "fig" / "figure")
    for path in paths:
        assert path.stat().st_size > 10_000


def test_steps_grid_spans_the_configured_range_and_contains_the_pivot():
    cfg = mps.MultiPass(samples=1000, l_min_factor=0.25, l_max_factor=16.0, points_per_octave=2)
    grid = mps.steps_grid(1000, 2.0, 1.5, cfg)
    assert grid.min() <= 250 and grid.max() == round(16 * 10_000)
    assert 10_000 in grid
    assert np.all(np.diff(grid) > 0)


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"source_exponent": 2.5}, "spectrum_exponent > source_exponent"),
        ({"lr_times_trace": 0.7}, "lr_times_trace"),
        ({"dim": 100}, "by_m.m_max"),
        ({"one_pass": {"fit_n_max": 10**7}}, "fit_n_max"),
        ({"multi_pass": {"l_max_factor": 0.5}}, "l_max_factor"),
        ({"multi_pass": {"stepz": 3}}, "multipass_scaling.multi_pass.stepz"),
    ],
)
def test_bad_config_names_the_key(bad, key):
    with pytest.raises(ConfigError, match=key.replace("(", r"\(").replace(")", r"\)")):
        from_mapping(mps.Config, bad, where="multipass_scaling")


def test_cli_runs_it_once_registered(tmp_path):
    from optim_theory.experiments import EXPERIMENTS

    if "multipass_scaling" not in {e.name for e in EXPERIMENTS}:
        pytest.skip("multipass_scaling is not registered in optim_theory.experiments yet")
    proc = run_cli(
        "optim_theory",
        "run",
        "multipass_scaling",
        "--config",
        json.dumps({"multi_pass": {"stepz": 1}}),
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 2 and "multipass_scaling.multi_pass.stepz" in proc.stderr
