"""Linearly separable datasets with a known margin γ, and an independent margin solver.

Every dataset has ‖xᵢ‖ ≤ 1 (so R = 1 in Novikoff's bound) and labels yᵢ ∈ {±1}; the methods use
the signed points zᵢ = yᵢxᵢ. The margin is γ* = max_{‖w‖=1} minᵢ zᵢᵀw, which for separable data
equals the distance from the origin to the convex hull of the zᵢ (hard-margin SVM without bias):
γ* = min_{p ∈ simplex} ‖Σᵢ pᵢzᵢ‖. Two families:

``pinned_margin_dataset`` (generic data, margin exactly γ by construction)
    z₁ = γe₁ + s e₂ and z₂ = γe₁ − s e₂ (s = √(1−γ²)) pin the margin: for any unit w,
    min(z₁ᵀw, z₂ᵀw) = γw₁ − s|w₂| ≤ γ, with equality only at w = e₁. The other n − 2 points
    have e₁-component aᵢ ~ γ + (1−γ)U(0,1) ≥ γ and an orthogonal part rᵢuᵢ, with
    rᵢ = √(1−aᵢ²)·U(½, 1) and uᵢ the unit vector along ξᵢ ~ N(skew·e₂, I) in span(e₂…e_d). A
    positive ``skew`` tilts the data mean away from the max-margin direction e₁, so a large first
    GD step overshoots and the objective oscillates (the "edge of stability" regime). Rows are
    shuffled, so the pinned pair sits at random positions.

``chain_dataset`` (our hard family for arXiv 2504.04105; the paper's own construction is not public
here, so this is our choice)
    T = ⌈1/γ²⌉ chain vertices vₖ = (eₖ − eₖ₊₁)/√2 (k = 1…T), whose Gram matrix is tridiagonal with
    vₖᵀvₖ₊₁ = −½ (neighbours anti-correlated, all others orthogonal). Points zₖ = γe₀ + s vₖ, and z₁
    is repeated ⌈decoy_factor·T⌉ times so that the data mean — the first gradient of any batch
    method — points at the start of the chain instead of at the max-margin direction. Adding the
    first k−1 chain points to w leaves zₖ misclassified while (k−1)γ² ≤ s²/2, so separators must
    be assembled from ~1/(2γ²) near-orthogonal directions, one after the other: the Perceptron
    needs exactly ⌊s²/(2γ²)⌋ + 1 updates (see ``chain_perceptron_updates``). Closed-form margin:
    the min-norm point of conv{vₖ} is Σpₖvₖ with pₖ ∝ k(T+1−k), of squared norm
    6/(T(T+1)(T+2)), so γ*² = γ² + s²·6/(T(T+1)(T+2)) (γ* → γ as T grows).

``margin_bounds`` solves the hull problem numerically (non-negative least squares on the dual) and
returns a certified bracket lower ≤ γ* ≤ upper, an independent check of both constructions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls


@dataclass(frozen=True)
class Dataset:
    """Points ``X`` (n, d) with labels ``y`` (n,) in {±1}; ``margin`` is the exact γ*."""

    X: np.ndarray
    y: np.ndarray
    margin: float
    name: str

    @property
    def Z(self) -> np.ndarray:
        """Signed points zᵢ = yᵢxᵢ (rows)."""
        return self.X * self.y[:, None]

    @property
    def radius(self) -> float:
        """R = maxᵢ ‖xᵢ‖."""
        return float(np.linalg.norm(self.X, axis=1).max())


def _with_random_labels(Z: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.choice(np.array([-1.0, 1.0]), size=Z.shape[0])
    return Z * y[:, None], y


def pinned_margin_dataset(n: int, dim: int, margin: float, skew: float = 0.0, seed: int = 0) -> Dataset:
    """Generic separable data with margin exactly ``margin`` (= γ) and max-margin direction e₁."""
    if n < 3 or dim < 2:
        raise ValueError("pinned_margin_dataset needs n >= 3 and dim >= 2")
    if not 0 < margin < 1:
        raise ValueError("margin must lie in (0, 1)")
    rng = np.random.default_rng(seed)
    g, s = margin, math.sqrt(1 - margin**2)
    Z = np.zeros((n, dim))
    Z[0, :2] = (g, s)
    Z[1, :2] = (g, -s)
    a = g + (1 - g) * rng.uniform(0.0, 1.0, n - 2)
    xi = rng.standard_normal((n - 2, dim - 1))
    xi[:, 0] += skew
    u = xi / np.linalg.norm(xi, axis=1, keepdims=True)
    r = np.sqrt(1 - a**2) * rng.uniform(0.5, 1.0, n - 2)
    Z[2:, 0] = a
    Z[2:, 1:] = u * r[:, None]
    X, y = _with_random_labels(Z, rng)
    order = rng.permutation(n)  # the pinned pair at random positions (matters for the Perceptron only)
    return Dataset(X[order], y[order], float(margin), f"pinned(n={n}, d={dim}, γ={margin:g}, skew={skew:g})")


def chain_length(margin: float) -> int:
    """T = ⌈1/γ²⌉ chain vertices."""
    return math.ceil(1.0 / margin**2 - 1e-9)


def chain_margin(margin: float, length: int) -> float:
    """Exact margin of ``chain_dataset``: γ*² = γ² + (1−γ²)·6/(T(T+1)(T+2))."""
    T = length
    return math.sqrt(margin**2 + (1 - margin**2) * 6.0 / (T * (T + 1) * (T + 2)))


def chain_perceptron_updates(margin: float) -> int:
    """Updates of the cyclic Perceptron on ``chain_dataset`` (stored order): ⌊(1−γ²)/(2γ²)⌋ + 1.

    With w = z₁ + … + z_{k−1}, the next chain point has margin (k−1)γ² − s²/2 (only its left
    neighbour is anti-correlated), so it is updated iff (k−1)γ² ≤ s²/2; afterwards every point has
    margin ≥ kγ² > 0 except the first one not updated, whose margin kγ² − s²/2 is > 0 too.
    """
    return math.floor((1 - margin**2) / (2 * margin**2) + 1e-12) + 1


def chain_dataset(margin: float, decoy_factor: float = 1.0, seed: int = 0) -> Dataset:
    """The heavy-start chain family (see the module docstring); ``margin`` is the nominal γ."""
    if not 0 < margin < 1:
        raise ValueError("margin must lie in (0, 1)")
    if decoy_factor < 0:
        raise ValueError("decoy_factor must be >= 0")
    T = chain_length(margin)
    g, s = margin, math.sqrt(1 - margin**2)
    Z = np.zeros((T, T + 2))
    Z[:, 0] = g
    k = np.arange(T)
    Z[k, 1 + k] = s / math.sqrt(2)
    Z[k, 2 + k] = -s / math.sqrt(2)
    copies = max(1, math.ceil(decoy_factor * T))
    Z = np.vstack([np.repeat(Z[:1], copies, axis=0), Z[1:]])
    rng = np.random.default_rng(seed)
    X, y = _with_random_labels(Z, rng)
    return Dataset(X, y, chain_margin(margin, T), f"chain(γ={margin:g}, T={T}, decoys={copies})")


def margin_bounds(Z: np.ndarray, weight: float = 1e4) -> tuple[float, float, np.ndarray]:
    """Certified bracket on γ* = min_{p ∈ simplex} ‖Zᵀp‖ from a dual solve (independent of any construction).

    Solves min_{p ≥ 0} ‖Zᵀp‖² + weight²(1ᵀp − 1)² by NNLS (Lawson–Hanson), renormalises p onto the
    simplex and returns ``(lower, upper, w)``: upper = ‖Zᵀp‖ ≥ γ* (any simplex point), and
    lower = minᵢ zᵢᵀw ≤ γ* for the unit vector w = Zᵀp/‖Zᵀp‖ (any unit vector).
    """
    Z = np.asarray(Z, dtype=float)
    n = Z.shape[0]
    A = np.vstack([Z.T, np.full((1, n), weight)])
    b = np.zeros(A.shape[0])
    b[-1] = weight
    p, _ = nnls(A, b, maxiter=50 * n)
    p = p / p.sum()
    v = Z.T @ p
    upper = float(np.linalg.norm(v))
    w = v / upper
    lower = float((Z @ w).min())
    return lower, upper, w
