"""Tiny trace files for tests, written from a seed (no shared data needed).

``write_azure`` / ``write_mooncake`` / ``write_burstgpt`` write a valid file of ``n`` requests and return its
path (``path`` may be a file path or an existing directory, then a default file name is used inside it).
Invalid files are made by editing one line of a valid file with ``replace_line`` (1-based, header = line 1
for the CSV formats), so a test knows exactly which line and column is bad.

Import from a test in this folder (pytest runs with --import-mode=importlib, which does not put the test
folder on sys.path):

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import trace_fixtures
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
BURSTGPT_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"
BLOCK_TOKENS = 512


def _target(path: str | Path, default_name: str) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / default_name
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def azure_timestamp(start: datetime, ticks: int) -> str:
    """``start`` + ``ticks`` x 100 ns in the Azure form ``YYYY-mm-dd HH:MM:SS.fffffff`` (7 fractional digits)."""
    seconds, frac = divmod(int(ticks), 10_000_000)
    return f"{start + timedelta(seconds=seconds):%Y-%m-%d %H:%M:%S}.{frac:07d}"


def write_azure(path: str | Path, n: int = 20, seed: int = 0) -> Path:
    """Azure CSV: 7-digit timestamps (100 ns ticks, gaps 0..2 s, ties possible), tokens >= 1."""
    rng = np.random.default_rng(seed)
    start = datetime(2023, 11, 16, 18, 17, 3)
    ticks = 9_799_600 + np.concatenate(([0], np.cumsum(rng.integers(0, 20_000_000, n - 1))))
    ctx = rng.integers(1, 8_000, n)
    gen = rng.integers(1, 500, n)
    rows = [f"{azure_timestamp(start, t)},{c},{g}" for t, c, g in zip(ticks, ctx, gen, strict=True)]
    p = _target(path, "azure.csv")
    p.write_text("\n".join([AZURE_HEADER, *rows]) + "\n")
    return p


def write_mooncake(path: str | Path, n: int = 20, seed: int = 0) -> Path:
    """Mooncake JSONL: ms timestamps (ties possible), hash_ids with ceil(input/512) ids, some shared prefixes.

    Requests of group g in {0, 1, 2} start with group g's two prefix ids (as many as their blocks allow); group
    -1 and every later block get fresh ids.
    """
    rng = np.random.default_rng(seed)
    ts = np.concatenate(([0], np.cumsum(rng.integers(0, 3_000, n - 1))))
    inp = rng.integers(1, 3_000, n)
    out = rng.integers(1, 300, n)
    group = rng.integers(-1, 3, n)
    prefixes = {g: [2 * g, 2 * g + 1] for g in range(3)}
    fresh = 6
    lines = []
    for t, i, o, g in zip(ts, inp, out, group, strict=True):
        blocks = -(-int(i) // BLOCK_TOKENS)
        shared = prefixes.get(int(g), [])[:blocks]
        ids = shared + list(range(fresh, fresh + blocks - len(shared)))
        fresh += blocks - len(shared)
        rec = {"timestamp": int(t), "input_length": int(i), "output_length": int(o), "hash_ids": ids}
        lines.append(json.dumps(rec))
    p = _target(path, "mooncake.jsonl")
    p.write_text("\n".join(lines) + "\n")
    return p


def write_burstgpt(path: str | Path, n: int = 20, seed: int = 0) -> Path:
    """BurstGPT CSV: integer-second timestamps (ties possible), models ChatGPT / GPT-4, both log types.

    About one row in five is a failed request (Response tokens 0); row 2 (file line 3) always is, when n >= 2.
    """
    rng = np.random.default_rng(seed)
    ts = np.concatenate(([0], np.cumsum(rng.integers(0, 4, n - 1))))
    model = rng.choice(["ChatGPT", "GPT-4"], n)
    req = rng.integers(1, 2_000, n)
    resp = np.where(rng.random(n) < 0.2, 0, rng.integers(1, 600, n))
    if n >= 2:
        resp[1] = 0
    log_type = rng.choice(["Conversation log", "API log"], n)
    rows = [
        f"{t},{m},{q},{r},{q + r},{lt}"
        for t, m, q, r, lt in zip(ts.tolist(), model, req.tolist(), resp.tolist(), log_type, strict=True)
    ]
    p = _target(path, "burstgpt.csv")
    p.write_text("\n".join([BURSTGPT_HEADER, *rows]) + "\n")
    return p


def replace_line(path: str | Path, lineno: int, text: str) -> Path:
    """Replace 1-based line ``lineno`` of ``path`` with ``text`` (no newline); returns the path."""
    p = Path(path)
    lines = p.read_text().split("\n")
    lines[lineno - 1] = text
    p.write_text("\n".join(lines))
    return p


def read_line(path: str | Path, lineno: int) -> str:
    """1-based line ``lineno`` of ``path``."""
    return Path(path).read_text().split("\n")[lineno - 1]
