"""Closed-form sums of decode-only stretches (the simulator's fast path).

In a stretch of decode-only iterations with a fixed batch of n sequences whose total context is
C₀ at the first one, iteration j (0-based) costs f(C₀ + j·n) with f(C) = iteration_time(0, 0, n, C).
When f is, on the contexts that can occur, the maximum of at most two affine functions,

    f(C) = max(a₁ + b₁·C, a₂ + b₂·C),  b₁ ≤ b₂          (a roofline: max(compute, memory) + constants;
                                                          DistServe's polynomial: one line)

the iteration times form two arithmetic sequences: dt_j = p₁ + q₁·j before the crossover index
j× = ⌈(C× − C₀)/n⌉ (C× = (a₁ − a₂)/(b₂ − b₁)) and dt_j = p₂ + q₂·(j − j×) after it, with
p = a + b·C_start, q = b·n, so k iterations take S(k) = p·k + q·k(k−1)/2 per piece. The number of
iterations that end by the horizon H solves t₀ + S(k) ≤ H — a quadratic, rounded and then checked
with S itself. The stretch then costs O(1) instead of k cost-model calls.

The two lines are read off f by probing it near both ends of the feasible range
[n, n + c_max] and accepted only if f matches max(line₁, line₂) within ``rtol`` (1e-9 relative) at
66 more points spread linearly and geometrically over the range; otherwise (e.g. a table model that
interpolates measurements) the simulator evaluates f iteration by iteration. A convex function
that agrees with the chord at interior points is affine between them, so for the convex models
this accepts (roofline, polynomial) the check is a proof up to the points' spacing. Sums in closed
form differ from iteration-by-iteration sums by float rounding only (relative ~1e-12).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_MISSING = object()


class DecodeLines:
    """Per batch size n: the two lines of f (or None when f is not piecewise affine)."""

    __slots__ = ("cost", "c_max", "rtol", "cache")

    def __init__(self, cost: Any, c_max: int, rtol: float = 1e-9):
        self.cost = cost
        self.c_max = int(c_max)
        self.rtol = rtol
        self.cache: dict[int, tuple | None] = {}

    def get(self, n: int) -> tuple | None:
        r = self.cache.get(n, _MISSING)
        if r is _MISSING:
            r = self.cache[n] = self._probe(n)
        return r

    def _probe(self, n: int) -> tuple | None:
        """(a1, b1, a2, b2, c_hi, cx) with cx the crossover context (inf for one line), or None."""
        cost = self.cost.iteration_time
        lo = n
        hi = n + self.c_max
        if hi - lo < 64:
            return None
        d = max((hi - lo) // 1024, 1)
        try:
            f_lo, f_lo2, f_hi2, f_hi = (cost(0, 0.0, n, c) for c in (lo, lo + d, hi - d, hi))
            b1 = (f_lo2 - f_lo) / d
            a1 = f_lo - b1 * lo
            b2 = (f_hi - f_hi2) / d
            a2 = f_hi - b2 * hi
            if not all(math.isfinite(x) for x in (a1, b1, a2, b2)):
                return None
            pts = np.unique(np.concatenate([np.linspace(lo, hi, 33), np.geomspace(lo, hi, 33)]).astype(np.int64))
            rtol = self.rtol
            for c in pts.tolist():
                v = cost(0, 0.0, n, c)
                m = max(a1 + b1 * c, a2 + b2 * c)
                if not v > 0 or abs(v - m) > rtol * v:
                    return None
        except (ValueError, TypeError, ArithmeticError):
            return None
        if b2 <= b1 or abs((a1 + b1 * hi) - (a2 + b2 * hi)) <= rtol * f_hi:
            # one line covers the range (or the lines agree on it): keep the first, no crossover
            return (a1, b1, a1, b1, hi, math.inf)
        cx = (a1 - a2) / (b2 - b1)
        return (a1, b1, a2, b2, hi, cx)


def _series(p: float, q: float, m: int) -> float:
    """p·m + q·m(m−1)/2: m iterations of dt_j = p + q·j."""
    return p * m + q * (m * (m - 1) * 0.5)


def _solve(p: float, q: float, budget: float) -> int:
    """Largest m >= 0 with p·m + q·m(m−1)/2 <= budget (approximately; callers correct by ±1)."""
    if budget <= 0:
        return 0
    if q <= 0.0:
        return int(budget / p)
    b = p - 0.5 * q
    return int((-b + math.sqrt(b * b + 2.0 * q * budget)) / q)


class Stretch:
    """Iteration times of one decode-only stretch: t(k) = t0 + S(k) in closed form."""

    __slots__ = ("t0", "p1", "q1", "jx", "p2", "q2", "s_jx")

    def __init__(self, lines: tuple, n: int, c0: int, t0: float):
        a1, b1, a2, b2, _, cx = lines
        self.t0 = t0
        self.p1 = a1 + b1 * c0
        self.q1 = b1 * n
        if cx == math.inf:
            self.jx = 1 << 62
        else:
            self.jx = max(0, math.ceil((cx - c0) / n))
        self.p2 = a2 + b2 * (c0 + self.jx * n) if self.jx < 1 << 62 else 0.0
        self.q2 = b2 * n
        self.s_jx = _series(self.p1, self.q1, self.jx) if self.jx < 1 << 62 else math.inf

    def end(self, k: int) -> float:
        """Time at which the k-th iteration of the stretch ends (t0 for k = 0)."""
        jx = self.jx
        if k <= jx:
            return self.t0 + _series(self.p1, self.q1, k)
        return self.t0 + (self.s_jx + _series(self.p2, self.q2, k - jx))

    def dt(self, j: int) -> float:
        """Duration of iteration j (0-based)."""
        if j < self.jx:
            return self.p1 + self.q1 * j
        return self.p2 + self.q2 * (j - self.jx)

    def count(self, kmax: int, horizon: float) -> int:
        """Largest k <= kmax whose end is <= horizon."""
        if self.end(kmax) <= horizon:
            return kmax
        budget = horizon - self.t0
        if self.jx >= kmax or self.s_jx > budget:
            k = _solve(self.p1, self.q1, budget)
        else:
            k = self.jx + _solve(self.p2, self.q2, budget - self.s_jx)
        k = min(max(k, 0), kmax - 1)
        while k > 0 and self.end(k) > horizon:
            k -= 1
        while k + 1 < kmax and self.end(k + 1) <= horizon:
            k += 1
        return k

    def itl_pieces(self, k: int, n: int) -> list[tuple[float, float, int, int]]:
        """(p, q, m, n): m iterations of dt_j = p + q·j, each giving n sequences one token."""
        jx = self.jx
        if k <= jx:
            return [(self.p1, self.q1, k, n)] if k else []
        out = [(self.p1, self.q1, jx, n)] if jx else []
        out.append((self.p2, self.q2, k - jx, n))
        return out


def expand_pieces(pieces: list[tuple[float, float, int, int]]) -> np.ndarray:
    """All inter-token latencies of the recorded stretches: p + q·j repeated n times, j < m."""
    if not pieces:
        return np.zeros(0)
    arr = np.asarray(pieces, dtype=np.float64)
    p, q, m, n = arr[:, 0], arr[:, 1], arr[:, 2].astype(np.int64), arr[:, 3].astype(np.int64)
    start = np.repeat(np.cumsum(m) - m, m)
    j = np.arange(int(m.sum())) - start
    dt = np.repeat(p, m) + np.repeat(q, m) * j
    return np.repeat(dt, np.repeat(n, m))
