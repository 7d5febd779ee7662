"""``python -m serving simulate``: outputs, dispatch next to list|run|plot, and errors that name the option."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from serving.__main__ import cli
from serving.cli import simulate_main

SHARED = Path(os.environ.get("FULCRUM_SHARED", Path(__file__).resolve().parents[3].parent / "shared"))
AZURE_SHARED = SHARED / "data/traces/AzureLLMInferenceTrace_code_2023.csv"
PARQUET = any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet"))  # optional: parquet engine
BASE = ["--model", "llama3-8b", "--gpu", "a100-80gb", "--no-progress"]


def azure_csv(path: Path, n: int = 40) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        for i in range(n):
            w.writerow([f"2023-11-16 18:17:{i // 4:02d}.{(i % 4) * 25:02d}00000", 200 + 37 * i, 5 + i % 7])
    return path


def mooncake_jsonl(path: Path, n: int = 30) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            shared = [0, 1] if i % 2 == 0 else [5, 6]
            row = {"timestamp": 300 * i, "input_length": 1500, "output_length": 8, "hash_ids": [*shared, 100 + i]}
            fh.write(json.dumps(row) + "\n")
    return path


def test_simulate_writes_metrics_requests_provenance(tmp_path):
    trace = azure_csv(tmp_path / "az.csv")
    out = tmp_path / "out"
    args = ["-m", "serving", "simulate", "--trace", str(trace), "--trace-format", "azure", "--policy", "vllm"]
    args += ["--instances", "2", *BASE, "--slo-ttft-ms", "1000", "--slo-tpot-ms", "50", "--out", str(out)]
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["completed"] == 40 and m["failed"] == 0
    for key in ("request_throughput", "mean_ttft_ms", "p99_tpot_ms", "median_itl_ms", "goodput", "gpu_seconds"):
        assert isinstance(m[key], float)
    assert m["settings"]["policy"] == "vllm" and m["settings"]["instances"] == 2
    req = pd.read_csv(out / "requests.csv")
    assert len(req) == 40 and set(req["instance"]) == {0, 1}
    assert len(pd.read_csv(out / "instances.csv")) == 2
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["experiment"] == "simulate" and prov["config"]["trace"] == str(trace)


def test_simulate_policies_and_options_in_process(tmp_path, capsys):
    trace = mooncake_jsonl(tmp_path / "mc.jsonl")
    out = tmp_path / "ds"
    cfg = json.dumps({"n_prefill": 1, "layerwise_overlap": True})
    rc = simulate_main(
        ["--trace", str(trace), "--policy", "distserve", "--instances", "3", *BASE, "--policy-config", cfg]
        + ["--rate-scale", "2", "--requests-format", "parquet" if PARQUET else "csv", "--out", str(out)]
    )
    assert rc == 0, capsys.readouterr().err
    req = pd.read_parquet(out / "requests.parquet") if PARQUET else pd.read_csv(out / "requests.csv")
    assert set(req["instance"]) == {0} and set(req["decode_instance"]) <= {1, 2}
    assert req["arrival_s"].max() == pytest.approx(29 * 0.3 / 2)
    out2 = tmp_path / "pa"
    rc = cli(
        ["simulate", "--trace", str(trace), "--trace-format", "mooncake", "--instances", "2", *BASE]
        + ["--policy-config", '{"routing": "prefix_aware"}', "--sim-config", '{"max_num_seqs": 64}']
        + ["--max-requests", "20", "--out", str(out2)]
    )
    assert rc == 0
    req = pd.read_csv(out2 / "requests.csv")
    assert len(req) == 20 and req["cached_tokens"].sum() > 0  # shared 512-token prefix blocks were hit


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"--trace": "missing.csv"}, "--trace: file not found"),
        ({"--model": "gpt-9"}, "--model: unknown model 'gpt-9'"),
        ({"--gpu": "tpu"}, "--gpu: unknown GPU"),
        ({"--tp": "3"}, "--tp 3"),
        ({"--instances": "0"}, "--instances must be >= 1"),
        ({"--rate-scale": "-1"}, "--rate-scale must be > 0"),
        ({"--policy-config": "{not json"}, "--policy-config"),
        ({"--policy-config": '{"routingg": "x"}'}, "routingg"),
        ({"--sim-config": '{"block_size": 0}'}, "--sim-config: sim.block_size"),
        ({"--policy": "distserve", "--instances": "1"}, "at least 2 instances"),
        ({"--perf-csv": "nope.csv"}, "--perf-csv: file not found"),
        ({"--cost-model": "table", "--perf-csv": None}, "--cost-model table"),
    ],
)
def test_bad_input_names_the_option(tmp_path, capsys, monkeypatch, change, needle):
    monkeypatch.setenv("FULCRUM_SHARED", str(tmp_path / "no_shared"))
    opts = {"--trace": str(azure_csv(tmp_path / "az.csv", 8)), "--instances": "2", "--out": str(tmp_path / "o")}
    opts.update(change)
    argv = [x for k, v in opts.items() if v is not None for x in (k, v)]
    if argv[argv.index("--trace") + 1] == "missing.csv":
        argv[argv.index("--trace") + 1] = str(tmp_path / "missing.csv")
    if "--perf-csv" in argv:
        argv[argv.index("--perf-csv") + 1] = str(tmp_path / "nope.csv")
    rc = simulate_main([*BASE, *argv])  # later options win: the changed ones
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_bad_trace_line_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.0,100,5\n2023-11-16 18:17:04.0,x,5\n")
    argv = ["--trace", str(bad), "--trace-format", "azure", "--instances", "1", *BASE, "--out", str(tmp_path / "o")]
    rc = simulate_main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --trace") and "bad.csv:3" in err and "ContextTokens" in err


def test_other_commands_still_dispatch(capsys):
    assert cli(["list"]) == 0
    assert "serving_rate_sweep" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli(["--help"])
    assert "simulate" in capsys.readouterr().out


@pytest.mark.skipif(not AZURE_SHARED.is_file(), reason=f"shared Azure trace not found at {AZURE_SHARED}")
def test_simulate_real_azure_trace(tmp_path, capsys):
    out = tmp_path / "az"
    rc = simulate_main(
        ["--trace", str(AZURE_SHARED), "--trace-format", "azure", "--instances", "4", *BASE]
        + ["--max-requests", "1500", "--out", str(out)]
    )
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["completed"] == 1500 and m["total_input_tokens"] > 1500 * 500
