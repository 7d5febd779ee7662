"""fig_logreg_large_stepsize — large constant stepsizes accelerate GD on ℓ2-regularised logistic regression.

Paper: arXiv 2506.02336 (Wu, Marion, Bartlett). Objective on separable data with margin γ:

    F(w) = (1/n) Σᵢ log(1 + exp(−yᵢxᵢᵀw)) + (λ/2)‖w‖²,   ‖xᵢ‖ ≤ 1,

which is (β+λ)-smooth with β = λ_max(XᵀX/n)/4 and λ-strongly convex: κ = (β+λ)/λ. GD with a
constant stepsize η from w₀ = 0. Claims tested:

- small, classical stepsize η = 1/(β+λ) (F decreases monotonically): steps to ε-accuracy grow like
  Õ(κ) — log-log slope 1 of steps against κ;
- large stepsize beyond the stable regime (F non-monotone at first): Õ(√κ) — slope ½.

The stepsize form. The paper's acceleration regime takes η of order 1/√λ; its exact constant is not
public here, so we use η = c/√λ and report a sweep c ∈ ``large_step_constants``; the primary
constant (default c = 4) is the largest power of two for which GD converges on the whole default λ
grid. With it η far exceeds the classical stability limit 2/(β+λ) and F rises before it falls.

Accuracy is relative: ε = ``rel_tol``·F* (F* shrinks with λ; a relative target keeps "ε-accuracy"
meaningful across decades of λ and adds only a log factor). Steps are counted until the first t with
F(w_t) − F* ≤ ε. Slopes are fitted on κ ≥ ``kappa_fit_min``; "Õ" hides log factors: a factor
(log κ)^{±1} moves a fitted slope by ±1/log κ ≈ ±0.09…0.2 for κ ∈ [10², 10⁵], so the slope
tolerance is 0.15 (one log factor at κ ≈ 10³).

The independent check. GD is deterministic, so there is no Monte Carlo here: the exact minimum F* is
computed by Newton's method with Armijo line search (to a Newton decrement < 1e-14), and the tests
check that GD's limit matches it and that the gradient and Hessian match finite differences. The
(λ, η) map also overlays the exact local stability edge 2/λ_max(∇²F(w_λ)) from the Newton solution.

Data: ``logistic.data.pinned_margin_dataset`` — generic points with margin exactly γ (two points
pin it), tilted by ``skew`` so that the data mean is not the max-margin direction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fulcrum_core import Claim, ConfigError, Experiment, RunResult
from fulcrum_core.cli import save_figure

from ..grids import loglog_slope
from ..logistic import data as logistic_data
from ..logistic import gd

PAPER = "2506.02336"
OUTPUTS = ("steps.csv", "optimum.csv", "trajectories.csv", "heatmap.csv")


@dataclass(frozen=True)
class Data:
    n: int = 60
    dim: int = 5
    margin: float = 0.15
    skew: float = 1.5

    def __post_init__(self):
        if self.n < 3:
            raise ConfigError("data.n must be >= 3")
        if self.dim < 2:
            raise ConfigError("data.dim must be >= 2")
        if not 0 < self.margin < 1:
            raise ConfigError("data.margin must lie in (0, 1)")


@dataclass(frozen=True)
class Heatmap:
    eta_min: float = 0.3
    eta_max: float = 30000.0
    etas_per_decade: int = 4
    max_steps: int = 30000

    def __post_init__(self):
        if not 0 < self.eta_min < self.eta_max:
            raise ConfigError("heatmap: need 0 < eta_min < eta_max")
        if self.etas_per_decade < 1 or self.max_steps < 10:
            raise ConfigError("heatmap: need etas_per_decade >= 1 and max_steps >= 10")


@dataclass(frozen=True)
class Config:
    data: Data = field(default_factory=Data)
    lambda_max: float = 1e-2
    lambda_min: float = 1e-6
    lambdas_per_decade: int = 2
    rel_tol: float = 1e-6
    large_step_constants: tuple[float, ...] = (1.0, 2.0, 4.0)
    primary_constant: float = 4.0
    kappa_fit_min: float = 100.0
    slope_tolerance: float = 0.15
    max_steps: int = 2_000_000
    trajectory_lambda: float = 1e-4
    trajectory_steps: int = 20000
    seed: int = 0
    heatmap: Heatmap = field(default_factory=Heatmap)

    def __post_init__(self):
        if not 0 < self.lambda_min < self.lambda_max:
            raise ConfigError("need 0 < lambda_min < lambda_max")
        if self.lambdas_per_decade < 1:
            raise ConfigError("lambdas_per_decade must be >= 1")
        if not 0 < self.rel_tol < 1:
            raise ConfigError("rel_tol must lie in (0, 1)")
        if not self.large_step_constants or min(self.large_step_constants) <= 0:
            raise ConfigError("large_step_constants must be a non-empty list of positive numbers")
        if self.primary_constant not in self.large_step_constants:
            raise ConfigError("primary_constant must be one of large_step_constants")
        if self.kappa_fit_min < 1:
            raise ConfigError("kappa_fit_min must be >= 1")
        if self.max_steps < 10 or self.trajectory_steps < 10:
            raise ConfigError("max_steps and trajectory_steps must be >= 10")


def lambda_grid(cfg: Config) -> np.ndarray:
    decades = np.log10(cfg.lambda_max / cfg.lambda_min)
    count = int(round(decades * cfg.lambdas_per_decade)) + 1
    return np.geomspace(cfg.lambda_max, cfg.lambda_min, count)


def eta_grid(h: Heatmap) -> np.ndarray:
    decades = np.log10(h.eta_max / h.eta_min)
    return np.geomspace(h.eta_min, h.eta_max, int(round(decades * h.etas_per_decade)) + 1)


def run(cfg: Config, out: Path) -> RunResult:
    dataset = logistic_data.pinned_margin_dataset(
        cfg.data.n, cfg.data.dim, cfg.data.margin, cfg.data.skew, seed=cfg.seed
    )
    Z = dataset.Z
    beta = gd.smoothness(Z)
    lams = lambda_grid(cfg)
    kappa = (beta + lams) / lams

    # Exact minima by Newton (the independent reference for every step count below).
    newton = [gd.newton_minimize(Z, lam) for lam in lams]
    f_star = np.array([r.value for r in newton])
    local_edge = np.array(
        [2.0 / np.linalg.eigvalsh(gd.hessian(Z, r.w, lam))[-1] for r, lam in zip(newton, lams, strict=True)]
    )
    optimum = pd.DataFrame(
        {
            "lam": lams,
            "kappa": kappa,
            "f_star": f_star,
            "w_norm": [float(np.linalg.norm(r.w)) for r in newton],
            "newton_iterations": [r.iterations for r in newton],
            "newton_decrement": [r.decrement for r in newton],
            "local_stability_edge": local_edge,
            "classical_eta": 1.0 / (beta + lams),
        }
    )
    optimum.to_csv(out / "optimum.csv", index=False)

    # Step counts: small stepsize and every large-stepsize constant, all λ, one compiled loop.
    methods = [("small", np.nan, 1.0 / (beta + lams))]
    methods += [("large", c, c / np.sqrt(lams)) for c in cfg.large_step_constants]
    all_lams = np.concatenate([lams for _ in methods])
    all_etas = np.concatenate([eta for _, _, eta in methods])
    all_fstar = np.concatenate([f_star for _ in methods])
    traj_index = int(np.argmin(np.abs(np.log(lams / cfg.trajectory_lambda))))
    record = [traj_index + i * lams.size for i in range(len(methods))]
    runs = gd.gd_steps_to_accuracy(
        Z,
        all_lams,
        all_etas,
        all_fstar,
        rel_tol=cfg.rel_tol,
        max_steps=cfg.max_steps,
        record=record,
        record_steps=cfg.trajectory_steps,
    )
    rows = []
    for i, (method, c, eta) in enumerate(methods):
        sl = slice(i * lams.size, (i + 1) * lams.size)
        for j in range(lams.size):
            steps = int(runs.steps[sl][j])
            rows.append(
                {
                    "method": method,
                    "c": c,
                    "lam": lams[j],
                    "kappa": kappa[j],
                    "eta": eta[j],
                    "eta_times_smoothness": eta[j] * (beta + lams[j]),
                    "steps": steps if steps >= 0 else np.nan,
                    "converged": steps >= 0,
                    "diverged": bool(runs.diverged[sl][j]),
                    "nonmonotone": bool(runs.nonmonotone[sl][j]),
                }
            )
    steps_frame = pd.DataFrame(rows)
    steps_frame.to_csv(out / "steps.csv", index=False)

    traj_rows = []
    for i, (method, c, _) in enumerate(methods):
        gap = runs.gaps[i]
        t = np.flatnonzero(np.isfinite(gap))
        traj_rows.append(
            pd.DataFrame(
                {"method": method, "c": c, "lam": lams[traj_index], "eta": all_etas[record[i]], "t": t, "gap": gap[t]}
            )
        )
    pd.concat(traj_rows).to_csv(out / "trajectories.csv", index=False)

    heat = heatmap(cfg, Z, lams, f_star)
    heat.to_csv(out / "heatmap.csv", index=False)

    # Fits on κ ≥ kappa_fit_min.
    fit = kappa >= cfg.kappa_fit_min
    numbers: dict = {
        "smoothness_beta": beta,
        "margin": dataset.margin,
        "lambdas": lams.tolist(),
        "kappa_fit_range": [float(kappa[fit].min()), float(kappa[fit].max())] if fit.any() else None,
    }

    def fitted(method: str, c: float | None):
        sel = steps_frame[(steps_frame.method == method) & ((steps_frame.c == c) if c is not None else True)]
        sel = sel[sel.kappa >= cfg.kappa_fit_min]
        if len(sel) < 3 or not sel.converged.all():
            bad = int((~sel.converged).sum())
            return None, f"{len(sel)} λ values with κ ≥ {cfg.kappa_fit_min:g}, {bad} not converged (need ≥ 3, all)"
        return loglog_slope(sel.kappa.to_numpy(), sel.steps.to_numpy()), None

    small_slope, small_reason = fitted("small", None)
    numbers["small_step_slope"] = small_slope
    large_slopes = {}
    for c in cfg.large_step_constants:
        large_slopes[c], _ = fitted("large", c)
        numbers[f"large_step_slope_c{c:g}"] = large_slopes[c]
    large_slope, large_reason = fitted("large", cfg.primary_constant)
    primary = steps_frame[(steps_frame.method == "large") & (steps_frame.c == cfg.primary_constant)]
    small = steps_frame[steps_frame.method == "small"]
    in_fit = primary.kappa >= cfg.kappa_fit_min
    nonmono_fraction = float(primary[in_fit].nonmonotone.mean()) if in_fit.any() else None
    numbers["large_step_nonmonotone_fraction"] = nonmono_fraction
    numbers["small_step_all_monotone"] = bool(not small.nonmonotone.any())
    numbers["speedup_at_max_kappa"] = float(small.steps.iloc[-1] / primary.steps.iloc[-1])
    numbers["primary_eta_over_classical_limit_min"] = (
        float((primary.eta * (beta + primary.lam) / 2.0)[in_fit].min()) if in_fit.any() else None
    )
    edge_slope = loglog_slope(1.0 / lams[fit], local_edge[fit]) if fit.sum() >= 2 else None
    numbers["local_edge_slope_vs_inv_lambda"] = edge_slope
    numbers["heatmap_status_counts"] = heat.status.value_counts().to_dict()

    checks = gd_limit_check(Z, lams, newton, beta)
    checks["newton_max_decrement"] = float(max(r.decrement for r in newton))
    checks["small_step_all_monotone"] = numbers["small_step_all_monotone"]

    claims = [
        Claim(
            PAPER,
            "small stepsize η = 1/(β+λ): steps to F − F* ≤ ε grow as Õ(κ) (log-log slope vs κ; "
            "tolerance = one log factor)",
            predicted=1.0,
            measured=small_slope,
            tolerance=cfg.slope_tolerance,
            untestable_reason=small_reason,
        ),
        Claim(
            PAPER,
            f"large stepsize η = {cfg.primary_constant:g}/√λ (our form of the paper's η ∝ 1/√λ): steps grow as "
            "Õ(√κ) (log-log slope vs κ; tolerance = one log factor)",
            predicted=0.5,
            measured=large_slope,
            tolerance=cfg.slope_tolerance,
            untestable_reason=large_reason,
        ),
        Claim(
            PAPER,
            "the accelerating large stepsize is beyond the stable regime: F(w_t) rises at some step before "
            "ε-accuracy (fraction of fitted λ values)",
            predicted=1.0,
            measured=nonmono_fraction,
            tolerance=0.0,
            comparison="at_least",
            untestable_reason=None if in_fit.any() else "no λ with κ ≥ kappa_fit_min",
        ),
    ]
    return RunResult(numbers=numbers, claims=claims, checks=checks)


def heatmap(cfg: Config, Z: np.ndarray, lams: np.ndarray, f_star: np.ndarray) -> pd.DataFrame:
    """Steps to ε on the (λ, η) grid; status converged / not converged in budget / diverged."""
    etas = eta_grid(cfg.heatmap)
    L, E = np.meshgrid(lams, etas, indexing="ij")
    F = np.repeat(f_star, etas.size)
    runs = gd.gd_steps_to_accuracy(Z, L.ravel(), E.ravel(), F, rel_tol=cfg.rel_tol, max_steps=cfg.heatmap.max_steps)
    status = np.where(runs.steps >= 0, "converged", np.where(runs.diverged, "diverged", "not converged in budget"))
    return pd.DataFrame(
        {
            "lam": L.ravel(),
            "eta": E.ravel(),
            "steps": np.where(runs.steps >= 0, runs.steps, np.nan),
            "status": status,
            "nonmonotone": runs.nonmonotone,
        }
    )


def gd_limit_check(Z: np.ndarray, lams: np.ndarray, newton, beta: float) -> dict:
    """GD's limit (small stepsize, run until ‖∇F‖ ≤ 1e-12) against Newton's minimiser, at the largest λ."""
    lam = float(lams[0])
    w, steps = gd.gd_limit(Z, lam, 1.0 / (beta + lam), max_steps=200_000, grad_tol=1e-12)
    ref = newton[0]
    return {
        "gd_limit_lambda": lam,
        "gd_limit_steps": steps,
        "gd_limit_rel_objective_diff": float(abs(gd.objective(Z, w, lam) - ref.value) / ref.value),
        "gd_limit_w_distance": float(np.linalg.norm(w - ref.w)),
    }


def plot(data: Path, out_prefix: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.colors import ListedColormap, LogNorm

    steps = pd.read_csv(data / "steps.csv")
    optimum = pd.read_csv(data / "optimum.csv")
    traj = pd.read_csv(data / "trajectories.csv")
    heat = pd.read_csv(data / "heatmap.csv")
    summary = json.loads((data / "summary.json").read_text())
    numbers = summary["numbers"]
    cfg = json.loads((data / "provenance.json").read_text())["config"]
    primary = cfg["primary_constant"]
    sns.set_theme(style="whitegrid", context="paper")
    constants = sorted(steps.loc[steps.method == "large", "c"].unique())
    reds = sns.color_palette("OrRd", len(constants) + 2)[2:]
    colour = {("small", None): "tab:blue"} | {("large", c): reds[i] for i, c in enumerate(constants)}

    def label(method, c):
        if method == "small":
            return "small: η = 1/(β+λ)"
        return f"large: η = {c:g}/√λ" + (" (primary)" if c == primary else "")

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))

    ax = axes[0]
    for (method, c), group in traj.groupby(["method", "c"], dropna=False):
        key = (method, None if method == "small" else c)
        ax.plot(group.t + 1, group.gap, color=colour[key], lw=1.3, label=label(method, c))
    lam_t = traj.lam.iloc[0]
    eps = cfg["rel_tol"] * float(optimum.loc[np.isclose(optimum.lam, lam_t), "f_star"].iloc[0])
    ax.axhline(eps, color="0.3", ls=":", lw=1, label=f"ε = {cfg['rel_tol']:g}·F*")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="step t + 1",
        ylabel=r"$F(w_t) - F^*$",
        title=f"GD trajectories at λ = {lam_t:.2g} (κ = {(numbers['smoothness_beta'] + lam_t) / lam_t:.3g})",
    )
    ax.legend(fontsize=7, loc="lower left")

    ax = axes[1]
    lo = cfg["kappa_fit_min"]
    for (method, c), group in steps.groupby(["method", "c"], dropna=False):
        key = (method, None if method == "small" else c)
        is_primary = method == "small" or c == primary
        slope = numbers["small_step_slope"] if method == "small" else numbers.get(f"large_step_slope_c{c:g}")
        text = label(method, c) + (f" — slope {slope:.2f}" if slope is not None else "")
        ax.plot(
            group.kappa,
            group.steps,
            "o" if is_primary else ".",
            color=colour[key],
            ms=5 if is_primary else 4,
            label=text,
            alpha=1.0 if is_primary else 0.8,
        )
        fit = group[(group.kappa >= lo) & group.converged]
        if slope is not None and len(fit) >= 2:
            coef = np.polyfit(np.log(fit.kappa), np.log(fit.steps), 1)
            kk = np.geomspace(fit.kappa.min(), fit.kappa.max(), 20)
            ax.plot(kk, np.exp(np.polyval(coef, np.log(kk))), color=colour[key], lw=1.8 if is_primary else 0.8)
    ax.axvspan(steps.kappa.min() * 0.8, lo, color="0.92", zorder=0, label=f"excluded from fits (κ < {lo:g})")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=r"condition number $\kappa = (\beta+\lambda)/\lambda$",
        ylabel=r"steps to $F - F^* \leq \varepsilon$",
        title="steps to ε-accuracy (lines: log-log fits; predicted slopes 1 and ½)",
    )
    ax.legend(fontsize=7, loc="upper left")

    ax = axes[2]
    lams = np.sort(heat.lam.unique())
    etas = np.sort(heat.eta.unique())
    grid = heat.pivot(index="eta", columns="lam", values="steps").loc[etas, lams].to_numpy()
    status = heat.pivot(index="eta", columns="lam", values="status").loc[etas, lams].to_numpy()

    def edges(v):
        r = np.sqrt(v[1:] / v[:-1])
        return np.concatenate([[v[0] / r[0]], v[:-1] * r, [v[-1] * r[-1]]])

    le, ee = edges(lams), edges(etas)
    mesh = ax.pcolormesh(le, ee, np.ma.masked_invalid(grid), norm=LogNorm(), cmap="viridis", shading="flat")
    code = np.where(status == "diverged", 1.0, np.where(status == "not converged in budget", 0.0, np.nan))
    ax.pcolormesh(le, ee, np.ma.masked_invalid(code), cmap=ListedColormap(["0.75", "0.1"]), vmin=0, vmax=1)
    fig.colorbar(mesh, ax=ax, label="steps to ε (log scale)")
    ll = np.geomspace(le[0], le[-1], 100)
    beta = numbers["smoothness_beta"]
    ax.plot(ll, 2 / (beta + ll), color="deepskyblue", ls="--", lw=1.6, label="classical stability limit 2/(β+λ)")
    ax.plot(ll, primary / np.sqrt(ll), color="tab:red", lw=1.6, label=f"η = {primary:g}/√λ (primary)")
    ax.plot(
        optimum.lam,
        optimum.local_stability_edge,
        color="magenta",
        marker="^",
        ms=4,
        lw=1.2,
        label=r"exact local edge $2/\lambda_{\max}(\nabla^2F(w_\lambda))$",
    )
    ax.fill_between([], [], color="0.75", label="not converged in budget")
    ax.fill_between([], [], color="0.1", label="diverged")
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(le[0], le[-1]),
        ylim=(ee[0], ee[-1]),
        xlabel="regularisation λ",
        ylabel="stepsize η",
        title=f"(λ, η) map: steps to ε (budget {cfg['heatmap']['max_steps']} steps)",
    )
    ax.legend(fontsize=6.5, loc="lower left", framealpha=0.9)

    d = cfg["data"]
    fig.suptitle(
        f"Constant-stepsize GD on ℓ2-regularised logistic regression (arXiv {PAPER}): separable data, n = {d['n']}, "
        f"d = {d['dim']}, margin γ = {d['margin']:g}, β = λ_max(XᵀX/n)/4 = {beta:.3g}, ε = {cfg['rel_tol']:g}·F*, "
        "F* by Newton",
        fontsize=10,
    )
    save_figure(fig, out_prefix)


EXPERIMENT = Experiment(
    name="logreg_large_stepsize",
    description="2506.02336: GD steps to ε vs κ, small (Õ(κ)) vs large η ∝ 1/√λ (Õ(√κ)) stepsize",
    config_cls=Config,
    run=run,
    plot=plot,
    outputs=OUTPUTS,
)
