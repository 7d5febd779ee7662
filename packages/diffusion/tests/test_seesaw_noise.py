"""seesaw_noise: a ci-size run (structure + recomputed numbers), closed forms of its pieces, config errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from diffusion.experiments.common import DataConfig, build_data
from diffusion.experiments.seesaw_noise import (
    EXPERIMENT,
    Config,
    arm_config,
    band_errors,
    errors,
    high_mass,
    late_trend,
)
from fulcrum_core.cli import plot_experiment, run_experiment
from fulcrum_core.config import ConfigError, from_mapping

CI_TRAIN = {
    "net": "mlp",
    "width": 32,
    "depth": 2,
    "emb_dim": 32,
    "batch_size": 128,
    "steps": 200,
    "lr": 2e-3,
    "ema": 0.99,
    "eval_every": 50,
}
CI = {
    "data": {"kind": "mixture", "dim": 16, "k": 8, "std": 0.1, "n_train": 2000},
    "train": CI_TRAIN,
    "seeds": 2,
    "n_sigmas": 8,
    "n_eval": 500,
    "track_points": 250,
    "n_boot": 500,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seesaw_noise")
    summary = run_experiment("diffusion", EXPERIMENT, CI, out)
    return out, summary


def test_ci_run_outputs(ci_run, tmp_path):
    out, summary = ci_run
    cfg = from_mapping(Config, CI)
    for name in EXPERIMENT.outputs:
        assert (out / name).is_file(), name
    ps = pd.read_csv(out / "per_sigma.csv")
    assert set(ps.arm) == {"constant", "full", "high", "low", "high_matched"}
    nets = ps[ps.arm != "constant"]
    assert nets.groupby("arm").size().eq(cfg.seeds * cfg.n_sigmas).all()
    assert np.isfinite(nets.error).all() and (nets.error >= 0).all()
    assert summary["checks"]["finite_errors"] and summary["checks"]["runs"] == 8
    # closed form: m = P(σ ≥ σ_split) = 1 − Φ((ln σ_split − P_mean)/P_std) and the matched arm's steps
    m = 1 - stats.norm.cdf((math.log(cfg.sigma_split) + 1.2) / 1.2)
    num = summary["numbers"]
    assert num["high_mass"] == pytest.approx(m, rel=1e-9)
    assert num["high_matched_steps"] == round(m * CI_TRAIN["steps"])

    # the band ratios are recomputed from per_sigma.csv: exp(mean over seeds of the band mean of ln e_full − ln e_b)
    band_logs = nets.assign(log_e=np.log(nets.error)).groupby(["arm", "seed", "band"]).log_e.mean()
    for key, (a, b, band) in {
        "full/high@high": ("full", "high", "high"),
        "full/high_matched@high": ("full", "high_matched", "high"),
        "full/low@low": ("full", "low", "low"),
    }.items():
        diff = [band_logs[(a, s, band)] - band_logs[(b, s, band)] for s in range(cfg.seeds)]
        r = num["band_ratio"][key]
        assert r["estimate"] == pytest.approx(math.exp(np.mean(diff)), rel=1e-9)
        assert r["lo"] <= r["estimate"] <= r["hi"]

    # history: every eval_every steps from 0 to the end, for full / high / low; no matched duplicates
    hist = pd.read_csv(out / "history.csv")
    assert set(hist.arm) == {"full", "high", "low"}
    steps = sorted(hist[(hist.arm == "high") & (hist.seed == 0)].step)
    assert steps == list(range(0, CI_TRAIN["steps"] + 1, CI_TRAIN["eval_every"]))
    assert np.isfinite(hist[["err_high", "err_low"]]).all().all()
    verdicts = {c["verdict"] for c in summary["claims"]}
    assert len(summary["claims"]) == 5
    assert verdicts <= {"reproduced", "not reproduced", "not testable at this scale"}
    paths = plot_experiment(EXPERIMENT, out, tmp_path / "figure")
    assert all(p.stat().st_size > 0 for p in paths)
    assert json.loads((out / "summary.json").read_text())["experiment"] == "seesaw_noise"


def test_errors_closed_form():
    """e(σ) of the reference itself is 0; of the constant D ≡ 0 on the ring at small σ it is E‖D*‖²/2.

    With D*(x; σ) ≈ μ_k + a(x − μ_k), a = s²/(s² + σ²) (modes 10 std apart: the posterior is one-hot),
    E‖D*‖²/2 = r²/2 + a·s² exactly for that approximation. Tolerance: 4 Monte-Carlo standard errors.
    """
    cfg = from_mapping(Config, {**CI, "n_eval": 4000})
    ds = build_data(DataConfig(kind="ring", n_train=100))
    x0 = ds.real(cfg.n_eval, seed=3)
    sig = np.array([0.01, 0.02])
    assert np.all(errors(ds.reference, ds, x0, sig, cfg) == 0)

    def zero(x, sigma):
        return torch.zeros_like(x)

    e = errors(zero, ds, x0, sig, cfg)
    r, s = 0.7, 0.05
    a = s**2 / (s**2 + sig**2)
    expected = r**2 / 2 + a * s**2
    # per-sample ‖D*‖²/2 = (r² + 2r·a·z_r·√(s²+σ²) + …)/2: sd ≈ r·a·√(s²+σ²) ≈ 0.035 → SE ≈ 0.035/√4000
    se = r * np.sqrt(s**2 + sig**2) / math.sqrt(cfg.n_eval)
    assert np.all(np.abs(e - expected) < 4 * se)


def test_band_errors_and_trend():
    e = np.array([1.0, 4.0, 0.01, 0.04])
    bands = np.array(["low", "low", "high", "high"])
    be = band_errors(e, bands)
    assert be["low"] == pytest.approx(2.0) and be["high"] == pytest.approx(0.02)
    steps = np.arange(0, 1001, 100)
    # ln v = −0.002·step: the late half (500 steps) changes ln v by −1 exactly
    assert late_trend(steps, np.exp(-0.002 * steps), 1000, 0.5) == pytest.approx(-1.0)
    assert math.isnan(late_trend(steps, np.ones(11), 1000, 0.15))  # 2 records in the window


def test_arm_configs():
    cfg = from_mapping(Config, CI)
    full, high, low, matched = (arm_config(cfg, a, 1) for a in ("full", "high", "low", "high_matched"))
    assert full.sigma.band_lo is None and full.sigma.band_hi is None
    assert high.sigma.band_lo == cfg.sigma_split and low.sigma.band_hi == cfg.sigma_split
    assert full.seed == high.seed == low.seed == CI_TRAIN.get("seed", 0) + 1
    m = high_mass(cfg.train.sigma.build(), cfg.sigma_split)
    assert matched.steps == round(m * full.steps) and matched.sigma == high.sigma
    assert {full.width, high.width, low.width, matched.width} == {32}


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"train": {**CI_TRAIN, "sigma": {"band_lo": 0.1}}}, "train.sigma.band_lo"),
        ({"train": {**CI_TRAIN, "eval_every": 0}}, "train.eval_every"),
        ({"sigma_split": 20.0}, "eval_sigma_min/eval_sigma_max"),
        ({"seeds": 0}, "seeds"),
        ({"track_points": 5000}, "track_points"),
        ({"n_sigmas": 2}, "n_sigmas"),
        ({"late_fraction": 0.0}, "late_fraction"),
        ({"data": {"kind": "moons"}}, "data.kind"),
        ({"train": {**CI_TRAIN, "sigma": {"kind": "loguniform", "sigma_min": 1.0, "sigma_max": 80.0}}}, "sigma_split"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_config_errors(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("/", "/")):
        from_mapping(Config, {**CI, **override}, where="seesaw_noise")
