r"""fig_gd_ridge_sgd — early-stopped GD vs ridge vs one-pass SGD on Gaussian linear regression.

Paper: arXiv 2509.17251 (Wu, Bartlett, Lee, Kakade, Yu, "Risk comparisons in linear regression:
implicit regularization dominates explicit regularization"). Its claims, tested here with exact
risks (no simulation):

(a) GD dominates ridge: with comparable regularization (GD time T = ηt, ridge λ = 1/T) the excess
    risk of GD is within a constant factor of ridge's, for every design X. The paper proves an
    absolute constant but gives no number; we test the constant ``gd_ridge_constant`` = 4, the
    sharp per-direction bound in the case where H and Σ̂ = XᵀX/n commute: per eigen-direction of Σ̂ with
    y = ηs ≤ 1, GD's bias factor (1 − y)^{2t} ≤ e^{−2yt} ≤ (1 + yt)^{−2} never exceeds ridge's, and
    GD's variance factor over ridge's, [(1 − (1 − y)^t)(1 + yt)/(yt)]², is at most 4 (t = 1, y = 1).
    The variance part of the risk is diagonal in Σ̂'s eigenbasis for *any* H, so only the bias's
    cross terms (H not commuting with Σ̂) can break the constant. Many random power-law instances
    (random a, b, σ², n, d fixed) are drawn; for each design we report best-GD/best-ridge and
    max_λ GD(T = 1/λ)/ridge(λ).
(b) Ridge can be polynomially worse even when tuned: power law λ_i = i^{−a}, source λ_i w*_i² =
    i^{−b} with b > 2a + 1. Rates (derived here, standard bias/variance balance with the
    effective dimension k(ρ) = ρ^{−1/a} of regularisation level ρ): GD (no saturation) balances
    bias ρ^{(b−1)/a} with variance σ²ρ^{−1/a}/n ⇒ risk ∝ n^{−(b−1)/b}; ridge's bias saturates at
    ρ²‖w*‖²_{H^{-1}} (finite iff b > 2a + 1) ⇒ ρ² vs σ²ρ^{−1/a}/n ⇒ risk ∝ n^{−2a/(2a+1)}.
(c) GD and one-pass SGD are incomparable — SGD can win polynomially. The paper's construction is
    not public here; ours (two-scale, benign-overfitting type): k head directions with eigenvalue
    1 carry all of w* (‖w*‖²_H = 1); a flat tail of D = c_D n^p directions with eigenvalue
    ε = r/D, total tail trace r = c_r n^q (1/2 < q < 1, p ≥ 2), carries none. In Σ̂ the tail acts
    as an isotropic ridge of size ρ = r/n on the sample space, so every spectral filter of Σ̂
    (GD at any stopping time, ridge at any λ ≥ 0) learns at most a fraction ≈ 1/(1 + ρ) of each
    head direction (up to O(n^{−1/2}) fluctuations of the spikes' sample norms and of the tail's
    Wishart spectrum): risk ≳ (ρ/(1 + ρ))² ≈ c_r² n^{−2(1−q)}. One-pass SGD sees the population
    covariance instead: with stepsize η ≈ 1/r it learns the head exponentially fast in ηn ∝
    n^{1−q}, its tail variance is σ²nη²Dε² = σ²n/D ≤ σ²/n for p ≥ 2, so its risk is Θ(σ²k/n).
    Predicted slopes: GD 2(q − 1), SGD −1, SGD's advantage n^{2q−1}.
(d) GD dominates SGD for fast, continuously decaying spectra (exponential; steep power law):
    GD/SGD stays bounded in n (we test log-log slope of the ratio ≤ 0 within the drift tolerance
    and max ratio ≤ ``gd_ridge_constant``; the paper's constant has no public value either).

Estimators and risks. GD/ridge: a Gaussian design X ~ N(0, H) of n rows, the exact expectation
over the label noise given X (``linreg.fixed_design``), averaged over ``designs`` draws; the
spread over draws is reported. Tuning grid: GD times T = ηt on a geometric grid with
``per_octave`` points per factor 2 (stepsize η ≤ 1/‖Σ̂‖, t = ⌈T‖Σ̂‖⌉) and ridge λ = 1/T on the
same grid plus λ = 0; T runs from 2^{−3}/max s to 2^{6}/min s (s: non-zero eigenvalues of Σ̂),
i.e. from a stronger regularisation than any optimum to the interpolation limit. With 8 points per
octave neighbours differ by 2^{1/8} ≈ 1.09, so a smooth minimum in log T is missed by at most
half a step, δ = ln2/16: a relative excess ≈ c·δ² ≈ 0.2 % for curvature c ≈ 1; the run measures
the change under a 4× finer grid (``checks.grid_refinement_max_rel_change``). SGD: exact
population risk of one-pass SGD, batch 1, n fresh samples (``linreg.exact``), tuned over a
geometric stepsize grid η·tr(H) ∈ [2^{−6}, 2^{3}] and two schedule families: constant stepsize
with tail averaging of the last n/2 iterates, and step decay (η halved ⌈log₂n / 2⌉ − 1 times,
equal phases) with the last iterate. Panel (c)'s tail has D ≈ n² equal eigenvalues, beyond what
a per-coordinate recursion could run; ``linreg.exact`` runs it with eigenvalue multiplicities
(``multiplicity=``, tested equal to the expanded spectrum), and
:func:`fixed_design.two_scale_design` samples the tail's Gram matrix as a Wishart.

Slope tolerance: the rates are Θ(·) statements, so a prefactor may drift by a bounded factor over
the fitted range; we allow κ = ``prefactor_drift`` = 1.25, i.e. |slope − theory| ≤ ln κ / ln(n_max/n_min).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fulcrum_core import Claim, ConfigError, Experiment, RunResult
from fulcrum_core.cli import save_figure

from ..grids import geometric_int_grid, loglog_slope
from ..linreg import exact, spectra
from ..linreg import fixed_design as fd

PAPER = "2509.17251"
OUTPUTS = ("instances.csv", "curves.csv")


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Tuning:
    per_octave: int = 8
    time_low_octaves: float = 3.0
    time_high_octaves: float = 6.0
    sgd_per_octave: int = 3
    sgd_lr_min: float = 2.0**-6
    sgd_lr_max: float = 8.0

    def __post_init__(self):
        if self.per_octave < 1 or self.sgd_per_octave < 1:
            raise ConfigError("tuning: per_octave and sgd_per_octave must be >= 1")
        if self.time_low_octaves < 0 or self.time_high_octaves < 0:
            raise ConfigError("tuning: time_low_octaves and time_high_octaves must be >= 0")
        if not 0 < self.sgd_lr_min < self.sgd_lr_max:
            raise ConfigError("tuning: need 0 < sgd_lr_min < sgd_lr_max (units of 1/tr H)")


@dataclass(frozen=True)
class RandomInstances:
    count: int = 40
    dim: int = 256
    n_min: int = 32
    n_max: int = 1024
    a_min: float = 1.1
    a_max: float = 3.0
    b_min: float = 1.1
    b_above_saturation: float = 3.0
    noise_min: float = 1e-3
    noise_max: float = 1.0
    designs: int = 2

    def __post_init__(self):
        if self.count < 1 or self.dim < 2 or self.designs < 1:
            raise ConfigError("random: count >= 1, dim >= 2 and designs >= 1 needed")
        if not 2 <= self.n_min <= self.n_max:
            raise ConfigError("random: need 2 <= n_min <= n_max")
        if not 1 < self.a_min <= self.a_max:
            raise ConfigError("random: need 1 < a_min <= a_max")
        if self.b_min <= 1 or self.b_above_saturation < 0:
            raise ConfigError("random: need b_min > 1 and b_above_saturation >= 0")
        if not 0 < self.noise_min <= self.noise_max:
            raise ConfigError("random: need 0 < noise_min <= noise_max")


def _check_sweep(name: str, n_min: int, n_max: int, points_per_octave: int, designs: int) -> None:
    if not 2 <= n_min < n_max:
        raise ConfigError(f"{name}: need 2 <= n_min < n_max")
    if points_per_octave < 1 or designs < 1:
        raise ConfigError(f"{name}: points_per_octave and designs must be >= 1")


@dataclass(frozen=True)
class RidgeSaturation:
    dim: int = 400
    spectrum_exponent: float = 1.5
    source_exponent: float = 8.0
    noise_var: float = 1.0
    n_min: int = 64
    n_max: int = 2048
    points_per_octave: int = 1
    designs: int = 8

    def __post_init__(self):
        _check_sweep("power", self.n_min, self.n_max, self.points_per_octave, self.designs)
        if self.dim < 2 or self.spectrum_exponent <= 1 or self.noise_var <= 0:
            raise ConfigError("power: need dim >= 2, spectrum_exponent > 1, noise_var > 0")
        if self.source_exponent <= 2 * self.spectrum_exponent + 1:
            raise ConfigError("power: source_exponent must exceed 2·spectrum_exponent + 1 (ridge saturation)")


@dataclass(frozen=True)
class TwoScale:
    head_dim: int = 1
    tail_trace_coef: float = 0.5
    tail_trace_exponent: float = 0.75
    tail_dim_coef: float = 8.0
    tail_dim_exponent: float = 2.0
    noise_var: float = 0.25
    n_min: int = 64
    n_max: int = 1024
    points_per_octave: int = 1
    designs: int = 8

    def __post_init__(self):
        _check_sweep("two_scale", self.n_min, self.n_max, self.points_per_octave, self.designs)
        if self.head_dim < 1 or self.tail_trace_coef <= 0 or self.tail_dim_coef <= 0 or self.noise_var <= 0:
            raise ConfigError("two_scale: head_dim >= 1, positive coefficients and noise_var needed")
        if not 0.5 < self.tail_trace_exponent < 1:
            raise ConfigError("two_scale: tail_trace_exponent q must lie in (1/2, 1)")
        if self.tail_dim_exponent < 1:
            raise ConfigError("two_scale: tail_dim_exponent p must be >= 1 (tail dimension >= n)")


@dataclass(frozen=True)
class FastDecay:
    exp_dim: int = 60
    exp_halving: float = 2.0
    power_dim: int = 200
    power_exponent: float = 3.0
    power_source: float = 2.0
    noise_var: float = 1.0
    n_min: int = 64
    n_max: int = 2048
    points_per_octave: int = 1
    designs: int = 2

    def __post_init__(self):
        _check_sweep("fast", self.n_min, self.n_max, self.points_per_octave, self.designs)
        if self.exp_dim < 2 or self.power_dim < 2 or self.exp_halving <= 0 or self.noise_var <= 0:
            raise ConfigError("fast: need dims >= 2, exp_halving > 0, noise_var > 0")
        if self.power_exponent <= 1 or self.power_source <= 1:
            raise ConfigError("fast: power_exponent and power_source must be > 1")


@dataclass(frozen=True)
class Config:
    gd_ridge_constant: float = 4.0
    prefactor_drift: float = 1.25
    seed: int = 0
    tuning: Tuning = field(default_factory=Tuning)
    random: RandomInstances = field(default_factory=RandomInstances)
    power: RidgeSaturation = field(default_factory=RidgeSaturation)
    two_scale: TwoScale = field(default_factory=TwoScale)
    fast: FastDecay = field(default_factory=FastDecay)

    def __post_init__(self):
        if self.gd_ridge_constant < 1:
            raise ConfigError("gd_ridge_constant must be >= 1")
        if self.prefactor_drift < 1:
            raise ConfigError("prefactor_drift must be >= 1")


# --------------------------------------------------------------------------- GD and ridge


@dataclass(frozen=True)
class PathRisks:
    """GD (index g: time times[g]) and ridge (λ = 1/times[g]; plus λ = 0 last) risks per design."""

    times: np.ndarray  # (G,)
    gd: np.ndarray  # (R, G) total risk
    ridge: np.ndarray  # (R, G + 1)

    @property
    def lams(self) -> np.ndarray:
        return np.append(1.0 / self.times, 0.0)


def time_grid(designs: list[fd.FixedDesign], tuning: Tuning) -> np.ndarray:
    """Geometric grid of GD times T (ridge λ = 1/T) covering every design's spectrum; see module doc."""
    s_max = max(float(d.s.max()) for d in designs)
    s_min = min(float(d.s.min()) for d in designs)
    lo = 2.0**-tuning.time_low_octaves / s_max
    hi = 2.0**tuning.time_high_octaves / s_min
    count = int(np.ceil(np.log2(hi / lo) * tuning.per_octave)) + 1
    return np.geomspace(lo, hi, count)


def path_risks(designs: list[fd.FixedDesign], noise_var: float, times: np.ndarray) -> PathRisks:
    gd, ridge = [], []
    lams = np.append(1.0 / times, 0.0)
    for d in designs:
        lr, steps = fd.gd_schedule_for_times(times, float(d.s.max()))
        gd.append(np.add(*fd.gd_risk(d, lr, steps, noise_var)))
        ridge.append(np.add(*fd.ridge_risk(d, lams, noise_var)))
    return PathRisks(times, np.array(gd), np.array(ridge))


def power_law_designs(n, lam, w, count, rng) -> list[fd.FixedDesign]:
    sqrt_lam = np.sqrt(lam)
    return [fd.FixedDesign.from_design(rng.standard_normal((n, lam.size)) * sqrt_lam, lam, w) for _ in range(count)]


# --------------------------------------------------------------------------- SGD


def sgd_schedules(n: int, lr_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(constant (K, n), step decay (K, n), number of halvings): the two tuned families."""
    constant = np.repeat(lr_grid[:, None], n, axis=1)
    phases = max(1, int(np.ceil(np.log2(n) / 2)))
    phase = np.minimum(np.arange(n) * phases // n, phases - 1)
    decay = lr_grid[:, None] * 0.5 ** phase[None, :]
    return constant, decay, phases - 1


def sgd_lr_grid(trace: float, tuning: Tuning) -> np.ndarray:
    count = int(np.ceil(np.log2(tuning.sgd_lr_max / tuning.sgd_lr_min) * tuning.sgd_per_octave)) + 1
    return np.geomspace(tuning.sgd_lr_min, tuning.sgd_lr_max, count) / trace


def _rowwise(fn, lrs):
    """Call an ``exact`` function on K schedules; rows whose recursion diverges get inf."""
    try:
        return np.asarray(fn(lrs), dtype=float)
    except FloatingPointError:
        out = []
        for row in lrs:
            try:
                out.append(float(np.asarray(fn(row[None, :]))[0]))
            except FloatingPointError:
                out.append(np.inf)
        return np.array(out)


def sgd_tuned(eigs, m0, noise_var: float, n: int, tuning: Tuning, mult=None) -> dict:
    """Tuned one-pass SGD (min over stepsize grid × {constant + tail average, step decay + last})."""
    lam = np.asarray(eigs, dtype=float)
    mu = np.ones_like(lam) if mult is None else np.asarray(mult, dtype=float)
    grid = sgd_lr_grid(float(mu @ lam), tuning)
    constant, decay, halvings = sgd_schedules(n, grid)
    tail = _rowwise(
        lambda L: exact.sgd_tail_average_risk(lam, m0, noise_var, L, start=n // 2, multiplicity=mu), constant
    )
    last = _rowwise(lambda L: exact.sgd_excess_risk(lam, m0, noise_var, L, multiplicity=mu)[:, -1], decay)
    tail = np.where(np.isfinite(tail), tail, np.inf)
    last = np.where(np.isfinite(last), last, np.inf)
    best_tail, best_last = fd.tuned(tail, grid), fd.tuned(last, grid)
    best = min((best_tail, "constant, tail average"), (best_last, "step decay, last iterate"), key=lambda x: x[0].risk)
    return {
        "risk": best[0].risk,
        "lr_times_trace": best[0].param * float(mu @ lam),
        "schedule": best[1],
        "at_edge": best[0].at_edge,
        "halvings": halvings,
    }


# --------------------------------------------------------------------------- panels


def n_grid(panel) -> np.ndarray:
    return geometric_int_grid(panel.n_min, panel.n_max, panel.points_per_octave)


def _curve_rows(panel, spectrum, n, paths: PathRisks, extra_methods=()):
    """Tidy rows: tuned mean risk (min over the grid of the design average) and per-design spread."""
    rows, edges = [], 0
    for method, risks, grid, strong_edge in (
        ("GD", paths.gd, paths.times, 0),
        ("ridge", paths.ridge, paths.lams, 0),
    ):
        best = fd.tuned(risks.mean(axis=0), grid)
        per_design = risks.min(axis=1)
        edges += int(best.index == strong_edge)
        rows.append(
            {
                "panel": panel,
                "spectrum": spectrum,
                "method": method,
                "n": int(n),
                "risk": best.risk,
                "risk_lo": float(per_design.min()),
                "risk_hi": float(per_design.max()),
                "param": best.param,
                "param_name": "GD time T = ηt" if method == "GD" else "ridge λ",
            }
        )
    for method, rec in extra_methods:
        rows.append(
            {
                "panel": panel,
                "spectrum": spectrum,
                "method": method,
                "n": int(n),
                "risk": rec["risk"],
                "risk_lo": rec["risk"],
                "risk_hi": rec["risk"],
                "param": rec["lr_times_trace"],
                "param_name": f"η·tr(H), {rec['schedule']}",
            }
        )
        edges += int(rec["at_edge"])
    return rows, edges


def panel_random(cfg: Config, rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    rc = cfg.random
    rows = []
    edges = 0
    for i in tqdm(range(rc.count), desc="(a) random instances", unit="inst"):
        a = rng.uniform(rc.a_min, rc.a_max)
        b = rng.uniform(rc.b_min, 2 * a + 1 + rc.b_above_saturation)
        noise = float(np.exp(rng.uniform(np.log(rc.noise_min), np.log(rc.noise_max))))
        n = int(round(np.exp(rng.uniform(np.log(rc.n_min), np.log(rc.n_max)))))
        lam = spectra.power_law(rc.dim, a)
        w = np.sqrt(spectra.source_prior(lam, b)) * rng.choice([-1.0, 1.0], rc.dim)
        designs = power_law_designs(n, lam, w, rc.designs, rng)
        paths = path_risks(designs, noise, time_grid(designs, cfg.tuning))
        for r in range(rc.designs):
            gd_best = fd.tuned(paths.gd[r], paths.times)
            ridge_best = fd.tuned(paths.ridge[r], paths.lams)
            edges += int(gd_best.index == 0) + int(ridge_best.index == 0)
            comparable = paths.gd[r] / paths.ridge[r, :-1]
            j = int(np.argmax(comparable))
            rows.append(
                {
                    "instance": i,
                    "design": r,
                    "a": a,
                    "b": b,
                    "noise_var": noise,
                    "n": n,
                    "dim": rc.dim,
                    "saturated": bool(b > 2 * a + 1),
                    "gd_best": gd_best.risk,
                    "gd_best_time": gd_best.param,
                    "ridge_best": ridge_best.risk,
                    "ridge_best_lambda": ridge_best.param,
                    "ratio_tuned": gd_best.risk / ridge_best.risk,
                    "ratio_comparable_max": float(comparable[j]),
                    "ratio_comparable_lambda": float(1.0 / paths.times[j]),
                }
            )
    return pd.DataFrame(rows), {"random_strong_edge_minima": edges}


def panel_power(cfg: Config, rng) -> tuple[list, int]:
    pc = cfg.power
    lam = spectra.power_law(pc.dim, pc.spectrum_exponent)
    w = np.sqrt(spectra.source_prior(lam, pc.source_exponent))
    rows, edges = [], 0
    for n in tqdm(n_grid(pc), desc="(b) ridge saturation", unit="n"):
        designs = power_law_designs(int(n), lam, w, pc.designs, rng)
        paths = path_risks(designs, pc.noise_var, time_grid(designs, cfg.tuning))
        r, e = _curve_rows("b", f"power law a={pc.spectrum_exponent:g}, b={pc.source_exponent:g}", n, paths)
        rows += r
        edges += e
    return rows, edges


def two_scale_spectrum(tc: TwoScale, n: int):
    """(head eigenvalues, head w*, tail dimension D, tail eigenvalue ε, tail trace r) at sample size n."""
    r = tc.tail_trace_coef * n**tc.tail_trace_exponent
    D = max(int(np.ceil(tc.tail_dim_coef * n**tc.tail_dim_exponent)), n)
    head = np.ones(tc.head_dim)
    return head, np.full(tc.head_dim, 1 / np.sqrt(tc.head_dim)), D, r / D, r


def panel_two_scale(cfg: Config, rng) -> tuple[list, int]:
    tc = cfg.two_scale
    rows, edges = [], 0
    for n in tqdm(n_grid(tc), desc="(c) two-scale", unit="n"):
        n = int(n)
        head, w, D, eps, _ = two_scale_spectrum(tc, n)
        designs = [fd.two_scale_design(n, head, w, D, eps, rng) for _ in range(tc.designs)]
        paths = path_risks(designs, tc.noise_var, time_grid(designs, cfg.tuning))
        sgd = sgd_tuned(
            np.append(head, eps),
            np.append(w**2, 0.0),
            tc.noise_var,
            n,
            cfg.tuning,
            mult=np.append(np.ones_like(head), D),
        )
        r, e = _curve_rows("c", f"two-scale: {tc.head_dim} spike(s) + flat tail", n, paths, [("SGD", sgd)])
        rows += r
        edges += e
    return rows, edges


def fast_spectra(fc: FastDecay) -> dict:
    exp_lam = 2.0 ** (-np.arange(fc.exp_dim) / fc.exp_halving)
    pow_lam = spectra.power_law(fc.power_dim, fc.power_exponent)
    return {
        f"exponential λ_i = 2^(-(i-1)/{fc.exp_halving:g}), w*_i = 1": (exp_lam, np.ones(fc.exp_dim)),
        f"power law a={fc.power_exponent:g}, b={fc.power_source:g}": (
            pow_lam,
            np.sqrt(spectra.source_prior(pow_lam, fc.power_source)),
        ),
    }


def panel_fast(cfg: Config, rng) -> tuple[list, int]:
    fc = cfg.fast
    rows, edges = [], 0
    for name, (lam, w) in fast_spectra(fc).items():
        for n in tqdm(n_grid(fc), desc=f"(d) {name.split()[0]}", unit="n"):
            designs = power_law_designs(int(n), lam, w, fc.designs, rng)
            paths = path_risks(designs, fc.noise_var, time_grid(designs, cfg.tuning))
            sgd = sgd_tuned(lam, w**2, fc.noise_var, int(n), cfg.tuning)
            r, e = _curve_rows("d", name, n, paths, [("SGD", sgd)])
            rows += r
            edges += e
    return rows, edges


# --------------------------------------------------------------------------- self-checks


def closed_form_check(rng) -> float:
    """Max relative error of the closed forms vs direct GD iteration / ridge solve (small design)."""
    n, d, noise = 12, 7, 0.3
    lam = spectra.power_law(d, 1.3)
    w = rng.standard_normal(d)
    X = rng.standard_normal((n, d)) * np.sqrt(lam)
    design = fd.FixedDesign.from_design(X, lam, w)
    lr, t = 0.9 / design.s.max(), 9
    gd_b, gd_v = fd.gd_risk(design, lr, [t], noise)
    # direct: w_t = A_t y with A_{k+1} = A_k − η XᵀX A_k/n + η Xᵀ/n (exact linear map of y)
    A = np.zeros((d, n))
    for _ in range(t):
        A = A - lr * X.T @ (X @ A) / n + lr * X.T / n
    lam_r = 0.05
    B = np.linalg.solve(X.T @ X / n + lam_r * np.eye(d), X.T / n)
    r_b, r_v = fd.ridge_risk(design, [lam_r], noise)
    errs = []
    for M, (b, v) in ((A, (gd_b[0], gd_v[0])), (B, (r_b[0], r_v[0]))):
        e = M @ X @ w - w
        errs += [abs(b - e @ (lam * e)) / (e @ (lam * e)), abs(v - noise * np.trace(M.T @ (lam[:, None] * M))) / v]
    return float(max(errs))


def refinement_check(cfg: Config, rng) -> float:
    """Relative change of tuned GD and ridge risks when the grid is made 4× finer (one instance)."""
    pc = cfg.power
    lam = spectra.power_law(min(pc.dim, 200), pc.spectrum_exponent)
    w = np.sqrt(spectra.source_prior(lam, pc.source_exponent))
    designs = power_law_designs(pc.n_min, lam, w, 1, rng)
    coarse = path_risks(designs, pc.noise_var, time_grid(designs, cfg.tuning))
    fine_tuning = dataclasses.replace(cfg.tuning, per_octave=4 * cfg.tuning.per_octave)
    fine = path_risks(designs, pc.noise_var, time_grid(designs, fine_tuning))
    changes = [
        1 - fine.gd.min() / coarse.gd.min(),
        1 - fine.ridge.min() / coarse.ridge.min(),
    ]
    return float(max(abs(c) for c in changes))


# --------------------------------------------------------------------------- run


def run(cfg: Config, out: Path) -> RunResult:
    rng = np.random.default_rng(cfg.seed)
    instances, checks = panel_random(cfg, rng)
    rows_b, edges_b = panel_power(cfg, rng)
    rows_c, edges_c = panel_two_scale(cfg, rng)
    rows_d, edges_d = panel_fast(cfg, rng)
    curves = pd.DataFrame(rows_b + rows_c + rows_d)
    instances.to_csv(out / "instances.csv", index=False)
    curves.to_csv(out / "curves.csv", index=False)

    checks.update(
        {
            "curve_strong_edge_minima": edges_b + edges_c + edges_d,
            "closed_form_vs_direct_max_rel_err": closed_form_check(rng),
            "grid_refinement_max_rel_change": refinement_check(cfg, rng),
            "grid_ratio": 2.0 ** (1 / cfg.tuning.per_octave),
        }
    )

    def tol(panel) -> float:
        return float(np.log(cfg.prefactor_drift) / np.log(panel.n_max / panel.n_min))

    def series(panel, method, spectrum=None):
        sel = curves[(curves.panel == panel) & (curves.method == method)]
        if spectrum is not None:
            sel = sel[sel.spectrum == spectrum]
        return sel.set_index("n")["risk"].sort_index()

    C = cfg.gd_ridge_constant
    gd_rows = curves[curves.method.isin(["GD", "ridge"])]
    spread = (gd_rows.risk_hi / gd_rows.risk_lo).groupby(gd_rows.panel).max()
    numbers: dict = {
        "design_spread_max_b": float(spread.get("b", np.nan)),  # max over n, GD/ridge: per-design hi/lo
        "design_spread_max_c": float(spread.get("c", np.nan)),
        "design_spread_max_d": float(spread.get("d", np.nan)),
        "a_max_ratio_tuned": float(instances.ratio_tuned.max()),
        "a_min_ratio_tuned": float(instances.ratio_tuned.min()),
        "a_median_ratio_tuned": float(instances.ratio_tuned.median()),
        "a_max_ratio_comparable": float(instances.ratio_comparable_max.max()),
        "a_fraction_gd_better": float((instances.ratio_tuned < 1).mean()),
        "a_instances": int(instances.instance.nunique()),
        "a_designs_total": int(len(instances)),
    }
    claims = [
        Claim(
            PAPER,
            f"GD dominates ridge, comparable regularization (T = 1/λ): max over random power-law instances, "
            f"designs and λ of GD(T)/ridge(λ) ≤ C = {C:g} (C: exact constant when H and Σ̂ commute; "
            "the paper's absolute constant has no public value)",
            predicted=C,
            measured=numbers["a_max_ratio_comparable"],
            tolerance=0.0,  # a derived bound, no slack: the measured values are exact
            comparison="at_most",
        ),
        Claim(
            PAPER,
            f"GD dominates ridge, both optimally tuned: max over random power-law instances of "
            f"best-GD/best-ridge ≤ C = {C:g}",
            predicted=C,
            measured=numbers["a_max_ratio_tuned"],
            tolerance=0.0,  # best GD ≤ GD(1/λ*) ≤ C·ridge(λ*) in the commuting case: no slack needed
            comparison="at_most",
        ),
    ]

    # (b) ridge saturation
    pc = cfg.power
    a, b = pc.spectrum_exponent, pc.source_exponent
    gd_b, ridge_b = series("b", "GD"), series("b", "ridge")
    nb = gd_b.index.to_numpy()
    t_b = tol(pc)
    theory = {"GD": -(b - 1) / b, "ridge": -2 * a / (2 * a + 1)}
    numbers.update(
        {
            "b_gd_slope": loglog_slope(nb, gd_b),
            "b_ridge_slope": loglog_slope(nb, ridge_b),
            "b_ratio_slope": loglog_slope(nb, ridge_b / gd_b),
            "b_gd_slope_theory": theory["GD"],
            "b_ridge_slope_theory": theory["ridge"],
            "b_ratio_at_n_max": float(ridge_b.iloc[-1] / gd_b.iloc[-1]),
            "b_slope_tolerance": t_b,
        }
    )
    claims += [
        Claim(
            PAPER,
            f"power law a={a:g}, b={b:g} (b > 2a+1): tuned GD risk ∝ n^-(b-1)/b (derived rate; log-log fit)",
            predicted=theory["GD"],
            measured=numbers["b_gd_slope"],
            tolerance=t_b,  # prefactor drift ≤ κ over the n range (module doc)
        ),
        Claim(
            PAPER,
            "same problem: tuned ridge saturates, risk ∝ n^-2a/(2a+1) (derived rate; log-log fit)",
            predicted=theory["ridge"],
            measured=numbers["b_ridge_slope"],
            tolerance=t_b,
        ),
        Claim(
            PAPER,
            "ridge is polynomially worse than GD even when tuned: slope of log(ridge/GD) vs log n "
            "≥ (b-1)/b − 2a/(2a+1) (within the drift tolerance)",
            predicted=theory["GD"] * -1 - theory["ridge"] * -1,
            measured=numbers["b_ratio_slope"],
            tolerance=t_b,
            comparison="at_least",
        ),
    ]

    # (c) two-scale: SGD beats GD
    tc = cfg.two_scale
    q = tc.tail_trace_exponent
    gd_c, sgd_c, ridge_c = series("c", "GD"), series("c", "SGD"), series("c", "ridge")
    nc = gd_c.index.to_numpy()
    t_c = tol(tc)
    numbers.update(
        {
            "c_gd_slope": loglog_slope(nc, gd_c),
            "c_ridge_slope": loglog_slope(nc, ridge_c),
            "c_sgd_slope": loglog_slope(nc, sgd_c),
            "c_ratio_slope": loglog_slope(nc, gd_c / sgd_c),
            "c_gd_slope_theory": 2 * (q - 1),
            "c_sgd_slope_theory": -1.0,
            "c_ratio_at_n_max": float(gd_c.iloc[-1] / sgd_c.iloc[-1]),
            "c_ratio_at_n_min": float(gd_c.iloc[0] / sgd_c.iloc[0]),
            "c_slope_tolerance": t_c,
        }
    )
    claims += [
        Claim(
            PAPER,
            f"two-scale spectrum (tail trace ∝ n^{q:g}, tail dim ∝ n^{tc.tail_dim_exponent:g}): tuned GD is "
            "floored by the tail's implicit ridge r/n, risk ∝ n^-2(1-q) (our construction; log-log fit)",
            predicted=2 * (q - 1),
            measured=numbers["c_gd_slope"],
            tolerance=t_c,
        ),
        Claim(
            PAPER,
            "same problem: tuned one-pass SGD reaches the parametric rate, risk ∝ n^-1 (log-log fit)",
            predicted=-1.0,
            measured=numbers["c_sgd_slope"],
            tolerance=t_c,
        ),
        Claim(
            PAPER,
            "GD and SGD are incomparable: on this benign-overfitting-type problem tuned SGD beats tuned GD "
            "polynomially, slope of log(GD/SGD) vs log n ≥ 2q − 1 (within the drift tolerance)",
            predicted=2 * q - 1,
            measured=numbers["c_ratio_slope"],
            tolerance=t_c,
            comparison="at_least",
        ),
    ]

    # (d) fast decay: GD ≤ C·SGD
    fc = cfg.fast
    t_d = tol(fc)
    max_ratio, ratio_slopes = [], {}
    for k, name in enumerate(fast_spectra(fc)):
        gd_d, sgd_d = series("d", "GD", name), series("d", "SGD", name)
        ratio = gd_d / sgd_d
        key = "exp" if k == 0 else "power"
        numbers[f"d_{key}_ratio_max"] = float(ratio.max())
        numbers[f"d_{key}_ratio_slope"] = loglog_slope(ratio.index.to_numpy(), ratio)
        numbers[f"d_{key}_gd_slope"] = loglog_slope(gd_d.index.to_numpy(), gd_d)
        numbers[f"d_{key}_sgd_slope"] = loglog_slope(sgd_d.index.to_numpy(), sgd_d)
        max_ratio.append(float(ratio.max()))
        ratio_slopes[name] = numbers[f"d_{key}_ratio_slope"]
        claims.append(
            Claim(
                PAPER,
                f"fast, continuously decaying spectrum ({name}): GD/SGD does not grow with n "
                "(log-log slope of the ratio ≤ 0 within the drift tolerance)",
                predicted=0.0,
                measured=ratio_slopes[name],
                tolerance=t_d,
                comparison="at_most",
            )
        )
    numbers["d_slope_tolerance"] = t_d
    claims.append(
        Claim(
            PAPER,
            f"GD dominates SGD on fast, continuously decaying spectra: max over both spectra and all n of "
            f"tuned-GD/tuned-SGD ≤ C = {C:g} (same constant as panel (a); the paper's is not public)",
            predicted=C,
            measured=max(max_ratio),
            tolerance=0.0,  # exact risks: no measurement noise to allow for
            comparison="at_most",
        )
    )
    return RunResult(numbers=numbers, claims=claims, checks=checks)


# --------------------------------------------------------------------------- plot


def plot(data: Path, out_prefix: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    inst = pd.read_csv(data / "instances.csv")
    curves = pd.read_csv(data / "curves.csv")
    summary = json.loads((data / "summary.json").read_text())
    numbers = summary["numbers"]
    cfg = json.loads((data / "provenance.json").read_text())["config"]
    C = cfg["gd_ridge_constant"]
    sns.set_theme(style="whitegrid", context="paper")
    colors = {"GD": "tab:blue", "ridge": "tab:red", "SGD": "tab:green"}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))

    ax = axes[0, 0]
    inst = inst.assign(x=inst.b / (2 * inst.a + 1))
    for col, marker, label in (
        ("ratio_tuned", "o", "best GD / best ridge"),
        ("ratio_comparable_max", "^", "max over λ of GD(T=1/λ) / ridge(λ)"),
    ):
        ax.scatter(inst.x, inst[col], s=16, marker=marker, alpha=0.75, label=label)
    ax.axhline(C, color="k", ls="--", lw=1, label=f"C = {C:g}")
    ax.axhline(1, color="0.5", ls=":", lw=1)
    ax.axvline(1, color="0.7", ls="-", lw=0.8)
    ax.set(
        yscale="log",
        xlabel="b / (2a + 1)   (> 1: ridge saturates)",
        ylabel="risk ratio (same design X)",
        title=f"(a) {numbers['a_instances']} random power laws: GD vs ridge "
        f"(max tuned ratio {numbers['a_max_ratio_tuned']:.3f})",
    )
    ax.legend(fontsize=7, loc="lower left")

    styles = {"GD": ("o", "-", 2.0), "ridge": ("s", "--", 1.2), "SGD": ("D", "-", 1.6)}

    def risk_panel(ax, panel, title, slope_text, theory):
        sel = curves[curves.panel == panel]
        for method, g in sel.groupby("method"):
            marker, ls, lw = styles[method]
            ax.plot(
                g.n,
                g.risk,
                marker=marker,
                ls=ls,
                color=colors[method],
                ms=4,
                lw=lw,
                label=f"{method}: {slope_text[method]}",
            )
            ax.fill_between(g.n, g.risk_lo, g.risk_hi, color=colors[method], alpha=0.15, lw=0)
            if method in theory:  # reference line n^slope through the middle point
                n = g.n.to_numpy(float)
                mid = len(n) // 2
                ref = g.risk.to_numpy()[mid] * (n / n[mid]) ** theory[method]
                ax.plot(n, ref, ls=":", color="k", lw=0.9)
        ax.plot([], [], ls=":", color="k", lw=0.9, label="theory slope (through middle point)")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="samples n",
            ylabel=r"tuned excess risk $\mathbb{E}\|\hat w-w^*\|_H^2$",
            title=title,
        )
        ax.legend(fontsize=7, loc="lower left")

    pc = cfg["power"]
    risk_panel(
        axes[0, 1],
        "b",
        f"(b) power law a={pc['spectrum_exponent']:g}, b={pc['source_exponent']:g}, d={pc['dim']}: ridge saturates",
        {
            "GD": f"slope {numbers['b_gd_slope']:+.3f} (theory {numbers['b_gd_slope_theory']:+.3f})",
            "ridge": f"slope {numbers['b_ridge_slope']:+.3f} (theory {numbers['b_ridge_slope_theory']:+.3f})",
        },
        {"GD": numbers["b_gd_slope_theory"], "ridge": numbers["b_ridge_slope_theory"]},
    )
    tc = cfg["two_scale"]
    risk_panel(
        axes[1, 0],
        "c",
        f"(c) {tc['head_dim']} unit spike(s) + flat tail (trace {tc['tail_trace_coef']:g}·n^"
        f"{tc['tail_trace_exponent']:g}, dim {tc['tail_dim_coef']:g}·n^{tc['tail_dim_exponent']:g}): SGD beats GD",
        {
            "GD": f"slope {numbers['c_gd_slope']:+.3f} (theory {numbers['c_gd_slope_theory']:+.3f})",
            "ridge": f"slope {numbers['c_ridge_slope']:+.3f}",
            "SGD": f"slope {numbers['c_sgd_slope']:+.3f} (theory {numbers['c_sgd_slope_theory']:+.3f})",
        },
        {"GD": numbers["c_gd_slope_theory"], "SGD": numbers["c_sgd_slope_theory"]},
    )

    ax = axes[1, 1]
    sel = curves[curves.panel == "d"].pivot_table(index=["spectrum", "n"], columns="method", values="risk")
    for (name, g), color in zip(sel.groupby(level=0), ("tab:purple", "tab:orange"), strict=False):
        n = g.index.get_level_values(1)
        ax.plot(n, g.GD / g.SGD, "o-", color=color, ms=4, lw=1.6, label=f"{name}: GD/SGD")
        ax.plot(n, g.ridge / g.SGD, "s:", color=color, ms=3, alpha=0.7, label=f"{name}: ridge/SGD")
    ax.axhline(C, color="k", ls="--", lw=1, label=f"C = {C:g}")
    ax.axhline(1, color="0.5", ls=":", lw=1)
    ax.set(
        xscale="log",
        yscale="log",
        ylim=(0.1, 3 * C),
        xlabel="samples n",
        ylabel="tuned risk ratio (GD or ridge over SGD)",
        title="(d) fast, continuously decaying spectra: GD ≤ C·SGD",
    )
    ax.legend(fontsize=7, loc="upper right", ncol=1, framealpha=0.9)
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    for ax in axes.flat:  # plain tick labels: mathtext on every log tick is slow and adds nothing here
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(plain)
                axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.suptitle(
        "arXiv 2509.17251 — early-stopped GD vs ridge vs one-pass SGD (Gaussian design, exact risks; "
        "GD/ridge averaged over designs, band = per-design spread)",
        fontsize=11,
    )
    save_figure(fig, out_prefix)


EXPERIMENT = Experiment(
    name="gd_ridge_sgd",
    description="2509.17251: early-stopped GD vs ridge (dominance, saturation) and vs one-pass SGD (incomparable)",
    config_cls=Config,
    run=run,
    plot=plot,
    outputs=OUTPUTS,
)
