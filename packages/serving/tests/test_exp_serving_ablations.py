"""serving_ablations at ci size: every variant runs, 'all off' is the baseline, activity is recorded."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fulcrum_core.cli import plot_experiment, run_experiment
from fulcrum_core.config import ConfigError, from_mapping
from serving.experiments import EXPERIMENTS
from serving.experiments.common import ClusterConfig, PolicySpec, load_trace, run_policy
from serving.experiments.serving_ablations import Config, PrefixTrace

EXP = {e.name: e for e in EXPERIMENTS}["serving_ablations"]
BANA_TRACE = {"kind": "shared_prefix", "rate": 4.0, "n": 250, "n_prefixes": 20, "zipf_s": 1.2}
CI = {"banaserve_trace": BANA_TRACE, "cocoserve_trace": {"duration_s": 600.0, "period_s": 600.0}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablations")
    run_experiment("serving", EXP, CI, out)
    return out


def test_variants_and_activity(run_dir):
    t = pd.read_csv(run_dir / "ablations.csv")
    bana = t[t.system == "banaserve"].set_index("variant")
    coco = t[t.system == "cocoserve"].set_index("variant")
    assert list(bana.index) == [
        "full",
        "no weight_migration",
        "no kv_migration",
        "no global_kv_store",
        "no layerwise_store",
        "all off",
    ]
    assert list(coco.index) == ["full", "no replication", "no migration", "no peer_start", "no autoscale", "all off"]
    assert (t.completed == t.requests).all()
    # a switched-off mechanism never acts; the store is what makes the hits
    assert bana.loc["no weight_migration", "weight_steps"] == 0 and bana.loc["no kv_migration", "kv_migrations"] == 0
    assert bana.loc["no global_kv_store", "store_hit_tokens"] == 0 and bana.loc["full", "store_hit_tokens"] > 0
    assert bana.loc["full", "hit_rate"] > bana.loc["no global_kv_store", "hit_rate"]
    # layer-wise overlapped loading hides part of the load time: never slower to first token
    assert bana.loc["no layerwise_store", "store_load_s"] >= bana.loc["full", "store_load_s"]
    # without the auto-scaler CoCoServe is a static deployment of its initial size
    assert coco.loc["no autoscale", "scale_events"] == 0
    assert coco.loc["no autoscale", "gpu_seconds"] == pytest.approx(2 * 4 * coco.loc["no autoscale", "total_time_s"])
    assert coco.loc["full", "scale_events"] > 0


def test_all_off_is_distserve(run_dir):
    t = pd.read_csv(run_dir / "ablations.csv")
    off = t[(t.system == "banaserve") & (t.variant == "all off")].iloc[0]
    trace, _ = load_trace(from_mapping(PrefixTrace, BANA_TRACE))
    row, _, _ = run_policy(
        trace,
        ClusterConfig(),
        PolicySpec("d", "distserve", {"n_prefill": 4, "layerwise_overlap": True}),
        slo_ttft_ms=2000.0,
        slo_tpot_ms=100.0,
    )
    for k in ("total_time_s", "mean_ttft_ms", "p99_tpot_ms", "goodput", "hit_rate"):
        assert off[k] == pytest.approx(row[k], rel=1e-12)


def test_summary_and_config(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["claims"] == []
    assert summary["numbers"]["banaserve"]["full"]["goodput_vs_full"] == 1.0
    with pytest.raises(ConfigError, match="switched by the ablation"):
        from_mapping(Config, {"banaserve": {"n_prefill": 4, "kv_migration": False}})


def test_plot(run_dir):
    assert all(p.stat().st_size > 10_000 for p in plot_experiment(EXP, run_dir, run_dir / "figure"))
