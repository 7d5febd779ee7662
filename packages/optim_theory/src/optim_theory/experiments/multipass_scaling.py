r"""fig_multipass_scaling — data reuse improves the scaling law of sketched linear regression.

Paper: arXiv 2506.08415 (Lin, Wu, Bartlett: "Improved scaling laws in linear regression via data
reuse"). Setting: x ~ N(0, H) in R^d with λ_i = i^(−a); w* ~ N(0, diag(i^(a−b))), so that
E[λ_i w*_i²] = i^(−b); y = ⟨w*, x⟩ + ε, Var ε = σ²; the model predicts ⟨v, Sx⟩ with a Gaussian
sketch S ∈ R^{M×d}, S_ij ~ N(0, 1/M); a > b > 1. Error: the excess test error
E(v) = E(⟨v, Sx⟩ − ⟨w*, x⟩)² (no ½), which includes the approximation error A = min_v E(v).
Claims tested:

- one-pass SGD (N fresh samples, N steps): E = Θ(M^(1−b) + N^((1−b)/a));
- multi-pass SGD (L steps over one dataset of N samples): E = Θ(M^(1−b) + L^((1−b)/a)) as long as
  L ≲ N^(a/b); with L = N^(a/b) that is N^((1−b)/b), better than one pass on the same data.

Forms chosen here (the paper's code is not public): multi-pass SGD samples with replacement
(i_t ~ Uniform{1..N} i.i.d.), batch 1, v₀ = 0; every run, one-pass or multi-pass, uses the step
decay :func:`~optim_theory.linreg.multipass.geometric_decay` over its own horizon (η₀ for
⌈T/⌈log₂T⌉⌉ steps, then halved per block) with η₀ = ``lr_times_trace``/tr(H).

How each number is computed:

- one-pass: exact — for fixed (S, w*) the sketched problem is the well-specified Gaussian model
  with covariance SHSᵀ and noise σ² + A (``linreg.sketch``), run through the exact second-moment
  recursion (``linreg.exact``); the error is linear in (e₀², σ² + A), so its average over the
  prior of w* is exact too: one-pass numbers are expectations over w* and the data given S;
- multi-pass: the mean iterate over the sampling is exactly GD on the empirical risk (closed form,
  ``linreg.multipass.EmpiricalGD``); the SGD fluctuation around it is simulated (``sgd_runs`` runs
  per dataset); each trial draws its own dataset, so the spread includes dataset noise;
- N → ∞ in panel (a): one-pass SGD with this schedule converges to v*, so the limit error is A.

Trials: each trial draws one (S, w*) (one S_max, nested for smaller M, see ``linreg.sketch``);
curves are trial means, bands ±1 standard deviation across trials — over S for the one-pass
curves (w* and data are integrated exactly), over (S, w*, data) for multi-pass (the paper's error
bars are over (S, w*)). Slopes are least-squares fits of log(trial-mean error) on log(x) over stated ranges, as
in the paper's figure. Each law is fitted where its own term dominates the Θ(· + ·) sum: the M-law
on A (the N = ∞ limit), the N- and L-laws on the total error E over ranges where the bias index
k(T) = (Σ_t η_t)^(1/a) ≈ (2η₀T/⌈log₂T⌉)^(1/a) of the learned directions stays ≪ M. In that regime the sketch keeps
the top k directions intact and E is close to the error of the unsketched model; E − A (also
recorded, as ``*_above_approx``) is biased steep there, because the directions beyond M that the
sketched bias no longer counts are the ones whose mass went into A. Known finite-size effects,
each of order 0.03–0.08 on a slope at these sizes: the step decay's effective horizon is
≈ 2T/log₂T, which flattens a fitted T-slope by the factor 1 − 1/ln T; the floor A flattens the
N- and L-fits as k(T) grows toward M; a finite d steepens A(M) as M approaches d (A → 0 at
M = d). The fit ranges keep these small; the tolerance (default ±0.1) covers them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

from fulcrum_core import Claim, ConfigError, Experiment, RunResult
from fulcrum_core.cli import save_figure

from ..grids import geometric_int_grid, loglog_slope
from ..linreg import multipass, sketch, spectra

PAPER = "2506.08415"
OUTPUTS = ("by_m.csv", "by_n.csv", "by_l.csv", "mc.csv")


@dataclass(frozen=True)
class SketchSizes:
    """Panel (a): error against the sketch size M."""

    m_min: int = 4
    m_max: int = 256
    points_per_octave: int = 1
    samples: tuple[int, ...] = (4096, 65536)
    fit_m_min: int = 8
    fit_m_max: int = 64

    def __post_init__(self):
        if not 1 <= self.m_min < self.m_max:
            raise ConfigError("by_m: need 1 <= m_min < m_max")
        if self.points_per_octave < 1:
            raise ConfigError("by_m.points_per_octave must be >= 1")
        if any(n < 1 for n in self.samples):
            raise ConfigError("by_m.samples: sample counts must be >= 1")
        if not self.m_min <= self.fit_m_min < self.fit_m_max <= self.m_max:
            raise ConfigError("by_m: need m_min <= fit_m_min < fit_m_max <= m_max")


@dataclass(frozen=True)
class OnePass:
    """Panel (b): error against the sample count N (one pass; multi-pass with L = N^(a/b))."""

    sketch_dim: int = 256
    n_min: int = 64
    n_max: int = 65536
    points_per_octave: int = 1
    fit_n_min: int = 128
    fit_n_max: int = 4096
    multipass_n_max: int = 4096

    def __post_init__(self):
        if self.sketch_dim < 1:
            raise ConfigError("one_pass.sketch_dim must be >= 1")
        if not 2 <= self.n_min < self.n_max:
            raise ConfigError("one_pass: need 2 <= n_min < n_max")
        if self.points_per_octave < 1:
            raise ConfigError("one_pass.points_per_octave must be >= 1")
        if not self.n_min <= self.fit_n_min < self.fit_n_max <= self.n_max:
            raise ConfigError("one_pass: need n_min <= fit_n_min < fit_n_max <= n_max")
        if self.multipass_n_max < 0:
            raise ConfigError("one_pass.multipass_n_max must be >= 0 (0: no multi-pass curve)")


@dataclass(frozen=True)
class MultiPass:
    """Panel (c): multi-pass error against the number of steps L for one N."""

    sketch_dim: int = 256
    samples: int = 1024
    l_min_factor: float = 0.25
    l_max_factor: float = 64.0
    points_per_octave: int = 2
    fit_l_min_factor: float = 0.25
    fit_l_max_factor: float = 1.0
    sgd_runs: int = 1

    def __post_init__(self):
        if self.sketch_dim < 1 or self.samples < 2:
            raise ConfigError("multi_pass: need sketch_dim >= 1 and samples >= 2")
        if not 0 < self.l_min_factor:
            raise ConfigError("multi_pass.l_min_factor (smallest L = factor·N) must be > 0")
        if not self.l_max_factor >= 1:
            raise ConfigError("multi_pass.l_max_factor (largest L = factor·N^(a/b)) must be >= 1")
        if self.points_per_octave < 1 or self.sgd_runs < 1:
            raise ConfigError("multi_pass: need points_per_octave >= 1 and sgd_runs >= 1")
        if not (self.fit_l_min_factor >= self.l_min_factor and 0 < self.fit_l_max_factor <= self.l_max_factor):
            raise ConfigError("multi_pass: the fit range must lie inside [l_min_factor·N, l_max_factor·N^(a/b)]")


@dataclass(frozen=True)
class Check:
    """Exact formulas against brute-force Monte Carlo at a small size."""

    dim: int = 12
    sketch_dim: int = 4
    steps: int = 64
    runs: int = 20000
    checkpoints: int = 4
    multipass_samples: int = 10
    multipass_steps: int = 100
    multipass_runs: int = 20000

    def __post_init__(self):
        if not 1 <= self.sketch_dim <= self.dim:
            raise ConfigError("check: need 1 <= sketch_dim <= dim")
        if self.steps < 2 or self.multipass_steps < 2 or self.checkpoints < 1:
            raise ConfigError("check: need steps >= 2, multipass_steps >= 2, checkpoints >= 1")
        if self.runs < 30 or self.multipass_runs < 30 or self.multipass_samples < 1:
            raise ConfigError("check: need runs >= 30, multipass_runs >= 30, multipass_samples >= 1")


@dataclass(frozen=True)
class Config:
    dim: int = 4000
    spectrum_exponent: float = 2.0
    source_exponent: float = 1.5
    noise_var: float = 1.0
    lr_times_trace: float = 0.25
    trials: int = 16
    slope_tolerance: float = 0.1
    seed: int = 0
    by_m: SketchSizes = field(default_factory=SketchSizes)
    one_pass: OnePass = field(default_factory=OnePass)
    multi_pass: MultiPass = field(default_factory=MultiPass)
    check: Check = field(default_factory=Check)

    def __post_init__(self):
        a, b = self.spectrum_exponent, self.source_exponent
        if not (b > 1 and a > b):
            raise ConfigError("need spectrum_exponent > source_exponent > 1 (the paper's a > b > 1)")
        if self.noise_var < 0:
            raise ConfigError("noise_var must be >= 0")
        if not 0 < self.lr_times_trace < 0.5:
            raise ConfigError("lr_times_trace must lie in (0, 0.5): η₀ tr(H) < 1/2 keeps SGD stable")
        if self.trials < 1:
            raise ConfigError("trials must be >= 1")
        if self.slope_tolerance < 0:
            raise ConfigError("slope_tolerance must be >= 0")
        for key, m in (
            ("by_m.m_max", self.by_m.m_max),
            ("one_pass.sketch_dim", self.one_pass.sketch_dim),
            ("multi_pass.sketch_dim", self.multi_pass.sketch_dim),
        ):
            if m > self.dim:
                raise ConfigError(f"{key} = {m} exceeds dim = {self.dim} (the sketch needs M <= d)")


# --------------------------------------------------------------------------- grids and fits


def steps_grid(n: int, a: float, b: float, mp: MultiPass) -> np.ndarray:
    """L values N^(a/b)·2^(j/ppo) from l_min_factor·N to l_max_factor·N^(a/b); contains N^(a/b)."""
    pivot = n ** (a / b)
    lo = math.floor(mp.points_per_octave * math.log2(mp.l_min_factor * n / pivot))
    hi = math.ceil(mp.points_per_octave * math.log2(mp.l_max_factor))
    grid = np.round(pivot * 2.0 ** (np.arange(lo, hi + 1) / mp.points_per_octave)).astype(int)
    return np.unique(grid[grid >= 1])


def _fit(frame: pd.DataFrame, x: str, y: str, lo: float, hi: float, min_points: int = 3):
    """Slope of the trial-mean curve and the sd of per-trial slopes over x ∈ [lo, hi]."""
    sel = frame[(frame[x] >= lo * (1 - 1e-9)) & (frame[x] <= hi * (1 + 1e-9))]
    xs = np.sort(sel[x].unique())
    if xs.size < min_points:
        return None, None, xs, f"only {xs.size} points in the fit range [{lo:g}, {hi:g}] (need {min_points})"
    mean = sel.groupby(x)[y].mean().loc[xs]
    per_trial = [loglog_slope(g[x], g[y]) for _, g in sel.groupby("trial")] if sel.trial.nunique() > 1 else []
    sd = float(np.std(per_trial, ddof=1)) if len(per_trial) > 1 else None
    return loglog_slope(xs, mean.to_numpy()), sd, xs, None


# --------------------------------------------------------------------------- run


def _multipass_error(task, Z, y, gd: multipass.EmpiricalGD, lrs, runs: int, seed: int) -> tuple[float, float]:
    """(SGD error estimate, exact error of the GD mean iterate) after the schedule ``lrs``.

    E‖v_L − v*‖²_G = ‖ū_L − v*‖²_G + E‖v_L − ū_L‖²_G; the first term is exact, the second is the
    average over ``runs`` simulated with-replacement SGD runs (see ``linreg.multipass``).
    """
    u = gd.iterate(lrs)
    gd_error = float(task.error_of_eig(u))
    v = multipass.simulate_multipass_sgd(Z, y, lrs, runs=runs, seed=seed)[:, -1]
    fluct = float(np.mean(((v - u) ** 2) @ task.mu))
    return gd_error + fluct, gd_error


def run(cfg: Config, out: Path) -> RunResult:
    a, b, sigma2 = cfg.spectrum_exponent, cfg.source_exponent, cfg.noise_var
    lam = spectra.power_law(cfg.dim, a)
    prior = spectra.source_prior(lam, b)  # E w*_i² with λ_i E w*_i² = i^(−b)
    lr = cfg.lr_times_trace / lam.sum()
    m_max = max(cfg.by_m.m_max, cfg.one_pass.sketch_dim, cfg.multi_pass.sketch_dim)
    m_grid = geometric_int_grid(cfg.by_m.m_min, cfg.by_m.m_max, cfg.by_m.points_per_octave)
    n_grid = geometric_int_grid(cfg.one_pass.n_min, cfg.one_pass.n_max, cfg.one_pass.points_per_octave)
    mp = cfg.multi_pass
    n_c = mp.samples
    pivot = n_c ** (a / b)
    l_grid = steps_grid(n_c, a, b, mp)

    rows_m, rows_n, rows_l = [], [], []
    for trial in tqdm(range(cfg.trials), desc="trials (S, w*)", unit="trial"):
        rng = np.random.default_rng([cfg.seed, trial])
        S_max = sketch.gaussian_sketch(m_max, cfg.dim, rng)
        w_star = rng.standard_normal(cfg.dim) * np.sqrt(prior)
        G_max = sketch.sketch_gram(S_max, lam)
        C_max = sketch.prior_cross_moment(S_max, lam, prior)

        def task_for(m: int, S_max=S_max, w_star=w_star, G_max=G_max):
            """(S, w*) of this trial at sketch size m: drives the multi-pass data."""
            S = np.sqrt(m_max / m) * S_max[:m]
            return sketch.sketched_task(S, lam, w_star, gram=sketch.nested_gram(G_max, m))

        def prior_task_for(m: int, S_max=S_max, G_max=G_max, C_max=C_max):
            """S of this trial at sketch size m, w* averaged out exactly: one-pass errors."""
            S = np.sqrt(m_max / m) * S_max[:m]
            return sketch.sketched_task_prior(
                S, lam, prior, gram=sketch.nested_gram(G_max, m), cross=sketch.nested_gram(C_max, m)
            )

        # (a) error against M: N = ∞ (= A) and one pass at the configured N
        for m in m_grid:
            task = prior_task_for(int(m))
            rows_m.append(_row_m(trial, m, "N = ∞ (approximation error A)", 0, task.approx_error, task.approx_error))
            for n in cfg.by_m.samples:
                err = sketch.one_pass_error(task, sigma2, multipass.geometric_decay(lr, n))[-1]
                rows_m.append(_row_m(trial, m, f"one pass, N = {n}", n, err, task.approx_error))

        # (b) error against N at fixed M
        prior_task = prior_task_for(cfg.one_pass.sketch_dim)
        task = task_for(cfg.one_pass.sketch_dim)
        for n in n_grid:
            err = sketch.one_pass_error(prior_task, sigma2, multipass.geometric_decay(lr, int(n)))[-1]
            rows_n.append(_row_n(trial, n, "one pass (exact)", n, err, err, prior_task.approx_error))
            if n <= cfg.one_pass.multipass_n_max:
                data_rng = np.random.default_rng([cfg.seed, trial, 1, int(n)])
                Z, y = sketch.sample_sketched_data(task, int(n), sigma2, data_rng)
                gd = multipass.EmpiricalGD.from_data(Z, y)
                steps = max(1, round(n ** (a / b)))
                sgd_err, gd_err = _multipass_error(
                    task, Z, y, gd, multipass.geometric_decay(lr, steps), mp.sgd_runs, _seed(cfg, trial, 2, n)
                )
                rows_n.append(_row_n(trial, n, "multi-pass, L = N^(a/b)", steps, sgd_err, gd_err, task.approx_error))

        # (c) multi-pass error against L at fixed N
        task = task_for(mp.sketch_dim)
        data_rng = np.random.default_rng([cfg.seed, trial, 3])
        Z, y = sketch.sample_sketched_data(task, n_c, sigma2, data_rng)
        gd = multipass.EmpiricalGD.from_data(Z, y)
        for steps in l_grid:
            sgd_err, gd_err = _multipass_error(
                task, Z, y, gd, multipass.geometric_decay(lr, int(steps)), mp.sgd_runs, _seed(cfg, trial, 4, steps)
            )
            rows_l.append(
                {
                    "trial": trial,
                    "steps": int(steps),
                    "method": "multi-pass",
                    "error": sgd_err,
                    "gd_error": gd_err,
                    "approx_error": task.approx_error,
                }
            )
        prior_task = prior_task_for(mp.sketch_dim)
        one = sketch.one_pass_error(prior_task, sigma2, multipass.geometric_decay(lr, n_c))[-1]
        rows_l.append(
            {
                "trial": trial,
                "steps": n_c,
                "method": "one pass (exact)",
                "error": one,
                "gd_error": np.nan,
                "approx_error": prior_task.approx_error,
            }
        )

    by_m, by_n, by_l = pd.DataFrame(rows_m), pd.DataFrame(rows_n), pd.DataFrame(rows_l)
    for frame in (by_m, by_n, by_l):
        frame["above_approx"] = frame["error"] - frame["approx_error"]
    by_m.to_csv(out / "by_m.csv", index=False)
    by_n.to_csv(out / "by_n.csv", index=False)
    by_l.to_csv(out / "by_l.csv", index=False)

    mc_frame, checks = monte_carlo_check(cfg)
    mc_frame.to_csv(out / "mc.csv", index=False)

    numbers, claims = _claims(cfg, lr, by_m, by_n, by_l, pivot)
    return RunResult(numbers=numbers, claims=claims, checks=checks)


def _seed(cfg: Config, *parts) -> int:
    return int(np.random.default_rng([cfg.seed, *[int(p) for p in parts]]).integers(2**62))


def _row_m(trial, m, curve, n, err, approx):
    return {
        "trial": trial,
        "sketch_dim": int(m),
        "curve": curve,
        "samples": int(n),
        "error": float(err),
        "approx_error": float(approx),
    }


def _row_n(trial, n, method, steps, err, gd_err, approx):
    return {
        "trial": trial,
        "samples": int(n),
        "method": method,
        "steps": int(steps),
        "error": float(err),
        "gd_error": float(gd_err),
        "approx_error": float(approx),
    }


def _horizon(lr: float, steps) -> np.ndarray:
    """Effective horizon Σ_t η_t / η₀ of the step-decay schedule over T steps (≈ 2T/⌈log₂T⌉)."""
    return np.array([multipass.geometric_decay(lr, int(t)).sum() / lr for t in np.atleast_1d(steps)])


def _bias_index(lr: float, steps: float, a: float) -> float:
    """k(T) = (η₀ Σ_t η_t/η₀)^(1/a): the directions with μ_k ≳ 1/(Σ_t η_t) are learned after T steps."""
    return float((lr * _horizon(lr, steps)[0]) ** (1 / a))


def _claims(cfg: Config, lr: float, by_m, by_n, by_l, pivot: float):
    a, b = cfg.spectrum_exponent, cfg.source_exponent
    tol = cfg.slope_tolerance  # ±0.1 on a log-log slope: see the module docstring's finite-size effects
    mp, op = cfg.multi_pass, cfg.one_pass
    n_c = mp.samples
    numbers: dict = {
        "lr": lr,
        "trace_H": float(spectra.power_law(cfg.dim, a).sum()),
        "trials": cfg.trials,
        "predicted_slope_M": 1 - b,
        "predicted_slope_N": (1 - b) / a,
        "predicted_slope_L": (1 - b) / a,
        "predicted_slope_N_multipass": (1 - b) / b,
        "multipass_samples": n_c,
        "multipass_pivot_steps": pivot,
    }
    claims = []

    # (a) approximation error (the N → ∞ limit of one-pass SGD) against M
    approx = by_m[by_m.samples == 0]
    slope, sd, xs, reason = _fit(approx, "sketch_dim", "error", cfg.by_m.fit_m_min, cfg.by_m.fit_m_max)
    numbers.update(slope_M=slope, slope_M_trial_sd=sd, fit_M_range=_range(xs))
    claims.append(
        Claim(
            PAPER,
            "error vs sketch size M as N → ∞ (one-pass limit = approximation error A) scales as M^(1−b) "
            f"(a={a:g}, b={b:g}; log-log fit of the trial mean)",
            predicted=1 - b,
            measured=slope,
            tolerance=tol,
            untestable_reason=reason,
        )
    )

    # (b) one-pass error against N
    one = by_n[by_n.method == "one pass (exact)"]
    slope, sd, xs, reason = _fit(one, "samples", "error", op.fit_n_min, op.fit_n_max)
    above, _, _, _ = _fit(one, "samples", "above_approx", op.fit_n_min, op.fit_n_max)
    numbers.update(slope_N_one_pass=slope, slope_N_one_pass_trial_sd=sd, slope_N_one_pass_above_approx=above)
    numbers["fit_N_range"] = _range(xs)
    if xs.size:
        numbers["fit_N_max_bias_index_over_M"] = _bias_index(lr, xs.max(), a) / op.sketch_dim
        fit_sel = one[(one.samples >= xs.min()) & (one.samples <= xs.max())].groupby("samples").error.mean()
        numbers["slope_N_one_pass_vs_horizon"] = loglog_slope(_horizon(lr, fit_sel.index), fit_sel.to_numpy())
    claims.append(
        Claim(
            PAPER,
            f"one-pass SGD: error decays as N^((1−b)/a) while that term dominates (M = {op.sketch_dim}; "
            "log-log fit of the trial mean)",
            predicted=(1 - b) / a,
            measured=slope,
            tolerance=tol,
            untestable_reason=reason,
        )
    )

    # (c) multi-pass error against L, for L up to fit_l_max_factor·N^(a/b)
    multi = by_l[by_l.method == "multi-pass"]
    lo, hi = mp.fit_l_min_factor * n_c, mp.fit_l_max_factor * pivot
    slope, sd, xs, reason = _fit(multi, "steps", "error", lo, hi)
    above, _, _, _ = _fit(multi, "steps", "above_approx", lo, hi)
    numbers.update(slope_L_multi_pass=slope, slope_L_multi_pass_trial_sd=sd, slope_L_multi_pass_above_approx=above)
    numbers["fit_L_range"] = _range(xs)
    mean_l = multi.groupby("steps")[["error", "gd_error", "above_approx"]].mean()
    if xs.size:
        numbers["fit_L_max_bias_index_over_M"] = _bias_index(lr, xs.max(), a) / mp.sketch_dim
        fit_sel = mean_l.loc[xs, "error"]
        numbers["slope_L_multi_pass_vs_horizon"] = loglog_slope(_horizon(lr, xs), fit_sel.to_numpy())
    claims.append(
        Claim(
            PAPER,
            f"multi-pass SGD (with replacement) on N = {n_c} samples: error decays as L^((1−b)/a) "
            f"for L ≤ {mp.fit_l_max_factor:g}·N^(a/b) (log-log fit of the trial mean)",
            predicted=(1 - b) / a,
            measured=slope,
            tolerance=tol,
            untestable_reason=reason,
        )
    )
    # where the L-law stops: slope beyond N^(a/b), the minimising L, in steps and in effective horizon
    beyond = mean_l[mean_l.index >= pivot * (1 - 1e-9)]
    if len(beyond) >= 3:
        numbers["slope_L_beyond_pivot"] = loglog_slope(beyond.index, beyond["error"])
    l_min = int(mean_l["error"].idxmin())
    numbers.update(
        argmin_L=l_min,
        argmin_L_over_pivot=float(l_min / pivot),
        argmin_L_horizon_over_pivot=float(_horizon(lr, l_min)[0] / pivot),
        argmin_L_is_grid_end=bool(l_min == mean_l.index.max()),
        min_error_multi_pass=float(mean_l["error"].min()),
    )
    l_star = int(mean_l.index[np.argmin(np.abs(np.log(mean_l.index / pivot)))])
    one_c = by_l[by_l.method == "one pass (exact)"].set_index("trial")["error"]
    multi_at = multi[multi.steps == l_star].set_index("trial")["error"]
    ratio = float(multi_at.mean() / one_c.mean())
    numbers.update(
        one_pass_error_at_N=float(one_c.mean()),
        multi_pass_error_at_pivot=float(multi_at.mean()),
        multi_over_one_pass_at_pivot=ratio,
        multi_beats_one_pass_fraction=float((multi_at < one_c.loc[multi_at.index]).mean()),
        pivot_steps_used=l_star,
        sgd_fluctuation_share_at_pivot=float(1 - mean_l.loc[l_star, "gd_error"] / mean_l.loc[l_star, "error"]),
    )
    claims.append(
        Claim(
            PAPER,
            f"data reuse helps: multi-pass SGD with L ≈ N^(a/b) = {l_star} steps on the same N = {n_c} samples has a "
            "lower error than one-pass SGD (ratio of trial means, multi / one)",
            predicted=1.0,
            measured=ratio,
            tolerance=0.0,
            comparison="at_most",
        )
    )

    # (b') improved law: multi-pass with L = N^(a/b) against N
    mpn = by_n[by_n.method == "multi-pass, L = N^(a/b)"]
    slope = sd = above = None
    xs = np.array([])
    if mpn.empty:
        reason = "no multi-pass runs (one_pass.multipass_n_max < n_min)"
    else:
        hi = min(op.fit_n_max, op.multipass_n_max)
        slope, sd, xs, reason = _fit(mpn, "samples", "error", op.fit_n_min, hi)
        above, _, _, _ = _fit(mpn, "samples", "above_approx", op.fit_n_min, hi)
    numbers.update(
        slope_N_multi_pass=slope,
        slope_N_multi_pass_trial_sd=sd,
        slope_N_multi_pass_above_approx=above,
        fit_N_multi_pass_range=_range(xs),
    )
    if xs.size:
        numbers["fit_N_multi_pass_max_bias_index_over_M"] = (
            _bias_index(lr, round(xs.max() ** (a / b)), a) / op.sketch_dim
        )
    claims.append(
        Claim(
            PAPER,
            "improved scaling law: multi-pass SGD with L = N^(a/b) has error decaying as N^((1−b)/b) "
            "(log-log fit of the trial mean)",
            predicted=(1 - b) / b,
            measured=slope,
            tolerance=tol,
            untestable_reason=reason,
        )
    )
    return numbers, claims


def _range(xs) -> list[int] | None:
    xs = np.asarray(xs)
    return [int(xs.min()), int(xs.max())] if xs.size else None


# --------------------------------------------------------------------------- Monte-Carlo check


def monte_carlo_check(cfg: Config):
    """Exact formulas vs brute force at small (d, M): one-pass reduction and multi-pass recursion."""
    c = cfg.check
    a, b, sigma2 = cfg.spectrum_exponent, cfg.source_exponent, cfg.noise_var
    rng = np.random.default_rng([cfg.seed, 99])
    lam = spectra.power_law(c.dim, a)
    S = sketch.gaussian_sketch(c.sketch_dim, c.dim, rng)
    w_star = rng.standard_normal(c.dim) * np.sqrt(spectra.source_prior(lam, b))
    task = sketch.sketched_task(S, lam, w_star)
    lr = cfg.lr_times_trace / lam.sum()

    # one pass: exact reduction vs SGD on (Sx, y) with x ∈ R^d drawn directly
    lrs = multipass.geometric_decay(lr, c.steps)
    record = np.unique(np.round(np.geomspace(1, c.steps, c.checkpoints)).astype(int))
    exact_one = sketch.one_pass_error(task, sigma2, lrs)[record]
    sim_one = sketch.simulate_sketched_sgd(
        S, lam, w_star, sigma2, lrs, runs=c.runs, seed=_seed(cfg, 99, 1), record_steps=record
    )

    # multi pass: exact recursion (GD part + fluctuation) vs simulated with-replacement SGD
    X = rng.standard_normal((c.multipass_samples, c.dim)) * np.sqrt(lam)
    Z = X @ S.T
    y = X @ w_star + np.sqrt(sigma2) * rng.standard_normal(c.multipass_samples)
    lrs_mp = multipass.geometric_decay(2 * lr, c.multipass_steps)
    record_mp = np.unique(np.round(np.geomspace(1, c.multipass_steps, c.checkpoints)).astype(int))
    G = sketch.sketch_gram(S, lam)
    gd_part, fluct = multipass.multipass_expected_error(Z, y, lrs_mp, G, task.v_star, record_steps=record_mp)
    exact_mp = task.approx_error + gd_part + fluct
    iters = multipass.simulate_multipass_sgd(
        Z, y, lrs_mp, runs=c.multipass_runs, seed=_seed(cfg, 99, 2), record_steps=record_mp
    )
    sim_mp = sketch.test_error(S, lam, w_star, iters)
    closed = multipass.EmpiricalGD.from_data(Z, y).iterate(lrs_mp)
    closed_gd = float((closed - task.v_star) @ G @ (closed - task.v_star))

    simultaneous = record.size + record_mp.size
    z = stats.norm.ppf(1 - 0.05 / (2 * simultaneous))
    rows = []
    for check, steps, ex, sim in (
        ("one pass: exact reduction vs brute force", record, exact_one, sim_one),
        ("multi-pass: exact recursion vs simulation", record_mp, exact_mp, sim_mp),
    ):
        mean = sim.mean(axis=0)
        se = sim.std(axis=0, ddof=1) / np.sqrt(sim.shape[0])
        for j, t in enumerate(steps):
            rows.append(
                {
                    "check": check,
                    "t": int(t),
                    "exact": float(ex[j]),
                    "mc_mean": float(mean[j]),
                    "mc_lo": float(mean[j] - z * se[j]),
                    "mc_hi": float(mean[j] + z * se[j]),
                    "z": float((ex[j] - mean[j]) / se[j]),
                }
            )
    frame = pd.DataFrame(rows)
    frame["inside"] = (frame.mc_lo <= frame.exact) & (frame.exact <= frame.mc_hi)
    checks = {
        "mc_dim": c.dim,
        "mc_sketch_dim": c.sketch_dim,
        "mc_runs": c.runs,
        "mc_multipass_runs": c.multipass_runs,
        "mc_intervals": int(len(frame)),
        "mc_interval_level": "simultaneous 95% (Bonferroni over all intervals)",
        "mc_exact_inside_all": bool(frame["inside"].all()),
        "mc_max_abs_z": float(frame["z"].abs().max()),
        "gd_closed_form_vs_recursion_rel_diff": float(abs(closed_gd - gd_part[-1]) / gd_part[-1]),
    }
    return frame, checks


# --------------------------------------------------------------------------- plot


def plot(data: Path, out_prefix: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    by_m = pd.read_csv(data / "by_m.csv")
    by_n = pd.read_csv(data / "by_n.csv")
    by_l = pd.read_csv(data / "by_l.csv")
    mc = pd.read_csv(data / "mc.csv")
    summary = json.loads((data / "summary.json").read_text())
    numbers = summary["numbers"]
    cfg = json.loads((data / "provenance.json").read_text())["config"]
    a, b = cfg["spectrum_exponent"], cfg["source_exponent"]
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    ylabel = r"excess test error $\mathbb{E}\,(\langle v, Sx\rangle - \langle w^*, x\rangle)^2$"

    # (a)
    ax = axes[0, 0]
    curves = list(dict.fromkeys(by_m.curve))
    colors = dict(zip(curves, sns.color_palette("viridis", len(curves))[::-1], strict=True))
    for curve in curves:
        _band(ax, by_m[by_m.curve == curve], "sketch_dim", "error", colors[curve], curve)
    _fit_line(ax, by_m[by_m.samples == 0], "sketch_dim", "error", numbers.get("fit_M_range"), numbers.get("slope_M"))
    if numbers.get("fit_M_range"):
        ax.axvspan(*numbers["fit_M_range"], color="0.93", zorder=0, label="slope-fit range")
    _annotate(
        ax,
        [
            f"fit on A: slope {_fmt(numbers.get('slope_M'))} ± {_fmt(numbers.get('slope_M_trial_sd'))}",
            f"predicted 1 − b = {1 - b:+.3f}",
        ],
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="sketch size M (model parameters)",
        ylabel=ylabel,
        title="(a) error vs M, one-pass SGD (exact)",
    )
    ax.legend(fontsize=7, loc="lower left")

    # (b)
    ax = axes[0, 1]
    palette = {"one pass (exact)": "tab:blue", "multi-pass, L = N^(a/b)": "tab:red"}
    for method, color in palette.items():
        sel = by_n[by_n.method == method]
        if not sel.empty:
            label = method.replace("N^(a/b)", r"$N^{a/b}$") + " (SGD, simulated)" * (method != "one pass (exact)")
            _band(ax, sel, "samples", "error", color, label)
    approx = by_n[by_n.method == "one pass (exact)"].groupby("trial").approx_error.first().mean()
    ax.axhline(
        approx, color="0.4", ls=":", lw=1.2, label=f"approximation error A (M = {cfg['one_pass']['sketch_dim']})"
    )
    _annotate(
        ax,
        [
            f"one pass: slope {_fmt(numbers.get('slope_N_one_pass'))} ± "
            f"{_fmt(numbers.get('slope_N_one_pass_trial_sd'))} (pred. (1−b)/a = {(1 - b) / a:+.3f})",
            f"multi-pass: slope {_fmt(numbers.get('slope_N_multi_pass'))} ± "
            f"{_fmt(numbers.get('slope_N_multi_pass_trial_sd'))} (pred. (1−b)/b = {(1 - b) / b:+.3f})",
        ],
    )
    _fit_line(
        ax,
        by_n[by_n.method == "one pass (exact)"],
        "samples",
        "error",
        numbers.get("fit_N_range"),
        numbers.get("slope_N_one_pass"),
    )
    _fit_line(
        ax,
        by_n[by_n.method != "one pass (exact)"],
        "samples",
        "error",
        numbers.get("fit_N_multi_pass_range"),
        numbers.get("slope_N_multi_pass"),
    )
    if numbers.get("fit_N_range"):
        ax.axvspan(*numbers["fit_N_range"], color="0.93", zorder=0, label="slope-fit range")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="samples N",
        ylabel=ylabel,
        title=f"(b) error vs N, M = {cfg['one_pass']['sketch_dim']}",
    )
    ax.legend(fontsize=7, loc="lower left")

    # (c)
    ax = axes[1, 0]
    multi = by_l[by_l.method == "multi-pass"]
    _band(ax, multi, "steps", "error", "tab:red", "multi-pass SGD (with replacement; GD mean exact + simulated noise)")
    gd_mean = multi.groupby("steps").gd_error.mean()
    ax.plot(
        gd_mean.index,
        gd_mean.values,
        color="tab:orange",
        ls="--",
        lw=1.1,
        label="its mean iterate = GD on the empirical risk (exact)",
    )
    one = by_l[by_l.method == "one pass (exact)"].error
    n_c = cfg["multi_pass"]["samples"]
    pivot = numbers["multipass_pivot_steps"]
    ax.axhline(one.mean(), color="tab:blue", lw=1.3, label=f"one pass on N = {n_c} fresh samples (exact)")
    ax.axhspan(one.mean() - one.std(ddof=1), one.mean() + one.std(ddof=1), color="tab:blue", alpha=0.12)
    ax.axhline(
        by_l[by_l.method == "one pass (exact)"].approx_error.mean(),
        color="0.4",
        ls=":",
        lw=1.2,
        label="approximation error A",
    )
    best = multi.groupby("steps").error.mean()
    ax.plot(
        best.idxmin(),
        best.min(),
        marker="*",
        ms=11,
        color="k",
        ls="none",
        label=f"minimum over L: L = {best.idxmin() / pivot:.3g}" + r"$\cdot N^{a/b}$",
    )
    ax.axvline(n_c, color="0.3", lw=0.8, ls="-.")
    ax.axvline(pivot, color="0.3", lw=0.8, ls="--")
    ymax = ax.get_ylim()[1]
    ax.text(n_c, ymax, " L = N", fontsize=7, va="top")
    ax.text(pivot, ymax, r" L = $N^{a/b}$", fontsize=7, va="top")
    _fit_line(ax, multi, "steps", "error", numbers.get("fit_L_range"), numbers.get("slope_L_multi_pass"))
    if numbers.get("fit_L_range"):
        ax.axvspan(*numbers["fit_L_range"], color="0.93", zorder=0, label="slope-fit range")
    _annotate(
        ax,
        [
            f"fit: slope {_fmt(numbers.get('slope_L_multi_pass'))} ± "
            f"{_fmt(numbers.get('slope_L_multi_pass_trial_sd'))} (pred. (1−b)/a = {(1 - b) / a:+.3f})",
            f"slope beyond $N^{{a/b}}$: {_fmt(numbers.get('slope_L_beyond_pivot'))}; "
            f"multi/one at $N^{{a/b}}$: {numbers['multi_over_one_pass_at_pivot']:.2f}",
        ],
        loc="upper right",
        y=0.9,
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="SGD steps L (passes = L/N)",
        ylabel=ylabel,
        title=f"(c) multi-pass error vs L, N = {n_c}, M = {cfg['multi_pass']['sketch_dim']}",
    )
    ax.legend(fontsize=7, loc="lower left")

    # (d)
    ax = axes[1, 1]
    for (check, group), color in zip(mc.groupby("check", sort=False), ("tab:green", "tab:purple"), strict=False):
        ax.plot(group.t, group.exact, color=color, lw=1.2, label=f"{check}: exact")
        ax.errorbar(
            group.t,
            group.mc_mean,
            yerr=[group.mc_mean - group.mc_lo, group.mc_hi - group.mc_mean],
            fmt="o",
            ms=5,
            mfc="white",
            capsize=3,
            zorder=3,
            color=color,
            label=f"{check}: Monte Carlo (95% simult.)",
        )
    checks = summary["checks"]
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="step t",
        ylabel=ylabel,
        title=f"(d) exact vs Monte Carlo (d = {checks['mc_dim']}, M = {checks['mc_sketch_dim']})",
    )
    ax.legend(fontsize=7)

    fig.suptitle(
        rf"Sketched linear regression (arXiv 2506.08415): $\lambda_i = i^{{-{a:g}}}$, "
        rf"$\mathbb{{E}}\lambda_i w_i^{{*2}} = i^{{-{b:g}}}$, d = {cfg['dim']}, $\sigma^2$ = {cfg['noise_var']:g}, "
        rf"Gaussian sketch, batch 1, step decay from $\eta_0$ = {numbers['lr']:.3g}" + "\n"
        f"lines: means over {cfg['trials']} trials; bands: ±1 sd over S (one pass: exact in w* and data) "
        "or over (S, w*, data) (multi-pass)",
        fontsize=10,
    )
    save_figure(fig, out_prefix)


def _band(ax, frame, x, y, color, label):
    g = frame.groupby(x)[y]
    mean, sd = g.mean(), g.std(ddof=1).fillna(0.0)
    ax.plot(mean.index, mean.values, color=color, lw=1.6, marker="o", ms=2.5, label=label)
    lower = np.where(mean - sd > 0, mean - sd, mean * 0.5)
    ax.fill_between(mean.index, lower, mean + sd, color=color, alpha=0.15, lw=0)


def _fit_line(ax, frame, x, y, rng, slope, offset=0.0):
    if not rng or slope is None:
        return
    g = frame.groupby(x)[y].mean()
    g = g[(g.index >= rng[0]) & (g.index <= rng[1])]
    xs = np.asarray(g.index, dtype=float)
    intercept = np.mean(np.log(g.values) - slope * np.log(xs))
    ax.plot(xs, offset + np.exp(intercept) * xs**slope, color="k", ls="--", lw=1.0)


def _annotate(ax, lines, loc="upper right", y=0.97):
    ax.text(
        0.97,
        y,
        "\n".join(lines),
        transform=ax.transAxes,
        fontsize=7,
        ha="right",
        va="top",
        bbox={"facecolor": "white", "alpha": 0.85, "lw": 0},
    )


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


EXPERIMENT = Experiment(
    name="multipass_scaling",
    description="2506.08415: sketched linear regression, multi-pass vs one-pass SGD scaling laws in M, N and L",
    config_cls=Config,
    run=run,
    plot=plot,
    outputs=OUTPUTS,
)
