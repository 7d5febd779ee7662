"""The logreg_adaptive experiment end to end, in process (run → data + summary → figure)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from fulcrum_core import ConfigError
from fulcrum_core.claims import rejudge
from fulcrum_core.cli import plot_experiment, run_experiment
from fulcrum_core.config import from_mapping
from optim_theory.experiments import logreg_adaptive as exp
from optim_theory.logistic import data

# margins with no Perceptron ties on the chain family ((1 − γ²)/(2γ²) not an integer)
TINY = {"margins": [0.3, 0.25, 0.14], "etas": [1.0, 2.0, 4.0, 8.0], "generic": {"n": 50, "dim": 8}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lad")
    run_experiment("optim_theory", exp.EXPERIMENT, TINY, out)
    return out


def test_run_writes_the_data_files(run_dir):
    assert {p.name for p in run_dir.iterdir()} == {*exp.OUTPUTS, "summary.json", "provenance.json"}
    sep = pd.read_csv(run_dir / "separation.csv")
    assert set(sep.family) == {"hard", "generic"}
    assert len(sep) == 2 * 3 * (4 + 1)
    hard = sep[(sep.family == "hard") & (sep.method == "Perceptron")]
    for _, row in hard.iterrows():
        assert row.steps == data.chain_perceptron_updates(row.margin_nominal)
        assert row.steps <= row.novikoff_bound
    gd_rows = sep[sep.method == "GD"]
    assert gd_rows.steps.notna().all()
    risk = pd.read_csv(run_dir / "risk.csv")
    assert risk[risk.t == 0].log_risk.to_numpy() == pytest.approx(math.log(math.log(2)))
    burn = pd.read_csv(run_dir / "burn_in.csv")
    assert (burn.worst_log_risk_after_burn_in >= burn.log_risk_at_burn_in - 1e-12).all()
    assert (burn.burn_in_steps == np.ceil(1 / burn.margin**2 - 1e-9)).all()


def test_summary_claims(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["experiment"] == "logreg_adaptive"
    assert len(summary["claims"]) == 6
    for rec in summary["claims"]:
        assert rec["paper"] == "2504.04105"
        assert rec["verdict"] == rejudge(rec)
    numbers = summary["numbers"]
    assert numbers["perceptron_over_novikoff_max"] <= 1.0
    assert numbers["post_burn_in_slope"] < 0
    assert numbers["post_burn_in_fit_margin"] == pytest.approx(min(numbers["margins"]))
    assert set(numbers["gd_separation_slope_by_eta"]) == {"1", "2", "4", "8"}


def test_pooled_slope_recovers_a_known_exponent():
    inv = np.array([10.0, 20.0, 40.0, 80.0])
    frame = pd.DataFrame(
        {"eta": np.repeat([1.0, 2.0], 4), "inv_gamma2": np.tile(inv, 2), "steps": np.r_[3 * inv**0.8, 7 * inv**0.8]}
    )
    assert exp.pooled_slope(frame, "eta") == pytest.approx(0.8, rel=1e-12)


def test_plot_writes_png_and_pdf(run_dir):
    for path in plot_experiment(exp.EXPERIMENT, run_dir, run_dir / "fig" / "figure"):
        assert path.stat().st_size > 10_000


def test_bad_config_key_is_named_and_nothing_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"logreg_adaptive\.generic\.nn"):
        run_experiment("optim_theory", exp.EXPERIMENT, {"generic": {"nn": 3}}, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"margins": [0.5]}, "margins"),
        ({"etas": [1.0, -2.0, 3.0]}, "etas"),
        ({"separation_budget_factor": 1.0}, "separation_budget_factor"),
        ({"r2_min": 0.0}, "r2_min"),
    ],
)
def test_invalid_values_are_rejected(bad, key):
    with pytest.raises(ConfigError, match=key):
        from_mapping(exp.Config, bad, where="logreg_adaptive")
