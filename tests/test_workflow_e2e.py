"""A real ci-scale run of the DAG into a temporary directory: files, contents, ledger, report."""

import csv
import json

import pytest
from wfhelpers import planned_jobs, snakemake

from fulcrum_core.claims import VERDICTS, rejudge

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

EXP = "results/optim_theory/sgd_bias_variance"


@pytest.fixture
def workdir(ci_workdir):
    return ci_workdir


def test_figure_data_summary_and_provenance(workdir):
    d = workdir / EXP
    for name in ("curves.csv", "mc.csv", "summary.json", "provenance.json"):
        assert (d / name).stat().st_size > 0, name
    for ext in ("png", "pdf"):
        assert (d / f"figure.{ext}").stat().st_size > 10_000
    prov = json.loads((d / "provenance.json").read_text())
    # the resolved config is the ci scale file merged over config/config.yaml
    assert prov["config"]["dim"] == 800 and prov["config"]["source_exponent"] == 2.5
    assert prov["config"]["mc"]["runs"] == 4000
    assert prov["git"]["commit"] is None or len(prov["git"]["commit"]) == 40
    summary = json.loads((d / "summary.json").read_text())
    assert summary["checks"]["mc_exact_inside_all"] is True
    assert (workdir / "results/logs/optim_theory/run_sgd_bias_variance.log").exists()


def test_ledger_rows_match_the_summary(workdir):
    summary = json.loads((workdir / EXP / "summary.json").read_text())
    with open(workdir / "results/claims.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["experiment"] == "sgd_bias_variance"]
    assert len(rows) == len(summary["claims"]) == 5
    for row, rec in zip(rows, summary["claims"], strict=True):
        assert row["paper"] == "2506.15535"
        assert row["claim"] == rec["claim"]
        assert row["verdict"] in VERDICTS and row["verdict"] == rejudge(rec)
    md = (workdir / "results/claims.md").read_text()
    assert "## 2506.15535" in md and "sgd_bias_variance" in md


def test_rerun_is_a_no_op_and_report_renders(workdir):
    proc = snakemake("-n", "--directory", str(workdir), "all", "--config", "scale=ci")
    assert planned_jobs(proc.stdout + proc.stderr) == {}
    snakemake(
        "--directory",
        str(workdir),
        "--report",
        "results/report.html",
        "all",
        "--config",
        "scale=ci",
    )
    report = (workdir / "results/report.html").read_text()
    assert len(report) > 50_000
    # the figure's caption and the ledger's caption are both in the report
    assert "Zou et al. (2021)" in report and "The claims ledger: for every paper claim" in report


def test_changing_a_parameter_reruns_the_experiment(workdir, tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("experiments:\n  sgd_bias_variance:\n    noise_var: 2.0\n")
    proc = snakemake(
        "-n",
        "--directory",
        str(workdir),
        "fig_sgd_bias_variance",
        "--configfile",
        str(override),
        "--config",
        "scale=ci",
    )
    assert planned_jobs(proc.stdout + proc.stderr).get("run_sgd_bias_variance") == 1


def test_seesaw_runs_are_shared_and_the_lr_grid_picks_the_comparison_lr(workdir):
    runs = {p.name for p in (workdir / "results/seesaw_train/runs").iterdir()}
    best = json.loads((workdir / "results/seesaw_train/seesaw_vs_cosine/best_lr.json").read_text())["best_lr"]
    # ci: grid {3e-3, 1e-2} at B = 2, CBS ladder {2, 4, 8} at 3e-3, comparison at the best LR
    assert {f"cosine_B2_lr{best:g}_s0", f"seesaw_B2_lr{best:g}_s0", "cosine_B8_lr0.003_s0"} <= runs
    assert len(runs) == len(set(runs))
    summary = json.loads((workdir / "results/seesaw_train/seesaw_vs_cosine/summary.json").read_text())
    assert summary["numbers"]["best_lr"] == best
    assert [c["paper"] for c in summary["claims"]] == ["2510.14717", "2510.14717"]
    for rec in summary["claims"]:
        assert rec["verdict"] == rejudge(rec)
    # the Seesaw run's ledger really ramps its batch
    steps = (workdir / f"results/seesaw_train/runs/seesaw_B2_lr{best:g}_s0/steps.csv").read_text().splitlines()
    batches = [int(line.split(",")[3]) for line in steps[1:]]
    assert batches[0] == 2 and batches[-1] > 2
