"""CoCoServe policy: replication, migration and the auto-scaler each do what they should; all off is
a static vLLM deployment; conservation and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from fulcrum_core.config import ConfigError
from serving.costmodel import PolynomialCostModel, RooflineCostModel
from serving.policies import POLICIES, make_policy
from serving.policies.cocoserve import CoCoServePolicy
from serving.policies.modules import ModuleCost, kv_demand
from serving.sim import STOPPED, SimConfig, Simulator, simulate
from serving.traces import LengthDist, Trace, poisson_trace

PREFILL = (0.02, 1.5e-4, 2e-9)
DECODE = (0.012, 2e-7, 3e-4)
OFF = {"replication": False, "migration": False, "autoscale": False}


def poly() -> PolynomialCostModel:
    return PolynomialCostModel(PREFILL, DECODE, memory=RooflineCostModel("llama3-8b", "a100-80gb", 1))


def mk_trace(arrival, prompt, output) -> Trace:
    return Trace(
        arrival_s=np.asarray(arrival, dtype=float), prompt_tokens=np.asarray(prompt), output_tokens=np.asarray(output)
    )


def check_conservation(res, trace) -> None:
    req = res.requests
    assert len(req) == len(trace)
    done = req[req["finished"]]
    prompt_done = done["cached_tokens"] + done["prefill_computed_tokens"] - done["recomputed_tokens"]
    np.testing.assert_array_equal(prompt_done.to_numpy(), done["prompt_tokens"].to_numpy())
    np.testing.assert_array_equal(done["generated_tokens"].to_numpy(), done["output_tokens"].to_numpy())
    assert res.instances["prefill_tokens"].sum() == req["prefill_computed_tokens"].sum()
    assert len(res.itl_s) == int((done["output_tokens"] - 1).sum())
    assert res.itl_s.sum() == pytest.approx((done["e2e_s"] - done["ttft_s"]).sum(), rel=1e-9)


def skewed(n=200, gap=0.15, heavy=(1500, 400), light=(50, 5)) -> Trace:
    """Alternating heavy and light requests: round robin puts every heavy one on instance 0."""
    even = np.arange(n) % 2 == 0
    return mk_trace(np.arange(n) * gap, np.where(even, heavy[0], light[0]), np.where(even, heavy[1], light[1]))


def burst() -> Trace:
    """1 req/s for 30 s, 10 req/s for 60 s, 0.5 req/s for 200 s (prompt 1000, output 100)."""
    parts, t0 = [], 0.0
    for rate, dur, seed in ((1.0, 30.0, 1), (10.0, 60.0, 2), (0.5, 200.0, 3)):
        tr = poisson_trace(rate, dur, prompt=LengthDist.fixed(1000), output=LengthDist.fixed(100), seed=seed)
        parts.append(tr.arrival_s + t0)
        t0 += dur
    a = np.concatenate(parts)
    a = a[np.concatenate(([True], np.diff(a) > 0))]
    return mk_trace(a, np.full(a.size, 1000), np.full(a.size, 100))


# ---------------------------------------------------------------------------------------------- config
def test_registered_and_config_errors_name_the_key():
    assert POLICIES["cocoserve"] is CoCoServePolicy
    with pytest.raises(ConfigError, match="policy cocoserve.replica_fraction"):
        make_policy("cocoserve", {"replica_fraction": 0.6})
    with pytest.raises(ConfigError, match="rep_low < rep_high"):
        make_policy("cocoserve", {"rep_low": 0.9, "rep_high": 0.5})
    with pytest.raises(ConfigError, match="policy cocoserve.autoscalee"):
        make_policy("cocoserve", {"autoscalee": True})


def test_everything_off_is_a_static_vllm_deployment():
    trace = poisson_trace(8.0, n=300, prompt=LengthDist.lognormal(600, 1.0, hi=6000), seed=1)
    cfg = SimConfig(kv_capacity_tokens=30_000)
    vllm = simulate(trace, poly(), make_policy("vllm"), 3, cfg)
    coco = simulate(trace, poly(), make_policy("cocoserve", OFF), 3, cfg)
    assert vllm.requests.equals(coco.requests)
    np.testing.assert_array_equal(np.sort(vllm.itl_s), np.sort(coco.itl_s))
    assert vllm.gpu_seconds == coco.gpu_seconds


# ---------------------------------------------------------------------------------------------- replication
def test_replication_speeds_up_the_hot_instance_with_the_spare_ones_capacity():
    trace = skewed()
    base = {**OFF, "routing": "round_robin", "sync_s": 1.0, "tpot_slo_s": 0.05}
    off = simulate(trace, poly(), make_policy("cocoserve", base), 2)
    pol = make_policy("cocoserve", {**base, "replication": True})
    sim = Simulator(trace, poly(), pol, 2)
    hot, spare = sim.instances
    base_cap = spare.capacity
    seen = []
    orig = pol.on_tick

    def spy(t):
        orig(t)
        seen.append((hot.cost, spare.cost, spare.capacity))

    pol.on_tick = spy
    on = sim.run()
    check_conservation(on, trace)
    assert pol.replicas_placed >= 1
    log = pol.modules.log[0]
    layers = round(0.25 * 32)
    assert (log["kind"], log["src"], log["host"], log["to"]) == ("replica", 0, 1, layers)
    assert log["transfer_s"] == pytest.approx(poly().weight_transfer_time(layers))  # the copy, over the hot link
    with_rep = [(hc, sc, cap) for hc, sc, cap in seen if isinstance(hc, ModuleCost) and hc.rep > 0]
    assert with_rep
    hc, sc, cap = with_rep[0]
    assert hc.own == pytest.approx(0.75) and hc.rep == pytest.approx(0.25)
    lb, kv = poly().model.layer_bytes, poly().model.kv_bytes_per_token
    assert cap == (base_cap * 16 * kv - layers * lb) // kv // 16  # the replica's weights occupy the host's HBM
    r_on, r_off = on.requests, off.requests
    assert r_on[r_on.instance == 0].e2e_s.mean() < 0.95 * r_off[r_off.instance == 0].e2e_s.mean()
    # the host pays: its own requests slow down (time-sharing)
    assert r_on[r_on.instance == 1].e2e_s.mean() > r_off[r_off.instance == 1].e2e_s.mean()
    # replicas are dropped when the hot instance cools down
    assert pol.modules.log[-1]["to"] == 0 and not pol.modules.placements


# ---------------------------------------------------------------------------------------------- migration
def test_module_migration_gives_the_memory_bound_instance_more_kv():
    trace = skewed(gap=0.1, heavy=(300, 900), light=(300, 5))
    base = {**OFF, "routing": "round_robin", "sync_s": 1.0, "migrate_fraction": 0.05}
    cfg = SimConfig(kv_capacity_tokens=40_000)
    off = simulate(trace, poly(), make_policy("cocoserve", base), 2, cfg)
    pol = make_policy("cocoserve", {**base, "migration": True})
    sim = Simulator(trace, poly(), pol, 2, cfg)
    full, roomy = sim.instances
    caps = []
    orig = pol.on_tick

    def spy(t):
        orig(t)
        caps.append((full.capacity, roomy.capacity, kv_demand(full)))

    pol.on_tick = spy
    on = sim.run()
    check_conservation(on, trace)
    assert pol.migrations_placed >= 1
    assert pol.modules.log[0]["kind"] == "offload_seq" and pol.modules.log[0]["to"] == 2
    # 2 of 32 layers and their KV leave: capacity (B0 + 2·layer_bytes) / (kv·30/32) tokens
    lb, kv = poly().model.layer_bytes, poly().model.kv_bytes_per_token
    expect = int((40_000 * kv + 2 * lb) // (kv * 30 / 32)) // 16
    assert max(c[0] for c in caps) == expect
    assert min(c[1] for c in caps) < 40_000 // 16  # the host stores the moved layers and their KV
    assert on.requests["preemptions"].sum() < off.requests["preemptions"].sum()


# ---------------------------------------------------------------------------------------------- auto-scaler
@pytest.mark.parametrize("peer_start", [True, False])
def test_autoscaler_scales_out_for_a_burst_and_back_in(peer_start):
    trace = burst()
    cfg = {
        "replication": False,
        "migration": False,
        "sync_s": 5.0,
        "peer_start": peer_start,
        "container_start_s": 5.0,
        "cold_start_s": 30.0,
        "scale_in_stabilization_s": 30.0,
    }
    pol = make_policy("cocoserve", cfg)
    res = simulate(trace, poly(), pol, 1)
    check_conservation(res, trace)
    inst = res.instances
    assert pol.scale_outs >= 1 and pol.scale_ins >= 1
    assert len(inst) > 1 and inst["stopped_s"].notna().any()
    cold = (inst["ready_s"] - inst["created_s"]).iloc[1:]
    expect = 5.0 + poly().weight_transfer_time(32) if peer_start else 30.0
    assert cold.min() >= expect - 1e-9
    if not peer_start:
        assert cold.to_numpy() == pytest.approx(30.0)
    # cost = Σ tp × alive; the burst's extra instances are gone by the end
    assert res.gpu_seconds == pytest.approx(inst["gpu_seconds"].sum())
    assert res.gpu_seconds < len(inst) * res.duration_s
    assert pol.history[-1]["replicas"] < max(h["replicas"] for h in pol.history)
    assert all(s == STOPPED or s == 1 for s in [pol.sim.instances[i].state for i in range(len(inst))])


def test_replication_comes_before_scaling_out():
    """While a replica can still be placed (a spare instance exists) and pressure is not urgent, the
    scaler places the replica instead of starting an instance in that sync."""
    trace = skewed(n=300, gap=0.1)
    cfg = {
        "routing": "round_robin",
        "sync_s": 1.0,
        "tpot_slo_s": 0.05,
        "migration": False,
        "metric": "pressure",
        "target": 0.3,
        "urgent_pressure": 5.0,
        "max_replicas": 4,
    }
    pol = make_policy("cocoserve", cfg)
    res = simulate(trace, poly(), pol, 2)
    check_conservation(res, trace)
    rows = [h for h in pol.history if h["desired"] > h["replicas"]]
    assert any(h["placed"] > 0 and h["scaled_out"] == 0 for h in rows)
    assert not any(h["placed"] > 0 and h["scaled_out"] > 0 for h in pol.history if h["mean_pressure"] < 5.0)
    ablated = make_policy("cocoserve", {**cfg, "replication": False})
    simulate(trace, poly(), ablated, 2)
    assert ablated.scale_outs >= pol.scale_outs


def test_full_cocoserve_conserves_and_is_deterministic():
    trace = burst()
    cfg = {"sync_s": 5.0, "container_start_s": 5.0, "scale_in_stabilization_s": 30.0}
    a = simulate(trace, poly(), make_policy("cocoserve", cfg), 2, SimConfig(kv_capacity_tokens=60_000), seed=1)
    b = simulate(trace, poly(), make_policy("cocoserve", cfg), 2, SimConfig(kv_capacity_tokens=60_000), seed=1)
    check_conservation(a, trace)
    assert a.requests["finished"].all()
    assert a.requests.equals(b.requests) and a.gpu_seconds == b.gpu_seconds
