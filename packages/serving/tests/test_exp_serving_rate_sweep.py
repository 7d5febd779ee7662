"""serving_rate_sweep at ci size: outputs, ratios, claims, the trace file and its generated stand-in."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fulcrum_core.claims import rejudge
from fulcrum_core.cli import plot_experiment, run_experiment
from fulcrum_core.config import ConfigError, from_mapping
from serving.experiments import EXPERIMENTS
from serving.experiments.serving_rate_sweep import Config

EXP = {e.name: e for e in EXPERIMENTS}["serving_rate_sweep"]
GEN = {"kind": "gamma", "rate": 2.57, "cv": 3.0, "n": 600, "seed": 1}
CI = {"trace": GEN, "rate_scales": [4.0, 32.0]}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rate_sweep")
    run_experiment("serving", EXP, CI, out)
    return out


def test_outputs_and_per_rate_rows(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"rates.csv", "ratios.csv", "summary.json", "provenance.json"} <= names
    rates = pd.read_csv(run_dir / "rates.csv")
    assert len(rates) == 2 * 3 and set(rates.policy) == {"vllm", "distserve", "banaserve"}
    assert (rates.completed == rates.requests).all() and (rates.requests == 600).all()
    # the offered rate is the trace's rate × the scale; nobody serves faster than requests arrive
    base = rates.offered_rate / rates.rate_scale
    assert np.allclose(base, base.iloc[0])
    assert (rates.request_throughput <= rates.offered_rate * 600 / 599 * (1 + 1e-12)).all()
    # at the low rate everyone keeps up (throughput ≈ offered), at 32× something saturates
    low = rates[rates.rate_scale == 4.0]
    assert (low.request_throughput > 0.9 * low.offered_rate).all()
    assert (rates.p99_ttft_ms >= rates.p50_ttft_ms).all()


def test_ratios_and_claims_follow_from_the_table(run_dir):
    rates = pd.read_csv(run_dir / "rates.csv").set_index(["rate_scale", "policy"])
    ratios = pd.read_csv(run_dir / "ratios.csv").set_index("rate_scale")
    for s in (4.0, 32.0):
        b, v, d = rates.loc[(s, "banaserve")], rates.loc[(s, "vllm")], rates.loc[(s, "distserve")]
        assert ratios.loc[s, "throughput_vs_vllm"] == pytest.approx(b.request_throughput / v.request_throughput)
        assert ratios.loc[s, "time_reduction_vs_vllm"] == pytest.approx(1 - b.total_time_s / v.total_time_s)
        assert ratios.loc[s, "latency_reduction_vs_distserve"] == pytest.approx(1 - b.mean_e2el_ms / d.mean_e2el_ms)
    summary = json.loads((run_dir / "summary.json").read_text())
    claims = summary["claims"]
    assert len(claims) == 4 and all(c["paper"] == "2510.13223" for c in claims)
    # each claimed range is one claim: midpoint ± half-width
    assert claims[0]["predicted"] == pytest.approx(2.55) and claims[0]["tolerance"] == pytest.approx(1.35)
    assert claims[3]["predicted"] == pytest.approx((0.014 + 0.701) / 2)
    assert claims[0]["measured"] == pytest.approx(ratios.loc[32.0, "throughput_vs_vllm"])
    for c in claims:
        assert c["verdict"] == rejudge(c)
    assert summary["numbers"]["trace_source"] == "generated gamma"


def test_plot(run_dir):
    paths = plot_experiment(EXP, run_dir, run_dir / "figure")
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_trace_file_or_generated_stand_in(tmp_path):
    """A trace file is read when present; when absent the configured generator stands in."""
    csv = tmp_path / "azure.csv"
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    rows += [f"2023-11-16 18:{i // 60:02d}:{i % 60:02d}.0000000,{800 + 10 * i},{5 + i % 7}" for i in range(120)]
    csv.write_text("\n".join(rows) + "\n")
    cfg = {
        "trace": {"path": str(csv), "rate_scale": 1.0},
        "rate_scales": [1.0],
        "policies": [
            {"label": "vllm", "policy": "vllm"},
            {"label": "distserve", "policy": "distserve", "config": {"n_prefill": 4}},
            {"label": "banaserve", "policy": "banaserve", "config": {"n_prefill": 4}},
        ],
    }
    s = run_experiment("serving", EXP, cfg, tmp_path / "file")
    assert s["numbers"]["trace_source"].startswith("file ") and s["numbers"]["requests"] == 120
    missing = {**cfg, "trace": {"path": str(tmp_path / "nope.csv"), "n": 150}}
    s = run_experiment("serving", EXP, missing, tmp_path / "gen")
    assert s["numbers"]["trace_source"].startswith("generated gamma") and s["numbers"]["requests"] == 150


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="candidate"):
        from_mapping(Config, {"candidate": "nope"})
    with pytest.raises(ConfigError, match="trace.kind"):
        from_mapping(Config, {"trace": {"kind": "zipf"}})
    with pytest.raises(ConfigError, match="policy banaserve.max_layer_fraction"):
        from_mapping(Config, {"policies": [{"label": "b", "policy": "banaserve", "config": {"max_layer_fraction": 2}}]})
