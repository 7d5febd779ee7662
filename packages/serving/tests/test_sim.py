"""Simulator core: conservation, determinism, closed forms, queueing, KV memory, prefix cache, fast paths."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from serving.costmodel import PolynomialCostModel, RooflineCostModel, make_cost_model
from serving.policies import Policy, make_policy
from serving.policies.vllm import VllmPolicy
from serving.sim import SimConfig, Simulator, simulate
from serving.sim.fastpath import DecodeLines, Stretch
from serving.traces import LengthDist, Trace, poisson_trace, shared_prefix_trace

# DistServe-form coefficients (seconds): prefill a + b·N + c·Σn², decode a + b·C + c·B
PREFILL = (0.02, 1.5e-4, 2e-9)
DECODE = (0.012, 2e-7, 3e-4)


def poly(prefill=PREFILL, decode=DECODE) -> PolynomialCostModel:
    """Polynomial latency; KV transfers and capacity from a llama3-8b/A100 roofline."""
    return PolynomialCostModel(prefill, decode, memory=RooflineCostModel("llama3-8b", "a100-80gb", 1))


def prefill_s(n: int, cached: int = 0, prefill=PREFILL) -> float:
    """One chunk of n tokens after `cached` ones: a + b·n + c·((c+n)² − c²)."""
    a, b, c = prefill
    return a + b * n + c * ((cached + n) ** 2 - cached**2)


def decode_s(ctx: int, seqs: int = 1, decode=DECODE) -> float:
    a, b, c = decode
    return a + b * ctx + c * seqs


def mk_trace(arrival, prompt, output, hash_ids=None, block_tokens=512) -> Trace:
    return Trace(
        arrival_s=np.asarray(arrival, dtype=float),
        prompt_tokens=np.asarray(prompt),
        output_tokens=np.asarray(output),
        hash_ids=hash_ids,
        block_tokens=block_tokens,
    )


def loaded_trace(n=600, rate=12.0, seed=1) -> Trace:
    return poisson_trace(
        rate,
        n=n,
        prompt=LengthDist.lognormal(600, 1.0, lo=1, hi=6000),
        output=LengthDist.lognormal(60, 1.0, lo=1, hi=1500),
        seed=seed,
    )


def small_kv(tokens=24_000, **kw) -> SimConfig:
    return SimConfig(kv_capacity_tokens=tokens, **kw)


def check_conservation(res, trace) -> None:
    req = res.requests
    assert len(req) == len(trace)
    fin = req["finished"].to_numpy()
    assert (req["status"].isin(["finished", "failed"])).all()
    done = req[fin]
    # every prompt token is either a cache hit or computed once in the prefill that produced token 1
    prompt_done = done["cached_tokens"] + done["prefill_computed_tokens"] - done["recomputed_tokens"]
    np.testing.assert_array_equal(prompt_done.to_numpy(), done["prompt_tokens"].to_numpy())
    np.testing.assert_array_equal(done["generated_tokens"].to_numpy(), done["output_tokens"].to_numpy())
    # the instances priced exactly the chunks the requests record
    assert res.instances["prefill_tokens"].sum() == req["prefill_computed_tokens"].sum()
    # one ITL per non-first token, and per request the ITLs add up to E2E − TTFT
    assert len(res.itl_s) == int((done["output_tokens"] - 1).sum())
    assert res.itl_s.sum() == pytest.approx((done["e2e_s"] - done["ttft_s"]).sum(), rel=1e-9)
    assert (res.itl_s > 0).all()
    assert (done["ttft_s"] > 0).all() and (done["e2e_s"] >= done["ttft_s"]).all()


@pytest.mark.parametrize(
    "policy,cfg,sim",
    [
        ("vllm", {"routing": "least_load"}, {}),
        ("vllm", {"routing": "round_robin"}, {"chunked_prefill": False}),
        ("distserve", {}, {}),
    ],
)
def test_conservation_under_memory_pressure(policy, cfg, sim):
    trace = loaded_trace()
    res = simulate(trace, poly(), make_policy(policy, cfg), 3, small_kv(**sim))
    check_conservation(res, trace)
    assert res.requests["finished"].all()
    assert res.requests["preemptions"].sum() > 0  # the small KV forces recompute: the path is exercised
    assert res.requests["recomputed_tokens"].sum() > 0


def test_requests_that_can_never_fit_fail_and_the_rest_complete():
    trace = mk_trace([0.0, 0.1, 0.2], [100, 5000, 100], [10, 10, 10])
    res = simulate(trace, poly(), make_policy("vllm"), 1, SimConfig(kv_capacity_tokens=2048))
    assert res.requests["status"].tolist() == ["finished", "failed", "finished"]
    m = res.metrics()
    assert m["completed"] == 2 and m["failed"] == 1


def test_until_counts_unfinished_requests_as_failed():
    trace = mk_trace([0.0, 1.0, 50.0], [100, 100, 100], [5, 5, 5])
    res = simulate(trace, poly(), make_policy("vllm"), 1, SimConfig(until_s=10.0))
    assert res.requests["finished"].tolist() == [True, True, False]
    assert res.duration_s == 10.0
    assert res.gpu_seconds == pytest.approx(10.0)


def test_determinism_and_seed():
    trace = loaded_trace(300)
    runs = [
        simulate(trace, poly(), make_policy("vllm", {"routing": "random"}), 4, small_kv(), seed=s) for s in (7, 7, 8)
    ]
    a, b, c = (r.requests for r in runs)
    assert a.equals(b)
    np.testing.assert_array_equal(runs[0].itl_s, runs[1].itl_s)
    assert not a["instance"].equals(c["instance"])  # the seed drives the random router


def test_single_request_closed_form():
    p, o = 1500, 40
    res = simulate(mk_trace([0.0], [p], [o]), poly(), make_policy("vllm"), 1)
    r = res.requests.iloc[0]
    ttft = prefill_s(p)
    e2e = ttft + sum(decode_s(p + g) for g in range(1, o))
    assert r["ttft_s"] == pytest.approx(ttft, rel=1e-12)
    assert r["e2e_s"] == pytest.approx(e2e, rel=1e-12)  # closed-form stretch sums: float rounding only
    exact = simulate(mk_trace([0.0], [p], [o]), poly(), make_policy("vllm"), 1, SimConfig(fast_forward=False))
    assert exact.requests.iloc[0]["e2e_s"] == pytest.approx(e2e, rel=1e-14)
    np.testing.assert_allclose(np.sort(res.itl_s), np.sort([decode_s(p + g) for g in range(1, o)]), rtol=1e-12)


def test_chunked_prefill_closed_form():
    """A 5000-token prompt with a 2048-token budget: chunks 2048, 2048, 904 on growing caches."""
    p = 5000
    res = simulate(mk_trace([0.0], [p], [2]), poly(), make_policy("vllm"), 1, SimConfig(max_num_batched_tokens=2048))
    ttft = prefill_s(2048) + prefill_s(2048, 2048) + prefill_s(904, 4096)
    assert res.requests.iloc[0]["ttft_s"] == pytest.approx(ttft, rel=1e-12)


def test_light_load_latency_is_service_time_and_overload_grows():
    """Prefill-only work (one output token), fixed prompt: a single-server queue with service S.

    Light load ρ = 0.1: M/D/1 predicts mean TTFT = S + ρS/(2(1−ρ)) = 1.056·S; batching waiting prompts
    together can only shift this by a fraction of the 5.6% queueing part, so we ask for S ≤ mean ≤ 1.1·S.
    Overload ρ = 2 with a linear cost (a = c = 0: batching gains nothing): the work backlog grows at
    rate ρ − 1, so TTFT grows with arrival time at slope ≈ 1 (10% tolerance for Poisson noise in 2000
    arrivals: the slope's sd is ≈ √(2/2000)·ρ/1 ≈ 0.04)."""
    lin = (0.0, 1e-4, 0.0)
    p = 1000
    s = prefill_s(p, prefill=lin)
    cm = poly(prefill=lin)
    light = poisson_trace(0.1 / s, n=2000, prompt=LengthDist.fixed(p), output=LengthDist.fixed(1), seed=3)
    ttft = simulate(light, cm, make_policy("vllm"), 1).requests["ttft_s"].to_numpy()
    assert ttft.min() == pytest.approx(s, rel=1e-12)
    assert s <= ttft.mean() <= 1.1 * s
    heavy = poisson_trace(2.0 / s, n=2000, prompt=LengthDist.fixed(p), output=LengthDist.fixed(1), seed=3)
    req = simulate(heavy, cm, make_policy("vllm"), 1, SimConfig(max_num_batched_tokens=1000, max_num_seqs=1)).requests
    slope = np.polyfit(req["arrival_s"], req["ttft_s"], 1)[0]
    assert slope == pytest.approx(1.0, rel=0.1)
    q = len(req) // 4  # linear growth from ≈ 0: quarter means at 1/8 and 7/8 of the span, ratio ≈ 7
    assert req["ttft_s"].iloc[-q:].mean() > 5 * req["ttft_s"].iloc[:q].mean()


class _MemoryAudit(Policy):
    """vLLM-like single-instance policy whose per-iteration hook checks the KV accounting."""

    name = "audit"

    def setup(self, sim, n):
        self.inst = sim.add_instance("mixed")
        self.max_used = 0

    def on_arrival(self, req):
        return self.inst

    def on_iteration_end(self, inst):
        private = sum(r.blocks for r in inst.running) + sum(r.blocks for r in inst.held.values())
        shared = 0
        if inst.cache is not None:
            shared = sum(1 for v in inst.cache.refs.values() if v > 0) * inst.cache.entry_blocks
            assert inst.cache.lru_blocks == len(inst.cache.lru) * inst.cache.entry_blocks
        assert inst.used == private + shared
        assert inst.used <= inst.capacity
        assert inst.used + (inst.cache.lru_blocks if inst.cache else 0) <= inst.capacity
        for r in inst.running:  # every running request's KV fits in its blocks
            assert r.computed - r.shared_tok <= r.blocks * inst.block_size
        self.max_used = max(self.max_used, inst.used)


@pytest.mark.parametrize("prefix", [False, True])
def test_kv_admission_never_exceeds_capacity(prefix):
    trace = shared_prefix_trace(8, 1024, 1.0, rate=20.0, n=400, seed=2) if prefix else loaded_trace(400, rate=20.0)
    pol = _MemoryAudit()
    sim = Simulator(trace, poly(), pol, 1, SimConfig(kv_capacity_tokens=16_000))
    res = sim.run()
    check_conservation(res, trace)
    inst = sim.instances[0]
    assert pol.max_used > 0.9 * inst.capacity  # memory really was the bottleneck
    assert inst.used == 0  # everything released at the end
    assert inst.cache is None or all(v == 0 for v in inst.cache.refs.values())
    assert res.requests["preemptions"].sum() > 0


def test_prefix_cache_hit_skips_exactly_the_shared_blocks():
    bt = 512
    k = 3  # shared prefix blocks
    ids_a = (1, 2, 3, 10, 11)
    ids_b = (1, 2, 3, 20, 21)
    p = 2300  # 5 blocks of 512 (the last partial)
    trace = mk_trace([0.0, 5.0], [p, p], [4, 4], hash_ids=(ids_a, ids_b), block_tokens=bt)
    res = simulate(trace, poly(), make_policy("vllm"), 1)
    a, b = res.requests.iloc[0], res.requests.iloc[1]
    assert a["cached_tokens"] == 0 and a["prefill_computed_tokens"] == p
    assert b["cached_tokens"] == k * bt and b["prefill_computed_tokens"] == p - k * bt
    assert b["ttft_s"] == pytest.approx(prefill_s(p - k * bt, k * bt), rel=1e-12)
    off = simulate(trace, poly(), make_policy("vllm"), 1, SimConfig(prefix_caching=False)).requests.iloc[1]
    assert off["cached_tokens"] == 0 and off["ttft_s"] == pytest.approx(prefill_s(p), rel=1e-12)


def test_prefix_cache_keeps_one_token_to_compute():
    """A prompt made only of cached full blocks still computes its last block's tokens."""
    trace = mk_trace([0.0, 5.0], [1024, 1024], [2, 2], hash_ids=((1, 2), (1, 2)))
    b = simulate(trace, poly(), make_policy("vllm"), 1).requests.iloc[1]
    assert b["cached_tokens"] == 512 and b["prefill_computed_tokens"] == 512


@pytest.mark.parametrize(
    "policy,cfg,kv",
    [
        ("vllm", {"routing": "least_load"}, 24_000),
        ("vllm", {"routing": "prefix_aware"}, 16_000),
        ("distserve", {"layerwise_overlap": True}, 24_000),
    ],
)
def test_speedups_do_not_change_results(policy, cfg, kv):
    """Lazy advancing, fast-forwarding and closed-form stretches agree with plain iteration-by-iteration
    stepping (eager, no fast path). Exact fast-forward equals stepping to the bit; the closed form
    differs by float rounding of its sums (tolerance 1e-9 relative on times measured in seconds)."""
    trace = shared_prefix_trace(20, 1024, 1.1, rate=10.0, n=500, seed=4)
    base = simulate(trace, poly(), make_policy(policy, cfg), 3, small_kv(kv, fast_forward=False, lazy=False))
    exact_ff = simulate(trace, poly(), make_policy(policy, cfg), 3, small_kv(kv, closed_form=False))
    fast = simulate(trace, poly(), make_policy(policy, cfg), 3, small_kv(kv))
    assert base.stats["fast_forwarded_iterations"] == 0 < fast.stats["fast_forwarded_iterations"]
    assert base.requests["preemptions"].sum() > 0
    assert exact_ff.requests.equals(base.requests)
    cols = ["instance", "decode_instance", "cached_tokens", "prefill_computed_tokens", "preemptions"]
    assert fast.requests[cols].equals(base.requests[cols])
    for col in ("ttft_s", "e2e_s", "first_token_s", "finish_s"):
        np.testing.assert_allclose(fast.requests[col], base.requests[col], rtol=1e-9)
    np.testing.assert_allclose(np.sort(fast.itl_s), np.sort(base.itl_s), rtol=1e-9)


def test_roofline_and_table_style_models_match_stepping():
    """Closed form with the roofline (two affine pieces) and the exact loop with a model that is not
    piecewise affine in the context both agree with stepping."""
    trace = loaded_trace(300, rate=8.0)

    class Curved:
        """Decode time ∝ √context: not piecewise affine, so the fast path must iterate."""

        tp = 1

        def iteration_time(self, p, a, d, c):
            return (0.01 + 1e-4 * p + 1e-9 * a if p else 0.0) + (0.01 + 1e-5 * math.sqrt(c) if d else 0.0)

        def kv_capacity_tokens(self):
            return 30_000

    for cm in (make_cost_model("roofline", "llama3-8b", "a100-80gb", 1), Curved()):
        base = simulate(trace, cm, make_policy("vllm"), 2, SimConfig(fast_forward=False, lazy=False))
        fast = simulate(trace, cm, make_policy("vllm"), 2)
        np.testing.assert_allclose(fast.requests["e2e_s"], base.requests["e2e_s"], rtol=1e-9)
    assert DecodeLines(Curved(), 30_000).get(4) is None
    assert DecodeLines(make_cost_model("roofline", "llama3-8b", "a100-80gb", 1), 400_000).get(4) is not None


def test_stretch_count_matches_brute_force():
    rng = np.random.default_rng(0)
    cm = make_cost_model("roofline", "llama2-70b", "h100-80gb", 4)
    lines = DecodeLines(cm, 500_000)
    for _ in range(200):
        n = int(rng.integers(1, 200))
        c0 = int(rng.integers(n, 200_000))
        kmax = int(rng.integers(1, 400))
        if lines.get(n) is None or c0 + kmax * n > lines.get(n)[4]:
            continue
        st = Stretch(lines.get(n), n, c0, 3.0)
        dts = np.array([cm.iteration_time(0, 0.0, n, c0 + j * n) for j in range(kmax)])
        ends = 3.0 + np.cumsum(dts)
        np.testing.assert_allclose([st.end(k) for k in range(1, kmax + 1)], ends, rtol=1e-11)
        horizon = 3.0 + float(rng.uniform(0, 1.2)) * dts.sum()
        k = st.count(kmax, horizon)
        assert st.end(k) <= horizon and (k == kmax or st.end(k + 1) > horizon)


def test_eager_and_lazy_instances_with_hooks_agree():
    """A policy with a per-iteration hook runs every instance eagerly; results equal the lazy run."""

    class Hooked(VllmPolicy):
        def on_iteration_end(self, inst):
            self.calls = getattr(self, "calls", 0) + 1

    trace = loaded_trace(300)
    lazy = simulate(trace, poly(), make_policy("vllm"), 2, small_kv(closed_form=False))
    pol = Hooked()
    eager = simulate(trace, poly(), pol, 2, small_kv())
    assert pol.calls == eager.stats["iterations"]
    assert eager.stats["fast_forwarded_iterations"] == 0
    assert eager.requests.equals(lazy.requests)


def test_pause_shifts_the_rest_of_the_request_by_the_pause():
    """An instance paused for 2 s at t = 1 s finishes its in-flight iteration, idles 2 s, resumes:
    the request's E2E grows by exactly 2 s and one ITL spans the pause."""

    class Pauser(VllmPolicy):
        def setup(self, sim, n):
            super().setup(sim, n)
            sim.schedule(1.0, lambda: self.replicas[0].pause(2.0))

    trace = mk_trace([0.0], [500], [200])
    base = simulate(trace, poly(), make_policy("vllm"), 1)
    paused = simulate(trace, poly(), Pauser(), 1)
    check_conservation(paused, trace)
    assert paused.requests["e2e_s"].iloc[0] == pytest.approx(base.requests["e2e_s"].iloc[0] + 2.0, rel=1e-12)
    assert paused.itl_s.max() == pytest.approx(2.0 + np.sort(base.itl_s)[0], abs=1e-3)
    assert (paused.itl_s > 1.0).sum() == 1


def test_migration_moves_running_requests_and_their_kv():
    """At t = 1 s every request running on instance 0 moves to instance 1: it finishes there, the KV
    transfer (queued FIFO on instance 0's link) shows up in its latency, nothing is lost."""

    class Mover(VllmPolicy):
        lazy_ok = False

        def setup(self, sim, n):
            super().setup(sim, n)
            sim.schedule(1.0, self.move)

        def on_arrival(self, req):
            return self.replicas[0]

        def move(self):
            src, dst = self.replicas
            self.moved = [r.rid for r in src.running]
            for r in list(src.running):
                src.migrate(r, dst)

    trace = mk_trace([0.0, 0.1, 0.2], [800, 900, 1000], [300, 300, 300])
    pol = Mover()
    res = simulate(trace, poly(), pol, 2)
    check_conservation(res, trace)
    req = res.requests
    assert pol.moved == [0, 1, 2]
    assert (req["instance"] == 0).all() and (req["decode_instance"] == 1).all()
    # each moved at least its prompt's KV; FIFO on one link: the i-th waited for the ones before it
    tx = np.array([poly().kv_transfer_time(p) for p in (800, 900, 1000)])
    assert (req["kv_transfer_s"].to_numpy() >= np.cumsum(tx)).all()
    assert req["kv_transfer_s"].is_monotonic_increasing
    assert res.instances["kv_transfers_sent"].tolist() == [3, 0]
    with pytest.raises(RuntimeError, match="eager"):
        sim = Simulator(trace, poly(), make_policy("vllm"), 2)
        sim.instances[0].migrate(sim.requests[0], sim.instances[1])


SPLITWISE = Path(os.environ.get("FULCRUM_SHARED", Path(__file__).resolve().parents[3].parent / "shared"))
SPLITWISE = SPLITWISE / "data/perf/splitwise_perf_model.csv"


@pytest.mark.skipif(not SPLITWISE.is_file(), reason=f"Splitwise profile not found at {SPLITWISE}")
def test_table_cost_model_fast_forward_is_exact():
    """The measured-table model is not piecewise affine: the fast path loops over iterations and
    gives bit-identical results."""
    cm = make_cost_model("table", "llama2-70b", "h100-80gb", 4, path=SPLITWISE)
    assert DecodeLines(cm, cm.kv_capacity_tokens()).get(8) is None
    trace = loaded_trace(400, rate=10.0)
    base = simulate(trace, cm, make_policy("vllm"), 2, SimConfig(fast_forward=False, lazy=False))
    fast = simulate(trace, cm, make_policy("vllm"), 2)
    assert fast.stats["fast_forwarded_iterations"] > 0
    assert fast.requests.equals(base.requests)
