"""Request traces: one in-memory type, readers for three public trace formats, seeded generators.

A trace is what a load generator replays: for request i its arrival time a_i (seconds), its prompt
length p_i and output length o_i (tokens) and, when the source records it, its prefix-block ids
h_i = (h_i1, h_i2, ...) — one id per ``block_tokens``-token block of the prompt, equal ids meaning an
equal prompt prefix up to the end of that block (the Mooncake convention), which is what a prefix
cache needs.

Invariants of :class:`Trace` (checked on construction)
    a sorted non-decreasing float64, a_0 = 0.0 (every reader and generator re-bases);
    p_i >= 1 and o_i >= 1 (int64); hash_ids is None or holds one tuple of ints per request.

Derived quantities
    duration  D = a_{n-1} - a_0 = a_{n-1}
    rate      r = (n - 1) / D          (n - 1 gaps span D; the MLE of a Poisson rate from its gaps)
    scaled(k) a_i -> a_i / k, so D -> D / k and r -> k r exactly up to one rounding per arrival
              (exactly for k a power of two).
    prefix-sharing ratio = 1 - |distinct block ids| / (total blocks) = the fraction of blocks whose
              id already occurred earlier in the trace (every id's first occurrence is new, every later
              occurrence is a repeat, so the count is order-independent).

Readers (``read_trace(path, fmt)``; fmt in {"azure", "mooncake", "burstgpt"}, inferred when omitted)
    azure     CSV ``TIMESTAMP,ContextTokens,GeneratedTokens`` (Azure/AzurePublicDataset, 2023 and 2024
              traces). Timestamps such as ``2023-11-16 18:17:03.9799600`` are parsed as ISO 8601 to int64
              nanoseconds (pandas keeps all 9 fractional digits, so 7 are exact); a_i = (ns_i - ns_0) / 1e9
              is the correctly rounded float of the exact difference. An explicit UTC offset is honoured;
              naive stamps are taken as UTC.
    mooncake  JSONL ``timestamp`` (ms), ``input_length``, ``output_length``, ``hash_ids``;
              a_i = (t_i - t_0) / 1000. ``len(hash_ids) == ceil(input_length / block_tokens)`` is checked
              (``check_blocks=False`` turns that off).
    burstgpt  CSV ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`` (lmsys/BurstGPT;
              Timestamp in seconds from the trace start). ``model=`` / ``log_type=`` keep only the named
              values. Rows with ``Response tokens == 0`` are failed requests and are dropped by default.

Validation policy (every reader; errors are :class:`TraceError` naming file, 1-based line and column,
the earliest bad line first, with the number of further problems)
    missing file / empty file / header only / missing column / wrong number of fields / invalid JSON,
    missing value, non-integer token count, prompt tokens < 1, output tokens < 0, unparsable or
    non-finite timestamp  -> error.
    Timestamps that decrease  -> error by default (a log written in arrival order that goes backwards
        is a corrupted or concatenated file); ``sort=True`` stable-sorts instead (ties keep file order)
        and records ``meta["out_of_order_rows"]``. Equal timestamps are always allowed.
    Output tokens == 0  -> ``zero_output`` policy: "clamp" (Azure/Mooncake default: the request still
        ran its prefill and yields one token, so it is kept with o_i = 1; count in
        ``meta["zero_output_clamped"]``), "drop" (BurstGPT default, where 0 marks a failed request that
        was never served; count in ``meta["zero_output_dropped"]``), or "error".
    Blank lines are skipped (line numbers still count them). Extra columns/keys are ignored.

Generators (every one seeded: an int or a ``numpy.random.Generator``; arrivals, prompt lengths, output
lengths and prefix choices use independent child streams, so changing one length law leaves the other
draws unchanged). Each places the first request at t = 0 (the a_0 = 0 invariant) and runs the arrival
process after it; give exactly one of ``n`` (requests) or ``duration_s`` (keep arrivals <= duration_s).
    poisson_trace(rate)               gaps i.i.d. Exp(rate): mean 1/rate, coefficient of variation 1.
    gamma_trace(rate, cv)             gaps i.i.d. Gamma(shape k = 1/cv^2, scale cv^2/rate): mean 1/rate,
                                      CV = cv (cv > 1 bursty, cv < 1 smoother than Poisson).
    diurnal_trace(mean_rate, period_s, amplitude, peak_s)
                                      inhomogeneous Poisson with
                                      lambda(t) = mean_rate (1 + amplitude cos(2 pi (t - peak_s) / period_s)),
                                      by thinning (Lewis-Shedler): candidates at lambda_max =
                                      mean_rate (1 + amplitude), each kept with probability
                                      lambda(t) / lambda_max.
    shared_prefix_trace(n_prefixes, prefix_tokens, zipf_s)
                                      request i picks prefix j in {0..n_prefixes-1} with
                                      P(j) = (j + 1)^-s / sum_m (m + 1)^-s (Zipf over popularity rank),
                                      prompt = prefix_len_j + suffix; its first floor(prefix_len_j / B)
                                      blocks carry prefix j's ids, every later block (it holds suffix
                                      tokens) gets a fresh id. Arrivals: gamma gaps with ``cv`` (1 = Poisson).
Length laws (:class:`LengthDist`): L = clip(round(median * exp(sigma Z)), lo, hi), Z ~ N(0, 1) — a
lognormal with log-median mu = ln(median), rounded to tokens and clipped (mass beyond the bounds sits on
them); ``fixed(n)``; ``fit(values)`` = MLE mu = mean(ln v), sigma = std(ln v), bounds = data min/max.
The generators' default length laws are illustrative round numbers, not fitted to any trace.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import pandas as pd

__all__ = [
    "FORMATS",
    "LengthDist",
    "Trace",
    "TraceError",
    "diurnal_trace",
    "gamma_trace",
    "poisson_trace",
    "read_azure",
    "read_burstgpt",
    "read_mooncake",
    "read_trace",
    "shared_prefix_trace",
]

log = logging.getLogger(__name__)

FORMATS = ("azure", "mooncake", "burstgpt")
ZeroOutput = Literal["clamp", "drop", "error"]
Seed = int | np.random.Generator


# ----------------------------------------------------------------------------------------------------------------------
# The trace type
# ----------------------------------------------------------------------------------------------------------------------


class TraceError(ValueError):
    """A trace file is unreadable or invalid. ``str(err)`` is ``"<file>:<line>: column '<col>': <what>"``.

    Attributes ``path``, ``line`` (1-based, None when no single line is at fault) and ``column`` (None
    when the problem is not tied to one column).
    """

    def __init__(self, path: str | Path, line: int | None, message: str, column: str | None = None):
        self.path = str(path)
        self.line = line
        self.column = column
        where = self.path if line is None else f"{self.path}:{line}"
        what = message if column is None else f"column {column!r}: {message}"
        super().__init__(f"{where}: {what}")


def _frozen_array(values: Any, dtype: type, what: str) -> np.ndarray:
    """Copy ``values`` to a read-only 1-D array of ``dtype``; integer targets must receive integral values."""
    raw = np.asarray(values)
    if raw.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {raw.shape}")
    if dtype is np.int64 and raw.size and not np.issubdtype(raw.dtype, np.integer):
        as_float = raw.astype(np.float64)
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.rint(as_float)):
            raise ValueError(f"{what} must be integers")
    arr = np.array(raw, dtype=dtype, copy=True)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False, repr=False)
class Trace:
    """A request trace; see the module docstring for the invariants and the formulas.

    ``meta`` is informational (source file, format, counts of clamped/dropped/re-ordered rows) and is not
    compared by ``==``. Arrays are stored read-only.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: tuple[tuple[int, ...], ...] | None = None
    block_tokens: int = 512
    name: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = _frozen_array(self.arrival_s, np.float64, "arrival_s")
        p = _frozen_array(self.prompt_tokens, np.int64, "prompt_tokens")
        o = _frozen_array(self.output_tokens, np.int64, "output_tokens")
        n = a.shape[0]
        if p.shape[0] != n or o.shape[0] != n:
            raise ValueError(f"length mismatch: arrival_s {n}, prompt_tokens {p.shape[0]}, output_tokens {o.shape[0]}")
        if n:
            if not np.all(np.isfinite(a)):
                raise ValueError("arrival_s must be finite")
            if a[0] != 0.0:
                raise ValueError(f"arrival_s[0] must be 0.0 (got {a[0]!r}); re-base or use Trace.from_arrays")
            if np.any(np.diff(a) < 0):
                raise ValueError("arrival_s must be sorted (non-decreasing)")
            if p.min() < 1 or o.min() < 1:
                raise ValueError("prompt_tokens and output_tokens must be >= 1")
        if int(self.block_tokens) < 1:
            raise ValueError(f"block_tokens must be >= 1, got {self.block_tokens}")
        h = self.hash_ids
        if h is not None:
            h = tuple(ids if type(ids) is tuple else tuple(int(x) for x in ids) for ids in h)
            if len(h) != n:
                raise ValueError(f"hash_ids has {len(h)} entries for {n} requests")
        object.__setattr__(self, "arrival_s", a)
        object.__setattr__(self, "prompt_tokens", p)
        object.__setattr__(self, "output_tokens", o)
        object.__setattr__(self, "hash_ids", h)
        object.__setattr__(self, "block_tokens", int(self.block_tokens))

    @classmethod
    def from_arrays(
        cls,
        arrival_s: Any,
        prompt_tokens: Any,
        output_tokens: Any,
        hash_ids: Iterable[Iterable[int]] | None = None,
        *,
        block_tokens: int = 512,
        name: str = "",
        meta: Mapping[str, Any] | None = None,
    ) -> Trace:
        """Build a trace from unsorted arrivals: stable-sort by arrival, re-base so a_0 = 0."""
        a = np.asarray(arrival_s, dtype=np.float64)
        order = np.argsort(a, kind="stable")
        h = None if hash_ids is None else [tuple(int(x) for x in ids) for ids in hash_ids]
        a = a[order]
        return cls(
            arrival_s=a - a[0] if a.size else a,
            prompt_tokens=np.asarray(prompt_tokens)[order],
            output_tokens=np.asarray(output_tokens)[order],
            hash_ids=None if h is None else tuple(h[i] for i in order),
            block_tokens=block_tokens,
            name=name,
            meta=dict(meta or {}),
        )

    # -- basic properties ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return (
            np.array_equal(self.arrival_s, other.arrival_s)
            and np.array_equal(self.prompt_tokens, other.prompt_tokens)
            and np.array_equal(self.output_tokens, other.output_tokens)
            and self.hash_ids == other.hash_ids
            and self.block_tokens == other.block_tokens
            and self.name == other.name
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: unhashable, like a list

    def __repr__(self) -> str:
        return (
            f"Trace(name={self.name!r}, n={len(self)}, duration={self.duration:.6g} s, rate={self.rate:.6g} req/s, "
            f"hash_ids={'yes' if self.hash_ids is not None else 'no'}, block_tokens={self.block_tokens})"
        )

    @property
    def duration(self) -> float:
        """D = a_{n-1} - a_0 in seconds (0.0 for fewer than two requests)."""
        return float(self.arrival_s[-1]) if len(self) else 0.0

    @property
    def rate(self) -> float:
        """r = (n - 1) / D in requests per second; NaN for n < 2, inf when all arrivals coincide."""
        n = len(self)
        if n < 2:
            return math.nan
        d = self.duration
        return (n - 1) / d if d > 0 else math.inf

    # -- transformations (each returns a new Trace) ------------------------------------------------------------------
    def scaled(self, rate_scale: float) -> Trace:
        """Multiply the request rate by ``rate_scale``: a_i -> a_i / rate_scale (lengths unchanged)."""
        k = float(rate_scale)
        if not (k > 0 and math.isfinite(k)):
            raise ValueError(f"rate_scale must be a finite number > 0, got {rate_scale!r}")
        return dataclasses.replace(self, arrival_s=self.arrival_s / k)

    def to_rate(self, target_rps: float) -> Trace:
        """Time-scale so that ``rate == target_rps`` (up to rounding): ``scaled(target_rps / rate)``."""
        if not math.isfinite(self.rate) or self.rate <= 0:
            raise ValueError(f"cannot rescale a trace whose rate is {self.rate} (n = {len(self)})")
        t = float(target_rps)
        if not (t > 0 and math.isfinite(t)):
            raise ValueError(f"target_rps must be a finite number > 0, got {target_rps!r}")
        return self.scaled(t / self.rate)

    def head(self, n: int) -> Trace:
        """The first ``n`` requests."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self._slice(0, n, rebase=False)

    def window(self, t0: float, t1: float) -> Trace:
        """Requests with t0 <= a_i < t1, re-based so the first of them arrives at 0.0."""
        if not t1 >= t0:
            raise ValueError(f"need t0 <= t1, got [{t0}, {t1})")
        i0 = int(np.searchsorted(self.arrival_s, t0, side="left"))
        i1 = int(np.searchsorted(self.arrival_s, t1, side="left"))
        return self._slice(i0, i1, rebase=True)

    def _slice(self, i0: int, i1: int, *, rebase: bool) -> Trace:
        a = self.arrival_s[i0:i1]
        if rebase and a.size:
            a = a - a[0]
        return dataclasses.replace(
            self,
            arrival_s=a,
            prompt_tokens=self.prompt_tokens[i0:i1],
            output_tokens=self.output_tokens[i0:i1],
            hash_ids=None if self.hash_ids is None else self.hash_ids[i0:i1],
        )

    # -- views -------------------------------------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """Tidy frame, one row per request: arrival_s, prompt_tokens, output_tokens (+ hash_ids as tuples)."""
        df = pd.DataFrame(
            {
                "arrival_s": self.arrival_s,
                "prompt_tokens": self.prompt_tokens,
                "output_tokens": self.output_tokens,
            }
        )
        if self.hash_ids is not None:
            df["hash_ids"] = pd.Series(list(self.hash_ids), dtype=object)
        return df

    def prefix_sharing(self) -> float:
        """Fraction of prefix blocks whose id occurred earlier in the trace: 1 - distinct / total (NaN if none)."""
        if self.hash_ids is None:
            return math.nan
        total = sum(len(h) for h in self.hash_ids)
        if total == 0:
            return math.nan
        flat = np.fromiter((x for h in self.hash_ids for x in h), dtype=np.int64, count=total)
        return 1.0 - np.unique(flat).size / total

    def summary(self) -> dict[str, Any]:
        """count, duration_s, rate_rps, mean/p50/p99 of prompt and output tokens, prefix_sharing (NaN w/o ids)."""
        out: dict[str, Any] = {
            "name": self.name,
            "count": len(self),
            "duration_s": self.duration,
            "rate_rps": self.rate,
        }
        for key, x in (("prompt", self.prompt_tokens), ("output", self.output_tokens)):
            if len(self):
                p50, p99 = np.percentile(x, [50, 99])
                out |= {f"{key}_mean": float(x.mean()), f"{key}_p50": float(p50), f"{key}_p99": float(p99)}
            else:
                out |= {f"{key}_mean": math.nan, f"{key}_p50": math.nan, f"{key}_p99": math.nan}
        out["prefix_sharing"] = self.prefix_sharing()
        return out


# ----------------------------------------------------------------------------------------------------------------------
# Reading: shared validation machinery
# ----------------------------------------------------------------------------------------------------------------------

_MISSING = object()


class _Problems:
    """Collects the first bad line of each check; raises the earliest one with the total count."""

    def __init__(self, path: Path):
        self.path = path
        self.items: list[tuple[int, str | None, str]] = []
        self.count = 0

    def mask(self, bad: np.ndarray, lines: np.ndarray, column: str | None, describe: Callable[[int], str]) -> None:
        """Register rows where ``bad`` is true; ``describe(i)`` words the problem of row i."""
        if bad.any():
            i = int(np.argmax(bad))
            self.items.append((int(lines[i]), column, describe(i)))
            self.count += int(bad.sum())

    def add(self, line: int, column: str | None, message: str) -> None:
        self.items.append((line, column, message))
        self.count += 1

    def raise_first(self) -> None:
        if not self.items:
            return
        line, column, message = min(self.items, key=lambda it: it[0])
        more = self.count - 1
        if more:
            message += f" ({more} more problem{'s' if more > 1 else ''} in the file)"
        raise TraceError(self.path, line, message, column)


def _int_column(x: np.ndarray, raw: Sequence[Any], lines: np.ndarray, column: str, problems: _Problems) -> np.ndarray:
    """Validate a parsed numeric column (NaN where unparsable) as integers >= 0; return int64."""

    def describe_bad(i: int) -> str:
        r = raw[i]
        if r is _MISSING:
            return "missing key"
        if isinstance(r, str) and not r.strip():
            return "missing value"
        return f"not an integer: {r!r}"

    finite = np.isfinite(x)
    integral = finite & (x == np.rint(np.where(finite, x, 0.0)))
    problems.mask(~integral, lines, column, describe_bad)
    problems.mask(integral & (x < 0), lines, column, lambda i: f"negative token count {raw[i]!r}")
    return np.where(integral & (x >= 0), x, 1).astype(np.int64)  # 1 where bad: no knock-on problems


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise TraceError(p, None, "no such file")
    return p


def _read_csv(path: Path, required: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """All cells as stripped strings + the 1-based file line of each row (blank lines dropped)."""
    try:
        df = pd.read_csv(path, dtype=str, na_filter=False, skip_blank_lines=False, encoding="utf-8-sig", engine="c")
    except pd.errors.EmptyDataError:
        raise TraceError(path, 1, "empty file (no header)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        _locate_csv_problem(path, exc)
    df.columns = [str(c).strip() for c in df.columns]
    for col in required:
        if col not in df.columns:
            raise TraceError(path, 1, f"missing column (header has {list(df.columns)})", col)
    lines = np.arange(2, len(df) + 2, dtype=np.int64)  # header is line 1; one row per line (no quoted newlines)
    if len(df):
        df = df.apply(lambda s: s.str.strip())
        blank = (df == "").all(axis=1).to_numpy()  # blank line (or a row of empty fields): skipped
        if blank.any():
            df, lines = df.loc[~blank].reset_index(drop=True), lines[~blank]
    if not len(df):
        raise TraceError(path, 2, "no data rows after the header")
    return df, lines


def _locate_bad_utf8(path: Path) -> None:
    """Raise TraceError at the first line that is not valid UTF-8 (no-op when the file decodes)."""
    for k, b in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            b.decode("utf-8")
        except UnicodeDecodeError as u:
            raise TraceError(path, k, f"not valid UTF-8 ({u.reason} at byte {u.start})") from None


def _locate_csv_problem(path: Path, exc: Exception) -> NoReturn:
    """Slow path after pandas failed: find the first bad line with the csv module and raise there."""
    _locate_bad_utf8(path)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        width = len(header or [])
        for row in reader:
            if len(row) > width:
                raise TraceError(path, reader.line_num, f"expected {width} fields, got {len(row)}")
    raise TraceError(path, None, f"CSV parse error: {exc}")


def _finish(
    path: Path,
    fmt: str,
    *,
    t: np.ndarray,
    to_seconds: Callable[[np.ndarray], np.ndarray],
    raw_t: Sequence[Any],
    t_column: str,
    prompt: np.ndarray,
    output: np.ndarray,
    hash_ids: list[tuple[int, ...]] | None,
    lines: np.ndarray,
    problems: _Problems,
    output_column: str,
    prompt_column: str,
    prompt_raw: Sequence[Any],
    zero_output: ZeroOutput,
    sort: bool,
    keep: np.ndarray | None,
    name: str | None,
    block_tokens: int,
    meta: dict[str, Any],
) -> Trace:
    """Shared tail of the readers: ordering, zero-output policy, prompt >= 1, filters, re-basing."""
    if zero_output not in ("clamp", "drop", "error"):
        raise ValueError(f"zero_output must be 'clamp', 'drop' or 'error', got {zero_output!r}")
    zero = output == 0
    if zero_output == "error":
        problems.mask(zero, lines, output_column, lambda i: "zero output tokens (zero_output='error')")
    served = ~zero if zero_output == "drop" else np.ones_like(zero)
    # prompts are checked only on rows that are kept (a dropped failed request may log 0 request tokens)
    problems.mask(served & (prompt == 0), lines, prompt_column, lambda i: f"zero prompt tokens {prompt_raw[i]!r}")
    problems.raise_first()

    back = np.flatnonzero(t[1:] < t[:-1]) + 1
    meta["out_of_order_rows"] = int(back.size)
    order = None
    if back.size:
        if not sort:
            i = int(back[0])
            raise TraceError(
                path,
                int(lines[i]),
                f"timestamp {raw_t[i]!r} is earlier than {raw_t[i - 1]!r} on line {lines[i - 1]}"
                f" ({back.size} decreasing step{'s' if back.size > 1 else ''}); pass sort=True to sort",
                t_column,
            )
        order = np.argsort(t, kind="stable")

    in_scope = np.ones_like(zero) if keep is None else keep
    sel = served & in_scope
    meta["zero_output_dropped"] = int((~served & in_scope).sum())
    meta["zero_output_clamped"] = int((zero & in_scope).sum()) if zero_output == "clamp" else 0
    meta["filtered_out"] = int((~in_scope).sum())
    idx = np.arange(t.size) if order is None else order
    idx = idx[sel[idx]]
    if idx.size == 0:
        raise TraceError(path, None, f"no requests left after dropping/filtering ({meta})")
    t_kept = t[idx]
    arrival = to_seconds(t_kept - t_kept[0])
    out = np.maximum(output[idx], 1) if zero_output == "clamp" else output[idx]
    h = None if hash_ids is None else tuple(hash_ids[i] for i in idx)
    for what, count in (("clamped to 1", meta["zero_output_clamped"]), ("dropped", meta["zero_output_dropped"])):
        if count:
            log.info("%s: %d request(s) with zero output tokens %s", path, count, what)
    meta |= {"source": str(path), "format": fmt, "rows": int(t.size), "sorted": order is not None}
    return Trace(
        arrival_s=arrival,
        prompt_tokens=prompt[idx],
        output_tokens=out,
        hash_ids=h,
        block_tokens=block_tokens,
        name=path.stem if name is None else name,
        meta=meta,
    )


def _numeric(cells: pd.Series) -> np.ndarray:
    return pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


# ----------------------------------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------------------------------


def read_azure(
    path: str | Path,
    *,
    sort: bool = False,
    zero_output: ZeroOutput = "clamp",
    name: str | None = None,
) -> Trace:
    """Read an Azure LLM inference trace CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``).

    a_i = (ns_i - ns_0) / 1e9 with ns the exact int64 nanoseconds of the ISO-8601 timestamp.
    """
    path = _resolve(path)
    ts_col, p_col, o_col = "TIMESTAMP", "ContextTokens", "GeneratedTokens"
    df, lines = _read_csv(path, (ts_col, p_col, o_col))
    problems = _Problems(path)
    raw_t = df[ts_col].to_numpy()
    stamps = pd.to_datetime(df[ts_col], format="ISO8601", errors="coerce", utc=True)
    bad_t = stamps.isna().to_numpy()
    problems.mask(
        bad_t, lines, ts_col, lambda i: "missing value" if not raw_t[i] else f"unparsable timestamp {raw_t[i]!r}"
    )
    # pandas infers the unit from the text (us for <= 6 digits): force ns before taking the integers
    ns = stamps.dt.as_unit("ns").array.asi8 if not bad_t.any() else np.zeros(len(df), np.int64)
    p_raw, o_raw = df[p_col].to_numpy(), df[o_col].to_numpy()
    prompt = _int_column(_numeric(df[p_col]), p_raw, lines, p_col, problems)
    output = _int_column(_numeric(df[o_col]), o_raw, lines, o_col, problems)
    return _finish(
        path,
        "azure",
        t=ns,
        to_seconds=lambda d: d / 1e9,
        raw_t=raw_t,
        t_column=ts_col,
        prompt=prompt,
        output=output,
        hash_ids=None,
        lines=lines,
        problems=problems,
        output_column=o_col,
        prompt_column=p_col,
        prompt_raw=p_raw,
        zero_output=zero_output,
        sort=sort,
        keep=None,
        name=name,
        block_tokens=512,
        meta={},
    )


def _as_set(values: str | Sequence[str] | None) -> set[str] | None:
    if values is None:
        return None
    return {values} if isinstance(values, str) else set(values)


def read_burstgpt(
    path: str | Path,
    *,
    model: str | Sequence[str] | None = None,
    log_type: str | Sequence[str] | None = None,
    sort: bool = False,
    zero_output: ZeroOutput = "drop",
    name: str | None = None,
) -> Trace:
    """Read a BurstGPT CSV (``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``).

    a_i = Timestamp_i - Timestamp_0 (seconds). ``model`` / ``log_type`` keep only rows with those values
    (``meta["filtered_out"]`` counts the rest). ``Response tokens == 0`` marks a failed request: dropped by
    default (``meta["zero_output_dropped"]``). ``Total tokens`` is not checked.
    """
    path = _resolve(path)
    ts_col, m_col, p_col, o_col, l_col = "Timestamp", "Model", "Request tokens", "Response tokens", "Log Type"
    models, log_types = _as_set(model), _as_set(log_type)
    required = [ts_col, p_col, o_col] + ([m_col] if models else []) + ([l_col] if log_types else [])
    df, lines = _read_csv(path, required)
    problems = _Problems(path)
    raw_t = df[ts_col].to_numpy()
    t = _numeric(df[ts_col])
    problems.mask(
        ~np.isfinite(t), lines, ts_col, lambda i: "missing value" if not raw_t[i] else f"not a number {raw_t[i]!r}"
    )
    t = np.where(np.isfinite(t), t, 0.0)
    p_raw, o_raw = df[p_col].to_numpy(), df[o_col].to_numpy()
    prompt = _int_column(_numeric(df[p_col]), p_raw, lines, p_col, problems)
    output = _int_column(_numeric(df[o_col]), o_raw, lines, o_col, problems)
    keep = None
    meta: dict[str, Any] = {}
    for col, wanted in ((m_col, models), (l_col, log_types)):
        if wanted:
            present = sorted(set(df[col]))
            mask = df[col].isin(wanted).to_numpy()
            keep = mask if keep is None else keep & mask
            meta[f"{col.lower().replace(' ', '_')}_present"] = present
    if keep is not None and not keep.any():
        raise TraceError(path, None, f"no rows match model={model!r} log_type={log_type!r} ({meta})")
    return _finish(
        path,
        "burstgpt",
        t=t,
        to_seconds=lambda d: d.astype(np.float64),
        raw_t=raw_t,
        t_column=ts_col,
        prompt=prompt,
        output=output,
        hash_ids=None,
        lines=lines,
        problems=problems,
        output_column=o_col,
        prompt_column=p_col,
        prompt_raw=p_raw,
        zero_output=zero_output,
        sort=sort,
        keep=keep,
        name=name,
        block_tokens=512,
        meta=meta,
    )


def read_mooncake(
    path: str | Path,
    *,
    block_tokens: int = 512,
    check_blocks: bool = True,
    sort: bool = False,
    zero_output: ZeroOutput = "clamp",
    name: str | None = None,
) -> Trace:
    """Read a Mooncake JSONL trace (``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids``).

    a_i = (t_i - t_0) / 1000. ``hash_ids`` may be absent from every record (then ``Trace.hash_ids`` is
    None) but not from some; with ``check_blocks`` each list must hold ceil(input_length / block_tokens) ids.
    """
    path = _resolve(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        _locate_bad_utf8(path)
        raise
    records: list[Any] = []
    line_nos: list[int] = []
    for k, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(path, k, f"invalid JSON ({exc.msg} at character {exc.colno})") from None
        if not isinstance(rec, dict):
            raise TraceError(path, k, f"expected a JSON object, got {type(rec).__name__}")
        records.append(rec)
        line_nos.append(k)
    if not records:
        raise TraceError(path, 1, "empty file (no records)")
    lines = np.asarray(line_nos, dtype=np.int64)
    problems = _Problems(path)

    def column(key: str) -> tuple[np.ndarray, list[Any]]:
        raw = [r.get(key, _MISSING) for r in records]
        num = [v if type(v) in (int, float) else math.nan for v in raw]  # bool and str are not numbers
        return np.asarray(num, dtype=np.float64), raw

    t, raw_t = column("timestamp")
    problems.mask(
        ~np.isfinite(t),
        lines,
        "timestamp",
        lambda i: "missing key" if raw_t[i] is _MISSING else f"not a finite number: {raw_t[i]!r}",
    )
    t = np.where(np.isfinite(t), t, 0.0)
    p_num, p_raw = column("input_length")
    o_num, o_raw = column("output_length")
    prompt = _int_column(p_num, p_raw, lines, "input_length", problems)
    output = _int_column(o_num, o_raw, lines, "output_length", problems)

    has = np.fromiter(("hash_ids" in r for r in records), dtype=bool, count=len(records))
    hash_ids: list[tuple[int, ...]] | None = None
    if has.any():
        problems.mask(~has, lines, "hash_ids", lambda i: "missing key (other records have it)")
        lists = [r.get("hash_ids", []) for r in records]
        # fast check on the flattened ids (one C-level pass); per-record scan only when something is off
        clean = all(type(h) is list for h in lists) and set(map(type, chain.from_iterable(lists))) <= {int}
        for i, ids in enumerate(lists):
            if not clean and not (type(ids) is list and all(type(x) is int for x in ids)):
                problems.add(int(lines[i]), "hash_ids", f"must be a list of integers, got {str(ids)[:60]}")
                lists[i] = []
        hash_ids = [tuple(ids) for ids in lists]
        if check_blocks:
            n_ids = np.fromiter((len(h) for h in hash_ids), dtype=np.int64, count=len(hash_ids))
            want = -(-prompt // block_tokens)
            problems.mask(
                has & (n_ids != want) & (prompt >= 1),
                lines,
                "hash_ids",
                lambda i: (
                    f"{n_ids[i]} ids for input_length {prompt[i]}; expected ceil({prompt[i]}/{block_tokens})"
                    f" = {want[i]} (block_tokens={block_tokens}; check_blocks=False skips this)"
                ),
            )
    return _finish(
        path,
        "mooncake",
        t=t,
        to_seconds=lambda d: d / 1000.0,
        raw_t=raw_t,
        t_column="timestamp",
        prompt=prompt,
        output=output,
        hash_ids=hash_ids,
        lines=lines,
        problems=problems,
        output_column="output_length",
        prompt_column="input_length",
        prompt_raw=p_raw,
        zero_output=zero_output,
        sort=sort,
        keep=None,
        name=name,
        block_tokens=block_tokens,
        meta={},
    )


def _guess_format(path: Path) -> str:
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return "mooncake"
    with path.open(encoding="utf-8-sig", errors="replace") as fh:
        header = [c.strip() for c in fh.readline().split(",")]
    if "ContextTokens" in header and "GeneratedTokens" in header:
        return "azure"
    if "Request tokens" in header and "Response tokens" in header:
        return "burstgpt"
    raise TraceError(path, 1, f"cannot tell the trace format from the header {header}; pass fmt= one of {FORMATS}")


def read_trace(path: str | Path, fmt: str | None = None, **kwargs: Any) -> Trace:
    """Read a trace file; ``fmt`` in {"azure", "mooncake", "burstgpt"} (None: by suffix, then CSV header).

    ``kwargs`` go to the format's reader (``read_azure`` / ``read_mooncake`` / ``read_burstgpt``).
    """
    p = _resolve(path)
    fmt = _guess_format(p) if fmt is None else fmt
    readers: dict[str, Callable[..., Trace]] = {
        "azure": read_azure,
        "mooncake": read_mooncake,
        "burstgpt": read_burstgpt,
    }
    if fmt not in readers:
        raise ValueError(f"unknown trace format {fmt!r}; expected one of {FORMATS}")
    return readers[fmt](p, **kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# Length distributions
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LengthDist:
    """Token-length law L = clip(round(median * exp(sigma Z)), lo, hi), Z ~ N(0, 1); hi None = unbounded.

    sigma = 0 gives the constant clip(round(median)). ``mean`` is the unclipped lognormal mean
    median * exp(sigma^2 / 2).
    """

    median: float
    sigma: float = 0.0
    lo: int = 1
    hi: int | None = None

    def __post_init__(self) -> None:
        if not (self.median > 0 and math.isfinite(self.median)):
            raise ValueError(f"median must be finite and > 0, got {self.median}")
        if not (self.sigma >= 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma must be finite and >= 0, got {self.sigma}")
        if int(self.lo) < 1:
            raise ValueError(f"lo must be >= 1 (a request has at least one token), got {self.lo}")
        if self.hi is not None and int(self.hi) < int(self.lo):
            raise ValueError(f"hi ({self.hi}) must be >= lo ({self.lo})")

    @classmethod
    def lognormal(cls, median: float, sigma: float, lo: int = 1, hi: int | None = None) -> LengthDist:
        """Lognormal with log-median ln(median) and log-sd sigma, rounded and clipped to [lo, hi]."""
        return cls(float(median), float(sigma), int(lo), None if hi is None else int(hi))

    @classmethod
    def fixed(cls, n: int) -> LengthDist:
        """Always ``n`` tokens."""
        return cls(float(n), 0.0, int(n), int(n))

    @classmethod
    def fit(cls, values: Any, lo: int | None = None, hi: int | None = None) -> LengthDist:
        """Lognormal MLE: mu = mean(ln v), sigma = std(ln v) (ddof 0), median = e^mu; bounds default to min/max."""
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)) or v.min() < 1:
            raise ValueError("fit needs at least two finite values >= 1")
        logs = np.log(v)
        return cls.lognormal(
            median=float(np.exp(logs.mean())),
            sigma=float(logs.std()),
            lo=int(v.min()) if lo is None else lo,
            hi=int(v.max()) if hi is None else hi,
        )

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` int64 draws."""
        hi = np.inf if self.hi is None else self.hi
        if self.sigma == 0:
            x = np.full(n, float(np.rint(self.median)))
        else:
            x = np.rint(self.median * np.exp(self.sigma * rng.standard_normal(n)))
        return np.clip(x, self.lo, min(hi, 2.0**62)).astype(np.int64)


DEFAULT_PROMPT = LengthDist.lognormal(median=1024, sigma=1.0, lo=1, hi=32768)
DEFAULT_OUTPUT = LengthDist.lognormal(median=128, sigma=1.0, lo=1, hi=4096)
DEFAULT_SUFFIX = LengthDist.lognormal(median=256, sigma=1.0, lo=1, hi=8192)


# ----------------------------------------------------------------------------------------------------------------------
# Synthetic generators
# ----------------------------------------------------------------------------------------------------------------------


def _streams(seed: Seed, k: int) -> list[np.random.Generator]:
    """k independent child generators (arrivals, prompt, output, extra) from an int seed or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed.spawn(k)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int or a numpy Generator, got {type(seed).__name__}")
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(k)]


def _check_size(n: int | None, duration_s: float | None) -> None:
    if (n is None) == (duration_s is None):
        raise ValueError("give exactly one of n (requests) or duration_s (seconds)")
    if n is not None and int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if duration_s is not None and not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be finite and > 0, got {duration_s}")


def _positive(**kw: float) -> None:
    for k, v in kw.items():
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{k} must be finite and > 0, got {v}")


def _renewal_arrivals(
    draw: Callable[[int], np.ndarray], mean_gap: float, n: int | None, duration_s: float | None
) -> np.ndarray:
    """a_0 = 0, a_k = a_{k-1} + g_k with i.i.d. gaps from ``draw``; n arrivals, or all with a_k <= duration_s."""
    if n is not None:
        return np.concatenate(([0.0], np.cumsum(draw(int(n) - 1))))
    assert duration_s is not None
    expected = duration_s / mean_gap
    batch = int(expected + 6 * math.sqrt(expected) + 16)
    chunks, last = [np.zeros(1)], 0.0
    while True:
        c = last + np.cumsum(draw(batch))
        inside = c <= duration_s
        chunks.append(c[inside])
        if not inside.all():
            return np.concatenate(chunks)
        last = float(c[-1])


def _assemble(
    arrivals: np.ndarray,
    prompt: LengthDist,
    output: LengthDist,
    r_prompt: np.random.Generator,
    r_output: np.random.Generator,
    name: str,
    meta: dict[str, Any],
) -> Trace:
    n = arrivals.size
    return Trace(
        arrival_s=arrivals,
        prompt_tokens=prompt.sample(r_prompt, n),
        output_tokens=output.sample(r_output, n),
        name=name,
        meta=meta,
    )


def poisson_trace(
    rate: float,
    duration_s: float | None = None,
    *,
    n: int | None = None,
    prompt: LengthDist = DEFAULT_PROMPT,
    output: LengthDist = DEFAULT_OUTPUT,
    seed: Seed = 0,
    name: str = "poisson",
) -> Trace:
    """Poisson arrivals at ``rate`` req/s: a request at 0, then i.i.d. Exp(rate) gaps."""
    _positive(rate=rate)
    _check_size(n, duration_s)
    r_arr, r_p, r_o = _streams(seed, 3)
    a = _renewal_arrivals(lambda k: r_arr.exponential(1.0 / rate, k), 1.0 / rate, n, duration_s)
    return _assemble(a, prompt, output, r_p, r_o, name, {"generator": "poisson", "rate": rate})


def gamma_trace(
    rate: float,
    cv: float,
    duration_s: float | None = None,
    *,
    n: int | None = None,
    prompt: LengthDist = DEFAULT_PROMPT,
    output: LengthDist = DEFAULT_OUTPUT,
    seed: Seed = 0,
    name: str = "gamma",
) -> Trace:
    """Renewal arrivals with Gamma(k = 1/cv^2, theta = cv^2/rate) gaps: mean gap 1/rate, gap CV = cv."""
    _positive(rate=rate, cv=cv)
    _check_size(n, duration_s)
    r_arr, r_p, r_o = _streams(seed, 3)
    shape, scale = 1.0 / cv**2, cv**2 / rate
    a = _renewal_arrivals(lambda k: r_arr.gamma(shape, scale, k), 1.0 / rate, n, duration_s)
    return _assemble(a, prompt, output, r_p, r_o, name, {"generator": "gamma", "rate": rate, "cv": cv})


def diurnal_rate(t: Any, mean_rate: float, period_s: float, amplitude: float, peak_s: float) -> np.ndarray:
    """lambda(t) = mean_rate (1 + amplitude cos(2 pi (t - peak_s) / period_s)) in req/s."""
    return mean_rate * (1.0 + amplitude * np.cos(2 * np.pi * (np.asarray(t, dtype=np.float64) - peak_s) / period_s))


def diurnal_trace(
    mean_rate: float,
    period_s: float,
    amplitude: float,
    duration_s: float | None = None,
    *,
    n: int | None = None,
    peak_s: float | None = None,
    prompt: LengthDist = DEFAULT_PROMPT,
    output: LengthDist = DEFAULT_OUTPUT,
    seed: Seed = 0,
    name: str = "diurnal",
) -> Trace:
    """Inhomogeneous Poisson with rate ``diurnal_rate`` (peak at ``peak_s``, default period_s/2), by thinning.

    Candidates: Poisson at lambda_max = mean_rate (1 + amplitude) after the request at t = 0; candidate t
    is kept when U < lambda(t) / lambda_max, U ~ Uniform(0, 1). The mean rate over whole periods is mean_rate.
    """
    _positive(mean_rate=mean_rate, period_s=period_s)
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"amplitude must be in [0, 1], got {amplitude}")
    _check_size(n, duration_s)
    peak = period_s / 2 if peak_s is None else float(peak_s)
    lam_max = mean_rate * (1.0 + amplitude)
    r_arr, r_p, r_o = _streams(seed, 3)
    want = None if n is None else int(n) - 1
    expected = (want if want is not None else duration_s * mean_rate) * (1.0 + amplitude)  # candidates needed
    batch = int(expected + 6 * math.sqrt(expected) + 16)
    kept, have, last = [np.zeros(1)], 0, 0.0
    while want is None or have < want:
        cand = last + np.cumsum(r_arr.exponential(1.0 / lam_max, batch))
        accept = r_arr.random(batch) * lam_max < diurnal_rate(cand, mean_rate, period_s, amplitude, peak)
        if duration_s is not None:
            accept &= cand <= duration_s
        got = cand[accept]
        if want is not None:
            got = got[: want - have]
        kept.append(got)
        have += got.size
        last = float(cand[-1])
        if duration_s is not None and last > duration_s:
            break
    meta = {"generator": "diurnal", "mean_rate": mean_rate, "period_s": period_s, "amplitude": amplitude}
    return _assemble(np.concatenate(kept), prompt, output, r_p, r_o, name, meta | {"peak_s": peak})


def zipf_pmf(n_prefixes: int, s: float) -> np.ndarray:
    """P(rank j) = (j + 1)^-s / sum_{m < n_prefixes} (m + 1)^-s, j = 0 .. n_prefixes - 1."""
    w = np.arange(1, n_prefixes + 1, dtype=np.float64) ** -float(s)
    return w / w.sum()


def shared_prefix_trace(
    n_prefixes: int,
    prefix_tokens: int | LengthDist,
    zipf_s: float,
    rate: float = 1.0,
    duration_s: float | None = None,
    *,
    n: int | None = None,
    cv: float = 1.0,
    suffix: LengthDist = DEFAULT_SUFFIX,
    output: LengthDist = DEFAULT_OUTPUT,
    block_tokens: int = 512,
    seed: Seed = 0,
    name: str = "shared_prefix",
) -> Trace:
    """Requests that share one of ``n_prefixes`` prompt prefixes chosen by Zipf(``zipf_s``) popularity.

    Prefix j has length prefix_tokens (or a draw from it when a LengthDist) and ids
    base_j .. base_j + floor(len_j / block_tokens) - 1; request i's hash_ids are its prefix's ids followed by
    fresh ids up to ceil(prompt_i / block_tokens) blocks. Arrivals: gamma gaps with mean 1/rate and CV ``cv``.
    ``meta["prefix_len"]`` holds the prefix lengths (index = popularity rank, 0 = most popular).
    """
    if int(n_prefixes) < 1:
        raise ValueError(f"n_prefixes must be >= 1, got {n_prefixes}")
    if not (zipf_s >= 0 and math.isfinite(zipf_s)):
        raise ValueError(f"zipf_s must be finite and >= 0, got {zipf_s}")
    if int(block_tokens) < 1:
        raise ValueError(f"block_tokens must be >= 1, got {block_tokens}")
    _positive(rate=rate, cv=cv)
    _check_size(n, duration_s)
    r_arr, r_s, r_o, r_pick = _streams(seed, 4)
    shape, scale = 1.0 / cv**2, cv**2 / rate
    a = _renewal_arrivals(lambda k: r_arr.gamma(shape, scale, k), 1.0 / rate, n, duration_s)
    m = a.size
    if isinstance(prefix_tokens, LengthDist):
        prefix_len = prefix_tokens.sample(r_pick, int(n_prefixes))
    else:
        if int(prefix_tokens) < 1:
            raise ValueError(f"prefix_tokens must be >= 1, got {prefix_tokens}")
        prefix_len = np.full(int(n_prefixes), int(prefix_tokens), dtype=np.int64)
    choice = r_pick.choice(int(n_prefixes), size=m, p=zipf_pmf(int(n_prefixes), zipf_s))
    prompt = prefix_len[choice] + suffix.sample(r_s, m)
    shared_blocks = prefix_len // block_tokens
    base = np.concatenate(([0], np.cumsum(shared_blocks)))
    prefix_ids = [tuple(range(int(base[j]), int(base[j + 1]))) for j in range(int(n_prefixes))]
    n_blocks = -(-prompt // block_tokens)
    fresh = n_blocks - shared_blocks[choice]
    fresh_start = int(base[-1]) + np.concatenate(([0], np.cumsum(fresh)[:-1]))
    hash_ids = tuple(
        prefix_ids[j] + tuple(range(s0, s0 + f))
        for j, s0, f in zip(choice.tolist(), fresh_start.tolist(), fresh.tolist(), strict=True)
    )
    meta = {
        "generator": "shared_prefix",
        "rate": rate,
        "cv": cv,
        "n_prefixes": int(n_prefixes),
        "zipf_s": float(zipf_s),
        "prefix_len": prefix_len,
    }
    return Trace(
        arrival_s=a,
        prompt_tokens=prompt,
        output_tokens=output.sample(r_o, m),
        hash_ids=hash_ids,
        block_tokens=block_tokens,
        name=name,
        meta=meta,
    )
