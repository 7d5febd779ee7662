"""serving_prefix_hotspots at ci size on a generated Zipf shared-prefix trace."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fulcrum_core.claims import rejudge
from fulcrum_core.cli import plot_experiment, run_experiment
from serving.experiments import EXPERIMENTS
from serving.experiments.common import windowed_imbalance

EXP = {e.name: e for e in EXPERIMENTS}["serving_prefix_hotspots"]
ZIPF = {
    "name": "zipf_prefix",
    "kind": "shared_prefix",
    "rate": 4.0,
    "n": 500,
    "n_prefixes": 20,
    "zipf_s": 1.3,
    "prefix": {"median": 8000, "sigma": 0.5, "lo": 512, "hi": 30000},
    "suffix": {"median": 1000, "sigma": 1.0, "lo": 1, "hi": 8000},
    "output": {"median": 60, "sigma": 1.0, "lo": 1, "hi": 600},
}
CI = {"traces": [{"name": "absent", "kind": "file", "path": "no/such/file.jsonl", "fallback": "none"}, ZIPF]}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("hotspots")
    run_experiment("serving", EXP, CI, out)
    return out


def test_hotspots_and_the_store(run_dir):
    runs = pd.read_csv(run_dir / "runs.csv").set_index("policy")
    assert set(runs.trace) == {"zipf_prefix"} and (runs.completed == 500).all()
    # prefix-aware routing piles hot prefixes on few prefill instances; load-only routing spreads them
    assert runs.loc["prefix_aware", "imbalance_prompt_tokens"] > 1.15 * runs.loc["banaserve", "imbalance_prompt_tokens"]
    assert runs.loc["prefix_aware", "imbalance_prompt_tokens"] > runs.loc["least_load", "imbalance_prompt_tokens"]
    # local caches with load-only routing lose hits; the global store gets them back
    assert runs.loc["least_load", "hit_rate"] < runs.loc["prefix_aware", "hit_rate"]
    assert runs.loc["banaserve", "hit_rate"] >= runs.loc["prefix_aware", "hit_rate"] - 0.02
    inst = pd.read_csv(run_dir / "instances.csv")
    assert sorted(inst.instance.unique()) == [0, 1, 2, 3]  # the four prefill instances
    assert (inst.groupby("policy").requests.sum() == 500).all()


def test_summary_records_the_skipped_trace_and_claims(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["numbers"]["trace_sources"]["absent"].startswith("skipped")
    assert len(summary["claims"]) == 3 and all("[zipf_prefix]" in c["claim"] for c in summary["claims"])
    for c in summary["claims"]:
        assert c["paper"] == "2510.13223" and c["verdict"] == rejudge(c)
    nums = summary["numbers"]["zipf_prefix"]
    assert summary["claims"][0]["measured"] == pytest.approx(
        nums["imbalance"]["prefix_aware"] / nums["imbalance"]["banaserve"]
    )


def test_windowed_imbalance_by_hand():
    req = pd.DataFrame({"arrival_s": [0, 1, 2, 61, 62], "instance": [0, 0, 1, 1, 1], "x": [3, 1, 4, 2, 2]})
    # window 0: instance 0 has 4, instance 1 has 4 → 1.0; window 1: 0 and 4 → max/mean = 2.0
    assert windowed_imbalance(req, [0, 1], "x", 60.0) == pytest.approx(1.5)


def test_plot(run_dir):
    assert all(p.stat().st_size > 10_000 for p in plot_experiment(EXP, run_dir, run_dir / "figure"))
