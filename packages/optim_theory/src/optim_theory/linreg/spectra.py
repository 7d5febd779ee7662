"""Spectra and priors for linear-regression experiments.

Power law: λ_i = i^(−a), i = 1..d. Source condition: the initial error in the eigenbasis has
λ_i (w₀ − w*)_i² = i^(−b), i.e. m0_i = i^(a − b); b controls how much of the signal sits in
the tail of the spectrum (larger b: easier target).
"""

from __future__ import annotations

import numpy as np


def power_law(dim: int, a: float) -> np.ndarray:
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if a <= 0:
        raise ValueError(f"power-law exponent a must be > 0, got {a}")
    return np.arange(1, dim + 1, dtype=float) ** (-a)


def source_prior(eigs: np.ndarray, b: float) -> np.ndarray:
    """m0 with λ_i m0_i = i^(−b) for i = 1..d (eigenvalues taken in the given order)."""
    eigs = np.asarray(eigs, dtype=float)
    if np.any(eigs <= 0):
        raise ValueError("source_prior needs strictly positive eigenvalues")
    i = np.arange(1, eigs.size + 1, dtype=float)
    return i ** (-b) / eigs
