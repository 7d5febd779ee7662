"""Fitted polynomial latency model in DistServe's form (arXiv 2401.09670, §4 latency model).

    prefill(N, Q) = a_p + b_p·N + c_p·Q        N = Σ len (new prompt tokens), Q = Σ len² generalised
    decode(B, C)  = a_d + b_d·C + c_d·B        C = Σ context of the decoding sequences, B = batch

For prompts without cached prefix Q = Σ n_i², and with the protocol's prefill_attn
A = Σ n_i·(c_i + (n_i+1)/2) we use

    Q = 2·A − N = Σ_i [(c_i + n_i)² − c_i²]

which equals Σ n_i² for fresh prompts and, for a chunk of n_i tokens on c_i cached ones, is the
growth of the quadratic attention term — the natural extension to chunked prefill.

A mixed iteration (prefill chunks and decoding sequences in one batch) costs
prefill(N, Q)·[N > 0] + decode(B, C)·[B > 0]: the two parts are priced as if run back to back.
This double-counts the fixed cost and the weight reads the two parts share, so it is an upper
estimate for mixed batches (exact for pure prefill or pure decode iterations, the form's domain).

``fit`` solves least squares on samples (optionally non-negative, and by default on relative
error: each row divided by its measured time, so short iterations weigh as much as long ones).
Non-negative least squares with three unknowns is solved exactly by enumerating the 2³ sets of
free coefficients and keeping the best feasible unconstrained solution on each set.
``from_cost_model`` fits the form to another model's predictions on a grid of pure prefill and
pure decode batches. KV capacity and transfer times are delegated to a roofline model of the same
model/gpu/tp (or to the model passed as ``memory``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .roofline import RooflineCostModel, _check_batch
from .specs import CostModel, GPUSpec, ModelSpec, check_tp, get_gpu, get_model

__all__ = ["PolynomialCostModel", "default_grid", "nnls_small"]

Coeffs = tuple[float, float, float]


def nnls_small(a: np.ndarray, y: np.ndarray, nonneg: bool = True) -> np.ndarray:
    """argmin ‖a·x − y‖² (subject to x >= 0 if ``nonneg``) for a few columns, by active-set enumeration.

    The NNLS optimum is the unconstrained least-squares solution restricted to its support, so
    trying every support (2^k of them, k = columns) and keeping the best non-negative one is exact.
    """
    a = np.asarray(a, dtype=float)
    y = np.asarray(y, dtype=float)
    k = a.shape[1]
    if not nonneg:
        return np.linalg.lstsq(a, y, rcond=None)[0]
    best, best_res = np.zeros(k), float(y @ y)
    for r in range(1, k + 1):
        for support in itertools.combinations(range(k), r):
            cols = list(support)
            x_s = np.linalg.lstsq(a[:, cols], y, rcond=None)[0]
            if np.any(x_s < 0):
                continue
            x = np.zeros(k)
            x[cols] = x_s
            res = float(np.sum((a @ x - y) ** 2))
            if res < best_res - 1e-15 * max(best_res, 1.0):
                best, best_res = x, res
    return best


def default_grid() -> dict[str, list[tuple[float, float]]]:
    """Pure-prefill and pure-decode batches used by ``from_cost_model``.

    prefill: k fresh prompts of n tokens (N = k·n, A = k·n(n+1)/2), n in 16…8192 (doubling),
    k in {1, 2, 4, 8} with N <= 16384. decode: batch B in 1…256 (doubling), mean context
    in {128, 512, 2048, 8192} (C = B·mean).
    """
    prefill = [
        (float(k * n), k * n * (n + 1) / 2.0)
        for n in (2**i for i in range(4, 14))
        for k in (1, 2, 4, 8)
        if k * n <= 16384
    ]
    decode = [(float(b), float(b * ctx)) for b in (2**i for i in range(9)) for ctx in (128, 512, 2048, 8192)]
    return {"prefill": prefill, "decode": decode}


class PolynomialCostModel:
    """DistServe-form latency model (formulas in the module docstring); times in seconds."""

    def __init__(
        self,
        prefill: Sequence[float],
        decode: Sequence[float],
        model: str | ModelSpec | None = None,
        gpu: str | GPUSpec | None = None,
        tp: int = 1,
        memory: CostModel | None = None,
        **roofline_kw: Any,
    ) -> None:
        if len(prefill) != 3 or len(decode) != 3:
            raise ValueError(f"prefill and decode take three coefficients (a, b, c), got {prefill!r}, {decode!r}")
        self.prefill: Coeffs = tuple(float(x) for x in prefill)  # type: ignore[assignment]
        self.decode: Coeffs = tuple(float(x) for x in decode)  # type: ignore[assignment]
        if memory is not None:
            self.memory: CostModel | None = memory
            self.model, self.gpu, self.tp = memory.model, memory.gpu, memory.tp
        elif model is not None and gpu is not None:
            self.model, self.gpu = get_model(model), get_gpu(gpu)
            self.tp = check_tp(self.model, tp)
            self.memory = RooflineCostModel(self.model, self.gpu, self.tp, **roofline_kw)
        else:
            self.model, self.gpu, self.tp, self.memory = None, None, tp, None  # type: ignore[assignment]
        self.fit_stats: dict[str, float] = {}

    def __repr__(self) -> str:
        name = f"{self.model.name!r}, {self.gpu.name!r}, tp={self.tp}, " if self.model is not None else ""
        return f"PolynomialCostModel({name}prefill={self.prefill}, decode={self.decode})"

    # --- the two parts -----------------------------------------------------------------------
    def prefill_time(self, prefill_tokens: float, prefill_attn: float) -> float:
        """a_p + b_p·N + c_p·(2A − N); 0 when N = 0."""
        if prefill_tokens == 0:
            return 0.0
        a, b, c = self.prefill
        return a + b * prefill_tokens + c * (2.0 * prefill_attn - prefill_tokens)

    def decode_time(self, decode_seqs: float, decode_context: float) -> float:
        """a_d + b_d·C + c_d·B; 0 when B = 0."""
        if decode_seqs == 0:
            return 0.0
        a, b, c = self.decode
        return a + b * decode_context + c * decode_seqs

    def iteration_time(self, prefill_tokens: int, prefill_attn: float, decode_seqs: int, decode_context: int) -> float:
        """prefill part + decode part (each 0 when absent)."""
        _check_batch(prefill_tokens, prefill_attn, decode_seqs, decode_context)
        return self.prefill_time(prefill_tokens, prefill_attn) + self.decode_time(decode_seqs, decode_context)

    # --- fitting -----------------------------------------------------------------------------
    @staticmethod
    def _solve(x: np.ndarray, t: np.ndarray, nonneg: bool, relative: bool) -> tuple[np.ndarray, dict[str, float]]:
        if x.shape[0] < 3:
            raise ValueError(f"need at least 3 samples to fit three coefficients, got {x.shape[0]}")
        if relative and np.any(t <= 0):
            raise ValueError("relative fitting needs times > 0")
        w = 1.0 / t if relative else np.ones_like(t)
        coef = nnls_small(x * w[:, None], t * w, nonneg=nonneg)
        rel = np.abs(x @ coef - t) / np.where(t > 0, t, 1.0)
        return coef, {"max_rel_err": float(rel.max()), "mean_rel_err": float(rel.mean()), "n": float(len(t))}

    @staticmethod
    def _as_samples(samples: Iterable[Sequence[float]] | np.ndarray, what: str) -> np.ndarray:
        arr = np.asarray(list(samples) if not isinstance(samples, np.ndarray) else samples, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise ValueError(f"{what} samples must be rows of three numbers, got shape {arr.shape}")
        if np.any(arr < 0) or not np.all(np.isfinite(arr)):
            raise ValueError(f"{what} samples must be finite and >= 0")
        return arr

    @classmethod
    def fit(
        cls,
        prefill_samples: Iterable[Sequence[float]] | np.ndarray,
        decode_samples: Iterable[Sequence[float]] | np.ndarray,
        *,
        nonneg: bool = True,
        relative: bool = True,
        **kw: Any,
    ) -> PolynomialCostModel:
        """Least-squares fit of both parts.

        prefill_samples: rows (prefill_tokens N, prefill_attn A, time_s) of pure-prefill iterations;
        decode_samples: rows (decode_seqs B, decode_context C, time_s) of pure-decode iterations.
        Design rows: [1, N, 2A − N] and [1, C, B]. ``kw`` goes to the constructor (model, gpu, tp, memory, …).
        Fit quality (max/mean relative error on the samples) is kept in ``fit_stats``.
        """
        p = cls._as_samples(prefill_samples, "prefill")
        d = cls._as_samples(decode_samples, "decode")
        xp = np.column_stack([np.ones(len(p)), p[:, 0], 2.0 * p[:, 1] - p[:, 0]])
        xd = np.column_stack([np.ones(len(d)), d[:, 1], d[:, 0]])
        cp, sp = cls._solve(xp, p[:, 2], nonneg, relative)
        cd, sd = cls._solve(xd, d[:, 2], nonneg, relative)
        out = cls(tuple(cp), tuple(cd), **kw)
        out.fit_stats = {f"prefill_{k}": v for k, v in sp.items()} | {f"decode_{k}": v for k, v in sd.items()}
        return out

    @classmethod
    def from_cost_model(
        cls,
        other: CostModel,
        grid: dict[str, Iterable[tuple[float, float]]] | None = None,
        *,
        nonneg: bool = True,
        relative: bool = True,
    ) -> PolynomialCostModel:
        """Fit to ``other``'s iteration times on ``grid`` ({"prefill": [(N, A)], "decode": [(B, C)]},
        :func:`default_grid` when None); ``other`` also serves kv capacity/transfer queries."""
        grid = default_grid() if grid is None else grid
        pre = [(n, a, other.iteration_time(n, a, 0, 0)) for n, a in grid["prefill"]]
        dec = [(b, c, other.iteration_time(0, 0.0, b, c)) for b, c in grid["decode"]]
        return cls.fit(pre, dec, nonneg=nonneg, relative=relative, memory=other)

    # --- memory and transfers (delegated) ----------------------------------------------------
    def _mem(self) -> CostModel:
        if self.memory is None:
            raise ValueError("this PolynomialCostModel has no model/gpu; pass model=, gpu= (or memory=)")
        return self.memory

    def kv_capacity_tokens(self) -> int:
        """Delegated to the roofline (or ``memory``) model."""
        return self._mem().kv_capacity_tokens()

    def kv_transfer_time(self, tokens: int) -> float:
        """Delegated to the roofline (or ``memory``) model."""
        return self._mem().kv_transfer_time(tokens)

    def weight_transfer_time(self, layers: int) -> float:
        """Delegated to the roofline (or ``memory``) model."""
        return self._mem().weight_transfer_time(layers)
