"""Tests for serving.traces: readers (exact values, every bad-row kind), the Trace type, generators vs theory.

Statistical tests use fixed seeds, so they are deterministic; each tolerance is a multiple (4 to 4.5) of the
standard error the theory gives for that sample size, i.e. the check would fail for a wrong law with
overwhelming probability while a correct generator passes with any seed except with probability ~1e-4.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from serving.traces import (
    LengthDist,
    Trace,
    TraceError,
    diurnal_rate,
    diurnal_trace,
    gamma_trace,
    poisson_trace,
    read_azure,
    read_burstgpt,
    read_mooncake,
    read_trace,
    shared_prefix_trace,
    zipf_pmf,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trace_fixtures as fx  # noqa: E402

SHARED = Path(os.environ.get("FULCRUM_SHARED", Path(__file__).resolve().parents[3].parent / "shared"))
AZURE_REAL = SHARED / "data" / "traces" / "AzureLLMInferenceTrace_code_2023.csv"
MOONCAKE_REAL = SHARED / "data" / "traces" / "mooncake_synthetic_trace.jsonl"


# ----------------------------------------------------------------------------------------------------------------------
# independent slow reference parsers (csv / json modules, exact rational arithmetic)
# ----------------------------------------------------------------------------------------------------------------------


def _azure_ns(stamp: str) -> int:
    whole, _, frac = stamp.partition(".")
    sec = int(datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())
    return sec * 10**9 + int(frac.ljust(9, "0"))


def ref_azure(path: Path) -> tuple[list[float], list[int], list[int]]:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    ns = [_azure_ns(r["TIMESTAMP"]) for r in rows]
    arr = [float(Fraction(x - ns[0], 10**9)) for x in ns]
    return arr, [int(r["ContextTokens"]) for r in rows], [int(r["GeneratedTokens"]) for r in rows]


def ref_mooncake(path: Path) -> tuple[list[float], list[int], list[int], list[tuple[int, ...]]]:
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    t0 = recs[0]["timestamp"]
    return (
        [float(Fraction(r["timestamp"] - t0, 1000)) for r in recs],
        [r["input_length"] for r in recs],
        [r["output_length"] for r in recs],
        [tuple(r["hash_ids"]) for r in recs],
    )


def ref_burstgpt(path: Path, model: str | None = None) -> tuple[list[float], list[int], list[int], int]:
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if model is None or r["Model"] == model]
    ok = [r for r in rows if int(r["Response tokens"]) != 0]
    t0 = float(ok[0]["Timestamp"])
    return (
        [float(r["Timestamp"]) - t0 for r in ok],
        [int(r["Request tokens"]) for r in ok],
        [int(r["Response tokens"]) for r in ok],
        len(rows) - len(ok),
    )


# ----------------------------------------------------------------------------------------------------------------------
# readers: good files
# ----------------------------------------------------------------------------------------------------------------------


def test_azure_seven_digit_timestamps_parse_exactly(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:03.9799600,4808,10\n"
        "2023-11-16 18:17:04.0319600,3180,8\n"
        "2023-11-16 18:17:04.0319601,1,1\n"  # 100 ns after the previous one: the 7th digit matters
        "2023-11-16 18:18:03.9799600,7,1899\n"  # across a minute boundary
        "2023-11-16 18:18:04,5,6\n"  # no fractional part
    )
    tr = read_azure(p)
    # each value is the correctly rounded float of the exact decimal difference
    assert tr.arrival_s.tolist() == [0.0, 0.052, 0.0520001, 60.0, 60.02004]
    assert tr.prompt_tokens.tolist() == [4808, 3180, 1, 7, 5]
    assert tr.output_tokens.tolist() == [10, 8, 1, 1899, 6]
    assert tr.hash_ids is None and tr.name == "a" and tr.meta["format"] == "azure"
    assert tr.arrival_s.dtype == np.float64 and tr.prompt_tokens.dtype == np.int64


def test_azure_fixture_matches_reference(tmp_path):
    p = fx.write_azure(tmp_path, n=60, seed=3)
    arr, prompt, out = ref_azure(p)
    tr = read_trace(p)  # format inferred from the header
    assert len(tr) == 60
    assert tr.arrival_s.tolist() == arr
    assert tr.prompt_tokens.tolist() == prompt and tr.output_tokens.tolist() == out


def test_azure_utc_offset_and_crlf_and_blank_lines(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes(
        b"TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
        b"2024-05-10 00:00:00.0098530+00:00,10,2\r\n"
        b"\r\n"
        b"2024-05-10 02:00:01.0098530+02:00,11,3\r\n"  # = 00:00:01.009853 UTC
        b"\r\n\r\n"
    )
    tr = read_azure(p)
    assert tr.arrival_s.tolist() == [0.0, 1.0]
    assert tr.prompt_tokens.tolist() == [10, 11]


def test_mooncake_fixture_matches_reference(tmp_path):
    p = fx.write_mooncake(tmp_path, n=80, seed=5)
    arr, prompt, out, hashes = ref_mooncake(p)
    tr = read_trace(p)
    assert tr.arrival_s.tolist() == arr
    assert tr.prompt_tokens.tolist() == prompt and tr.output_tokens.tolist() == out
    assert tr.hash_ids == tuple(hashes) and tr.block_tokens == 512
    assert 0.0 < tr.prefix_sharing() < 1.0  # the fixture's groups share their first blocks


def test_mooncake_ms_to_seconds_exact(tmp_path):
    p = tmp_path / "m.jsonl"
    recs = [
        {"timestamp": 1000, "input_length": 600, "output_length": 3, "hash_ids": [7, 8]},
        {"timestamp": 1000, "input_length": 512, "output_length": 1, "hash_ids": [7]},
        {"timestamp": 1333, "input_length": 1, "output_length": 0, "hash_ids": [9], "extra": "ignored"},
    ]
    p.write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
    tr = read_mooncake(p)
    assert tr.arrival_s.tolist() == [0.0, 0.0, 0.333]
    assert tr.output_tokens.tolist() == [3, 1, 1]  # zero output clamped to 1 (default policy) ...
    assert tr.meta["zero_output_clamped"] == 1  # ... and counted
    assert tr.hash_ids == ((7, 8), (7,), (9,))
    assert tr.prefix_sharing() == pytest.approx(1 / 4)  # 4 blocks, one repeats (id 7)
    assert read_mooncake(p, zero_output="drop").prompt_tokens.tolist() == [600, 512]


def test_burstgpt_drops_failed_rows_and_filters(tmp_path):
    p = fx.write_burstgpt(tmp_path, n=200, seed=2)
    arr, prompt, out, failed = ref_burstgpt(p)
    tr = read_trace(p)
    assert failed >= 1
    assert tr.meta["zero_output_dropped"] == failed and len(tr) == 200 - failed
    assert tr.arrival_s.tolist() == arr and tr.prompt_tokens.tolist() == prompt and tr.output_tokens.tolist() == out
    gpt4 = read_burstgpt(p, model="GPT-4")
    arr4, prompt4, out4, failed4 = ref_burstgpt(p, model="GPT-4")
    assert gpt4.arrival_s.tolist() == arr4 and gpt4.prompt_tokens.tolist() == prompt4
    assert gpt4.meta["zero_output_dropped"] == failed4
    assert gpt4.meta["filtered_out"] == sum(1 for r in csv.DictReader(p.open()) if r["Model"] != "GPT-4")
    both = read_burstgpt(p, model=["GPT-4", "ChatGPT"], log_type="API log")
    assert 0 < len(both) < len(tr)
    kept = read_burstgpt(p, zero_output="clamp")
    assert len(kept) == 200 and kept.meta["zero_output_clamped"] == failed
    with pytest.raises(TraceError, match="no rows match.*ChatGPT"):
        read_burstgpt(p, model="Claude")


def test_read_trace_format_errors(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(TraceError, match=r"x\.csv:1: cannot tell"):
        read_trace(p)
    with pytest.raises(ValueError, match="unknown trace format"):
        read_trace(p, "parquet")
    with pytest.raises(TraceError, match="no such file"):
        read_trace(tmp_path / "missing.csv", "azure")


# ----------------------------------------------------------------------------------------------------------------------
# readers: every bad-row kind names file, 1-based line and column
# ----------------------------------------------------------------------------------------------------------------------

AZ_OK = "2023-11-16 18:17:04.0000000"
BAD_AZURE = [  # (line to replace, text, column, message pattern)
    (1, "TIMESTAMP,ContextTokens,Tokens", "GeneratedTokens", "missing column"),
    (4, f"{AZ_OK},12.5,3", "ContextTokens", "not an integer: '12.5'"),
    (5, f"{AZ_OK},abc,3", "ContextTokens", "not an integer: 'abc'"),
    (6, f"{AZ_OK},,3", "ContextTokens", "missing value"),
    (7, f"{AZ_OK},10", "GeneratedTokens", "missing value"),  # too few fields
    (3, f"{AZ_OK},10,-3", "GeneratedTokens", "negative token count '-3'"),
    (8, f"{AZ_OK},0,3", "ContextTokens", "zero prompt tokens"),
    (9, "2023-13-45 99:00:00.1,10,3", "TIMESTAMP", "unparsable timestamp"),
    (2, "yesterday,10,3", "TIMESTAMP", "unparsable timestamp 'yesterday'"),
    (10, f"{AZ_OK},1,2,3", None, "expected 3 fields, got 4"),
]


@pytest.mark.parametrize(("line", "text", "column", "pattern"), BAD_AZURE)
def test_azure_bad_rows(tmp_path, line, text, column, pattern):
    p = fx.replace_line(fx.write_azure(tmp_path, n=12, seed=1), line, text)
    with pytest.raises(TraceError) as err:
        read_azure(p)
    e = err.value
    assert (e.path, e.line, e.column) == (str(p), line, column)
    assert str(e).startswith(f"{p}:{line}: ")
    assert pattern in str(e)
    if column is not None:
        assert f"column {column!r}" in str(e)


BAD_MOONCAKE = [
    (3, '{"timestamp": 5, "input_length": 10', None, "invalid JSON"),
    (4, "[1, 2, 3]", None, "expected a JSON object"),
    (5, '{"timestamp": 1e12, "output_length": 3, "hash_ids": [1]}', "input_length", "missing key"),
    (6, '{"timestamp": 1e12, "input_length": "12", "output_length": 3, "hash_ids": [1]}', "input_length", "integer"),
    (7, '{"timestamp": 1e12, "input_length": 12.5, "output_length": 3, "hash_ids": [1]}', "input_length", "integer"),
    (2, '{"timestamp": 1e12, "input_length": 0, "output_length": 3, "hash_ids": []}', "input_length", "zero prompt"),
    (8, '{"timestamp": 1e12, "input_length": 5, "output_length": -1, "hash_ids": [1]}', "output_length", "negative"),
    (9, '{"timestamp": "noon", "input_length": 5, "output_length": 1, "hash_ids": [1]}', "timestamp", "not a finite"),
    (10, '{"input_length": 5, "output_length": 1, "hash_ids": [1]}', "timestamp", "missing key"),
    (3, '{"timestamp": 1e12, "input_length": 1025, "output_length": 1, "hash_ids": [1, 2]}', "hash_ids", "ceil(1025"),
    (4, '{"timestamp": 1e12, "input_length": 5, "output_length": 1, "hash_ids": ["a"]}', "hash_ids", "list of int"),
    (5, '{"timestamp": 1e12, "input_length": 5, "output_length": 1}', "hash_ids", "missing key"),
]


@pytest.mark.parametrize(("line", "text", "column", "pattern"), BAD_MOONCAKE)
def test_mooncake_bad_rows(tmp_path, line, text, column, pattern):
    p = fx.write_mooncake(tmp_path, n=12, seed=1)
    # "1e12" stands for the row's own timestamp, so that only the intended field is wrong
    p = fx.replace_line(p, line, text.replace("1e12", str(json.loads(fx.read_line(p, line))["timestamp"])))
    with pytest.raises(TraceError) as err:
        read_mooncake(p)
    e = err.value
    assert (e.path, e.line, e.column) == (str(p), line, column)
    assert str(e).startswith(f"{p}:{line}: ") and pattern in str(e)


BAD_BURSTGPT = [
    (1, "Timestamp,Model,Request tokens,Total tokens,Log Type", "Response tokens", "missing column"),
    (4, "3,ChatGPT,12.5,3,15.5,API log", "Request tokens", "not an integer"),
    (5, "3,ChatGPT,-2,3,1,API log", "Request tokens", "negative"),
    (6, "3,ChatGPT,2,x,1,API log", "Response tokens", "not an integer: 'x'"),
    (7, "soon,ChatGPT,2,3,5,API log", "Timestamp", "not a number 'soon'"),
]


@pytest.mark.parametrize(("line", "text", "column", "pattern"), BAD_BURSTGPT)
def test_burstgpt_bad_rows(tmp_path, line, text, column, pattern):
    p = fx.replace_line(fx.write_burstgpt(tmp_path, n=12, seed=4), line, text)
    with pytest.raises(TraceError) as err:
        read_burstgpt(p)
    e = err.value
    assert (e.path, e.line, e.column) == (str(p), line, column)
    assert str(e).startswith(f"{p}:{line}: ") and pattern in str(e)


def test_burstgpt_failed_row_with_zero_request_tokens_is_dropped_not_an_error(tmp_path):
    p = fx.replace_line(fx.write_burstgpt(tmp_path, n=12, seed=4), 3, "0,ChatGPT,0,0,0,API log")
    assert len(read_burstgpt(p)) >= 1
    with pytest.raises(TraceError, match="zero prompt"):
        read_burstgpt(p, zero_output="clamp")


def test_zero_output_error_policy(tmp_path):
    p = fx.write_azure(tmp_path, n=8, seed=1)
    _set_csv_field(p, 5, 2, "0")
    assert read_azure(p).meta["zero_output_clamped"] == 1
    assert len(read_azure(p, zero_output="drop")) == 7
    with pytest.raises(TraceError) as err:
        read_azure(p, zero_output="error")
    assert (err.value.line, err.value.column) == (5, "GeneratedTokens")
    with pytest.raises(ValueError, match="zero_output"):
        read_azure(p, zero_output="ignore")


def _set_csv_field(path: Path, line: int, index: int, value: str) -> None:
    fields = fx.read_line(path, line).split(",")
    fields[index] = value
    fx.replace_line(path, line, ",".join(fields))


EARLY = {"azure": "2023-11-16 18:00:00.0000000", "mooncake": -5000, "burstgpt": "-5"}  # before every fixture time


@pytest.mark.parametrize("fmt", ["azure", "mooncake", "burstgpt"])
def test_non_monotone_timestamps_rejected_or_sorted(tmp_path, fmt):
    writer = {"azure": fx.write_azure, "mooncake": fx.write_mooncake, "burstgpt": fx.write_burstgpt}[fmt]
    p = writer(tmp_path, n=10, seed=7)
    line = 7
    if fmt == "mooncake":
        rec = json.loads(fx.read_line(p, line)) | {"timestamp": EARLY[fmt]}
        fx.replace_line(p, line, json.dumps(rec))
    else:
        _set_csv_field(p, line, 0, EARLY[fmt])
        if fmt == "burstgpt":
            _set_csv_field(p, line, 3, "5")  # a served request, so that it stays in the trace
    with pytest.raises(TraceError, match="pass sort=True") as err:
        read_trace(p, fmt)
    assert err.value.line == line and str(err.value).startswith(f"{p}:{line}:")
    assert err.value.column == {"azure": "TIMESTAMP", "mooncake": "timestamp", "burstgpt": "Timestamp"}[fmt]
    tr = read_trace(p, fmt, sort=True)
    assert tr.meta["sorted"] and tr.meta["out_of_order_rows"] == 1
    assert np.all(np.diff(tr.arrival_s) >= 0) and tr.arrival_s[0] == 0.0
    moved = fx.read_line(p, line)
    size = json.loads(moved)["input_length"] if fmt == "mooncake" else int(moved.split(",")[1 if fmt == "azure" else 2])
    assert tr.prompt_tokens[0] == size  # the early row now comes first


def test_error_reports_earliest_line_and_counts_the_rest(tmp_path):
    p = fx.write_azure(tmp_path, n=12, seed=1)
    fx.replace_line(p, 9, f"{AZ_OK},x,3")  # ContextTokens bad on line 9
    fx.replace_line(p, 4, f"{AZ_OK},3,y")  # GeneratedTokens bad on line 4 (checked later, reported first)
    fx.replace_line(p, 6, "never,3,3")
    with pytest.raises(TraceError) as err:
        read_azure(p)
    assert (err.value.line, err.value.column) == (4, "GeneratedTokens")
    assert "(2 more problems in the file)" in str(err.value)


def test_blank_lines_keep_line_numbers(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text(f"TIMESTAMP,ContextTokens,GeneratedTokens\n\n{AZ_OK},1,1\n\n\n{AZ_OK},1.5,1\n")
    with pytest.raises(TraceError) as err:
        read_azure(p)
    assert err.value.line == 6
    q = tmp_path / "m.jsonl"
    q.write_text('\n{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [1]}\n\n{"timestamp": 1\n')
    with pytest.raises(TraceError) as err:
        read_mooncake(q)
    assert err.value.line == 4


@pytest.mark.parametrize(
    ("name", "content", "line", "pattern"),
    [
        ("e.csv", "", 1, "empty file"),
        ("h.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n", 2, "no data rows"),
        ("b.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n\n  \n", 2, "no data rows"),
        ("e.jsonl", "\n\n", 1, "empty file"),
    ],
)
def test_empty_files(tmp_path, name, content, line, pattern):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(TraceError, match=pattern) as err:
        read_trace(p, "mooncake" if name.endswith("jsonl") else "azure")
    assert err.value.line == line and str(err.value).startswith(f"{p}:{line}:")


def test_invalid_utf8_names_the_line(tmp_path):
    p = tmp_path / "u.csv"
    p.write_bytes(f"TIMESTAMP,ContextTokens,GeneratedTokens\n{AZ_OK},1,1\n{AZ_OK},\xff1,1\n".encode("latin-1"))
    with pytest.raises(TraceError, match="UTF-8") as err:
        read_azure(p)
    assert err.value.line == 3


# ----------------------------------------------------------------------------------------------------------------------
# real shared traces
# ----------------------------------------------------------------------------------------------------------------------


def _best_of(fn, k: int = 3) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(k):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


@pytest.mark.skipif(not AZURE_REAL.is_file(), reason=f"shared Azure trace not present at {AZURE_REAL}")
def test_real_azure_trace():
    secs, tr = _best_of(lambda: read_azure(AZURE_REAL))
    assert len(tr) == 8819
    first, last = fx.read_line(AZURE_REAL, 2), AZURE_REAL.read_text().strip().split("\n")[-1]
    assert tr.duration == float(Fraction(_azure_ns(last.split(",")[0]) - _azure_ns(first.split(",")[0]), 10**9))
    assert tr.meta["zero_output_clamped"] == 0 and tr.meta["out_of_order_rows"] == 0
    assert secs < 0.5, f"reading the Azure trace took {secs:.3f} s (budget 0.5 s)"


@pytest.mark.skipif(not MOONCAKE_REAL.is_file(), reason=f"shared Mooncake trace not present at {MOONCAKE_REAL}")
def test_real_mooncake_trace():
    secs, tr = _best_of(lambda: read_mooncake(MOONCAKE_REAL))
    assert len(tr) == 3993
    arr, prompt, out, hashes = ref_mooncake(MOONCAKE_REAL)
    assert tr.arrival_s.tolist() == arr and tr.prompt_tokens.tolist() == prompt and tr.hash_ids == tuple(hashes)
    s = tr.summary()
    assert s["count"] == 3993 and 0.0 < s["prefix_sharing"] < 1.0
    assert secs < 0.5, f"reading the Mooncake trace took {secs:.3f} s (budget 0.5 s)"


# ----------------------------------------------------------------------------------------------------------------------
# the Trace type
# ----------------------------------------------------------------------------------------------------------------------


def _tiny() -> Trace:
    return Trace(
        arrival_s=np.array([0.0, 1.0, 1.0, 3.0, 7.0]),
        prompt_tokens=np.array([10, 20, 30, 40, 1000]),
        output_tokens=np.array([1, 2, 3, 4, 5]),
        hash_ids=((1, 2, 3), (1, 2, 4), (5,), (1, 2, 3), ()),
        block_tokens=16,
        name="tiny",
    )


def test_trace_invariants_are_enforced():
    ok = dict(arrival_s=[0.0, 1.0], prompt_tokens=[1, 2], output_tokens=[1, 1])
    Trace(**ok)
    for bad, pattern in [
        (dict(arrival_s=[0.5, 1.0]), "must be 0.0"),
        (dict(arrival_s=[0.0, -1.0]), "sorted"),
        (dict(arrival_s=[0.0, np.nan]), "finite"),
        (dict(prompt_tokens=[0, 2]), ">= 1"),
        (dict(output_tokens=[1.5, 1]), "integers"),
        (dict(output_tokens=[1]), "length mismatch"),
        (dict(hash_ids=((1,),)), "hash_ids has 1 entries"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            Trace(**(ok | bad))
    t = Trace(**ok)
    with pytest.raises(ValueError):
        t.arrival_s[0] = 1.0  # arrays are read-only
    empty = Trace(arrival_s=[], prompt_tokens=[], output_tokens=[])
    assert len(empty) == 0 and empty.duration == 0.0 and math.isnan(empty.rate)


def test_trace_properties_and_summary_exact():
    t = _tiny()
    assert len(t) == 5 and t.duration == 7.0 and t.rate == 4 / 7
    s = t.summary()
    assert s["count"] == 5 and s["duration_s"] == 7.0 and s["rate_rps"] == 4 / 7
    assert s["prompt_mean"] == 220.0 and s["prompt_p50"] == 30.0
    assert s["prompt_p99"] == pytest.approx(40 + 0.96 * 960)  # linear interpolation at rank 0.99 * 4 = 3.96
    assert s["output_mean"] == 3.0 and s["output_p50"] == 3.0
    # blocks: 3 + 3 + 1 + 3 + 0 = 10; distinct ids {1, 2, 3, 4, 5}: 5 -> half the blocks repeat an earlier one
    assert s["prefix_sharing"] == 0.5
    assert math.isnan(Trace(arrival_s=[0.0], prompt_tokens=[1], output_tokens=[1]).summary()["prefix_sharing"])
    assert "n=5" in repr(t)


def test_scaling_doubles_rate_exactly_and_to_rate():
    t = poisson_trace(3.0, n=1000, seed=11)
    d = t.scaled(2.0)
    assert d.rate == 2 * t.rate and d.duration == t.duration / 2  # exact: division by a power of two
    assert np.array_equal(d.prompt_tokens, t.prompt_tokens) and d.hash_ids == t.hash_ids
    assert t.scaled(3.0).rate == pytest.approx(3 * t.rate, rel=1e-12)  # one rounding per arrival
    assert t.to_rate(5.0).rate == pytest.approx(5.0, rel=1e-12)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            t.scaled(bad)
    with pytest.raises(ValueError):
        t.head(1).to_rate(1.0)


def test_head_window_to_frame_from_arrays():
    t = _tiny()
    h = t.head(2)
    assert h.arrival_s.tolist() == [0.0, 1.0] and h.hash_ids == ((1, 2, 3), (1, 2, 4))
    w = t.window(1.0, 7.0)  # [1, 7): arrivals 1, 1, 3 re-based to 0, 0, 2
    assert w.arrival_s.tolist() == [0.0, 0.0, 2.0] and w.prompt_tokens.tolist() == [20, 30, 40]
    assert w.hash_ids == ((1, 2, 4), (5,), (1, 2, 3)) and w.block_tokens == 16
    assert len(t.window(7.5, 9.0)) == 0
    df = t.to_frame()
    assert list(df.columns) == ["arrival_s", "prompt_tokens", "output_tokens", "hash_ids"]
    assert df["hash_ids"].iloc[1] == (1, 2, 4) and df["prompt_tokens"].sum() == 1100
    u = Trace.from_arrays([5.0, 2.0, 2.0], [1, 2, 3], [4, 5, 6], hash_ids=[[1], [2], [3]])
    assert u.arrival_s.tolist() == [0.0, 0.0, 3.0] and u.prompt_tokens.tolist() == [2, 3, 1]
    assert u.hash_ids == ((2,), (3,), (1,))


# ----------------------------------------------------------------------------------------------------------------------
# length laws
# ----------------------------------------------------------------------------------------------------------------------


def test_length_dist_lognormal_fixed_fit():
    rng = np.random.default_rng(0)
    n = 100_000
    d = LengthDist.lognormal(median=1000.0, sigma=0.8)
    x = d.sample(rng, n)
    assert x.dtype == np.int64 and x.min() >= 1
    # P(X < median) = 1/2: binomial sd 0.5/sqrt(n); rounding to integers moves it by < 1e-3 at median 1000
    assert abs(np.mean(x < 1000) - 0.5) < 4 * 0.5 / math.sqrt(n) + 1e-3
    # sd of ln X: SE of a normal sample sd is sigma / sqrt(2n)
    assert abs(np.log(x).std() - 0.8) < 4 * 0.8 / math.sqrt(2 * n) + 1e-3
    f = LengthDist.fit(x)
    assert abs(math.log(f.median) - math.log(1000)) < 4 * 0.8 / math.sqrt(n) + 1e-3
    assert f.lo == x.min() and f.hi == x.max()
    c = LengthDist.lognormal(median=1000.0, sigma=2.0, lo=100, hi=2000).sample(rng, n)
    assert c.min() == 100 and c.max() == 2000  # clipped, mass beyond the bounds sits on them
    assert np.all(LengthDist.fixed(37).sample(rng, 10) == 37)
    for args in [(0.0, 1.0), (10.0, -1.0), (10.0, 1.0, 0), (10.0, 1.0, 5, 4)]:
        with pytest.raises(ValueError):
            LengthDist.lognormal(*args)


# ----------------------------------------------------------------------------------------------------------------------
# generators vs theory
# ----------------------------------------------------------------------------------------------------------------------


def _gap_cv_se(cv: float, m: int) -> float:
    """Delta-method SE of the sample CV of m i.i.d. Gamma(k = 1/cv^2) gaps: sqrt((k + 1) / (2 k^2 m))."""
    k = 1.0 / cv**2
    return math.sqrt((k + 1) / (2 * k * k * m))


def test_poisson_rate_gaps_and_count():
    rate, n = 7.0, 40_000
    t = poisson_trace(rate, n=n, seed=1)
    assert len(t) == n and t.arrival_s[0] == 0.0
    # rate * a_{n-1} ~ Gamma(n - 1, 1): mean n - 1, sd sqrt(n - 1)
    assert abs(rate * t.duration - (n - 1)) < 4 * math.sqrt(n - 1)
    gaps = np.diff(t.arrival_s)
    assert abs(gaps.std() / gaps.mean() - 1.0) < 4 * _gap_cv_se(1.0, n - 1)
    # Kolmogorov-Smirnov vs Exp(rate); 1.95 / sqrt(m) is the 0.1 % critical value
    g = np.sort(gaps)
    ecdf_hi = np.arange(1, g.size + 1) / g.size
    cdf = 1 - np.exp(-rate * g)
    assert np.max(np.maximum(ecdf_hi - cdf, cdf - (ecdf_hi - 1 / g.size))) < 1.95 / math.sqrt(g.size)
    # duration mode: arrivals after t = 0 in (0, T] are Poisson(rate T)
    T = 5_000.0
    u = poisson_trace(rate, duration_s=T, seed=2)
    assert u.arrival_s[-1] <= T
    assert abs((len(u) - 1) - rate * T) < 4 * math.sqrt(rate * T)


@pytest.mark.parametrize("cv", [0.5, 2.0, 4.0])
def test_gamma_cv_and_rate(cv):
    rate, n = 3.0, 60_000
    t = gamma_trace(rate, cv, n=n, seed=3)
    gaps = np.diff(t.arrival_s)
    assert abs(gaps.std() / gaps.mean() - cv) < 4 * _gap_cv_se(cv, n - 1)
    # sum of n-1 gaps: mean (n-1)/rate, sd cv sqrt(n-1)/rate
    assert abs(rate * t.duration - (n - 1)) < 4 * cv * math.sqrt(n - 1)
    T = 2_000.0
    u = gamma_trace(rate, cv, duration_s=T, seed=4)
    assert u.arrival_s[-1] <= T and len(u) > 1


def test_gamma_bursty_counts_are_overdispersed():
    # renewal counts in windows much longer than a gap: variance / mean -> cv^2 (index of dispersion)
    t = gamma_trace(10.0, 2.0, duration_s=20_000.0, seed=5)
    counts = np.bincount((t.arrival_s // 50.0).astype(int))[:-1]
    assert 2.5 < counts.var() / counts.mean() < 6.0  # cv^2 = 4; 400 windows give the ratio to within ~15 %


def test_diurnal_peak_phase_amplitude_and_shape():
    mean_rate, period, amp, peak = 5.0, 1_000.0, 0.6, 325.0  # peak mid-bin 6
    periods = 20
    t = diurnal_trace(mean_rate, period, amp, duration_s=periods * period, peak_s=peak, seed=6)
    x = t.arrival_s[1:]  # the request forced at t = 0 is not part of the process
    N = x.size
    assert abs(N - mean_rate * periods * period) < 4 * math.sqrt(mean_rate * periods * period)
    # circular mean: E exp(i phi) = (amp / 2) exp(i phi0) for density (1 + amp cos(phi - phi0)) / 2 pi
    z = np.mean(np.exp(2j * np.pi * x / period))
    phi0 = 2 * np.pi * peak / period
    se_angle = math.sqrt(1 / (2 * N)) / (amp / 2)  # Var sin(phi - phi0) = 1/2
    assert abs(np.angle(z * np.exp(-1j * phi0))) < 4 * se_angle
    se_r = math.sqrt((0.5 - amp**2 / 4) / N)  # Var cos(phi - phi0) = 1/2 - amp^2/4
    assert abs(2 * abs(z) - amp) < 2 * 4 * se_r
    # phase histogram vs the integrated rate: Poisson counts per bin
    bins = 20
    counts = np.bincount(((x % period) / period * bins).astype(int), minlength=bins)
    e = np.linspace(0, period, bins + 1)  # exact integral of lambda over each bin, times the number of periods
    sine = np.sin(2 * np.pi * (e - peak) / period)
    expected = periods * mean_rate * (np.diff(e) + amp * period / (2 * np.pi) * np.diff(sine))
    assert expected.sum() == pytest.approx(mean_rate * periods * period)
    assert diurnal_rate(peak, mean_rate, period, amp, peak) == pytest.approx(mean_rate * (1 + amp))
    assert np.max(np.abs(counts - expected) / np.sqrt(expected)) < 4.5
    # the busiest bin is the one holding peak_s or a neighbour (lambda is flat at its top: neighbours' expected
    # counts differ by ~1 sd, the bins two away by > 4 sd); the circular mean above pins the phase precisely
    assert abs(int(np.argmax(counts)) - int(peak / period * bins)) <= 1
    # n mode gives exactly n requests
    assert len(diurnal_trace(mean_rate, period, amp, n=777, seed=1)) == 777


def test_shared_prefix_structure_and_zipf():
    n, n_pref, s, B = 40_000, 40, 1.1, 512
    t = shared_prefix_trace(n_pref, 2 * B, s, rate=4.0, n=n, seed=8)
    h = t.hash_ids
    assert h is not None and len(t) == n and t.block_tokens == B
    assert all(len(ids) == -(-p // B) for ids, p in zip(h, t.prompt_tokens.tolist(), strict=True))
    first = np.array([ids[0] for ids in h])
    prefix = first // 2
    # requests with the same prefix share exactly its two blocks; every other block is unique in the trace
    assert all(ids[:2] == (2 * j, 2 * j + 1) for ids, j in zip(h, prefix.tolist(), strict=True))
    rest = np.concatenate([ids[2:] for ids in h])
    assert rest.min() >= 2 * n_pref and np.unique(rest).size == rest.size
    # prefix-sharing ratio against an independent count with a set
    seen: set[int] = set()
    repeats = total = 0
    for ids in h:
        for x in ids:
            repeats += x in seen
            seen.add(x)
            total += 1
    assert t.prefix_sharing() == pytest.approx(repeats / total, abs=1e-15)
    # Zipf popularity: per-rank counts vs n p_j (binomial sd), max over 40 ranks
    p = np.arange(1, n_pref + 1) ** -s / np.sum(np.arange(1, n_pref + 1) ** -s)  # written out, not zipf_pmf
    assert np.allclose(zipf_pmf(n_pref, s), p, rtol=1e-12)
    c = np.bincount(prefix, minlength=n_pref)
    assert np.max(np.abs(c - n * p) / np.sqrt(n * p * (1 - p))) < 4.5
    # ratio of ranks 1 and 2: ln(c1/c2) ~ s ln 2, sd ~ sqrt(1/c1 + 1/c2)
    assert abs(math.log(c[0] / c[1]) - s * math.log(2)) < 4 * math.sqrt(1 / c[0] + 1 / c[1])
    # log-log slope (weighted least squares, Var ln c_j ~ 1/(n p_j)) equals -s
    xr, yr, w = np.log(np.arange(1, n_pref + 1)), np.log(c), n * p
    xm = np.sum(w * xr) / w.sum()
    slope = np.sum(w * (xr - xm) * yr) / np.sum(w * (xr - xm) ** 2)
    assert abs(slope + s) < 4 / math.sqrt(np.sum(w * (xr - xm) ** 2))
    assert np.corrcoef(xr, yr)[0, 1] < -0.95


def test_shared_prefix_with_prefix_length_law():
    law = LengthDist.lognormal(median=900, sigma=1.0, lo=100, hi=5000)
    t = shared_prefix_trace(30, law, 0.8, rate=2.0, duration_s=500.0, seed=9)
    plen = t.meta["prefix_len"]
    assert plen.shape == (30,) and plen.min() >= 100
    assert t.prompt_tokens.min() >= plen.min() + 1  # prefix + at least one suffix token
    assert all(len(ids) == -(-p // 512) for ids, p in zip(t.hash_ids, t.prompt_tokens.tolist(), strict=True))


def test_generators_are_deterministic_and_streams_independent():
    make = [
        lambda seed, **kw: poisson_trace(2.0, n=500, seed=seed, **kw),
        lambda seed, **kw: gamma_trace(2.0, 3.0, n=500, seed=seed, **kw),
        lambda seed, **kw: diurnal_trace(2.0, 100.0, 0.5, n=500, seed=seed, **kw),
        lambda seed, **kw: shared_prefix_trace(10, 1024, 1.0, 2.0, n=500, seed=seed, **kw),
    ]
    for f in make:
        a, b, c = f(123), f(123), f(124)
        assert a == b and a != c
        assert f(np.random.default_rng(5)) == f(np.random.default_rng(5))
        other = f(123, output=LengthDist.fixed(9))  # a different output law leaves arrivals and prompts alone
        assert np.array_equal(other.arrival_s, a.arrival_s) and np.array_equal(other.prompt_tokens, a.prompt_tokens)
        assert np.all(other.output_tokens == 9)


def test_generator_argument_errors():
    with pytest.raises(ValueError, match="exactly one"):
        poisson_trace(1.0)
    with pytest.raises(ValueError, match="exactly one"):
        poisson_trace(1.0, 10.0, n=5)
    with pytest.raises(ValueError, match="rate"):
        poisson_trace(0.0, n=5)
    with pytest.raises(ValueError, match="cv"):
        gamma_trace(1.0, -1.0, n=5)
    with pytest.raises(ValueError, match="amplitude"):
        diurnal_trace(1.0, 10.0, 1.5, n=5)
    with pytest.raises(ValueError, match="zipf_s"):
        shared_prefix_trace(3, 100, -1.0, n=5)
    with pytest.raises(TypeError, match="seed"):
        poisson_trace(1.0, n=5, seed=1.5)
    assert len(poisson_trace(1.0, n=1)) == 1
