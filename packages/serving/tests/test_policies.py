"""Policies: registry and configs, routing balance, DistServe closed forms, the HPA rule."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from fulcrum_core.config import ConfigError
from serving.costmodel import PolynomialCostModel, RooflineCostModel
from serving.policies import POLICIES, make_policy
from serving.policies.hpa import HPAPolicy
from serving.sim import ACTIVE, STARTING, SimConfig, Simulator, simulate
from serving.sim.entities import layerwise_extra
from serving.traces import LengthDist, Trace, gamma_trace, shared_prefix_trace

PREFILL = (0.02, 1.5e-4, 2e-9)
DECODE = (0.012, 2e-7, 3e-4)


def poly(**roofline_kw) -> PolynomialCostModel:
    mem = RooflineCostModel("llama3-8b", "a100-80gb", 1, **roofline_kw)
    return PolynomialCostModel(PREFILL, DECODE, memory=mem)


def prefill_s(n: int, cached: int = 0) -> float:
    a, b, c = PREFILL
    return a + b * n + c * ((cached + n) ** 2 - cached**2)


def decode_s(ctx: int, seqs: int = 1) -> float:
    a, b, c = DECODE
    return a + b * ctx + c * seqs


def mk_trace(arrival, prompt, output, hash_ids=None) -> Trace:
    return Trace(
        arrival_s=np.asarray(arrival, dtype=float),
        prompt_tokens=np.asarray(prompt),
        output_tokens=np.asarray(output),
        hash_ids=hash_ids,
    )


# ---------------------------------------------------------------------------------------------- registry
def test_registry_and_config_errors_name_the_key():
    assert {"vllm", "distserve", "hpa"} <= set(POLICIES)
    with pytest.raises(ConfigError, match="nope.*known"):
        make_policy("nope")
    with pytest.raises(ConfigError, match="policy vllm.routingg"):
        make_policy("vllm", {"routingg": "least_load"})
    with pytest.raises(ConfigError, match="routing"):
        make_policy("vllm", {"routing": "fastest"})
    with pytest.raises(ConfigError, match="prefill_ratio"):
        make_policy("distserve", {"prefill_ratio": 1.5})
    with pytest.raises(ConfigError, match="at least 2 instances"):
        Simulator(mk_trace([0.0], [10], [2]), poly(), make_policy("distserve"), 1)
    with pytest.raises(ConfigError, match="min_replicas"):
        make_policy("hpa", {"min_replicas": 5, "max_replicas": 2})


def test_distserve_split():
    pol = make_policy("distserve", {"prefill_ratio": 0.25})
    sim = Simulator(mk_trace([0.0], [10], [2]), poly(), pol, 8)
    assert [i.role for i in sim.instances] == ["prefill"] * 2 + ["decode"] * 6
    assert make_policy("distserve", {"n_prefill": 3}).split(8) == 3


# ---------------------------------------------------------------------------------------------- routing
def test_round_robin_vs_least_load_on_a_skewed_trace():
    """Long and short requests alternate on two instances: round robin sends every long one to
    instance 0; least-load (queued + running requests) spreads them."""
    n = 200
    out = np.where(np.arange(n) % 2 == 0, 400, 4)
    trace = mk_trace(np.arange(n) * 0.25, np.full(n, 300), out)
    res = {
        r: simulate(trace, poly(), make_policy("vllm", {"routing": r}), 2)
        for r in ("round_robin", "least_load", "random")
    }
    tokens = {r: x.instances["decode_tokens"].to_numpy() for r, x in res.items()}
    assert tokens["round_robin"].max() / tokens["round_robin"].min() > 50  # ≈ 400/4 by construction
    assert tokens["least_load"].max() / tokens["least_load"].min() < 1.5
    assert res["least_load"].requests["e2e_s"].mean() < 0.8 * res["round_robin"].requests["e2e_s"].mean()
    assert set(res["round_robin"].requests["instance"][::2]) == {0}


def test_prefix_aware_routing_keeps_prefixes_together():
    """12 shared 2048-token prefixes on 4 replicas whose KV (16k tokens) holds only a few of them:
    routing by prefix hit keeps each prefix on one replica, load-only routing spreads and evicts."""
    trace = shared_prefix_trace(12, 2048, 0.8, rate=6.0, n=400, seed=5)
    runs = {
        r: simulate(trace, poly(), make_policy("vllm", {"routing": r}), 4, SimConfig(kv_capacity_tokens=16_000))
        for r in ("prefix_aware", "least_load")
    }
    hits = {r: x.requests["cached_tokens"].sum() for r, x in runs.items()}
    assert hits["prefix_aware"] > 1.5 * hits["least_load"]
    first = np.array([ids[0] for ids in trace.hash_ids])  # a prefix's first block id names it
    share = {}
    for r, x in runs.items():
        inst = x.requests["instance"].to_numpy()
        share[r] = np.mean([np.bincount(inst[first == f]).max() / (first == f).sum() for f in np.unique(first)])
    # the first request of a prefix (and any arriving before it is published) is placed by load alone
    assert share["prefix_aware"] > 0.75 and share["least_load"] < 0.5
    assert runs["prefix_aware"].requests["ttft_s"].mean() < runs["least_load"].requests["ttft_s"].mean()


# ---------------------------------------------------------------------------------------------- distserve
@pytest.mark.parametrize("first_token", ["transfer", "prefill"])
@pytest.mark.parametrize("kv_link", ["nvlink", 1e9])
def test_distserve_single_request_closed_form(first_token, kv_link):
    p, o = 1500, 30
    cm = poly(kv_link=kv_link)
    tx = cm.kv_transfer_time(p)
    trace = mk_trace([0.0], [p], [o])
    res = simulate(trace, cm, make_policy("distserve", {"first_token": first_token}), 2)
    r = res.requests.iloc[0]
    decode = sum(decode_s(p + g) for g in range(1, o))
    ttft = prefill_s(p) + (tx if first_token == "transfer" else 0.0)
    assert r["ttft_s"] == pytest.approx(ttft, rel=1e-12)
    assert r["e2e_s"] == pytest.approx(prefill_s(p) + tx + decode, rel=1e-12)
    assert r["kv_transfer_s"] == pytest.approx(tx, rel=1e-12)
    assert (r["instance"], r["decode_instance"]) == (0, 1)


@pytest.mark.parametrize("kv_link", [5e8, "nvlink"])
def test_distserve_layerwise_overlap_closed_form(kv_link):
    """Slow link (transfer 0.39 s > prefill 0.25 s): the overlap hides T_p·(L−1)/L of the transfer;
    NVLink (transfer ≪ prefill): only the last layer's share T_x/L remains."""
    p, o = 1500, 10
    cm = poly(kv_link=kv_link)
    tx, tp_ = cm.kv_transfer_time(p), prefill_s(p)
    layers = cm.model.layers
    extra = max(tx / layers, tx - tp_ * (layers - 1) / layers)
    assert extra == layerwise_extra(tx, tp_, layers) < tx
    assert extra == (tx - tp_ * (layers - 1) / layers if kv_link == 5e8 else tx / layers)
    res = simulate(mk_trace([0.0], [p], [o]), cm, make_policy("distserve", {"layerwise_overlap": True}), 2)
    r = res.requests.iloc[0]
    assert r["ttft_s"] == pytest.approx(tp_ + extra, rel=1e-12)
    assert r["e2e_s"] == pytest.approx(tp_ + extra + sum(decode_s(p + g) for g in range(1, o)), rel=1e-12)


def test_distserve_ttft_excludes_decode_interference():
    """B arrives while A decodes. Colocated, B's prefill shares iterations with A's decode (and A's
    ITL absorbs B's prefill); disaggregated, B's TTFT is its prefill + transfer exactly and A's
    inter-token latencies stay decode-sized."""
    pa, pb = 500, 3000
    trace = mk_trace([0.0, 1.0], [pa, pb], [300, 5])
    cm = poly()
    tx = cm.kv_transfer_time(pb)
    co = simulate(trace, cm, make_policy("vllm"), 1)
    ds = simulate(trace, cm, make_policy("distserve"), 2)
    b_co, b_ds = co.requests.iloc[1], ds.requests.iloc[1]
    assert b_ds["ttft_s"] == pytest.approx(prefill_s(pb) + tx, rel=1e-12)
    assert b_co["ttft_s"] > prefill_s(pb) + decode_s(pa + 1)  # at least one mixed iteration
    assert co.itl_s.max() >= prefill_s(pb)  # A's token that waited for B's prefill
    assert ds.itl_s.max() < 2 * decode_s(pa + pb + 300, 2)  # only decode iterations, at most 2 sequences


# ---------------------------------------------------------------------------------------------- hpa
def _fake(state=ACTIVE, load=0):
    return SimpleNamespace(state=state, running=[None] * load, waiting=[], kv_utilization=lambda: 0.0)


def test_hpa_rule():
    """desired = ceil(current·metric/target); tolerance 0.1; scale-up limit max(+4, ×2); unready pods
    count 0 when scaling up; scale-down takes the largest recommendation of the last 300 s."""
    pol = HPAPolicy({"target": 10.0})
    pol.live = [_fake(load=10) for _ in range(4)]
    assert pol.desired_replicas(0.0) == 4  # ratio 1
    pol.live = [_fake(load=10)] + [_fake(load=11) for _ in range(3)]
    assert pol.desired_replicas(15.0) == 4  # ratio 1.075: inside the tolerance
    pol.live = [_fake(load=15) for _ in range(4)]
    assert pol.desired_replicas(30.0) == 6  # ceil(4·1.5)
    pol.live = [_fake(load=100) for _ in range(4)]
    assert pol.desired_replicas(45.0) == 8  # ceil(4·10) = 40, limited to max(4 + 4, 2·4)
    pol.live = [_fake(load=30)] * 2 + [_fake(STARTING)] * 2
    assert pol.desired_replicas(50.0) == 6  # starting pods count 0: mean 15 over 4 → ceil(4·1.5)
    pol.live = [_fake(load=2) for _ in range(8)]
    assert pol.desired_replicas(60.0) == 8  # wants 2, but 8 was recommended at t = 45 (< 300 s ago)
    assert pol.desired_replicas(344.0) == 8
    assert pol.desired_replicas(346.0) == 6  # the t=45 recommendation has left the window, t=50's has not
    assert pol.desired_replicas(400.0) == 2
    pol.live = [_fake(load=0) for _ in range(2)]
    assert pol.desired_replicas(415.0) == 2  # floor at the recommendations of the window (2) / min_replicas


def test_hpa_scales_with_load_and_accounts_gpu_seconds():
    """A burst (12 req/s for 10 min between quiet phases) adds replicas, each serving only after its
    cold start; scale-downs follow the 300 s window; GPU-seconds integrate every replica's lifetime."""
    lengths = dict(prompt=LengthDist.fixed(500), output=LengthDist.fixed(120))
    parts = [
        gamma_trace(2.0, 1.0, 300.0, seed=1, **lengths).arrival_s,
        300.0 + gamma_trace(12.0, 1.0, 600.0, seed=2, **lengths).arrival_s,
        900.0 + gamma_trace(1.0, 1.0, 1200.0, seed=3, **lengths).arrival_s,
    ]
    arr = np.concatenate(parts)
    trace = mk_trace(arr, np.full(len(arr), 500), np.full(len(arr), 120))
    pol = make_policy("hpa", {"target": 8.0, "cold_start_s": 60.0, "max_replicas": 12, "min_replicas": 2})
    res = simulate(trace, poly(), pol, 2, SimConfig())
    inst = res.instances
    assert res.requests["finished"].all()
    assert len(inst) > 2 and inst["created_s"].iloc[2] >= 300.0
    added = inst.iloc[2:]
    np.testing.assert_allclose(added["ready_s"] - added["created_s"], 60.0)
    # no request was scheduled on a replica before that replica was ready
    ready = inst.set_index("instance")["ready_s"]
    req = res.requests
    assert (req["scheduled_s"].to_numpy() >= ready.loc[req["instance"]].to_numpy() - 1e-9).all()
    # stabilisation: a scale-down goes to the largest raw recommendation of the last 300 s, and
    # happens only when every one of them is below the current count
    hist = pol.history
    downs = [h for h in hist if h["desired"] < h["replicas"]]
    assert max(h["replicas"] for h in hist) > 2 and downs and inst["stopped_s"].notna().any()
    for h in hist:
        window = [g["recommended"] for g in hist if h["t_s"] - 300.0 < g["t_s"] <= h["t_s"]]
        if h["desired"] < h["replicas"]:
            assert h["desired"] == max(window)
        else:
            assert max(window) >= h["replicas"] or h["recommended"] >= h["replicas"]
    assert math.isclose(hist[1]["t_s"] - hist[0]["t_s"], 15.0)
    end = res.stats["end_s"]
    alive = np.where(np.isnan(inst["stopped_s"]), end, inst["stopped_s"]) - inst["created_s"]
    np.testing.assert_allclose(inst["gpu_seconds"], alive * inst["tp"])
    assert res.gpu_seconds == pytest.approx(inst["gpu_seconds"].sum())
    assert res.gpu_seconds < len(inst) * end
