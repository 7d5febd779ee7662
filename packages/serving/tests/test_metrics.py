"""Metric formulas on a hand-made per-request table (numbers worked out by hand in the comments)."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pandas as pd
import pytest

from serving.metrics import compute_metrics, jsonable, write_metrics, write_requests

PARQUET = any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet"))  # optional: parquet engine


@pytest.fixture
def table() -> pd.DataFrame:
    # r0: 5 tokens, TTFT 0.1, E2E 0.5 → TPOT 0.4/4 = 0.1;  r1: 1 token (no TPOT);  r2: TPOT 0.4/2 = 0.2
    return pd.DataFrame(
        {
            "arrival_s": [0.0, 1.0, 2.0, 3.0],
            "prompt_tokens": [10, 20, 30, 40],
            "output_tokens": [5, 1, 3, 10],
            "finished": [True, True, True, False],
            "ttft_s": [0.1, 0.2, 1.0, np.nan],
            "e2e_s": [0.5, 0.2, 1.4, np.nan],
        }
    )


ITL = [0.1, 0.1, 0.1, 0.1, 0.2, 0.2]  # r0's four gaps, r2's two


def test_throughputs_and_latency_stats(table):
    m = compute_metrics(table, ITL, duration_s=4.0, percentiles=(50, 99))
    assert (m["completed"], m["failed"]) == (3, 1)
    assert (m["total_input_tokens"], m["total_output_tokens"]) == (60, 9)
    assert m["duration"] == 4.0
    assert m["request_throughput"] == pytest.approx(3 / 4)
    assert m["output_throughput"] == pytest.approx(9 / 4)
    assert m["total_token_throughput"] == pytest.approx(69 / 4)
    # TTFT [100, 200, 1000] ms: p99 at rank 0.99·2 = 1.98 → 200 + 0.98·800
    assert m["mean_ttft_ms"] == pytest.approx(1300 / 3)
    assert m["median_ttft_ms"] == pytest.approx(200)
    assert m["p50_ttft_ms"] == pytest.approx(200)
    assert m["p99_ttft_ms"] == pytest.approx(984)
    assert m["std_ttft_ms"] == pytest.approx(np.std([100, 200, 1000]))
    # TPOT [100, 200] ms (the one-token request is excluded)
    assert m["mean_tpot_ms"] == pytest.approx(150)
    assert m["p99_tpot_ms"] == pytest.approx(199)
    assert m["mean_itl_ms"] == pytest.approx(800 / 6)
    assert m["median_itl_ms"] == pytest.approx(100)
    assert m["mean_e2el_ms"] == pytest.approx(700)
    assert m["median_e2el_ms"] == pytest.approx(500)
    for name in ("ttft", "tpot", "itl", "e2el"):
        for stat in ("mean", "median", "p99"):
            assert f"{stat}_{name}_ms" in m


def test_goodput_and_attainment(table):
    # SLOs 500 ms / 150 ms: r0 meets both, r1 meets both (one token: TPOT counts as 0), r2 misses TTFT,
    # r3 failed → good = 2: goodput 2/4 s, attainment 2 of 4 requests
    m = compute_metrics(table, ITL, duration_s=4.0, slo_ttft_ms=500, slo_tpot_ms=150, gpu_seconds=8.0)
    assert m["good_requests"] == 2
    assert m["goodput"] == pytest.approx(0.5)
    assert m["slo_attainment"] == pytest.approx(0.5)
    assert m["gpu_seconds"] == 8.0 and m["output_tokens_per_gpu_second"] == pytest.approx(9 / 8)
    # a tighter TPOT SLO alone drops r0 (TPOT 100 ms) and r2 (200 ms) but not the one-token r1
    assert compute_metrics(table, ITL, duration_s=4.0, slo_tpot_ms=99)["good_requests"] == 1
    assert compute_metrics(table, ITL, duration_s=4.0, slo_ttft_ms=150)["good_requests"] == 1


def test_default_duration_and_edge_cases(table):
    # last finish = max(0 + 0.5, 1 + 0.2, 2 + 1.4) = 3.4 > last arrival 3.0
    assert compute_metrics(table)["duration"] == pytest.approx(3.4)
    assert math.isnan(compute_metrics(table)["mean_itl_ms"])  # no ITLs given
    failed = table.assign(finished=False)
    m = compute_metrics(failed, [], duration_s=1.0, slo_ttft_ms=100)
    assert m["completed"] == 0 and m["goodput"] == 0 and math.isnan(m["mean_ttft_ms"])
    with pytest.raises(ValueError, match="ttft_s"):
        compute_metrics(table.drop(columns="ttft_s"))
    with pytest.raises(ValueError, match="finite"):
        compute_metrics(table.assign(finished=True))


def test_writers(tmp_path, table):
    m = compute_metrics(table.assign(finished=False), [], duration_s=1.0)
    path = write_metrics(m, tmp_path / "m.json", settings={"x": 1})
    data = json.loads(path.read_text())  # strict JSON: NaN became null
    assert data["mean_ttft_ms"] is None and data["settings"] == {"x": 1}
    assert jsonable({"a": np.float64(1.5), "b": np.int64(2)}) == {"a": 1.5, "b": 2}
    for name in ("r.csv", "r.parquet") if PARQUET else ("r.csv",):
        p = write_requests(table, tmp_path / name)
        back = pd.read_csv(p) if name.endswith("csv") else pd.read_parquet(p)
        pd.testing.assert_frame_equal(back, table, check_dtype=False)
