import json
import math
from pathlib import Path

import numpy as np
import pytest

from fulcrum_core.claims import rejudge
from fulcrum_core.cli import plot_experiment, run_experiment
from optim_theory.experiments import seesaw_linreg
from optim_theory.experiments.seesaw_linreg import EXPERIMENT, seesaw_schedule


@pytest.mark.parametrize(("alpha", "beta"), [(2.0, 1.0), (math.sqrt(2), math.sqrt(2)), (1.0, 2.0), (1.0, 4.0)])
def test_schedule_phases(alpha, beta):
    lrs, batches = seesaw_schedule(7000, 3, 0.1, 4, alpha, beta)
    changes = np.flatnonzero(np.diff(lrs) != 0) + 1 if alpha != 1 else np.flatnonzero(np.diff(batches) != 0) + 1
    phases = np.split(np.arange(lrs.size), changes)
    assert len(phases) == 4
    for k, idx in enumerate(phases):
        assert np.allclose(lrs[idx], 0.1 * alpha**-k)
        assert np.all(batches[idx] == round(4 * beta**k))
        # each phase consumes its 1/4 share of the samples, up to one batch
        assert 1750 <= batches[idx].sum() < 1750 + batches[idx][0] + 1
    assert lrs.size == sum(math.ceil(1750 / round(4 * beta**k)) for k in range(4))


def test_batch_ramp_takes_fewer_serial_steps():
    base = seesaw_schedule(2**14, 4, 0.1, 2, 2.0, 1.0)[0].size
    ramp = seesaw_schedule(2**14, 4, 0.1, 2, 1.0, 2.0)[0].size
    # phases of equal samples: steps ∝ Σ_k 2^-k / (K+1)
    assert ramp / base == pytest.approx(sum(2.0**-k for k in range(5)) / 5, rel=1e-3)


SMALL = {
    "dim": 200,
    "samples": 4096,
    "phases": 3,
    "batch0": 2,
    "curve_points": 20,
    "mc": {"dim": 4, "samples": 96, "phases": 2, "runs": 3000},
}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seesaw")
    summary = run_experiment("optim_theory", EXPERIMENT, SMALL, out)
    return out, summary


def test_run_records_claims_with_computed_verdicts(small_run):
    out, summary = small_run
    assert len(summary["claims"]) == 4
    for rec in summary["claims"]:
        assert rec["paper"] == "2510.14717" and rec["verdict"] == rejudge(rec)
    assert summary["claims"][-1]["comparison"] == "at_least"  # the α < √β NSGD variant
    assert summary["checks"]["mc_exact_inside_all"] is True
    assert 0 < summary["numbers"]["serial_step_fraction_SGD_1_2"] < 1


def test_plot(small_run):
    out, _ = small_run
    paths = plot_experiment(EXPERIMENT, out, out / "figure")
    assert all(Path(p).stat().st_size > 10_000 for p in paths)
    curves = json.loads((out / "provenance.json").read_text())["config"]
    assert curves["phases"] == 3


def test_bad_family_is_rejected():
    from fulcrum_core import ConfigError
    from fulcrum_core.config import from_mapping

    with pytest.raises(ConfigError, match="sgd_family"):
        from_mapping(seesaw_linreg.Config, {"sgd_family": [[2.0, 1.0]]})
