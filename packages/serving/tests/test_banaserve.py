"""BanaServe policy: each mechanism does what it should, all off is DistServe, conservation, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from fulcrum_core.config import ConfigError
from serving.costmodel import PolynomialCostModel, RooflineCostModel
from serving.policies import POLICIES, make_policy
from serving.policies.banaserve import BanaServePolicy
from serving.policies.modules import GlobalKVStore, ModuleCost, kv_demand
from serving.sim import SimConfig, Simulator, simulate
from serving.sim.entities import layerwise_extra
from serving.traces import LengthDist, Trace, poisson_trace, shared_prefix_trace

PREFILL = (0.02, 1.5e-4, 2e-9)
DECODE = (0.012, 2e-7, 3e-4)
OFF = {"weight_migration": False, "kv_migration": False, "global_kv_store": False}


def poly() -> PolynomialCostModel:
    """DistServe-form latency; KV/weight transfers and capacity from a llama3-8b/A100 roofline (32 layers)."""
    return PolynomialCostModel(PREFILL, DECODE, memory=RooflineCostModel("llama3-8b", "a100-80gb", 1))


def prefill_s(n: int, cached: int = 0) -> float:
    a, b, c = PREFILL
    return a + b * n + c * ((cached + n) ** 2 - cached**2)


def mk_trace(arrival, prompt, output, hash_ids=None, block_tokens=512) -> Trace:
    return Trace(
        arrival_s=np.asarray(arrival, dtype=float),
        prompt_tokens=np.asarray(prompt),
        output_tokens=np.asarray(output),
        hash_ids=hash_ids,
        block_tokens=block_tokens,
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
    assert (res.itl_s > 0).all()


def prompt_heavy(n=160, rate=6.0, seed=3) -> Trace:
    """Long prompts, two-token answers: a 1P + 1D split saturates the prefill instance (≈ 3 req/s)."""
    return poisson_trace(rate, n=n, prompt=LengthDist.fixed(2000), output=LengthDist.fixed(2), seed=seed)


def decode_heavy(n=120, rate=4.0, seed=4) -> Trace:
    """Short prompts, long answers: the decode instance runs out of KV memory."""
    return poisson_trace(rate, n=n, prompt=LengthDist.fixed(200), output=LengthDist.fixed(600), seed=seed)


# ---------------------------------------------------------------------------------------------- config
def test_registered_and_config_errors_name_the_key():
    assert POLICIES["banaserve"] is BanaServePolicy
    with pytest.raises(ConfigError, match="policy banaserve.max_layer_fraction"):
        make_policy("banaserve", {"max_layer_fraction": 0.7})
    with pytest.raises(ConfigError, match="policy banaserve.weight_migrationn"):
        make_policy("banaserve", {"weight_migrationn": False})
    with pytest.raises(ConfigError, match="relax_pressure"):
        make_policy("banaserve", {"relax_pressure": 0.9, "act_pressure": 0.5})


# ---------------------------------------------------------------------------------------------- baseline
@pytest.mark.parametrize("sim_kw", [{}, {"kv_capacity_tokens": 20_000}])
def test_everything_off_is_distserve(sim_kw):
    """No weight migration, no KV migration, local prefix caches: the same run as distserve, bit for bit."""
    out = LengthDist.lognormal(300, 0.5, lo=1, hi=2000)
    trace = shared_prefix_trace(8, 1024, 1.0, rate=6.0, n=300, output=out, seed=2)
    cfg = {"n_prefill": 2, "layerwise_overlap": False}
    dist = simulate(trace, poly(), make_policy("distserve", cfg), 4, SimConfig(**sim_kw))
    bana = simulate(trace, poly(), make_policy("banaserve", {**cfg, **OFF}), 4, SimConfig(**sim_kw))
    assert dist.requests.equals(bana.requests)
    np.testing.assert_array_equal(np.sort(dist.itl_s), np.sort(bana.itl_s))
    assert dist.gpu_seconds == bana.gpu_seconds
    if sim_kw:
        assert bana.requests["preemptions"].sum() > 0  # the memory-pressure path is exercised


# ---------------------------------------------------------------------------------------------- weight migration
def test_weight_migration_moves_compute_to_the_overloaded_prefill_role():
    trace = prompt_heavy()
    cfg = {"n_prefill": 1, "tick_s": 1.0, "kv_migration": False, "global_kv_store": False, "max_layer_fraction": 0.25}
    off = simulate(trace, poly(), make_policy("banaserve", {**cfg, "weight_migration": False}), 2)
    pol = make_policy("banaserve", cfg)
    sim = Simulator(trace, poly(), pol, 2)
    p_inst, d_inst = sim.instances
    base_p, base_d = p_inst.capacity, d_inst.capacity
    seen = []
    orig = pol._weights

    def spy(t):
        orig(t)
        seen.append((pol.k_active, p_inst.cost, d_inst.cost, p_inst.capacity, d_inst.capacity))

    pol._weights = spy
    on = sim.run()
    check_conservation(on, trace)
    L = 32
    ks = [s[0] for s in seen]
    assert max(ks) == pol.k_max == 8 and min(ks) >= 0  # prefill borrows layers, up to the cap
    # while layers are lent: the prefill stage is (L − k)/L of the work, the decode host time-shares,
    # the prefill instance gains the moved weights' HBM, the decode host loses it
    for k, pc, dc, pcap, dcap in seen:
        if k == pol.k_max and isinstance(pc, ModuleCost) and pc.own < 1:
            assert pc.own == pytest.approx((L - k) / L)
            assert pcap > base_p and dcap < base_d
            assert isinstance(dc, ModuleCost) and 0 < dc.phi <= 0.9
            break
    else:
        raise AssertionError("the layout with k_max lent layers never took effect")
    # its cost: each step moved `step` layers' weights over the prefill instance's link
    steps = [e for e in pol.modules.log if e["to"] != e["from"]]
    assert steps and all(e["transfer_s"] == pytest.approx(poly().weight_transfer_time(pol.step)) for e in steps)
    kv_link = sum(poly().kv_transfer_time(2000) for _ in range(len(trace)))
    weight_link = sum(e["transfer_s"] for e in steps if e["src"] == 0 and e["to"] > e["from"])
    assert p_inst.link.busy_s == pytest.approx(kv_link + weight_link, rel=1e-9)
    # the prefill bottleneck shrinks: lower TTFT and a shorter run
    assert on.requests["ttft_s"].mean() < 0.8 * off.requests["ttft_s"].mean()
    assert on.duration_s < off.duration_s


def test_weight_migration_pause_shows_as_stalls():
    trace = prompt_heavy(n=80)
    cfg = {"n_prefill": 1, "tick_s": 1.0, "kv_migration": False, "global_kv_store": False}
    bg = make_policy("banaserve", cfg)
    res_bg = simulate(trace, poly(), bg, 2)
    pz = make_policy("banaserve", {**cfg, "migration_pause": True})
    res_pz = simulate(trace, poly(), pz, 2)
    check_conservation(res_pz, trace)
    assert pz.modules.transfers > 0
    # the paused instances idle for the copies: same work, later finish
    assert res_pz.requests["e2e_s"].mean() > res_bg.requests["e2e_s"].mean()


def test_weight_migration_lends_decode_memory_when_decode_is_the_bottleneck():
    trace = decode_heavy()
    sim_cfg = SimConfig(kv_capacity_tokens=40_000)
    cfg = {"n_prefill": 1, "tick_s": 1.0, "kv_migration": False, "global_kv_store": False}
    off = simulate(trace, poly(), make_policy("banaserve", {**cfg, "weight_migration": False}), 2, sim_cfg)
    pol = make_policy("banaserve", cfg)
    sim = Simulator(trace, poly(), pol, 2, sim_cfg)
    p_inst, d_inst = sim.instances
    base_d = d_inst.capacity
    caps = []
    orig = pol._weights

    def spy(t):
        orig(t)
        caps.append((pol.k_active, d_inst.capacity, p_inst.capacity))

    pol._weights = spy
    on = sim.run()
    check_conservation(on, trace)
    assert min(k for k, _, _ in caps) < 0  # decode lends layers (and their KV) to the prefill instance
    assert max(c for _, c, _ in caps) > base_d  # … and gains KV capacity
    assert off.requests["preemptions"].sum() > on.requests["preemptions"].sum()


# ---------------------------------------------------------------------------------------------- KV migration
class Recorder(BanaServePolicy):
    """Samples the decode instances' KV demand at every tick (after the policy acted)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.tick_s = 0.5
        self.samples: list[list[float]] = []

    def on_tick(self, t):
        super().on_tick(t)
        self.samples.append([kv_demand(i) for i in self.decode])


def test_kv_migration_lowers_the_decode_kv_imbalance():
    """Round-robin decode routing with alternating long/short answers piles the long ones on one
    decode instance; attention-level KV migration spreads their KV."""
    n = 120
    out = np.where(np.arange(n) % 2 == 0, 800, 20)
    trace = mk_trace(np.arange(n) * 0.1, np.full(n, 300), out)
    cfg = {"n_prefill": 1, "decode_routing": "round_robin", "weight_migration": False, "global_kv_store": False}
    ratios = {}
    for mig in (False, True):
        pol = Recorder({**cfg, "kv_migration": mig})
        res = simulate(trace, poly(), pol, 3)
        check_conservation(res, trace)
        loads = np.array([s for s in pol.samples if max(s) > 0.02])
        ratios[mig] = float(np.mean(loads.max(axis=1) / loads.mean(axis=1)))
        if mig:
            assert pol.kv_moves > 0 and (res.requests["kv_transfer_s"] > 0).sum() >= pol.kv_moves
            assert res.instances["kv_transfers_sent"].iloc[1:].sum() == pol.kv_moves
    assert ratios[False] > 1.6  # one instance holds nearly all the KV (2 instances: max/mean ≤ 2)
    assert ratios[True] < ratios[False] - 0.3


# ---------------------------------------------------------------------------------------------- global KV store
def test_global_store_hits_on_an_instance_that_never_saw_the_prefix():
    """Request 0 computes a 3-block prefix on prefill instance 0; request 1 (same prefix) goes to
    instance 1 by round robin and hits there; its first token costs the remaining prefill plus the
    store load (layer-wise overlapped or not)."""
    hid = (1, 2, 3, 4)
    trace = mk_trace([0.0, 5.0], [2000, 2000], [2, 2], hash_ids=((*hid,), (*hid,)))
    cfg = {"n_prefill": 2, "routing": "round_robin", "weight_migration": False, "kv_migration": False}
    local = simulate(trace, poly(), make_policy("banaserve", {**cfg, "global_kv_store": False}), 3)
    assert local.requests["cached_tokens"].tolist() == [0, 0]
    for layerwise in (False, True):
        pol = make_policy("banaserve", {**cfg, "layerwise_store": layerwise, "first_token": "prefill"})
        res = simulate(trace, poly(), pol, 3)
        check_conservation(res, trace)
        req = res.requests
        assert req["instance"].tolist() == [0, 1]
        assert req["cached_tokens"].tolist() == [0, 1536]
        assert res.instances["prefix_hit_tokens"].tolist() == [0, 1536, 0]
        store = pol.store
        assert isinstance(store, GlobalKVStore) and all(i.cache is store for i in [*pol.prefill, *pol.decode])
        t_load = store.load_time(1536)
        assert t_load == pytest.approx(1536 * poly().model.kv_bytes_per_token / (25e9 * 1))
        t_pf = prefill_s(464, 1536)
        extra = layerwise_extra(t_load, t_pf, 32) if layerwise else t_load
        assert req["ttft_s"].iloc[1] == pytest.approx(t_pf + extra, rel=1e-9)
        assert res.instances["kv_load_s"].sum() == pytest.approx(extra, rel=1e-12)


def test_global_store_holds_no_hbm_and_routing_ignores_locality():
    """With the store, every instance sees every prefix: prefix-aware routing has nothing to prefer
    and picks exactly as least-load; memory is all released at the end."""
    trace = shared_prefix_trace(30, 2048, 1.0, rate=8.0, n=250, seed=5)
    base = {"n_prefill": 2, "weight_migration": False, "kv_migration": False}
    runs = {}
    for routing in ("least_load", "prefix_aware"):
        pol = make_policy("banaserve", {**base, "routing": routing})
        sim = Simulator(trace, poly(), pol, 4, SimConfig(kv_capacity_tokens=60_000))
        runs[routing] = sim.run()
        check_conservation(runs[routing], trace)
        assert all(i.used == 0 for i in sim.instances)
        assert pol.store.lru_blocks == 0
    assert runs["least_load"].requests.equals(runs["prefix_aware"].requests)
    local = simulate(
        trace,
        poly(),
        make_policy("distserve", {"n_prefill": 2, "routing": "least_load"}),
        4,
        SimConfig(kv_capacity_tokens=60_000),
    )
    # a prefix computed on one instance is a hit on all of them: fewer misses than per-instance caches
    store_req, local_req = runs["least_load"].requests, local.requests
    assert store_req["cached_tokens"].sum() > 1.1 * local_req["cached_tokens"].sum()
    assert (store_req["cached_tokens"] == 0).sum() < (local_req["cached_tokens"] == 0).sum()


class Audited(BanaServePolicy):
    """Checks the KV books of every instance after every iteration."""

    audits = 0

    def on_iteration_end(self, inst):
        held = [*inst.running, *inst.held.values()]
        eb = self.store.entry_blocks
        assert inst.used == sum(r.blocks + r.n_shared * eb for r in held)
        assert inst.used <= inst.capacity
        self.audits += 1


def test_store_kv_books_balance_at_every_iteration():
    trace = shared_prefix_trace(10, 2048, 1.0, rate=8.0, n=200, seed=6)
    pol = Audited({"n_prefill": 2, "weight_migration": False, "kv_migration": False})
    res = simulate(trace, poly(), pol, 4, SimConfig(kv_capacity_tokens=30_000))
    check_conservation(res, trace)
    assert pol.audits > 100 and res.requests["cached_tokens"].sum() > 0


# ---------------------------------------------------------------------------------------------- whole policy
def test_full_banaserve_conserves_and_is_deterministic():
    trace = shared_prefix_trace(6, 1024, 1.0, rate=10.0, n=400, seed=7)
    cfg = {"n_prefill": 2, "tick_s": 1.0}
    sim_cfg = SimConfig(kv_capacity_tokens=40_000)
    a = simulate(trace, poly(), make_policy("banaserve", cfg), 4, sim_cfg, seed=3)
    b = simulate(trace, poly(), make_policy("banaserve", cfg), 4, sim_cfg, seed=3)
    check_conservation(a, trace)
    assert a.requests["finished"].all()
    assert a.requests.equals(b.requests)
    np.testing.assert_array_equal(a.itl_s, b.itl_s)
