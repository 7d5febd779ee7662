"""Tests for serving.costmodel: specs, roofline, polynomial fit and Splitwise table interpolation."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.costmodel import (
    GPUS,
    MODELS,
    CostModel,
    ModelSpec,
    PolynomialCostModel,
    RooflineCostModel,
    TableCostModel,
    TableError,
    make_cost_model,
    prefill_attn_pairs,
)
from serving.costmodel.polynomial import nnls_small
from serving.costmodel.specs import PCAP_PROMPT_SLOWDOWN
from serving.costmodel.table import LogLogCurve

SHARED = Path(os.environ.get("FULCRUM_SHARED", Path(__file__).resolve().parents[3].parent / "shared"))
SPLITWISE = SHARED / "data" / "perf" / "splitwise_perf_model.csv"
needs_splitwise = pytest.mark.skipif(
    not SPLITWISE.is_file(), reason=f"shared Splitwise profile not found at {SPLITWISE} (set FULCRUM_SHARED)"
)


def fresh(n: int, k: int = 1) -> tuple[int, float]:
    """(prefill_tokens, prefill_attn) of k fresh prompts of n tokens."""
    return k * n, k * n * (n + 1) / 2.0


# --- specs ---------------------------------------------------------------------------------------
def test_kv_bytes_per_token_llama2_70b_exact():
    m = MODELS["llama2-70b"]
    assert m.head_dim == 128
    assert m.kv_bytes_per_token == 2 * 80 * 8 * 128 * 2 == 327_680


@pytest.mark.parametrize(
    ("name", "published"),
    # published sizes: Llama 2 paper/model cards (70B ≈ 68.98e9, 13B ≈ 13.02e9), Llama 3 8B card (8.03e9),
    # BLOOM paper (176.2e9 = 176,247,271,424). The shape formula must land within 0.5%: the published
    # counts are given to 3–4 significant digits, and a wrong term (e.g. MHA K/V for a GQA model: +1.3B
    # on 70B, or a missing LM head: −0.26B) moves the total by more than that.
    [("llama2-70b", 68.98e9), ("llama2-13b", 13.02e9), ("llama3-8b", 8.03e9), ("bloom-176b", 176.25e9)],
)
def test_param_counts_match_published(name, published):
    m = MODELS[name]
    assert m.params == pytest.approx(published, rel=5e-3)
    assert m.weight_bytes == 2 * m.params
    assert m.layer_bytes * m.layers < m.weight_bytes


def test_registries_and_errors():
    assert {"llama2-70b", "bloom-176b", "llama3-8b", "llama2-13b"} <= set(MODELS)
    assert {"a100-80gb", "h100-80gb", "h100-80gb-pcap"} <= set(GPUS)
    with pytest.raises(KeyError, match="unknown model 'gpt5'.*llama2-70b"):
        make_cost_model("roofline", "gpt5", "a100-80gb", 4)
    with pytest.raises(KeyError, match="unknown gpu 'tpu'.*a100-80gb"):
        make_cost_model("roofline", "llama2-70b", "tpu", 4)
    with pytest.raises(ValueError, match=r"tp=3 not supported.*\[1, 2, 4, 8\]"):
        make_cost_model("roofline", "llama2-70b", "a100-80gb", 3)
    toy = ModelSpec("toy", layers=2, hidden=768, heads=12, kv_heads=12, ffn=3072, vocab=1000)
    with pytest.raises(ValueError, match=r"tp=8 not supported for toy.*\[1, 2, 4\]"):  # 12 heads
        make_cost_model("roofline", toy, "a100-80gb", 8)
    with pytest.raises(ValueError, match="unknown cost model kind 'magic'.*roofline"):
        make_cost_model("magic", "llama2-70b", "a100-80gb", 4)


# --- roofline -------------------------------------------------------------------------------------
@pytest.mark.parametrize("gpu", sorted(GPUS))
@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_roofline_regimes(gpu, tp):
    r = RooflineCostModel("llama2-70b", gpu, tp)
    assert r.regime(*fresh(2048), 0, 0) == "compute"
    for b in range(1, 33):
        for ctx in (0, 1024, 4096):
            assert r.regime(0, 0.0, b, b * ctx) == "memory", (b, ctx)


@pytest.mark.parametrize("gpu", sorted(GPUS))
def test_roofline_decode_crossover(gpu):
    """Decode batch where compute time reaches memory time (context 0)."""
    m = MODELS["llama2-70b"]
    r = RooflineCostModel(m, gpu, 1)
    g = r.gpu
    lo, hi = 1.0, 4096.0
    while hi - lo > 1e-6:  # bisection on the real-valued batch
        mid = 0.5 * (lo + hi)
        b = r.breakdown(0, 0.0, mid, 0)
        lo, hi = (mid, hi) if b["memory_s"] > b["compute_s"] else (lo, mid)
    found = 0.5 * (lo + hi)
    # independent closed form of the same balance: 2·P_f·b/(F·mfu) = (W + e·b)/(BW·mbu), P_f = layer
    # and LM-head params (FLOPs), W = weight bytes read, e = per-token KV write + activation bytes
    p_f = m.params_nonembed + m.lm_head_params
    w = (m.params - m.embed_params) * m.dtype_bytes
    e = m.kv_bytes_per_token + m.layers * 2 * m.dtype_bytes * (6 * m.hidden + 2 * m.kv_dim + 3 * m.ffn)
    exact = w / (2 * p_f * g.hbm_bw * r.mbu / (g.flops * r.mfu) - e)
    assert found == pytest.approx(exact, rel=1e-6)
    # textbook weights-only estimate b* = F·mfu/(BW·mbu)·dtype/2: it ignores e, which adds
    # e·b*/W ≈ 4% (A100) to 7% (H100) to the memory side at the crossover -> 10% tolerance
    textbook = g.flops * r.mfu / (g.hbm_bw * r.mbu) * m.dtype_bytes / 2
    assert found == pytest.approx(textbook, rel=0.10)


def test_roofline_terms_and_monotone():
    r = RooflineCostModel("llama2-70b", "h100-80gb", 4)
    assert r.iteration_time(0, 0.0, 0, 0) == 0.0
    b = r.breakdown(*fresh(1000), 8, 8000)
    assert b["total_s"] == pytest.approx(r.iteration_time(*fresh(1000), 8, 8000))
    assert b["total_s"] == pytest.approx(max(b["compute_s"], b["memory_s"]) + b["comm_s"] + b["overhead_s"])
    # more tokens -> more time, in every argument
    times = [r.iteration_time(*fresh(n), 0, 0) for n in (1, 16, 128, 512, 2048, 8192)]
    assert np.all(np.diff(times) > 0)
    times = [r.iteration_time(0, 0.0, k, k * 1000) for k in (1, 2, 8, 64, 256, 1024)]
    assert np.all(np.diff(times) > 0)
    times = [r.iteration_time(0, 0.0, 16, c) for c in (16, 1600, 16000, 160000)]
    assert np.all(np.diff(times) > 0)
    # chunked prefill: the same 512 new tokens cost more on top of a longer cached prefix
    times = [r.iteration_time(512, prefill_attn_pairs([(512, c)]), 0, 0) for c in (0, 1024, 8192)]
    assert np.all(np.diff(times) > 0)
    with pytest.raises(ValueError):
        r.iteration_time(-1, 0.0, 0, 0)
    with pytest.raises(ValueError):
        r.iteration_time(0, 0.0, 0, 10)


def test_roofline_tp_and_pcap():
    # without comm and overhead, the pure terms scale as 1/tp (KV not replicated: 8 KV heads)
    one = RooflineCostModel("llama2-70b", "a100-80gb", 1, overhead_s=0.0)
    eight = RooflineCostModel("llama2-70b", "a100-80gb", 8, overhead_s=0.0, tp_comm=False)
    for batch in ((*fresh(2048), 0, 0), (0, 0.0, 16, 16000)):  # compute-bound prefill, memory-bound decode
        assert eight.iteration_time(*batch) == pytest.approx(one.iteration_time(*batch) / 8)
    with_comm = RooflineCostModel("llama2-70b", "a100-80gb", 8, overhead_s=0.0)
    assert with_comm.iteration_time(*fresh(2048), 0, 0) > eight.iteration_time(*fresh(2048), 0, 0)
    # power cap: compute term x1.3, memory term unchanged
    h = RooflineCostModel("llama2-70b", "h100-80gb", 4).breakdown(*fresh(4096), 0, 0)
    c = RooflineCostModel("llama2-70b", "h100-80gb-pcap", 4).breakdown(*fresh(4096), 0, 0)
    assert c["compute_s"] == pytest.approx(h["compute_s"] * PCAP_PROMPT_SLOWDOWN)
    assert c["memory_s"] == pytest.approx(h["memory_s"])


def test_roofline_memory_and_transfers():
    m = MODELS["llama2-70b"]
    with pytest.raises(ValueError, match="leaves no room for KV.*tp=1"):
        RooflineCostModel(m, "a100-80gb", 1).kv_capacity_tokens()
    r = RooflineCostModel(m, "a100-80gb", 4)
    g = r.gpu
    expect = (4 * g.mem_bytes * 0.9 - m.weight_bytes - 4 * 8192 * 2 * (4 * 8192 + 3 * 28672 / 4)) // 327_680
    assert r.kv_capacity_tokens() == expect
    assert RooflineCostModel(m, "a100-80gb", 8).kv_capacity_tokens() > r.kv_capacity_tokens()
    t1, t2 = r.kv_transfer_time(1000), r.kv_transfer_time(2000)
    assert t2 - t1 == pytest.approx(1000 * 327_680 / (4 * g.link_bw))
    assert r.kv_transfer_time(0) == 0.0
    net = RooflineCostModel(m, "a100-80gb", 4, kv_link="network")
    assert net.kv_transfer_time(1000) > r.kv_transfer_time(1000)
    assert r.weight_transfer_time(80) - r.weight_transfer_time(40) == pytest.approx(
        40 * m.layer_bytes / (4 * g.link_bw)
    )
    with pytest.raises(ValueError):
        r.weight_transfer_time(81)


# --- polynomial -----------------------------------------------------------------------------------
def test_prefill_quadratic_feature_identity():
    chunks = [(512, 0), (100, 3000), (7, 40)]
    a = prefill_attn_pairs(chunks)
    n = sum(k for k, _ in chunks)
    assert 2 * a - n == pytest.approx(sum((c + k) ** 2 - c**2 for k, c in chunks))


@pytest.mark.parametrize("relative", [True, False])
def test_polynomial_fit_recovers_coefficients(relative):
    rng = np.random.default_rng(0)
    pre_true, dec_true = (0.012, 3.1e-5, 2.0e-9), (0.008, 4.0e-7, 1.5e-4)
    truth = PolynomialCostModel(pre_true, dec_true)
    pre, dec = [], []
    for _ in range(60):
        chunks = [(int(rng.integers(1, 4000)), int(rng.integers(0, 3000))) for _ in range(int(rng.integers(1, 5)))]
        n, a = sum(k for k, _ in chunks), prefill_attn_pairs(chunks)
        pre.append((n, a, truth.iteration_time(n, a, 0, 0)))
        b = int(rng.integers(1, 256))
        c = int(b * rng.integers(16, 8000))
        dec.append((b, c, truth.iteration_time(0, 0.0, b, c)))
    fit = PolynomialCostModel.fit(pre, dec, relative=relative)
    # noiseless samples, well-conditioned design: recovery to ~1e-6 relative (float64 lstsq)
    assert fit.prefill == pytest.approx(pre_true, rel=1e-6)
    assert fit.decode == pytest.approx(dec_true, rel=1e-6)
    assert fit.fit_stats["prefill_max_rel_err"] < 1e-9
    # mixed batch = prefill part + decode part
    assert fit.iteration_time(*fresh(300), 4, 4000) == pytest.approx(
        fit.iteration_time(*fresh(300), 0, 0) + fit.iteration_time(0, 0.0, 4, 4000)
    )


def test_nnls_small_matches_scipy():
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(1)
    for _ in range(50):
        a = rng.normal(size=(20, 3))
        y = rng.normal(size=20)
        ours = nnls_small(a, y)
        ref = optimize.nnls(a, y)[0]
        assert np.all(ours >= 0)
        # compare objectives (solutions are unique for full-rank a, but objectives are the robust check)
        assert np.sum((a @ ours - y) ** 2) == pytest.approx(np.sum((a @ ref - y) ** 2), rel=1e-9, abs=1e-12)
        assert ours == pytest.approx(ref, abs=1e-8)


def test_polynomial_from_roofline():
    r = RooflineCostModel("llama2-70b", "a100-80gb", 4)
    p = PolynomialCostModel.from_cost_model(r)
    assert isinstance(p, CostModel)
    assert (p.model, p.gpu, p.tp) == (r.model, r.gpu, r.tp)
    assert min(p.prefill + p.decode) >= 0
    assert p.kv_capacity_tokens() == r.kv_capacity_tokens()
    assert p.kv_transfer_time(100) == r.kv_transfer_time(100)
    # DistServe's form is smooth; the roofline has a max() kink, so the fit is approximate. Reported,
    # and bounded loosely: within 35% everywhere on the grid (measured max is printed in the note).
    assert p.fit_stats["prefill_max_rel_err"] < 0.35
    assert p.fit_stats["decode_max_rel_err"] < 0.35
    times = [p.iteration_time(*fresh(n), 0, 0) for n in (16, 128, 1024, 8192)]
    assert np.all(np.diff(times) > 0)
    times = [p.iteration_time(0, 0.0, k, k * 1000) for k in (1, 8, 64, 256)]
    assert np.all(np.diff(times) > 0)
    with pytest.raises(ValueError, match="no model/gpu"):
        PolynomialCostModel((1, 1, 1), (1, 1, 1)).kv_capacity_tokens()


# --- table ----------------------------------------------------------------------------------------
COLUMNS = [
    "model",
    "hardware",
    "prompt_size",
    "batch_size",
    "token_size",
    "peak_power",
    "average_power",
    "prompt_time",
    "token_time",
    "e2e_time",
    "tensor_parallel",
]


# fixture truth in DistServe's form (seconds): prompt of b prompts of P tokens = a + b_·(bP) + c·(bP²),
# decode step of b sequences at mean context x = a + b_·(b·x) + c·b
FIX_PREFILL = (0.03, 1.2e-4, 3e-9)
FIX_DECODE = (0.025, 2e-8, 3e-4)
FIX_EPS = 0.02  # repeats at (1 - eps, 1, 1 + eps): raw rows differ, their mean is the truth


def _make_profile(path: Path) -> pd.DataFrame:
    """Splitwise-format CSV (ms): prompt sweep, batch sweep at 512, token sweep; 3 repeats each."""
    truth = PolynomialCostModel(FIX_PREFILL, FIX_DECODE)
    rows = []

    def add(model, hw, tp, p, b, tok):
        pt = truth.iteration_time(*fresh(p, b), 0, 0) * 1e3
        tt = truth.iteration_time(0, 0.0, b, b * (p + tok / 2)) * 1e3
        for f in (1 - FIX_EPS, 1.0, 1 + FIX_EPS):
            rows.append([model, hw, p, b, tok, 1.0, 0.7, pt * f, tt * f, (pt + (tok - 1) * tt) * f, tp])

    for p in (128, 256, 512, 1024, 2048, 4096):
        add("llama2-13b", "a100-80gb", 2, p, 1, 128)
    for b in (2, 4, 8, 16):
        add("llama2-13b", "a100-80gb", 2, 512, b, 128)
    for tok in (256, 512):
        add("llama2-13b", "a100-80gb", 2, 512, 1, tok)
    add("llama2-13b", "h100-80gb", 4, 512, 1, 128)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.to_csv(path, index=False)
    return frame


def _check_reproduces(t: TableCostModel, rel: float = 1e-9) -> int:
    """Every averaged row the table uses comes back exactly, via the lookups and via iteration_time."""
    n = 0
    for row in t.used_rows.itertuples():
        p, b = int(row.prompt_size), int(row.batch_size)
        assert t.prompt_time(p, b) == pytest.approx(row.prompt_time_s, rel=rel)
        assert t.iteration_time(*fresh(p, b), 0, 0) == pytest.approx(row.prompt_time_s, rel=rel)
        ctx = p + t.ref_tokens / 2
        if b == 1 or p == t.ref_prompt:  # token rows: context sweep at batch 1, batch sweep at P_ref
            assert t.token_time(b, ctx) == pytest.approx(row.token_time_s, rel=rel)
            assert t.iteration_time(0, 0.0, b, b * ctx) == pytest.approx(row.token_time_s, rel=rel)
        n += 1
    return n


def test_table_generated_csv(tmp_path):
    path = tmp_path / "profile.csv"
    frame = _make_profile(path)
    t = TableCostModel.from_splitwise_csv(path, "llama2-13b", "a100-80gb", 2)
    assert (t.ref_prompt, t.ref_tokens, t.ignored_rows) == (512, 128, 2)
    assert _check_reproduces(t) == 10
    # averaging: the table holds the mean of the three repeats (which is the truth), not any one row
    sel = frame[(frame.hardware == "a100-80gb") & (frame.prompt_size == 1024) & (frame.token_size == 128)]
    assert sel.prompt_time.nunique() == 3
    assert t.prompt_time(1024) == pytest.approx(sel.prompt_time.mean() / 1e3, rel=1e-12)
    assert t.prompt_time(1024) == pytest.approx(PolynomialCostModel(FIX_PREFILL, FIX_DECODE).prefill_time(*fresh(1024)))
    # monotone fixture -> monotone model
    times = [t.iteration_time(*fresh(n), 0, 0) for n in (64, 128, 700, 4096, 20000)]
    assert np.all(np.diff(times) > 0)
    times = [t.iteration_time(0, 0.0, k, k * 600) for k in (1, 3, 16, 40)]
    assert np.all(np.diff(times) > 0)
    # adding prefill work to a decode batch never makes the iteration cheaper (tiny chunk on a long prefix)
    for chunk in (1, 8, 64, 512):
        for k in (1, 8, 16):
            mixed = t.iteration_time(chunk, prefill_attn_pairs([(chunk, 4000)]), k, k * 3000)
            assert mixed >= t.iteration_time(0, 0.0, k, k * 3000)
    # extrapolation continues the last segment's log-log slope
    s = math.log(t.prompt_time(4096) / t.prompt_time(2048)) / math.log(2)
    assert t.prompt_time(16384) == pytest.approx(t.prompt_time(4096) * 4**s, rel=1e-12)
    # delegated memory queries
    assert t.kv_capacity_tokens() == RooflineCostModel("llama2-13b", "a100-80gb", 2).kv_capacity_tokens()
    # errors name the missing setting and list what exists
    with pytest.raises(
        TableError, match=r"no rows for llama2-13b/h100-80gb/tp2; available: .*llama2-13b/a100-80gb/tp2"
    ):
        TableCostModel.from_splitwise_csv(path, "llama2-13b", "h100-80gb", 2)
    with pytest.raises(TableError, match="misses columns"):
        TableCostModel.from_frame(frame.drop(columns=["token_time"]), "llama2-13b", "a100-80gb", 2)
    made = make_cost_model("table", "llama2-13b", "a100-80gb", 2, path=path)
    assert made.prompt_time(512) == t.prompt_time(512)
    # the polynomial fitted to the table's measured settings recovers the fixture's DistServe coefficients
    # (rows are exact after averaging; 1e-6 leaves room for float64 least squares on ~10 rows)
    poly = make_cost_model("polynomial", "llama2-13b", "a100-80gb", 2, fit_to="table", path=path)
    assert poly.prefill == pytest.approx(FIX_PREFILL, rel=1e-6)
    assert poly.decode == pytest.approx(FIX_DECODE, rel=1e-6)


def test_loglog_curve_clamps_slopes():
    c = LogLogCurve(np.array([1.0, 2.0, 4.0]), np.array([10.0, 5.0, 40.0]))
    assert c(1.0) == pytest.approx(10.0) and c(4.0) == pytest.approx(40.0)
    assert c(0.5) == pytest.approx(10.0)  # falling first segment: slope clamped to 0
    assert c(8.0) == pytest.approx(160.0)  # last slope 3 clamped to 2: 40 · 2²
    assert c(2.0**0.5) == pytest.approx(10.0 * 0.5**0.5)


@needs_splitwise
def test_table_reproduces_all_shared_rows():
    frame = pd.read_csv(SPLITWISE)
    combos = frame[["model", "hardware", "tensor_parallel"]].drop_duplicates().itertuples(index=False)
    checked = 0
    for model, hw, tp in combos:
        t = TableCostModel.from_frame(frame, model, hw, int(tp), source=str(SPLITWISE))
        checked += _check_reproduces(t)
    settings = ["model", "hardware", "tensor_parallel", "prompt_size", "batch_size"]
    assert checked == len(frame.loc[frame.token_size == 128, settings].drop_duplicates())


@needs_splitwise
def test_shared_pcap_profile_is_scaled_h100():
    """The constant PCAP_PROMPT_SLOWDOWN is SplitwiseSim's: pcap prompt = 1.3 x H100, token equal."""
    f = pd.read_csv(SPLITWISE)
    keys = ["model", "tensor_parallel", "prompt_size", "batch_size", "token_size"]
    h = f[f.hardware == "h100-80gb"].groupby(keys)[["prompt_time", "token_time"]].mean()
    c = f[f.hardware == "h100-80gb-pcap"].groupby(keys)[["prompt_time", "token_time"]].mean()
    h, c = h.align(c, join="inner")
    assert len(h) > 50
    np.testing.assert_allclose(c.prompt_time / h.prompt_time, PCAP_PROMPT_SLOWDOWN, rtol=1e-3)
    np.testing.assert_allclose(c.token_time / h.token_time, 1.0, rtol=1e-3)


def roofline_table_ratios(path: Path, gpu: str, tp: int) -> pd.DataFrame:
    """Roofline / table time for every used row of llama2-70b on (gpu, tp); phase = prompt or token."""
    t = TableCostModel.from_splitwise_csv(path, "llama2-70b", gpu, tp)
    r = RooflineCostModel("llama2-70b", gpu, tp)
    out = []
    for row in t.used_rows.itertuples():
        p, b = int(row.prompt_size), int(row.batch_size)
        out.append(("prompt", p, b, r.iteration_time(*fresh(p, b), 0, 0) / row.prompt_time_s))
        ctx = p + t.ref_tokens / 2
        out.append(("token", p, b, r.iteration_time(0, 0.0, b, b * ctx) / row.token_time_s))
    return pd.DataFrame(out, columns=["phase", "prompt_size", "batch_size", "ratio"])


@needs_splitwise
@pytest.mark.parametrize("gpu", ["a100-80gb", "h100-80gb"])
@pytest.mark.parametrize("tp", [4, 8])
def test_roofline_vs_splitwise_sanity(gpu, tp):
    """Loose band: catches unit/scale errors (ms vs s, per-GPU vs per-instance: factors >= tp = 4),
    not model error. The roofline at mfu 0.6 / mbu 0.8 is optimistic, and the measured profile carries
    costs it omits (host overhead beyond 2 ms, TP scaling losses — its TP8 decode is no faster than
    TP4), so ratios sit below 1; the widest gap measured is ≈ 0.21 (H100 TP8, 128-token prompt)."""
    ratios = roofline_table_ratios(SPLITWISE, gpu, tp)
    assert ratios.ratio.between(1 / 6, 2.0).all(), ratios[~ratios.ratio.between(1 / 6, 2.0)]
    med = ratios.groupby("phase").ratio.median()
    assert med.between(1 / 3.5, 1.5).all(), med
