"""Profile → calibrate → validate (serving.validation).

What is checked, and why it can fail:

- the ci profile (in-process, then over HTTP) writes a Splitwise-schema CSV that ``TableCostModel`` reads,
  and the table reproduces the profile's own rows exactly (it interpolates through its averaged rows); the
  prefill column equals the summed per-prompt samples; the polynomial and the held-out scores are there;
- the compare plumbing is exact on a synthetic "measured" run made by the simulator itself (rows shuffled,
  clock shifted): every ratio is 1, and a front-end delay adds exactly to TTFT and E2E;
- a real run against the engine (ci size, one server start) completes, its engine counters agree with the
  trace (decode tokens = Σ(output − 1)), and the experiment writes its data, a summary with both medians
  and both claims, and the figure;
- config and argument errors name the key or option.

No assertion depends on how fast this (shared, loaded) machine is: timings are only required to be > 0.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulcrum_core import ConfigError, from_mapping
from fulcrum_core.cli import main as fulcrum_main
from serving.costmodel import PolynomialCostModel, TableCostModel
from serving.traces import LengthDist, poisson_trace
from serving.validation.compare import (
    PaddedDecode,
    compare_runs,
    engine_sim_config,
    ks_distance,
    padding_factors,
    read_measured,
    simulate_measured,
)
from serving.validation.profile import steady_step


def _needs_engine() -> None:
    pytest.importorskip("torch", reason="the engine needs torch")


def _needs_server() -> None:
    _needs_engine()
    for mod in ("httpx", "fastapi", "uvicorn"):
        pytest.importorskip(mod, reason=f"the engine server needs {mod}")


# --------------------------------------------------------------------------------------- profile


@pytest.fixture(scope="module")
def inproc_profile(tmp_path_factory):
    _needs_engine()
    from serving.validation.profile import run_profile

    out = tmp_path_factory.mktemp("profile")
    summary = run_profile(out, size="ci", mode="inprocess", max_batch=4, max_model_len=512, threads=1, progress=False)
    return out, summary


def _check_table(folder: Path, summary: dict) -> None:
    from serving.validation.profile import SPLITWISE_COLUMNS, hardware_spec, load_cost_model, model_spec_of

    csv = pd.read_csv(folder / "perf_model.csv")
    assert tuple(csv.columns) == SPLITWISE_COLUMNS
    assert set(csv["model"]) == {"engine-tiny"} and set(csv["hardware"]) == {"cpu-1t"}
    assert (csv["tensor_parallel"] == 1).all() and (csv[["prompt_time", "token_time"]] > 0).all().all()
    assert (csv["e2e_time"] > csv["prompt_time"]).all()
    groups = pd.read_csv(folder / "groups.csv")
    sweep = groups[groups["set"] == "sweep"].sort_values("group")
    assert len(csv) == len(sweep) == summary["groups"]["sweep"]
    # a batch row's prompt_time is the whole prefill phase of its b prompts
    np.testing.assert_allclose(csv["prompt_time"], 1e3 * sweep["prefill_wall_s"].to_numpy(), rtol=1e-12)
    table = TableCostModel.from_splitwise_csv(
        folder / "perf_model.csv", model_spec_of(folder), hardware_spec(folder), 1
    )
    assert table.ignored_rows == 0 and table.ref_prompt == summary["size"]["ref_prompt"]
    avg = csv.groupby(["prompt_size", "batch_size"], as_index=False)[["prompt_time", "token_time"]].mean()
    half = summary["size"]["tokens"] / 2.0
    for row in avg.itertuples():
        assert table.prompt_time(row.prompt_size, row.batch_size) == pytest.approx(row.prompt_time / 1e3, rel=1e-9)
        assert table.token_time(row.batch_size, row.prompt_size + half) == pytest.approx(row.token_time / 1e3, rel=1e-9)
    poly = load_cost_model(folder, "polynomial")
    assert isinstance(poly, PolynomialCostModel) and min(poly.prefill + poly.decode) >= 0
    assert poly.iteration_time(128, 128 * 129 / 2, 0, 0) > 0 and poly.iteration_time(0, 0, 4, 600) > 0
    assert summary["chosen"] in ("table", "polynomial")
    assert isinstance(load_cost_model(folder), TableCostModel if summary["chosen"] == "table" else PolynomialCostModel)
    for kind in ("table", "polynomial"):
        h = summary["holdout"]["wall"][kind]
        assert h["prefill"]["n"] == summary["groups"]["holdout"] and math.isfinite(h["score"])


def test_inprocess_profile_writes_a_table_the_cost_model_reproduces(inproc_profile):
    folder, summary = inproc_profile
    _check_table(folder, summary)
    steps = pd.read_csv(folder / "steps.csv")
    groups = pd.read_csv(folder / "groups.csv").set_index("group")
    assert (steps["time_s"] > 0).all() and (steps["cpu_s"] >= 0).all()
    # group totals are the sums of their steps; decode tokens = batch × (tokens − 1)
    pre = steps[steps["kind"] == "prefill"].groupby("group")["time_s"].sum()
    np.testing.assert_allclose(pre.to_numpy(), groups.loc[pre.index, "prefill_s"].to_numpy(), rtol=1e-12)
    assert (groups["decode_tokens"] == groups["batch"] * (groups["tokens"] - 1)).all()
    assert (groups["decode_steps"] == groups["tokens"] - 1).all()  # in-process, a group is admitted in one step
    assert "cpu" in summary["polynomial"] and (folder / "perf_model_cpu.csv").is_file()


def test_http_profile_writes_the_same_outputs(tmp_path):
    _needs_server()
    from serving.validation.profile import ProfileSize, run_profile

    tiny = ProfileSize(prompts=(16, 48), batches=(2,), ref_prompt=16, tokens=4, reps=1, holdout=1, holdout_steps=2)
    summary = run_profile(tmp_path, size=tiny, mode="http", max_batch=2, max_model_len=256, progress=False)
    _check_table(tmp_path, summary)
    groups = pd.read_csv(tmp_path / "groups.csv")
    assert (groups["prefills"] == groups["batch"]).all()
    assert (groups["decode_tokens"] == groups["batch"] * (groups["tokens"] - 1)).all()  # counters are exact
    assert (groups["client_span_s"] > groups["client_ttft_s"]).all() and (groups["client_ttft_s"] > 0).all()
    assert set(summary["polynomial"]) == {"wall", "engine"} and summary["frontend_s"] >= 0
    assert summary["timing"]["server"]["server"]["killed"] is False
    assert not (tmp_path / "steps.csv").exists()


def test_client_profile_of_any_openai_server(tmp_path):
    """Client mode (meant for vLLM) against the CPU engine started by a server command: client clock only."""
    _needs_server()
    from serving.validation.profile import ProfileSize, run_profile

    tiny = ProfileSize(prompts=(16, 48), batches=(2,), ref_prompt=16, tokens=4, reps=1, holdout=1, holdout_steps=2)
    server = f"{sys.executable} -m serving.engine --port {{port}} --max-batch 2 --max-model-len 256"
    summary = run_profile(
        tmp_path,
        size=tiny,
        mode="client",
        server_command=server,
        model_name="llama3-8b",
        hardware="h100-80gb",
        max_batch=2,
        max_model_len=256,
        progress=False,
    )
    assert summary["mode"] == "client" and summary["model"]["name"] == "llama3-8b" and summary["tp"] == 1
    assert summary["engine"]["served_model"] == "fulcrum-tiny"
    assert summary["timing"]["server"]["server"]["killed"] is False
    table = TableCostModel.from_splitwise_csv(tmp_path / "perf_model.csv", "llama3-8b", "h100-80gb", 1)
    csv = pd.read_csv(tmp_path / "perf_model.csv")
    assert (csv[["prompt_time", "token_time"]] > 0).all().all() and table.ref_prompt == 16
    assert set(summary["polynomial"]) == {"wall"} and summary["frontend_s"] >= 0


def test_steady_step_reads_the_lockstep_period():
    # 3 requests; request 2 admitted one step late (its first token arrives with the others' second one)
    period, t0 = 0.01, 1.0
    lockstep = [[t0 + period * k + 1e-4 * i for k in range(8)] for i in range(2)]
    late = [t0 + period * k + 2e-4 for k in range(1, 8)]
    assert steady_step([*lockstep, late]) == pytest.approx(period, rel=1e-9)
    assert math.isnan(steady_step([[0.0, 0.1]]))


# --------------------------------------------------------------------------------------- compare


def _synthetic_bench(folder: Path, trace, cost, max_batch: int, shift: float, rng) -> None:
    """A bench-format folder whose 'measurements' are a simulation of ``trace`` (rows shuffled, clock shifted)."""
    from serving.policies import make_policy
    from serving.sim import simulate

    res = simulate(trace, cost, make_policy("vllm", {}), 1, engine_sim_config(max_batch, 4096))
    r = res.requests
    n = r["output_tokens"].to_numpy()
    frame = pd.DataFrame(
        {
            "request_id": r["request_id"],
            "arrival_s": r["arrival_s"] + shift,
            "send_s": r["arrival_s"] + shift,
            "end_s": r["arrival_s"] + shift + r["e2e_s"],
            "prompt_tokens": r["prompt_tokens"],
            "max_tokens": n,
            "output_tokens": n,
            "finished": True,
            "ttft_s": r["ttft_s"],
            "tpot_s": r["tpot_s"],
            "e2e_s": r["e2e_s"],
            "itl_s": [json.dumps([float(t)] * (k - 1)) for t, k in zip(r["tpot_s"].fillna(0), n, strict=True)],
        }
    ).iloc[rng.permutation(len(r))]
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "requests.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps({"completed": len(frame)}))


def test_compare_is_exact_against_its_own_simulation(tmp_path):
    rng = np.random.default_rng(1)
    trace = poisson_trace(
        6.0, n=80, prompt=LengthDist.lognormal(100, 0.5, 16, 600), output=LengthDist.lognormal(20, 0.5, 2, 60), seed=2
    )
    cost = PolynomialCostModel((0.01, 1e-4, 1e-7), (0.008, 2e-6, 1e-3), model="llama3-8b", gpu="h100-80gb")
    _synthetic_bench(tmp_path, trace, cost, 8, shift=0.37, rng=rng)
    measured = read_measured(tmp_path)
    res, sim = simulate_measured(measured, cost, 8, 4096)
    comp = compare_runs(measured, sim, res.itl_s)
    for metric in ("ttft", "tpot", "e2el"):
        for stat in ("mean", "median", "p90", "p99"):
            assert comp["ratio"][metric][stat] == pytest.approx(1.0, rel=1e-9), (metric, stat)
        assert comp["paired"][metric]["median_ratio"] == pytest.approx(1.0, rel=1e-9)
        assert comp["ks"][metric] < 0.05  # equal up to float rounding of the shifted clock (one step of 1/80 seen)
    assert comp["ratio"]["output_throughput"] == pytest.approx(1.0, rel=1e-9)
    # a front-end delay adds to TTFT and E2E only
    res2, sim2 = simulate_measured(measured, cost, 8, 4096, frontend_s=0.02)
    both = sim.merge(sim2, on="request_id")
    np.testing.assert_allclose(both["ttft_s_y"] - both["ttft_s_x"], 0.02, atol=1e-12)
    np.testing.assert_allclose(both["tpot_s_y"], both["tpot_s_x"], rtol=1e-12)
    # a slower cost model is seen as slower
    slow = PolynomialCostModel((0.02, 2e-4, 2e-7), (0.016, 4e-6, 2e-3), model="llama3-8b", gpu="h100-80gb")
    res3, sim3 = simulate_measured(measured, slow, 8, 4096)
    assert compare_runs(measured, sim3, res3.itl_s)["ratio"]["tpot"]["median"] > 1.5


def test_padding_factors_and_wrapper():
    equal = poisson_trace(5.0, n=200, prompt=LengthDist.fixed(200), output=LengthDist.fixed(2), seed=0)
    k_eq = padding_factors(equal, 8, seed=0, draws=4000)
    assert k_eq[0] == k_eq[1] == 1.0 and np.all(np.abs(k_eq[2:] - 1) < 0.01)  # contexts in [200, 202]
    spread = poisson_trace(5.0, n=400, prompt=LengthDist.lognormal(128, 0.8, 8, 2000), output=LengthDist.fixed(8))
    k = padding_factors(spread, 16, seed=0, draws=4000)
    assert np.all(np.diff(k[1:]) > 0) and k[16] > 1.5  # E[max]/E[mean] grows with the batch
    base = PolynomialCostModel((0.0, 0.0, 0.0), (0.001, 1e-6, 0.0), model="llama3-8b", gpu="h100-80gb")
    wrapped = PaddedDecode(base, k)
    assert wrapped.iteration_time(0, 0, 4, 1000) == pytest.approx(0.001 + 1e-6 * k[4] * 1000)
    assert wrapped.iteration_time(10, 55, 0, 0) == base.iteration_time(10, 55, 0, 0)


def test_ks_distance():
    a = np.arange(10.0)
    assert ks_distance(a, a) == 0.0 and ks_distance(a, a + 100) == 1.0 and math.isnan(ks_distance(a, []))


# --------------------------------------------------------------------------------------- a real run


def test_run_against_the_engine_and_the_experiment(inproc_profile, tmp_path):
    _needs_server()
    from serving.validation.run import main as run_main
    from serving.validation.sim_validation import EXPERIMENT

    profile, _ = inproc_profile
    bench = tmp_path / "bench"
    args = ["--profile-dir", str(profile), "--out", str(bench), "--size", "ci", "--requests", "10"]
    args += ["--saturation-requests", "5", "--prompt-max", "200", "--output-max", "24", "--no-progress"]
    assert run_main(args) == 0
    run = json.loads((bench / "run.json").read_text())
    trace = pd.read_csv(bench / "trace.csv")
    reqs = pd.read_csv(bench / "requests.csv")
    assert reqs["finished"].all() and len(reqs) == len(trace) == 10
    assert run["trace"]["rate_rps"] == pytest.approx(0.55 * run["saturation"]["request_throughput_rps"])
    assert run["server"]["killed"] is False and run["server"]["user_s"] > 0
    stats = json.loads((bench / "engine_stats.json").read_text())["run"]
    assert stats["prefills_total"] == 10 and stats["prefill_tokens_total"] == trace["Request tokens"].sum()
    assert stats["decode_tokens_total"] == (trace["Response tokens"] - 1).sum()

    out = tmp_path / "exp"
    config = json.dumps({"profile_dir": str(profile), "bench_dir": str(bench), "min_completed": 5})
    assert fulcrum_main("serving", [EXPERIMENT], ["run", "sim_validation", "--config", config, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    mod = summary["numbers"]["moderate"]
    for metric in ("ttft", "tpot"):
        assert mod["engine"][metric]["median"] > 0 and mod["simulator"][metric]["median"] > 0
        assert mod["ratio"][metric]["median"] == pytest.approx(
            mod["simulator"][metric]["median"] / mod["engine"][metric]["median"]
        )
    claims = summary["claims"]
    assert [c["predicted"] for c in claims] == [1.0, 1.0] and all(c["relative"] for c in claims)
    assert [c["measured"] for c in claims] == [mod["ratio"]["ttft"]["median"], mod["ratio"]["tpot"]["median"]]
    assert all(c["verdict"] in ("reproduced", "not reproduced") for c in claims)
    assert summary["checks"]["simulated_decode_tokens_equal_engine"] is True
    assert "saturation" in summary["numbers"] and len(pd.read_csv(out / "variants.csv")) == 17  # 16 + run speed
    speed = summary["numbers"]["run_speed_corrected"]
    assert speed["prefill_speed_factor"] > 0 and speed["decode_speed_factor"] > 0
    fig = out / "fig"
    assert fulcrum_main("serving", [EXPERIMENT], ["plot", "sim_validation", "--data", str(out), "--out", str(fig)]) == 0
    assert (out / "fig.png").stat().st_size > 0 and (out / "fig.pdf").stat().st_size > 0


# --------------------------------------------------------------------------------------- errors


def test_config_errors_name_the_key(tmp_path, capsys):
    from serving.validation.sim_validation import EXPERIMENT, Config

    with pytest.raises(ConfigError, match=r"sim_validation\.bogus"):
        from_mapping(Config, {"profile_dir": "a", "bench_dir": "b", "bogus": 1}, where="sim_validation")
    with pytest.raises(ConfigError, match=r"sim_validation\.bench_dir"):
        from_mapping(Config, {"profile_dir": "a"}, where="sim_validation")
    with pytest.raises(ConfigError, match="cost_model"):
        from_mapping(Config, {"profile_dir": "a", "bench_dir": "b", "cost_model": "spline"}, where="sim_validation")
    with pytest.raises(ConfigError, match=r"sim\.chunked"):
        from_mapping(Config, {"profile_dir": "a", "bench_dir": "b", "sim": {"chunked": True}}, where="sim_validation")
    with pytest.raises(ConfigError, match=r"sim_validation\.tolerance: expected a number"):
        from_mapping(Config, {"profile_dir": "a", "bench_dir": "b", "tolerance": "x"}, where="sim_validation")
    config = json.dumps({"profile_dir": str(tmp_path / "none"), "bench_dir": str(tmp_path)})
    assert (
        fulcrum_main(
            "serving", [EXPERIMENT], ["run", "sim_validation", "--config", config, "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert "sim_validation.profile_dir" in capsys.readouterr().err


def test_command_errors_name_the_option(tmp_path, capsys):
    from serving.validation.profile import main as profile_main
    from serving.validation.run import main as run_main

    assert run_main(["--profile-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--rate-fraction", "0"]) == 2
    assert "--rate-fraction" in capsys.readouterr().err
    assert run_main(["--profile-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "profile.json" in capsys.readouterr().err
    assert profile_main(["--out", str(tmp_path), "--max-batch", "0", "--no-progress"]) == 2
    assert "--max-batch" in capsys.readouterr().err
    assert run_main(["--out", str(tmp_path)]) == 2  # neither --profile-dir nor --server-command
    assert "--profile-dir" in capsys.readouterr().err
    assert profile_main(["--out", str(tmp_path), "--mode", "client", "--no-progress"]) == 2
    assert "--base-url or --server-command" in capsys.readouterr().err
