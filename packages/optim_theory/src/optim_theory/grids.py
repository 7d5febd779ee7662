"""Small numerical helpers shared by the experiments: geometric integer grids, log-log fits."""

from __future__ import annotations

import numpy as np


def geometric_int_grid(lo: int, hi: int, per_octave: int) -> np.ndarray:
    """Distinct integers on a geometric grid from ``lo`` to ``hi`` (ratio 2^{1/per_octave}), both ends in."""
    if not 1 <= lo <= hi or per_octave < 1:
        raise ValueError("need 1 <= lo <= hi and per_octave >= 1")
    count = int(np.ceil(np.log2(hi / lo) * per_octave)) + 1
    return np.unique(np.round(np.geomspace(lo, hi, max(count, 1))).astype(np.int64))


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (the exponent of a power law y ∝ x^slope)."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])
