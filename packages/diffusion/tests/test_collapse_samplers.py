"""ci-size run of fig_collapse_samplers: output structure, two checked facts, config errors naming the key.

The "learned" network is trained for 0 steps: its last layer starts at zero, so F ≡ 0 and the EDM
denoiser is D = c_skip·x = σ_d²/(σ² + σ_d²)·x — the exact denoiser of N(0, σ_d² I). The probability-flow
ODE of that denoiser is solved by x(σ) ∝ sqrt(σ² + σ_d²), so Heun samples started from σ_max·z have
covariance σ_d²·σ_max²/(σ_max² + σ_d²)·I ≈ σ_d² I: a closed form that checks training → denoiser →
sampler → output plumbing. The exact GMM denoiser with Heun at 64 steps must give a within-mode
spread ratio of 1 up to Monte-Carlo error and the sampler's known discretisation bias.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from diffusion.experiments.collapse_samplers import EXPERIMENT, OUTPUTS, Config
from fulcrum_core import ConfigError, from_mapping
from fulcrum_core.cli import plot_experiment, run_experiment

N, SEEDS = 1500, 4
CI = {
    "data": {"kind": "ring", "n_train": 500},
    "train": {"net": "mlp", "width": 32, "depth": 1, "emb_dim": 16, "steps": 0},
    "samplers": ["heun", "euler_maruyama"],
    "steps": [16, 64],
    "n_samples": N,
    "seeds": SEEDS,
    "scatter_n": N,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("collapse_samplers")
    cfg = dict(CI, train_dir=str(out / "train"))
    summary = run_experiment("diffusion", EXPERIMENT, cfg, out)
    return out, summary


def test_outputs_structure(result):
    out, summary = result
    for name in (*OUTPUTS, "summary.json", "provenance.json"):
        assert (out / name).is_file(), name
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == SEEDS * 2 * 2 * 2  # seeds × denoisers × samplers × step counts
    assert set(metrics.denoiser) == {"learned", "exact"}
    assert set(metrics.sampler) == {"heun", "euler_maruyama"}
    assert (metrics.n == N).all() and (metrics.n_nonfinite == 0).all()
    heun = metrics[metrics.sampler == "heun"]
    assert (heun.nfe == 2 * heun.steps - 1).all()
    intervals = pd.read_csv(out / "intervals.csv")
    assert {"denoiser", "sampler", "steps", "metric", "estimate", "lo", "hi", "n"} <= set(intervals.columns)
    finite = intervals.dropna(subset=["estimate"])
    assert (finite.lo <= finite.estimate + 1e-12).all() and (finite.estimate <= finite.hi + 1e-12).all()
    assert (intervals[intervals.metric == "spread_ratio"].n == SEEDS).all()
    diffs = pd.read_csv(out / "differences.csv")
    assert {"euler_maruyama − heun", "learned − exact", "(learned − exact): euler_maruyama − heun"} <= set(
        diffs.comparison
    )
    # claims: learned-Heun bound, exact-Heun control, one per stochastic sampler; verdicts computed
    assert len(summary["claims"]) == 3
    assert all(c["verdict"] in ("reproduced", "not reproduced") for c in summary["claims"][:2])
    assert (out / "train" / "net0" / "history.csv").is_file()  # training went to train_dir
    plot_experiment(EXPERIMENT, out, out / "figure")
    assert (out / "figure.png").stat().st_size > 10_000


def test_untrained_net_is_the_gaussian_denoiser(result):
    """F ≡ 0 ⇒ Heun samples ~ N(0, v I), v = σ_d²σ_max²/(σ_max² + σ_d²) (closed form above)."""
    out, summary = result
    scatter = pd.read_csv(out / "scatter.csv")
    x = scatter[(scatter.denoiser == "learned") & (scatter.sampler == "heun")][["x", "y"]].to_numpy()
    assert len(x) == N
    v = 0.25 * 80.0**2 / (80.0**2 + 0.25)
    # mean of the two coordinate variances: SE = v·sqrt(1/N) for Gaussian data (each variance has SE
    # v·sqrt(2/N), two independent ones averaged); 4 SE, plus 0.5% for Heun's discretisation at 64 steps
    # (measured ≈ 0.1% on this ODE).
    assert abs(x.var(axis=0, ddof=1).mean() - v) < 4 * v / math.sqrt(N) + 0.005 * v
    assert np.abs(x.mean(axis=0)).max() < 4 * math.sqrt(v / N)
    # such a blob is far from over-concentrated: the over-concentration claim must fail
    assert summary["numbers"]["learned_heun"]["lo"] > 2.0
    assert summary["claims"][0]["verdict"] == "not reproduced"
    # learning did not concentrate Heun's samples, so "the SDE undoes the concentration" cannot be tested
    assert summary["numbers"]["learned_minus_exact_heun"]["lo"] > 0
    assert summary["claims"][2]["verdict"] == "not testable at this scale"
    assert "does not concentrate under Heun" in summary["claims"][2]["untestable_reason"]


def test_exact_heun_does_not_collapse(result):
    """Exact GMM denoiser + Heun 64 steps: spread ratio = 1 within MC error and the sampler's bias."""
    out, summary = result
    metrics = pd.read_csv(out / "metrics.csv")
    sel = metrics[(metrics.denoiser == "exact") & (metrics.sampler == "heun") & (metrics.steps == 64)]
    # per point ‖x − μ‖²/(2 s²) ~ χ²₂/2 has variance 1, so the pooled ratio over N·SEEDS points has SE
    # 1/sqrt(N·SEEDS); 4 SE plus 2% for the discretisation bias (+0.5–1.4% measured by helper "core")
    tol = 4 / math.sqrt(N * SEEDS) + 0.02
    assert abs(sel.spread_ratio.mean() - 1.0) < tol
    assert summary["numbers"]["exact_heun"]["estimate"] == pytest.approx(sel.spread_ratio.mean())
    # and 16 Heun steps over-disperse measurably (first claims' power: the metric moves)
    coarse = metrics[(metrics.denoiser == "exact") & (metrics.sampler == "heun") & (metrics.steps == 16)]
    assert coarse.spread_ratio.mean() > 1.0 + tol
    # the real set itself is the truth: its spread ratio is 1 within MC error
    assert abs(sel.spread_ratio_real.mean() - 1.0) < 4 / math.sqrt(N * SEEDS)
    assert json.loads((out / "summary.json").read_text())["checks"]["nonfinite_samples"] == 0


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"samplers": ["heun", "rk4"]}, "samplers"),
        ({"samplers": ["euler"]}, "samplers"),
        ({"steps": [16, 16]}, "steps"),
        ({"steps": [0]}, "steps"),
        ({"claim_steps": 32}, "claim_steps"),
        ({"claim_metric": "fid"}, "claim_metric"),
        ({"control_tolerance": -0.1}, "control_tolerance"),
        ({"seeds": 1}, "seeds"),
        ({"nets": 6}, "nets"),
        ({"n_samples": 5}, "n_samples"),
        ({"device": "tpu"}, "device"),
        ({"data": {"kind": "moons"}}, "data.kind"),
        ({"data": {"std": -1.0}}, "data.std"),
        ({"sampling": {"sigma_min": 100.0}}, "sampling.sigma_min"),
        ({"sampling": {"s_churn": -1.0}}, "sampling.s_churn"),
        ({"train": {"net": "transformer"}}, "net"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_mapping(Config, {**CI, **override}, where="collapse_samplers")


def test_paper_scale_config_is_expressible():
    cfg = from_mapping(
        Config,
        {
            "data": {"kind": "cifar10", "root": "data/cifar10", "download": True, "n_train": 0},
            "train": {"net": "unet", "base": 128, "mults": [1, 2, 2, 2], "steps": 200000, "batch_size": 512},
            "claim_metric": "nn_ratio",
            "device": "auto",
        },
    )
    assert cfg.train.net == "unet" and cfg.data.kind == "cifar10"
