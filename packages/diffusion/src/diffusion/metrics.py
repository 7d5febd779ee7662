"""Sample-quality and collapse metrics on sample arrays (N, D).

The paper 2508.16154 measures "collapse errors" (ODE samples over-concentrated locally) with a
metric whose formula is not public here, so this module implements clearly named, documented
proxies. All functions are numpy-first: they take arrays of shape (N, D) (torch tensors are
converted; trailing dimensions of images (N, C, H, W) are flattened; a 1-D array is N points in
1-D) and compute in float64. ``gen`` is the generated set, ``real`` an independent sample of the
data distribution.

Nearest-neighbour (NN) statistics. For a set X = {x_1..x_n}, d_k(x_i; X) is the distance from x_i to
its k-th nearest *other* point of X (self excluded; exact duplicates give 0). They come from
``scipy.spatial.cKDTree`` in low dimension (D ≤ 16) and above that from a blocked brute-force scan
(neighbours selected by ‖a‖² + ‖b‖² − 2a·b in float64, their distances then recomputed directly),
because there a k-d tree degenerates into a slower brute force.

==============================  ==================================================  ==========================
metric                          formula                                             gen ~ real / collapsed
==============================  ==================================================  ==========================
``nn_ratio``                    mean_i d_1(g_i; G) / mean_i d_1(r_i; R), |G| = |R|  1 / < 1
``near_duplicate_rate``         mean_i 1[d_1(g_i; G) < Q_q({d_1(r; R)})]            q / > q (→ 1)
``density`` (Naeem 2020)        1/(kM) Σ_j Σ_i 1[‖g_j − r_i‖ ≤ d_k(r_i; R)]         1 in expectation / > 1
``coverage`` (Naeem 2020)       1/N Σ_i 1[min_j ‖g_j − r_i‖ ≤ d_k(r_i; R)]          1 − Π_{i≤k}(N−i)/(N+M−i) / <
``precision`` (Kynkäänniemi)    1/M Σ_j 1[∃i: ‖g_j − r_i‖ ≤ d_k(r_i; R)]            = recall in expectation
``recall`` (Kynkäänniemi)       1/N Σ_i 1[∃j: ‖r_i − g_j‖ ≤ d_k(g_j; G)]            drops when modes vanish
``occupancy_tv``                ½ Σ_m |occ_m − w_m|                                 ≈ 0 / > 0
``off_mode_mass``               mean_i 1[min_m ‖g_i − μ_m‖_{Σ_m} > √χ²_D(0.99)]     ≤ 0.01 / → 0 (spread: > 0.01)
``spread_ratio``                Σ_i ‖g_i − μ_{a_i}‖² / Σ_i tr Σ_{a_i}               ≈ 1 / < 1 (c² for shrink c)
==============================  ==================================================  ==========================

(N = |R| real points, M = |G| generated points, k the neighbourhood size, a_i the mode assigned to
point i.) The density and coverage expectations are exact for continuous identical distributions
(Naeem et al. 2020, arXiv 2002.09797: a rank argument — among the other N − 1 real points and a
generated point, ordered by distance to r_i, every ordering is equally likely). Precision/recall
follow Kynkäänniemi et al. 2019 (arXiv 1904.06991), with the same k-NN balls.

Scale note: NN distances shrink like n^{-1/D}, so the two NN sets are compared at equal size
(the larger one is subsampled without replacement with ``seed``).

Also here: :func:`per_sigma_error` (denoiser error against an exact reference per noise level σ),
:func:`bootstrap_ci` (percentile bootstrap over seeds) and :func:`collapse_report` (all scalars in
one flat dict with the stable keys :data:`REPORT_KEYS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import linalg, stats
from scipy.spatial import cKDTree

__all__ = [
    "REPORT_KEYS",
    "BootstrapCI",
    "ModeStatistics",
    "as_samples",
    "knn_distances",
    "nn_distance_ratio",
    "near_duplicate_rate",
    "coverage_density",
    "expected_coverage",
    "precision_recall",
    "mode_statistics",
    "per_sigma_error",
    "bootstrap_ci",
    "bootstrap_table",
    "collapse_report",
]

#: above this dimension the exact brute-force scan beats a k-d tree (measured: D = 64, N = 5000:
#: cKDTree 1.4 s, chunked scan 0.4 s; D = 8: 0.14 s vs 0.4 s)
KDTREE_MAX_DIM = 16
#: elements of one (rows × M) distance block in the brute-force scans (~32 MiB of float64)
_BLOCK_ELEMENTS = 4_000_000
#: block side of the symmetric k-NN scan
_KNN_BLOCK = 1024

#: keys of :func:`collapse_report`, always all present (NaN when not applicable)
REPORT_KEYS: tuple[str, ...] = (
    "n",
    "dim",
    "nn_ratio",
    "nn_ratio_median",
    "near_duplicate_rate",
    "near_duplicate_quantile",
    "density",
    "coverage",
    "coverage_expected",
    "precision",
    "recall",
    "occupancy_tv",
    "modes_occupied",
    "off_mode_mass",
    "spread_ratio",
    "occupancy_tv_real",
    "off_mode_mass_real",
    "spread_ratio_real",
)


# ----------------------------------------------------------------------------------------------
# conversion and nearest neighbours
# ----------------------------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def as_samples(x: Any) -> np.ndarray:
    """Convert ``x`` (numpy array, torch tensor or nested sequence) to a float64 array (N, D).

    A 1-D input is N points in one dimension; inputs with more than two dimensions (images
    (N, C, H, W)) are flattened to (N, C·H·W). Raises on non-finite values or N = 0.
    """
    a = _to_numpy(x)
    if a.ndim == 0:
        raise ValueError("samples must have at least one dimension (N,) or (N, D)")
    if a.ndim == 1:
        a = a[:, None]
    elif a.ndim > 2:
        a = a.reshape(a.shape[0], -1)
    if a.shape[0] == 0:
        raise ValueError("empty sample set")
    if not np.all(np.isfinite(a)):
        raise ValueError("samples contain NaN or inf")
    return np.ascontiguousarray(a)


def _blocks(n_rows: int, n_cols: int) -> Iterator[slice]:
    step = max(1, _BLOCK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def _sq_dist_block(a_m2: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """‖a_i − b_j‖² = ‖a_i‖² + ‖b_j‖² − 2 a_i·b_j for a block (``a_m2`` = −2a precomputed).

    Not clipped: float64 cancellation can leave values slightly below 0 for (near-)coincident
    points; callers clip before taking square roots.
    """
    d2 = a_m2 @ b.T
    d2 += a_sq[:, None]
    d2 += b_sq[None, :]
    return d2


def _smallest(d2: np.ndarray, k: int, axis: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest values along ``axis`` (unordered) as rows, with their indices + ``offset``."""
    m = d2.shape[axis]
    if k >= m:
        idx = np.broadcast_to(np.arange(m)[None, :] if axis == 1 else np.arange(m)[:, None], d2.shape)
    else:
        idx = np.argpartition(d2, k - 1, axis=axis)
        idx = idx[:, :k] if axis == 1 else idx[:k]
    vals = np.take_along_axis(d2, idx, axis=axis)
    if axis == 0:
        vals, idx = vals.T, idx.T
    return np.ascontiguousarray(vals), idx + offset


def _knn_brute(x: np.ndarray, k: int, block: int = _KNN_BLOCK) -> np.ndarray:
    """Exact k-NN distances by a blocked scan of the upper triangle of the distance matrix.

    Each block pair (I, J ≥ I) is computed once and serves both its rows (I's candidates) and
    its columns (J's candidates), halving the matrix products; per row the k nearest of all
    candidates are kept, and their distances recomputed directly as ‖x_i − x_j‖ (no cancellation,
    so duplicates give exactly 0).
    """
    n = len(x)
    sq = np.einsum("ij,ij->i", x, x)
    x_m2 = -2.0 * x
    starts = list(range(0, n, block))
    cands: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in starts]
    for bi, i0 in enumerate(starts):
        rows = slice(i0, min(i0 + block, n))
        for bj in range(bi, len(starts)):
            j0 = starts[bj]
            cols = slice(j0, min(j0 + block, n))
            d2 = _sq_dist_block(x_m2[rows], sq[rows], x[cols], sq[cols])
            if bi == bj:
                np.fill_diagonal(d2, np.inf)  # exclude self
            cands[bi].append(_smallest(d2, k, axis=1, offset=j0))
            if bj != bi:
                cands[bj].append(_smallest(d2, k, axis=0, offset=i0))
    out = np.empty((n, k))
    for bi, i0 in enumerate(starts):
        vals = np.concatenate([c[0] for c in cands[bi]], axis=1)
        cols = np.concatenate([c[1] for c in cands[bi]], axis=1)
        _, pick = _smallest(vals, k, axis=1, offset=0)
        nbr = np.take_along_axis(cols, pick, axis=1)  # (rows, k) neighbour indices
        rows = np.arange(i0, i0 + nbr.shape[0])
        diff = x[nbr] - x[rows, None, :]
        out[rows] = np.sort(np.sqrt(np.einsum("ijk,ijk->ij", diff, diff)), axis=1)
    return out


def knn_distances(x: Any, k: int = 1, *, backend: str = "auto") -> np.ndarray:
    """Distances (N, k) from each point of ``x`` to its k nearest *other* points, ascending.

    Column j−1 is d_j(x_i; X). ``backend``: "kdtree" (scipy cKDTree), "brute" (exact chunked
    scan) or "auto" (k-d tree for D ≤ :data:`KDTREE_MAX_DIM`). Both return exact distances (the
    brute-force neighbour selection uses ‖a‖² + ‖b‖² − 2a·b, so only ties within float64 rounding can swap).
    """
    x = as_samples(x)
    n, dim = x.shape
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < N for k-NN distances, got k={k}, N={n}")
    if backend == "auto":
        backend = "kdtree" if dim <= KDTREE_MAX_DIM else "brute"
    if backend == "kdtree":
        d, _ = cKDTree(x).query(x, k=k + 1)
        # column 0 is the point itself (or an exact duplicate, also at distance 0)
        return np.asarray(d[:, 1:], dtype=np.float64)
    if backend != "brute":
        raise ValueError(f"unknown backend {backend!r}: use 'auto', 'kdtree' or 'brute'")
    return _knn_brute(x, k)


def _equal_size(gen: np.ndarray, real: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Subsample (without replacement, seeded) both sets to m = min(|G|, |R|, n)."""
    m = min(len(gen), len(real), n if n is not None else len(gen))
    rng = np.random.default_rng(seed)
    if len(gen) > m:
        gen = gen[np.sort(rng.choice(len(gen), size=m, replace=False))]
    if len(real) > m:
        real = real[np.sort(rng.choice(len(real), size=m, replace=False))]
    return gen, real


def _reducer(reduce: str) -> Callable[[np.ndarray], float]:
    if reduce == "mean":
        return lambda v: float(np.mean(v))
    if reduce == "median":
        return lambda v: float(np.median(v))
    raise ValueError(f"reduce must be 'mean' or 'median', got {reduce!r}")


# ----------------------------------------------------------------------------------------------
# nearest-neighbour proxies
# ----------------------------------------------------------------------------------------------


def nn_distance_ratio(
    gen: Any, real: Any, *, reduce: str = "mean", n: int | None = None, seed: int = 0, backend: str = "auto"
) -> float:
    """Nearest-neighbour distance ratio  ρ = red_i d_1(g_i; G) / red_i d_1(r_i; R).

    ``red`` is the mean (default) or median over points; d_1 is the distance to the nearest other
    point of the same set. Both sets are brought to the same size m = min(|G|, |R|, n) by seeded
    subsampling, because NN distances scale like m^{-1/D}.

    ρ ≈ 1 when gen ~ real (log ρ has mean exactly 0 by symmetry); ρ < 1 means the generated points
    are locally over-concentrated ("collapsed"): shrinking a distribution by a factor c towards a
    centre gives ρ ≈ c, near-duplicates give ρ → 0. ρ > 1 means gen is more spread than real.
    """
    g, r = _equal_size(as_samples(gen), as_samples(real), n, seed)
    red = _reducer(reduce)
    return red(knn_distances(g, 1, backend=backend)[:, 0]) / red(knn_distances(r, 1, backend=backend)[:, 0])


def _near_duplicate(d_gen: np.ndarray, d_real: np.ndarray, quantile: float) -> float:
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    threshold = np.quantile(d_real, quantile)
    return float(np.mean(d_gen < threshold))


def near_duplicate_rate(
    gen: Any, real: Any, quantile: float = 0.01, *, n: int | None = None, seed: int = 0, backend: str = "auto"
) -> float:
    """Fraction of generated points with an abnormally close generated neighbour.

    rate = mean_i 1[d_1(g_i; G) < τ],  τ = the ``quantile``-quantile (numpy's linear interpolation)
    of the real-real NN distances {d_1(r_j; R)}, at equal set sizes (seeded subsampling as in
    :func:`nn_distance_ratio`).

    ≈ ``quantile`` when gen ~ real; larger means collapsed (near-duplicates: → 1).
    """
    g, r = _equal_size(as_samples(gen), as_samples(real), n, seed)
    return _near_duplicate(
        knn_distances(g, 1, backend=backend)[:, 0], knn_distances(r, 1, backend=backend)[:, 0], quantile
    )


# ----------------------------------------------------------------------------------------------
# k-NN manifold metrics (density/coverage, precision/recall)
# ----------------------------------------------------------------------------------------------


@dataclass
class _Scan:
    in_real_balls: np.ndarray  # per gen point: number of real balls B(r_i, d_k(r_i)) containing it
    min_to_gen: np.ndarray  # per real point: distance to its nearest generated point
    in_gen_balls: np.ndarray | None  # per real point: inside some B(g_j, d_k(g_j))?


def _manifold_scan(real: np.ndarray, gen: np.ndarray, radius_real: np.ndarray, radius_gen: np.ndarray | None) -> _Scan:
    """One exact chunked pass over all (gen, real) pairs."""
    r_sq = np.einsum("ij,ij->i", real, real)
    g_sq = np.einsum("ij,ij->i", gen, gen)
    g_m2 = -2.0 * gen
    rr2 = radius_real**2
    rg2 = None if radius_gen is None else radius_gen**2
    counts = np.zeros(len(gen), dtype=np.int64)
    min_d2 = np.full(len(real), np.inf)
    in_gen = None if rg2 is None else np.zeros(len(real), dtype=bool)
    for rows in _blocks(len(gen), len(real)):
        d2 = _sq_dist_block(g_m2[rows], g_sq[rows], real, r_sq)  # (rows of gen, all real)
        counts[rows] = np.count_nonzero(d2 <= rr2[None, :], axis=1)
        np.minimum(min_d2, d2.min(axis=0), out=min_d2)
        if in_gen is not None:
            in_gen |= (d2 <= rg2[rows, None]).any(axis=0)
    return _Scan(counts, np.sqrt(np.maximum(min_d2, 0.0)), in_gen)


def expected_coverage(n_real: int, n_gen: int, k: int) -> float:
    """E[coverage] for identical continuous distributions: 1 − Π_{i=1..k} (N−i)/(N+M−i) (Naeem 2020)."""
    i = np.arange(1, k + 1)
    return float(1.0 - np.prod((n_real - i) / (n_real + n_gen - i)))


def coverage_density(real: Any, gen: Any, k: int = 5, *, backend: str = "auto") -> dict[str, float]:
    """Density and coverage of Naeem et al. 2020 (arXiv 2002.09797), N real, M generated points.

    With B_i = the closed ball around r_i of radius d_k(r_i; R) (k-th nearest other real point):

        density  = 1/(k·M) · Σ_j Σ_i 1[g_j ∈ B_i]
        coverage = 1/N · Σ_i 1[∃ j: g_j ∈ B_i]

    For gen ~ real (continuous): E[density] = 1 exactly and E[coverage] = 1 − Π_{i=1..k} (N−i)/(N+M−i)
    (≈ 1 − 2^{−k} = 0.969 for M = N, k = 5; see :func:`expected_coverage`). Collapse: density > 1
    when gen piles up in dense real regions; coverage < 1 − … when regions (modes) of the real data
    receive no generated point (dropping one of K equal modes caps coverage near (K − 1)/K).
    Returns {"density", "coverage"}.
    """
    r, g = as_samples(real), as_samples(gen)
    radius = knn_distances(r, k, backend=backend)[:, k - 1]
    scan = _manifold_scan(r, g, radius, None)
    return _density_coverage(scan, radius, k)


def _density_coverage(scan: _Scan, radius_real: np.ndarray, k: int) -> dict[str, float]:
    return {
        "density": float(scan.in_real_balls.sum() / (k * len(scan.in_real_balls))),
        "coverage": float(np.mean(scan.min_to_gen <= radius_real)),
    }


def precision_recall(real: Any, gen: Any, k: int = 5, *, backend: str = "auto") -> dict[str, float]:
    """Improved precision and recall of Kynkäänniemi et al. 2019 (arXiv 1904.06991), k-NN manifolds.

        precision = 1/M · Σ_j 1[∃ i: ‖g_j − r_i‖ ≤ d_k(r_i; R)]   (gen inside the real manifold)
        recall    = 1/N · Σ_i 1[∃ j: ‖r_i − g_j‖ ≤ d_k(g_j; G)]   (real inside the gen manifold)

    For gen ~ real with M = N, E[precision] = E[recall] (the definitions swap under R ↔ G); both
    are close to but below 1. Collapse onto part of the data lowers recall (and inflates the
    generated balls less than the real ones); off-manifold samples lower precision.
    Returns {"precision", "recall"}.
    """
    r, g = as_samples(real), as_samples(gen)
    rad_r = knn_distances(r, k, backend=backend)[:, k - 1]
    rad_g = knn_distances(g, k, backend=backend)[:, k - 1]
    return _precision_recall(_manifold_scan(r, g, rad_r, rad_g))


def _precision_recall(scan: _Scan) -> dict[str, float]:
    assert scan.in_gen_balls is not None
    return {"precision": float(np.mean(scan.in_real_balls > 0)), "recall": float(np.mean(scan.in_gen_balls))}


# ----------------------------------------------------------------------------------------------
# mixture-aware statistics
# ----------------------------------------------------------------------------------------------


def _mixture_covs(covs: Any, std: Any, k: int, dim: int) -> np.ndarray:
    """Normalise to isotropic variances [K], diagonal variances [K, D] or full covariances [K, D, D]."""
    if (covs is None) == (std is None):
        raise ValueError("give exactly one of covs ([K,D,D], [K,D], [K] or scalar variance) or std ([K] or scalar)")
    if std is not None:
        s = _to_numpy(std)
        if s.ndim > 1:
            raise ValueError("std must be a scalar or one value per mode [K]")
        return np.broadcast_to(s**2, (k,)).copy()
    c = _to_numpy(covs)
    if c.ndim == 0:
        return np.full(k, float(c))
    if c.shape in ((k,), (k, dim), (k, dim, dim)):
        return c.copy()
    raise ValueError(f"covs of shape {c.shape} do not fit K={k} modes in D={dim}: use [K,D,D], [K,D], [K] or a scalar")


def _mode_distances(x: np.ndarray, means: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squared Euclidean distances e2 (N,K), squared Mahalanobis distances m2 (N,K), log|Σ_k| (K,)."""
    k, dim = means.shape
    e2 = np.empty((len(x), k))
    m2 = np.empty((len(x), k))
    logdet = np.empty(k)
    for m in range(k):
        diff = x - means[m]
        e2[:, m] = np.einsum("ij,ij->i", diff, diff)
        if covs.ndim == 1:
            m2[:, m] = e2[:, m] / covs[m]
            logdet[m] = dim * math.log(covs[m])
        elif covs.ndim == 2:
            m2[:, m] = np.einsum("ij,ij->i", diff, diff / covs[m])
            logdet[m] = float(np.sum(np.log(covs[m])))
        else:
            chol = linalg.cholesky(covs[m], lower=True)
            z = linalg.solve_triangular(chol, diff.T, lower=True)
            m2[:, m] = np.einsum("ij,ij->j", z, z)
            logdet[m] = 2.0 * float(np.sum(np.log(np.diag(chol))))
    return e2, m2, logdet


def _traces(covs: np.ndarray, dim: int) -> np.ndarray:
    if covs.ndim == 1:
        return dim * covs
    if covs.ndim == 2:
        return covs.sum(axis=1)
    return np.trace(covs, axis1=1, axis2=2)


@dataclass(frozen=True)
class ModeStatistics:
    """Result of :func:`mode_statistics` (K modes). Per-mode arrays have length K; NaN for empty modes.

    ``occupancy`` fraction of points per assigned mode; ``weights`` the true weights w;
    ``occupancy_tv`` ½ Σ_m |occ_m − w_m|; ``off_mode_mass`` fraction of points with
    min_m Mahalanobis distance > ``off_mode_radius``; ``spread_ratio`` pooled within-mode spread ratio;
    ``spread_ratio_per_mode``; ``labels`` the assignment used; ``assignment_accuracy`` agreement of
    the nearest-mode assignment with ``labels_true`` (NaN when not given).
    """

    occupancy: np.ndarray
    weights: np.ndarray
    occupancy_tv: float
    modes_occupied: int
    off_mode_mass: float
    off_mode_radius: float
    spread_ratio: float
    spread_ratio_per_mode: np.ndarray
    labels: np.ndarray = field(repr=False)
    assignment_accuracy: float = math.nan

    def scalars(self) -> dict[str, float]:
        """The scalar statistics as a flat dict (keys as in :data:`REPORT_KEYS`)."""
        return {
            "occupancy_tv": self.occupancy_tv,
            "modes_occupied": float(self.modes_occupied),
            "off_mode_mass": self.off_mode_mass,
            "spread_ratio": self.spread_ratio,
        }

    def per_mode(self) -> pd.DataFrame:
        """Tidy frame: mode, weight, occupancy, count, spread_ratio."""
        counts = np.bincount(self.labels, minlength=len(self.weights))
        return pd.DataFrame(
            {
                "mode": np.arange(len(self.weights)),
                "weight": self.weights,
                "occupancy": self.occupancy,
                "count": counts,
                "spread_ratio": self.spread_ratio_per_mode,
            }
        )


def mode_statistics(
    gen: Any,
    means: Any,
    covs: Any = None,
    weights: Any = None,
    *,
    std: Any = None,
    labels_true: Any = None,
    assign: str = "euclidean",
    off_quantile: float = 0.99,
) -> ModeStatistics:
    """Mode occupancy, off-mode mass and within-mode spread of ``gen`` against a Gaussian mixture.

    The mixture has K modes with centres μ_m (``means`` [K, D]), covariances Σ_m (``covs``: full
    [K, D, D], diagonal [K, D], isotropic variances [K] or one scalar variance; or ``std``: isotropic
    standard deviations [K] or scalar) and weights w_m (``weights`` [K], default uniform, normalised).

    Assignment a_i: the nearest mode by Euclidean distance (``assign="euclidean"``), by Mahalanobis
    distance ‖x − μ_m‖_{Σ_m} = sqrt((x − μ_m)ᵀ Σ_m⁻¹ (x − μ_m)) (``"mahalanobis"``), or the maximum
    posterior log w_m − ½‖x − μ_m‖²_{Σ_m} − ½ log|Σ_m| (``"posterior"``). If ``labels_true`` (the
    components the points were drawn from) is given, it is used instead and ``assignment_accuracy``
    reports how often the chosen rule agrees with it.

    - occupancy occ_m = #{i: a_i = m}/N;  occupancy_tv = ½ Σ_m |occ_m − w_m| ∈ [0, 1]. ≈ 0 for the true
      distribution; dropping one of K equal-weight modes (others equally filled) gives exactly 1/K.
    - off_mode_mass = mean_i 1[min_m ‖x_i − μ_m‖²_{Σ_m} > χ²_D⁻¹(off_quantile)] — for the true mixture
      ≤ 1 − off_quantile (= 0.01; equality for well-separated modes, since ‖x − μ_m‖²_{Σ_m} ~ χ²_D
      under mode m). Collapse inward gives ≈ 0; samples between or outside modes give more.
    - spread_ratio_m = mean_{i: a_i = m} ‖x_i − μ_m‖² / tr Σ_m; pooled spread_ratio =
      Σ_i ‖x_i − μ_{a_i}‖² / Σ_i tr Σ_{a_i}. ≈ 1 for the true distribution (exactly 1 in expectation
      with true labels; nearest-mode assignment of overlapping modes biases it below 1 — compare
      with the value on real samples); shrinking every point towards its mode centre by a factor c
      gives c² (0.25 for c = 0.5). < 1 = collapsed inward, > 1 = too spread.
    """
    x = as_samples(gen)
    mu = _to_numpy(means)
    if mu.ndim != 2 or mu.shape[1] != x.shape[1]:
        raise ValueError(f"means must be [K, D] with D = {x.shape[1]}, got shape {mu.shape}")
    k, dim = mu.shape
    cov = _mixture_covs(covs, std, k, dim)
    w = np.full(k, 1.0 / k) if weights is None else _to_numpy(weights).reshape(k)
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    w = w / w.sum()
    e2, m2, logdet = _mode_distances(x, mu, cov)
    if assign == "euclidean":
        nearest = np.argmin(e2, axis=1)
    elif assign == "mahalanobis":
        nearest = np.argmin(m2, axis=1)
    elif assign == "posterior":
        with np.errstate(divide="ignore"):
            nearest = np.argmax(np.log(w)[None, :] - 0.5 * m2 - 0.5 * logdet[None, :], axis=1)
    else:
        raise ValueError(f"assign must be 'euclidean', 'mahalanobis' or 'posterior', got {assign!r}")
    accuracy = math.nan
    labels = nearest
    if labels_true is not None:
        labels = _to_numpy(labels_true).astype(np.int64).reshape(-1)
        if labels.shape != (len(x),) or labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"labels_true must be N = {len(x)} integers in [0, {k})")
        accuracy = float(np.mean(labels == nearest))
    counts = np.bincount(labels, minlength=k)
    occupancy = counts / len(x)
    radius_sq = float(stats.chi2.ppf(off_quantile, dim))
    sq_assigned = e2[np.arange(len(x)), labels]
    traces = _traces(cov, dim)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_mode = np.bincount(labels, weights=sq_assigned, minlength=k) / (counts * traces)
    return ModeStatistics(
        occupancy=occupancy,
        weights=w,
        occupancy_tv=float(0.5 * np.abs(occupancy - w).sum()),
        modes_occupied=int(np.count_nonzero(counts)),
        off_mode_mass=float(np.mean(m2.min(axis=1) > radius_sq)),
        off_mode_radius=math.sqrt(radius_sq),
        spread_ratio=float(sq_assigned.sum() / traces[labels].sum()),
        spread_ratio_per_mode=per_mode,
        labels=labels,
        assignment_accuracy=accuracy,
    )


def _mixture_params(mixture: Any) -> tuple[np.ndarray, np.ndarray | None, Any, np.ndarray | None]:
    """(means, covs, std, weights) from a GaussianMixture-like object, a mapping or a tuple."""
    if isinstance(mixture, Mapping):
        get = mixture.get
    elif isinstance(mixture, tuple | list):
        parts = list(mixture) + [None] * (3 - len(mixture))
        return parts[0], parts[1], None, parts[2]
    else:

        def get(name: str, default: Any = None) -> Any:
            return getattr(mixture, name, default)

    means = get("means")
    if means is None:
        raise ValueError("mixture needs 'means' (an object with .means/.covs/.weights, a mapping or a tuple)")
    covs = get("covs")
    std = get("std") if covs is None else None
    if covs is None and std is None:
        std = get("stds")
    return means, covs, std, get("weights")


# ----------------------------------------------------------------------------------------------
# per-σ denoiser error
# ----------------------------------------------------------------------------------------------


def per_sigma_error(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    reference: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: Any,
    sigmas: Iterable[float] | torch.Tensor | np.ndarray,
    generator: torch.Generator | None = None,
    *,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Denoising error of ``denoiser`` against an exact ``reference`` denoiser D*, per noise level.

    For each σ: draw ε_i ~ N(0, I) (``generator``), x_i = x0_i + σ ε_i, and

        e_i = ‖D(x_i; σ) − D*(x_i; σ)‖² / dim,   error = mean_i e_i,   stderr = std_i(e_i) / √N

    (dim = number of entries per sample; std with ddof = 1; NaN for N = 1). Both denoisers see the
    same x_i and σ as a tensor of shape [N] (per sample) with x's dtype. ``x0`` keeps its dtype
    if it is a torch tensor; numpy input becomes float32. Runs under ``torch.no_grad``.
    0 for the reference against itself; a denoiser off by a constant vector c has error ‖c‖²/dim.
    Returns a DataFrame with columns sigma, error, stderr, n.
    """
    x0_t = x0 if isinstance(x0, torch.Tensor) else torch.as_tensor(np.asarray(x0), dtype=torch.float32)
    if x0_t.ndim < 2:
        raise ValueError("x0 must be a batch (N, ...) with at least two dimensions")
    n = x0_t.shape[0]
    dim = int(np.prod(x0_t.shape[1:]))
    bs = n if batch_size is None else int(batch_size)
    sig = _to_numpy(sigmas).reshape(-1)
    rows = []
    with torch.no_grad():
        for s in sig:
            errs = []
            for start in range(0, n, bs):
                xb = x0_t[start : start + bs]
                eps = torch.randn(xb.shape, generator=generator, dtype=xb.dtype, device=xb.device)
                sigma_t = torch.full((xb.shape[0],), float(s), dtype=xb.dtype, device=xb.device)
                x = xb + float(s) * eps
                diff = denoiser(x, sigma_t) - reference(x, sigma_t)
                errs.append(diff.reshape(diff.shape[0], -1).to(torch.float64).pow(2).sum(dim=1).cpu().numpy() / dim)
            e = np.concatenate(errs)
            stderr = float(e.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
            rows.append({"sigma": float(s), "error": float(e.mean()), "stderr": stderr, "n": n})
    return pd.DataFrame(rows, columns=["sigma", "error", "stderr", "n"])


# ----------------------------------------------------------------------------------------------
# bootstrap over seeds / replicates
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile bootstrap interval; unpacks as ``estimate, lo, hi = bootstrap_ci(values)``.

    ``n`` finite values used, ``n_nan`` values dropped as NaN, ``degenerate`` True when no interval
    could be formed (n ≤ 1: lo = hi = estimate, NaN when n = 0).
    """

    estimate: float
    lo: float
    hi: float
    n: int
    n_nan: int = 0
    degenerate: bool = False

    def __iter__(self) -> Iterator[float]:
        return iter((self.estimate, self.lo, self.hi))


def bootstrap_ci(
    values: Any,
    stat: Callable[..., Any] = np.mean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile bootstrap interval of ``stat`` over replicates (e.g. one value per seed).

    estimate = stat(v) on the finite values v (NaN entries are dropped and counted); B = ``n_boot``
    resamples v*_b of size n with replacement (``numpy.random.default_rng(seed)``);
    lo, hi = the (1 − level)/2 and (1 + level)/2 quantiles of {stat(v*_b)}. ``stat`` is called as
    ``stat(array (B, n), axis=1)`` when it accepts ``axis`` (numpy reductions), else once per resample.
    n = 1 → lo = hi = estimate, ``degenerate=True``; n = 0 → all NaN, ``degenerate=True``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    v = _to_numpy(values).reshape(-1)
    finite = v[~np.isnan(v)]
    n_nan = int(v.size - finite.size)
    n = int(finite.size)
    if n == 0:
        return BootstrapCI(math.nan, math.nan, math.nan, 0, n_nan, True)
    estimate = float(stat(finite))
    if n == 1:
        return BootstrapCI(estimate, estimate, estimate, 1, n_nan, True)
    rng = np.random.default_rng(seed)
    resamples = finite[rng.integers(0, n, size=(int(n_boot), n))]
    try:
        boots = np.asarray(stat(resamples, axis=1), dtype=np.float64)
        if boots.shape != (int(n_boot),):
            raise TypeError
    except TypeError:
        boots = np.array([float(stat(row)) for row in resamples])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha])
    return BootstrapCI(estimate, float(lo), float(hi), n, n_nan, False)


def bootstrap_table(
    df: pd.DataFrame,
    by: str | Sequence[str],
    values: str | Sequence[str],
    *,
    stat: Callable[..., Any] = np.mean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Bootstrap every column in ``values`` within each group of ``by`` (rows = replicates/seeds).

    Returns a tidy frame: the ``by`` columns, metric, estimate, lo, hi, n, degenerate.
    """
    by_cols = [by] if isinstance(by, str) else list(by)
    value_cols = [values] if isinstance(values, str) else list(values)
    rows = []
    for key, group in df.groupby(by_cols, sort=True):
        key_t = key if isinstance(key, tuple) else (key,)
        for col in value_cols:
            ci = bootstrap_ci(group[col].to_numpy(dtype=float), stat=stat, n_boot=n_boot, level=level, seed=seed)
            row = dict(zip(by_cols, key_t, strict=True))
            row.update(metric=col, estimate=ci.estimate, lo=ci.lo, hi=ci.hi, n=ci.n, degenerate=ci.degenerate)
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# everything at once
# ----------------------------------------------------------------------------------------------


def collapse_report(
    gen: Any,
    real: Any,
    mixture: Any = None,
    *,
    k: int = 5,
    quantile: float = 0.01,
    n: int | None = None,
    seed: int = 0,
    assign: str = "euclidean",
    backend: str = "auto",
) -> dict[str, float]:
    """All scalar metrics as one flat dict with the keys :data:`REPORT_KEYS` (stable: used in figures).

    Both sets are first subsampled (seeded, without replacement) to m = min(|G|, |R|, n) points;
    every metric is computed on those (k-NN distances are computed once and shared):
    n (= m), dim, nn_ratio (mean), nn_ratio_median, near_duplicate_rate at near_duplicate_quantile,
    density, coverage, coverage_expected (its value for identical distributions), precision, recall
    (k-NN radius ``k``), and — when ``mixture`` is given (an object with ``.means``, ``.covs`` (or
    ``.std``), ``.weights``, e.g. ``diffusion.data.GaussianMixture``; a mapping with those keys; or a
    tuple (means, covs[, weights])) — occupancy_tv, modes_occupied, off_mode_mass, spread_ratio of
    the generated set and the same three on the real set (``*_real``: the finite-sample baseline).
    Keys that do not apply are NaN. See the module docstring for formulas and "collapsed" values.
    """
    g, r = _equal_size(as_samples(gen), as_samples(real), n, seed)
    if g.shape[1] != r.shape[1]:
        raise ValueError(f"gen has D = {g.shape[1]}, real has D = {r.shape[1]}")
    m = len(g)
    if m < 2:
        raise ValueError("collapse_report needs at least 2 points in each set")
    kk = min(k, m - 1)
    d_gen = knn_distances(g, kk, backend=backend)
    d_real = knn_distances(r, kk, backend=backend)
    scan = _manifold_scan(r, g, d_real[:, kk - 1], d_gen[:, kk - 1])
    out: dict[str, float] = dict.fromkeys(REPORT_KEYS, math.nan)
    out.update(
        n=float(m),
        dim=float(g.shape[1]),
        nn_ratio=float(d_gen[:, 0].mean() / d_real[:, 0].mean()),
        nn_ratio_median=float(np.median(d_gen[:, 0]) / np.median(d_real[:, 0])),
        near_duplicate_rate=_near_duplicate(d_gen[:, 0], d_real[:, 0], quantile),
        near_duplicate_quantile=float(quantile),
        coverage_expected=expected_coverage(m, m, kk),
        **_density_coverage(scan, d_real[:, kk - 1], kk),
        **_precision_recall(scan),
    )
    if mixture is not None:
        means, covs, std, weights = _mixture_params(mixture)
        kwargs = {"covs": covs, "weights": weights, "std": std, "assign": assign}
        out.update(mode_statistics(g, means, **kwargs).scalars())
        ms_real = mode_statistics(r, means, **kwargs)
        out.update(
            occupancy_tv_real=ms_real.occupancy_tv,
            off_mode_mass_real=ms_real.off_mode_mass,
            spread_ratio_real=ms_real.spread_ratio,
        )
    return out
