"""Latency model interpolated from a measured profile (SplitwiseSim's perf-model CSV).

The Splitwise profile (arXiv 2311.18677; columns ``model, hardware, prompt_size, batch_size,
token_size, prompt_time, token_time, tensor_parallel``, times in ms, repeated runs per setting)
holds, for one (model, hardware, tp), three sweeps around a reference point (prompt 512, batch 1,
128 generated tokens): prompt size at batch 1, batch size at prompt 512, generated tokens at
prompt 512 and batch 1. Repeated rows are averaged. From the rows with the reference number of
generated tokens (the most common ``token_size``) we build four curves, each piecewise linear in
log–log coordinates through the averaged points:

    Tp1(P)  prompt_time at batch 1 against prompt size P
    Fp(b)   prompt_time(P_ref, b) / prompt_time(P_ref, 1)         batch factor of the prompt phase
    Tt(b)   token_time(P_ref, b) against batch size b
    G(x)    token_time(P, 1) / token_time(P_ref, 1) against the mean decode context x = P + tokens/2

    prompt_time(P, b)       = Tp1(P) · Fp(b)
    token_time(b, context)  = Tt(b) · G(context)

so every averaged row of the sweeps is reproduced exactly (Fp(1) = 1, G(P_ref + tokens/2) = 1).
The generated-tokens sweep is not used: its token_time barely moves and its e2e_time does not equal
prompt_time + (tokens − 1)·token_time in the Splitwise file, so it does not describe a clean
context dependence; those rows are counted in ``ignored_rows``.

Outside a curve's range the end segment's log–log slope is continued, clamped to [0, 2]: time
never falls with more work and grows at most quadratically (attention's order). A curve with one
point is constant. With ``monotone=True`` each curve is first replaced by its running maximum (the
Splitwise TP-2 files have batch-64 prompt times below the batch-32 ones); that breaks exact
reproduction of the rows it changes, so it is off by default.

Mapping an iteration (prefill_tokens N, prefill_attn A, decode_seqs B, decode_context C):

* decode only: token_time(B, C/B);
* with prefill: the batch is priced as one prompt phase in which every decoding sequence is a
  one-token chunk on its context (pairs c + 1): N' = N + B, A' = A + C + B. A batch of k fresh
  prompts of length P has A' = k·P(P+1)/2, so the equivalent prompt length and batch are

      P_eq = 2A'/N' − 1,   b_eq = N'/P_eq,   time = Tp1(P_eq) · Fp(b_eq)

  (exact on the profile's rows; a chunk of n tokens on c cached ones maps to P_eq = 2c + n, i.e.
  to the per-token cost of a prompt with the same mean attention span). The result is floored at
  Tt(1)·G(x_ref), the reference batch-1 decode step (no forward pass is cheaper than reading the
  weights once), and, when B > 0, at token_time(B, C/B) (adding prefill work to a decode batch
  never makes the step cheaper). The floors never bind on the profile's own rows.

KV capacity and transfer times come from a roofline model of the same model/gpu/tp.
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .roofline import RooflineCostModel, _check_batch
from .specs import GPUSpec, ModelSpec, check_tp, get_gpu, get_model

__all__ = ["LogLogCurve", "TableCostModel", "TableError"]

REQUIRED_COLUMNS = ("model", "hardware", "prompt_size", "batch_size", "token_size", "prompt_time", "token_time")
TP_COLUMN = "tensor_parallel"


class TableError(ValueError):
    """A profile that cannot serve the requested (model, gpu, tp), or a malformed profile."""


class LogLogCurve:
    """y(x) piecewise linear in (log x, log y) through the points; end slopes continued, clamped."""

    def __init__(self, xs: np.ndarray, ys: np.ndarray, slope_bounds: tuple[float, float] = (0.0, 2.0)) -> None:
        xs = np.asarray(xs, dtype=float)
        ys = np.asarray(ys, dtype=float)
        order = np.argsort(xs)
        xs, ys = xs[order], ys[order]
        if len(xs) == 0 or np.any(xs <= 0) or np.any(ys <= 0) or len(np.unique(xs)) != len(xs):
            raise TableError(f"log-log curve needs distinct x > 0 and y > 0, got x={xs.tolist()}, y={ys.tolist()}")
        self.xs, self.ys = xs, ys
        self._lx = np.log(xs).tolist()
        self._ly = np.log(ys).tolist()
        lo, hi = slope_bounds
        if len(xs) == 1:
            self._s_lo = self._s_hi = 0.0
        else:
            s_lo = (self._ly[1] - self._ly[0]) / (self._lx[1] - self._lx[0])
            s_hi = (self._ly[-1] - self._ly[-2]) / (self._lx[-1] - self._lx[-2])
            self._s_lo, self._s_hi = min(max(s_lo, lo), hi), min(max(s_hi, lo), hi)

    def __call__(self, x: float) -> float:
        if not x > 0:
            raise ValueError(f"log-log curve evaluated at x={x} <= 0")
        lx, xs, ys = math.log(x), self._lx, self._ly
        if lx <= xs[0]:
            return math.exp(ys[0] + self._s_lo * (lx - xs[0]))
        if lx >= xs[-1]:
            return math.exp(ys[-1] + self._s_hi * (lx - xs[-1]))
        i = bisect.bisect_right(xs, lx)
        w = (lx - xs[i - 1]) / (xs[i] - xs[i - 1])
        return math.exp(ys[i - 1] + w * (ys[i] - ys[i - 1]))


def _running_max(ys: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(ys)


class TableCostModel:
    """Interpolated Splitwise profile (formulas and the batch mapping in the module docstring)."""

    def __init__(
        self,
        rows: pd.DataFrame,
        model: str | ModelSpec,
        gpu: str | GPUSpec,
        tp: int,
        monotone: bool = False,
        source: str = "",
        **roofline_kw: Any,
    ) -> None:
        """``rows``: averaged profile of this (model, gpu, tp) with columns prompt_size, batch_size,
        token_size, prompt_time_s, token_time_s (one row per setting). Use the ``from_*`` constructors."""
        self.model, self.gpu = get_model(model), get_gpu(gpu)
        self.tp = check_tp(self.model, tp)
        self.source = source
        self.monotone = bool(monotone)
        self.memory = RooflineCostModel(self.model, self.gpu, self.tp, **roofline_kw)
        rows = rows.sort_values(["token_size", "batch_size", "prompt_size"]).reset_index(drop=True)
        self.all_rows = rows
        where = f" in {source}" if source else ""
        tag = f"{self.model.name}/{self.gpu.name}/tp{self.tp}{where}"

        counts = rows["token_size"].value_counts()
        self.ref_tokens = int(counts.index[np.argmax(counts.to_numpy())])
        base = rows[rows["token_size"] == self.ref_tokens]
        self.ignored_rows = int(len(rows) - len(base))
        b1 = base[base["batch_size"] == 1]
        if b1.empty:
            raise TableError(f"profile {tag} has no batch-1 rows with token_size {self.ref_tokens}")
        batched = base[base["batch_size"] > 1]
        prompts = sorted(batched["prompt_size"].unique())
        if len(prompts) > 1:
            raise TableError(f"profile {tag}: batch sweep spans several prompt sizes {prompts}; expected one")
        if prompts:
            self.ref_prompt = int(prompts[0])
        else:
            self.ref_prompt = 512 if 512 in set(b1["prompt_size"]) else int(b1["prompt_size"].iloc[0])
        ref = b1[b1["prompt_size"] == self.ref_prompt]
        if ref.empty:
            raise TableError(f"profile {tag} lacks the reference row prompt {self.ref_prompt}, batch 1")
        sweep_b = pd.concat([ref, batched]).sort_values("batch_size")
        self.used_rows = pd.concat([b1, batched]).reset_index(drop=True)

        def mono(y: np.ndarray) -> np.ndarray:
            return _running_max(y) if self.monotone else y

        tp1 = b1.sort_values("prompt_size")
        ref_prompt_s = float(ref["prompt_time_s"].iloc[0])
        ref_token_s = float(ref["token_time_s"].iloc[0])
        self.half_tokens = self.ref_tokens / 2.0
        self.prompt_curve = LogLogCurve(tp1["prompt_size"].to_numpy(), mono(tp1["prompt_time_s"].to_numpy()))
        self.prompt_batch_factor = LogLogCurve(
            sweep_b["batch_size"].to_numpy(), mono(sweep_b["prompt_time_s"].to_numpy()) / ref_prompt_s
        )
        self.token_curve = LogLogCurve(sweep_b["batch_size"].to_numpy(), mono(sweep_b["token_time_s"].to_numpy()))
        self.token_context_factor = LogLogCurve(
            tp1["prompt_size"].to_numpy() + self.half_tokens, mono(tp1["token_time_s"].to_numpy()) / ref_token_s
        )
        self.ref_context = self.ref_prompt + self.half_tokens
        self._floor = self.token_curve(1.0) * self.token_context_factor(self.ref_context)

    def __repr__(self) -> str:
        return f"TableCostModel({self.model.name!r}, {self.gpu.name!r}, tp={self.tp}, rows={len(self.used_rows)})"

    # --- constructors --------------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        model: str | ModelSpec,
        gpu: str | GPUSpec,
        tp: int,
        source: str = "",
        **kw: Any,
    ) -> TableCostModel:
        """Select (model, hardware, tp) from a raw Splitwise-format frame (times in ms) and average repeats."""
        where = f" in {source}" if source else ""
        missing = [c for c in (*REQUIRED_COLUMNS, TP_COLUMN) if c not in frame.columns]
        if missing:
            raise TableError(f"profile{where} misses columns {missing}; has {list(frame.columns)}")
        m, g = get_model(model), get_gpu(gpu)
        sel = frame[(frame["model"] == m.name) & (frame["hardware"] == g.name) & (frame[TP_COLUMN] == tp)]
        if sel.empty:
            combos = sorted({(str(a), str(b), int(c)) for a, b, c in frame[["model", "hardware", TP_COLUMN]].values})
            listed = ", ".join(f"{a}/{b}/tp{c}" for a, b, c in combos)
            raise TableError(f"profile{where} has no rows for {m.name}/{g.name}/tp{tp}; available: {listed}")
        times = sel[["prompt_time", "token_time"]].to_numpy(dtype=float)
        if not np.all(np.isfinite(times)) or np.any(times <= 0):
            raise TableError(f"profile{where}: prompt_time/token_time must be finite and > 0 for {m.name}/{g.name}")
        avg = (
            sel.groupby(["prompt_size", "batch_size", "token_size"], as_index=False)[["prompt_time", "token_time"]]
            .mean()
            .astype({"prompt_size": int, "batch_size": int, "token_size": int})
        )
        avg["prompt_time_s"] = avg.pop("prompt_time") / 1e3
        avg["token_time_s"] = avg.pop("token_time") / 1e3
        return cls(avg, m, g, tp, source=source, **kw)

    @classmethod
    def from_splitwise_csv(
        cls, path: str | Path, model: str | ModelSpec, gpu: str | GPUSpec, tp: int, **kw: Any
    ) -> TableCostModel:
        """Read a SplitwiseSim perf-model CSV and build the model for (model, gpu, tp)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Splitwise profile not found: {path}")
        return cls.from_frame(pd.read_csv(path), model, gpu, tp, source=str(path), **kw)

    # --- table lookups -------------------------------------------------------------------------
    def prompt_time(self, prompt_size: float, batch_size: float = 1.0) -> float:
        """Tp1(P)·Fp(b) in seconds: b prompts of P tokens each, no cached prefix."""
        return self.prompt_curve(prompt_size) * self.prompt_batch_factor(batch_size)

    def token_time(self, batch_size: float, context: float | None = None) -> float:
        """Tt(b)·G(context) in seconds per decode step; context = mean context (default: the reference)."""
        ctx = self.ref_context if context is None else context
        return self.token_curve(batch_size) * self.token_context_factor(ctx)

    def iteration_time(self, prefill_tokens: int, prefill_attn: float, decode_seqs: int, decode_context: int) -> float:
        """Seconds; decode-only → token_time(B, C/B); with prefill → Tp1(P_eq)·Fp(b_eq), floored (module docstring)."""
        _check_batch(prefill_tokens, prefill_attn, decode_seqs, decode_context)
        if prefill_tokens == 0:
            if decode_seqs == 0:
                return 0.0
            return self.token_time(decode_seqs, max(decode_context / decode_seqs, 1.0))
        n = prefill_tokens + decode_seqs
        a = prefill_attn + decode_context + decode_seqs
        p_eq = 2.0 * a / n - 1.0
        t = max(self.prompt_time(p_eq, n / p_eq), self._floor)
        if decode_seqs:  # adding prefill work to a decode batch never makes the step cheaper
            t = max(t, self.token_time(decode_seqs, max(decode_context / decode_seqs, 1.0)))
        return t

    def grid(self) -> dict[str, list[tuple[float, float]]]:
        """The measured settings as protocol arguments, for fitting other models to this table:
        prefill (N, A) = (b·P, b·P(P+1)/2) per prompt row; decode (B, C) = (b, b·(P + tokens/2)) per token row."""
        prefill, decode = [], []
        for row in self.used_rows.itertuples():
            p, b = int(row.prompt_size), int(row.batch_size)
            prefill.append((float(b * p), b * p * (p + 1) / 2.0))
            if b == 1 or p == self.ref_prompt:
                decode.append((float(b), b * (p + self.half_tokens)))
        return {"prefill": prefill, "decode": decode}

    # --- memory and transfers (delegated to the roofline) --------------------------------------
    def kv_capacity_tokens(self) -> int:
        """Delegated to RooflineCostModel(model, gpu, tp)."""
        return self.memory.kv_capacity_tokens()

    def kv_transfer_time(self, tokens: int) -> float:
        """Delegated to RooflineCostModel(model, gpu, tp)."""
        return self.memory.kv_transfer_time(tokens)

    def weight_transfer_time(self, layers: int) -> float:
        """Delegated to RooflineCostModel(model, gpu, tp)."""
        return self.memory.weight_transfer_time(layers)
