"""The sgd_bias_variance experiment end to end through the package CLI (no Snakemake)."""

import json

import pandas as pd
import pytest

from fulcrum_core.claims import rejudge
from fulcrum_core.testing import check_cli_contract, run_cli
from optim_theory.experiments import EXPERIMENTS

TINY = {
    "dim": 300,
    "n_min": 16,
    "n_max": 2048,
    "fit_n_min": 32,
    "fit_max_kstar_fraction": 0.1,
    "mc": {"dim": 4, "steps": 32, "runs": 2000, "checkpoints": 3},
}


def cli(*args):
    return run_cli("optim_theory", *args)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sbv")
    proc = cli("run", "sgd_bias_variance", "--config", json.dumps(TINY), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_run_writes_data_summary_and_provenance(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert names == {"curves.csv", "mc.csv", "summary.json", "provenance.json"}
    curves = pd.read_csv(run_dir / "curves.csv")
    assert set(curves.estimator) == {"tail average", "last iterate"}
    assert curves.n.max() == TINY["n_max"]
    # exact bias + variance = total, row by row
    exact = curves[curves.source == "exact"].pivot_table(index=["estimator", "n"], columns="component", values="risk")
    pd.testing.assert_series_equal(exact.bias + exact.variance, exact.total, check_names=False, rtol=1e-12)

    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["config"]["dim"] == 300 and prov["config"]["mc"]["runs"] == 2000
    assert prov["seed"] == 0
    assert prov["packages"]["numpy"] and prov["packages"]["fulcrum-optim-theory"] == "0.1.0"
    for key in ("git", "device", "wall_time_s", "started", "finished"):
        assert key in prov


def test_summary_claims_carry_computed_verdicts(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["package"] == "optim_theory" and summary["experiment"] == "sgd_bias_variance"
    assert len(summary["claims"]) == 5
    for rec in summary["claims"]:
        assert rec["paper"] == "2506.15535"
        assert rec["verdict"] == rejudge(rec)
    slopes = {k: v for k, v in summary["numbers"].items() if k.endswith("_slope")}
    assert set(slopes) == {"tail_variance_slope", "tail_bias_slope"}
    assert summary["checks"]["mc_exact_inside_all"] is True


def test_plot_writes_png_and_pdf(run_dir):
    proc = cli("plot", "sgd_bias_variance", "--data", str(run_dir), "--out", str(run_dir / "fig" / "figure"))
    assert proc.returncode == 0, proc.stderr
    for ext in ("png", "pdf"):
        assert (run_dir / "fig" / f"figure.{ext}").stat().st_size > 10_000


def test_bad_config_key_is_named_and_nothing_is_written(tmp_path):
    proc = cli("run", "sgd_bias_variance", "--config", json.dumps({"mc": {"runz": 10}}), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "sgd_bias_variance.mc.runz" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_invalid_value_is_rejected(tmp_path):
    proc = cli("run", "sgd_bias_variance", "--config", '{"lr_times_trace": 0.9}', "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "lr_times_trace" in proc.stderr


def test_plot_without_data_fails_clearly(tmp_path):
    proc = cli("plot", "sgd_bias_variance", "--data", str(tmp_path), "--out", str(tmp_path / "f"))
    assert proc.returncode == 2
    assert "curves.csv" in proc.stderr


def test_cli_lists_the_experiments():
    check_cli_contract("optim_theory", experiments={e.name for e in EXPERIMENTS})
