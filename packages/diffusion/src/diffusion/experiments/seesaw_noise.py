"""seesaw_noise — does learning the low-noise denoiser hurt the high-noise fit? (arXiv 2508.16154)

Paper claim ("see-saw effect"): a network trained on the whole noise range fits the high-σ denoiser
worse than it could, because learning the low-σ denoiser competes for the same weights.

Design. One data set with a known reference denoiser D* (a Gaussian mixture: the *exact* posterior mean
E[x₀ | x₀ + σε = x]; digits/CIFAR-10: the empirical denoiser of the training set, which memorises it).
Identical networks (``train``: architecture, optimiser, batch size, steps) are trained with three
noise-level distributions p(σ), all derived from the same base distribution ``train.sigma``:

- ``full``: the base distribution (EDM log-normal ln σ ~ N(P_mean, P_std²), or log-uniform);
- ``high``: the base conditioned on σ ≥ σ_split (``loss.BandLimited``);
- ``low``: the base conditioned on σ < σ_split;
- ``high_matched`` (``matched_control``): like ``high`` but trained for round(m·steps) steps, where
  m = P_base(σ ≥ σ_split) — it sees as many high-σ training examples as ``full`` does. ``full`` vs
  ``high`` confounds interference (the see-saw) with dilution (``full`` spends only a fraction m of its
  examples on the high band); ``full`` vs ``high_matched`` removes the dilution.

Each arm is trained for ``seeds`` seeds (train.seed, train.seed + 1, …; the same seed gives every arm the
same initial weights and the same batch indices).

Error per noise level (``metrics.per_sigma_error``) on a log-spaced grid σ_1 < … < σ_G in
[eval_sigma_min, eval_sigma_max]:

    e(σ) = mean_i ‖D_θ(x_i; σ) − D*(x_i; σ)‖² / dim,   x_i = x0_i + σ ε_i,

with the same x0_i (``n_eval`` fresh mixture draws, or training images) and the same ε_i for every net
(common random numbers: differences between arms are not evaluation noise). The plot also shows the
error of the best constant denoiser D ≡ E[x₀] (a trivial reference; D* → E[x₀] as σ → ∞).

Band errors. high band H = grid σ ≥ σ_split, low band L = grid σ < σ_split; a net's band error is the
geometric mean over the band, E_B = exp(mean_{σ∈B} ln e(σ)), so the band ratio of two nets is the
geometric mean of their per-σ ratios (every σ counts equally, whatever its error scale). Ratios are paired
by seed: r_s = E_B(full, s)/E_B(other, s); reported is exp(mean_s ln r_s) with a percentile-bootstrap 95%
interval over seeds (``common.paired_difference`` on ln E_B).

Over training, every ``train.eval_every`` steps the same band errors are measured on ``track_points``
evaluation points (eval_fn of ``train_denoiser``; EMA weights when train.ema > 0). The late-window trend of
a curve is Δ = (OLS slope of ln E_B against step over the records with step ≥ (1 − late_fraction)·steps)
× (late_fraction·steps), the fitted log-change over that window (Δ < 0: falling).

Claims (ledger; each interval is a bootstrap 95% interval over training seeds):

1. see-saw at high σ: E_H(full)/E_H(high) — lower bound ≥ 1;
2. beyond dilution: E_H(full)/E_H(high_matched) — lower bound ≥ 1 (only with ``matched_control``);
3. control at low σ, low-only at least as good as full: E_L(full)/E_L(low) — lower bound ≥ 1 − 0.05
   (non-inferiority margin ``noninferiority_margin``);
4. see-saw over training, full net, late window: (a) its low-band error falls, upper bound of Δ_L ≤ 0;
   (b) its high-band error rises or plateaus, lower bound of Δ_H ≥ −ln(1 + ``plateau_tolerance``).

Caveats: the networks extrapolate to σ where p(σ) has (almost) no mass, so the evaluation grid should stay
where the base distribution has mass (defaults: σ ∈ [0.005, 5] for ln σ ~ N(−1.2, 1.2²), ≈ 1% above 5).
With EDM preconditioning the untrained net (F ≡ 0) is D = c_skip·x, the exact denoiser of N(0, σ_d²I), which
is already near-exact at high σ for data with σ_data ≈ 0.5; training moves away from it first.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fulcrum_core import Claim, ConfigError, Experiment, RunResult
from fulcrum_core.cli import save_figure

from ..metrics import per_sigma_error
from ..train import TrainConfig
from .common import DataConfig, Dataset, build_data, finite_or_none, paired_difference, set_threads, train, train_folder

PAPER = "2508.16154"
OUTPUTS = ("per_sigma.csv", "ratios.csv", "bands.csv", "history.csv", "trends.csv")
ARMS = ("full", "high", "low", "high_matched")
ARM_LABELS = {
    "full": "full range",
    "high": "high-σ only",
    "low": "low-σ only",
    "high_matched": "high-σ only, matched high-σ examples",
}
#: (numerator, denominator, band) of the reported band ratios
TRAIN_ORDER = ("full", "high_matched", "high", "low")
COMPARISONS = (("full", "high", "high"), ("full", "high_matched", "high"), ("full", "low", "low"))


def _default_train() -> TrainConfig:
    return TrainConfig(net="mlp", width=64, depth=3, emb_dim=64, batch_size=256, steps=2000, lr=1e-3, eval_every=100)


@dataclass(frozen=True)
class Config:
    """Parameters (see the module docstring). ``train`` is a complete ``diffusion.train.TrainConfig`` block:
    keys left out of a config file take TrainConfig's own defaults. Its ``threads``/``progress_bar`` are
    replaced by the top-level keys, its ``seed`` is the first training seed, ``eval_every`` the tracking period,
    and ``sigma`` (no band) is the base distribution of the ``full`` arm."""

    data: DataConfig = field(default_factory=lambda: DataConfig(kind="mixture", dim=16, k=8, std=0.1, n_train=20000))
    train: TrainConfig = field(default_factory=_default_train)
    sigma_split: float = 0.5
    seeds: int = 3
    matched_control: bool = True
    eval_sigma_min: float = 0.005
    eval_sigma_max: float = 5.0
    n_sigmas: int = 15
    n_eval: int = 2000
    eval_batch: int = 1000
    eval_seed: int = 12345
    track_points: int = 1000
    late_fraction: float = 0.5
    plateau_tolerance: float = 0.05
    noninferiority_margin: float = 0.05
    n_boot: int = 2000
    threads: int = 1
    progress_bar: bool = False
    train_dir: str = ""

    def __post_init__(self):
        s = self.train.sigma
        if s.band_lo is not None or s.band_hi is not None:
            raise ConfigError("train.sigma.band_lo/band_hi: must be unset — the arms set the bands themselves")
        if not self.train.eval_every >= 1:
            raise ConfigError("train.eval_every: must be >= 1 (the high-σ error is tracked over training)")
        if not self.train.steps >= 1:
            raise ConfigError("train.steps: must be >= 1")
        if not self.sigma_split > 0:
            raise ConfigError("sigma_split: must be positive")
        if not 0 < self.eval_sigma_min < self.sigma_split < self.eval_sigma_max:
            raise ConfigError("eval_sigma_min/eval_sigma_max: need 0 < eval_sigma_min < sigma_split < eval_sigma_max")
        if self.seeds < 1:
            raise ConfigError("seeds: must be >= 1")
        if self.n_sigmas < 4:
            raise ConfigError("n_sigmas: must be >= 4 (both bands need grid points)")
        if self.n_eval < 2:
            raise ConfigError("n_eval: must be >= 2")
        if self.eval_batch < 1:
            raise ConfigError("eval_batch: must be >= 1")
        if self.eval_seed < 0:
            raise ConfigError("eval_seed: must be >= 0")
        if not 2 <= self.track_points <= self.n_eval:
            raise ConfigError("track_points: need 2 <= track_points <= n_eval")
        if not 0 < self.late_fraction <= 1:
            raise ConfigError("late_fraction: must lie in (0, 1]")
        if self.plateau_tolerance < 0:
            raise ConfigError("plateau_tolerance: must be >= 0")
        if not 0 <= self.noninferiority_margin < 1:
            raise ConfigError("noninferiority_margin: must lie in [0, 1)")
        if self.n_boot < 100:
            raise ConfigError("n_boot: must be >= 100")
        if self.threads < 0:
            raise ConfigError("threads: must be >= 0 (0 = leave torch's setting)")
        for arm, band in (("high", {"band_lo": self.sigma_split}), ("low", {"band_hi": self.sigma_split})):
            try:
                replace(s, **band).build()
            except ConfigError as exc:
                raise ConfigError(f"sigma_split: the {arm}-σ band has no mass under train.sigma: {exc}") from exc

    def arms(self) -> tuple[str, ...]:
        return ARMS if self.matched_control else ARMS[:3]


# ----------------------------------------------------------------------------------------- pieces


def high_mass(base: Any, split: float) -> float:
    """m = P_base(σ ≥ σ_split): the fraction of the full arm's training examples in the high band."""
    return 1.0 - float(base.cdf(torch.tensor(split, dtype=torch.float64)))


def arm_config(cfg: Config, arm: str, seed: int) -> TrainConfig:
    """The TrainConfig of one arm and seed (same network and optimiser for every arm)."""
    s = cfg.train.sigma
    if arm == "full":
        sigma = s
    elif arm in ("high", "high_matched"):
        sigma = replace(s, band_lo=cfg.sigma_split)
    elif arm == "low":
        sigma = replace(s, band_hi=cfg.sigma_split)
    else:
        raise ValueError(f"unknown arm {arm!r}")
    steps = cfg.train.steps
    if arm == "high_matched":
        steps = max(1, round(high_mass(s.build(), cfg.sigma_split) * steps))
    return replace(cfg.train, sigma=sigma, steps=steps, seed=cfg.train.seed + seed)


def sigma_grid(cfg: Config) -> np.ndarray:
    """Log-spaced evaluation grid (float64)."""
    return np.geomspace(cfg.eval_sigma_min, cfg.eval_sigma_max, cfg.n_sigmas)


def band_of(sigmas: np.ndarray, split: float) -> np.ndarray:
    return np.where(np.asarray(sigmas) >= split, "high", "low")


def _seed_from_prefix(prefix: Path, folder: Path) -> None:
    """Start ``folder`` from the finished ``high_matched`` run (a prefix of the high arm) unless it has a checkpoint.

    Training is a pure function of (config, data, step) and ``steps`` is a runtime key, so continuing the
    prefix's checkpoint to ``train.steps`` gives the uninterrupted high-only run bit for bit (train.py's
    resume test) at the cost of the remaining steps only.
    """
    src, dst = prefix / "checkpoints" / "last.ckpt", folder / "checkpoints" / "last.ckpt"
    if src.is_file() and not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def _device_of(den: Any) -> torch.device:
    if isinstance(den, torch.nn.Module):
        p = next(iter(den.parameters()), None)
        if p is not None:
            return p.device
    return torch.device("cpu")


def errors(den: Any, ds: Dataset, x0: torch.Tensor, sigmas: np.ndarray, cfg: Config) -> np.ndarray:
    """e(σ) for every grid σ: the same ε for every call (generator seeded with ``eval_seed`` on the net's device)."""
    device = _device_of(den)
    gen = torch.Generator(device=device).manual_seed(cfg.eval_seed)
    frame = per_sigma_error(den, ds.reference, x0.to(device), sigmas, gen, batch_size=cfg.eval_batch)
    return frame.error.to_numpy(dtype=float)


def band_errors(e: np.ndarray, bands: np.ndarray) -> dict[str, float]:
    """Geometric mean of e(σ) over each band: exp(mean ln e)."""
    return {b: float(np.exp(np.mean(np.log(np.maximum(e[bands == b], 1e-300))))) for b in ("high", "low")}


def late_trend(steps: np.ndarray, values: np.ndarray, total: int, late_fraction: float) -> float:
    """Fitted log-change over the late window: OLS slope of ln value on step (step ≥ (1 − f)·total) × f·total.

    NaN when the window holds fewer than three records.
    """
    start = (1.0 - late_fraction) * total
    sel = (steps >= start - 1e-9) & np.isfinite(values) & (values > 0)
    if sel.sum() < 3:
        return math.nan
    slope = np.polyfit(steps[sel].astype(float), np.log(values[sel]), 1)[0]
    return float(slope * late_fraction * total)


def _ratio_ci(df: pd.DataFrame, by: list[str], a: str, b: str, metric: str, n_boot: int) -> pd.DataFrame:
    """exp of the paired (by seed) bootstrap interval of mean_s[ln metric(a) − ln metric(b)]."""
    d = df.copy()
    d["log_value"] = np.log(d[metric])
    out = paired_difference(d, by, "arm", a, b, "log_value", n_boot=n_boot)
    for col in ("estimate", "lo", "hi"):
        out[col] = np.exp(out[col])
    return out.drop(columns=["metric"]).rename(columns={"a": "numerator", "b": "denominator"})


def _mean_ci(values: np.ndarray, n_boot: int) -> tuple[float, float, float]:
    from ..metrics import bootstrap_ci

    ci = bootstrap_ci(np.asarray(values, dtype=float), n_boot=n_boot, level=0.95, seed=0)
    return ci.estimate, ci.lo, ci.hi


# ----------------------------------------------------------------------------------------- run


def run(cfg: Config, out: Path) -> RunResult:
    set_threads(cfg.threads)
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    ds = build_data(cfg.data)
    sigmas = sigma_grid(cfg)
    bands = band_of(sigmas, cfg.sigma_split)
    x_eval = ds.real(cfg.n_eval, seed=cfg.eval_seed)
    x_track = x_eval[: cfg.track_points]
    mass = high_mass(cfg.train.sigma.build(), cfg.sigma_split)

    def eval_fn(den, step):
        return {f"err_{b}": v for b, v in band_errors(errors(den, ds, x_track, sigmas, cfg), bands).items()}

    per_sigma, histories, timings = [], [], []
    mean = ds.train.double().mean(0).float()

    def constant(x, sigma):
        return mean.to(x.device, x.dtype).expand_as(x)

    for arm, err in (("constant", errors(constant, ds, x_eval, sigmas, cfg)),):
        per_sigma += [
            {"arm": arm, "seed": -1, "sigma": s, "band": b, "error": e}
            for s, b, e in zip(sigmas, bands, err, strict=True)
        ]
    for seed in range(cfg.seeds):
        # high_matched first: the high arm continues its checkpoint (same seed, batches and σ's — a prefix)
        for arm in sorted(cfg.arms(), key=TRAIN_ORDER.index):
            tcfg = arm_config(cfg, arm, seed)
            folder = train_folder(cfg.train_dir, out, f"{arm}_seed{tcfg.seed}")
            if arm == "high" and cfg.matched_control:
                _seed_from_prefix(train_folder(cfg.train_dir, out, f"high_matched_seed{tcfg.seed}"), folder)
            c0 = time.process_time()
            with warnings.catch_warnings():  # resuming from a copied checkpoint: Lightning's callback notice
                warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint.*")
                res = train(tcfg, ds, folder, threads=cfg.threads, progress_bar=cfg.progress_bar, eval_fn=eval_fn)
            err = errors(res.denoiser, ds, x_eval, sigmas, cfg)
            per_sigma += [
                {"arm": arm, "seed": seed, "sigma": s, "band": b, "error": e}
                for s, b, e in zip(sigmas, bands, err, strict=True)
            ]
            if arm != "high_matched":  # its history is the first rows of the high arm's
                h = res.history.copy()
                h.insert(0, "seed", seed)
                h.insert(0, "arm", arm)
                h["examples_high"] = h["step"] * tcfg.batch_size * (mass if arm == "full" else float(arm == "high"))
                histories.append(h)
            timings.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "steps": res.steps,
                    "steps_run": res.steps_run,
                    "wall_s": res.wall_s,
                    "cpu_s": time.process_time() - c0,
                }
            )

    ps = pd.DataFrame(per_sigma)
    ps.to_csv(out / "per_sigma.csv", index=False)
    nets = ps[ps.arm != "constant"]

    # band errors per (arm, seed) and paired band ratios
    band_rows = []
    for (arm, seed), g in nets.groupby(["arm", "seed"]):
        be = band_errors(g.error.to_numpy(), g.band.to_numpy())
        band_rows += [{"arm": arm, "seed": seed, "band": b, "error": v} for b, v in be.items()]
    bands_df = pd.DataFrame(band_rows)
    bands_df.to_csv(out / "bands.csv", index=False)

    arms = cfg.arms()
    ratio_rows = []
    for num, den, _band in COMPARISONS:
        if num not in arms or den not in arms:
            continue
        r = _ratio_ci(nets, ["sigma"], num, den, "error", cfg.n_boot)
        r["band"] = band_of(r.sigma.to_numpy(), cfg.sigma_split)
        r["scope"] = "sigma"
        rb = _ratio_ci(bands_df, ["band"], num, den, "error", cfg.n_boot)
        rb["sigma"] = np.nan
        rb["scope"] = "band"
        ratio_rows += [r, rb]
    ratios = pd.concat(ratio_rows, ignore_index=True)[
        ["scope", "band", "sigma", "numerator", "denominator", "estimate", "lo", "hi", "n"]
    ]
    ratios.to_csv(out / "ratios.csv", index=False)

    hist = pd.concat(histories, ignore_index=True)
    hist.to_csv(out / "history.csv", index=False)

    # late-window trends of the tracked band errors
    trend_rows = []
    for (arm, seed), g in hist.groupby(["arm", "seed"]):
        total = int(g.step.max())
        for b in ("high", "low"):
            d = late_trend(g.step.to_numpy(), g[f"err_{b}"].to_numpy(), total, cfg.late_fraction)
            trend_rows.append({"arm": arm, "seed": seed, "band": b, "delta_log": d})
    trends = pd.DataFrame(trend_rows)
    trends.to_csv(out / "trends.csv", index=False)

    # ---------------------------------------------------------------- numbers and claims
    def band_ratio(num: str, den: str, band: str) -> dict[str, float] | None:
        sel = ratios[(ratios.scope == "band") & (ratios.numerator == num) & (ratios.denominator == den)]
        sel = sel[sel.band == band]
        if sel.empty:
            return None
        row = sel.iloc[0]
        return {"estimate": float(row.estimate), "lo": float(row.lo), "hi": float(row.hi), "n": int(row.n)}

    def trend_ci(arm: str, band: str) -> dict[str, float | None]:
        v = trends[(trends.arm == arm) & (trends.band == band)].delta_log.to_numpy(dtype=float)
        est, lo, hi = _mean_ci(v, cfg.n_boot)
        return {"estimate": finite_or_none(est), "lo": finite_or_none(lo), "hi": finite_or_none(hi)}

    numbers: dict[str, Any] = {
        "data": ds.kind,
        "reference": ds.reference_name,
        "dim": ds.dim,
        "sigma_data": ds.sigma_data,
        "sigma_split": cfg.sigma_split,
        "high_mass": mass,
        "high_matched_steps": arm_config(cfg, "high_matched", 0).steps,
        "seeds": cfg.seeds,
        "sigma_grid": [float(s) for s in sigmas],
        "band_error": {
            f"{arm}/{b}": _summ(bands_df[(bands_df.arm == arm) & (bands_df.band == b)].error.to_numpy(), cfg.n_boot)
            for arm in arms
            for b in ("high", "low")
        },
        "band_ratio": {
            f"{num}/{den}@{band}": band_ratio(num, den, band)
            for num, den, band in COMPARISONS
            if num in arms and den in arms
        },
        "late_trend": {f"{arm}/{b}": trend_ci(arm, b) for arm in ARMS[:3] for b in ("high", "low")},
        "late_window_start": (1.0 - cfg.late_fraction) * cfg.train.steps,
    }
    constant_err = ps[ps.arm == "constant"].set_index("sigma").error
    numbers["constant_error"] = {"min": float(constant_err.min()), "max": float(constant_err.max())}
    # tracked band error at the end relative to step 0 (the untrained net, D = c_skip·x: the exact denoiser of
    # N(0, σ_d²I)) and to its minimum over training (> 1: it rose again after its best point)
    ends = []
    for (arm, seed), g in hist.groupby(["arm", "seed"]):
        g = g.sort_values("step")
        for b in ("high", "low"):
            v = g[f"err_{b}"].to_numpy(dtype=float)
            ends.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "band": b,
                    "final_over_init": v[-1] / v[0],
                    "final_over_min": v[-1] / v.min(),
                }
            )
    ends_df = pd.DataFrame(ends)
    for col in ("final_over_init", "final_over_min"):
        numbers[col] = {
            f"{arm}/{b}": _summ(ends_df[(ends_df.arm == arm) & (ends_df.band == b)][col].to_numpy(), cfg.n_boot)
            for arm in ARMS[:3]
            for b in ("high", "low")
        }
    top = ratios[(ratios.scope == "sigma") & np.isclose(ratios.sigma, sigmas.max())]
    numbers["ratio_at_top_sigma"] = {
        f"{r.numerator}/{r.denominator}": {
            "sigma": float(r.sigma),
            "estimate": float(r.estimate),
            "lo": float(r.lo),
            "hi": float(r.hi),
        }
        for r in top.itertuples()
    }

    claims = []
    r = numbers["band_ratio"]["full/high@high"]
    claims.append(
        Claim(
            PAPER,
            f"see-saw: at high σ (grid σ ≥ {cfg.sigma_split:g}) the full-range net's denoising error exceeds the "
            "high-σ-only net's (same net and steps); lower 95% bound of the band ratio full/high-only",
            predicted=1.0,
            measured=r["lo"] if r else None,
            tolerance=0.0,
            comparison="at_least",
            untestable_reason=None if cfg.seeds >= 2 else "one seed: no interval",
        )
    )
    if cfg.matched_control:
        r = numbers["band_ratio"]["full/high_matched@high"]
        claims.append(
            Claim(
                PAPER,
                "see-saw beyond dilution: at high σ the full-range net's error exceeds that of a high-σ-only net "
                f"trained on as many high-σ examples ({numbers['high_matched_steps']} steps); lower 95% bound of "
                "full/high-only-matched",
                predicted=1.0,
                measured=r["lo"] if r else None,
                tolerance=0.0,
                comparison="at_least",
                untestable_reason=None if cfg.seeds >= 2 else "one seed: no interval",
            )
        )
    r = numbers["band_ratio"]["full/low@low"]
    claims.append(
        Claim(
            PAPER,
            f"control: at low σ (grid σ < {cfg.sigma_split:g}) the low-σ-only net is at least as good as the "
            f"full-range net (non-inferiority margin {cfg.noninferiority_margin:g}); lower 95% bound of full/low-only",
            predicted=1.0,
            measured=r["lo"] if r else None,
            tolerance=cfg.noninferiority_margin,
            comparison="at_least",
            untestable_reason=None if cfg.seeds >= 2 else "one seed: no interval",
        )
    )
    n_late = int((hist[(hist.arm == "full") & (hist.seed == 0)].step >= numbers["late_window_start"] - 1e-9).sum())
    trend_reason = None
    if cfg.seeds < 2:
        trend_reason = "one seed: no interval"
    elif n_late < 3:
        trend_reason = f"only {n_late} records in the late window (need 3; lower train.eval_every)"
    tl, th = numbers["late_trend"]["full/low"], numbers["late_trend"]["full/high"]
    claims.append(
        Claim(
            PAPER,
            f"see-saw over training (a): over the last {cfg.late_fraction:.0%} of training the full-range net's "
            "low-σ band error falls; upper 95% bound of its fitted log-change",
            predicted=0.0,
            measured=tl["hi"],
            tolerance=0.0,
            comparison="at_most",
            untestable_reason=trend_reason,
        )
    )
    claims.append(
        Claim(
            PAPER,
            f"see-saw over training (b): meanwhile its high-σ band error rises or plateaus (falls by less than "
            f"{cfg.plateau_tolerance:.0%}); lower 95% bound of its fitted log-change",
            predicted=0.0,
            measured=th["lo"],
            tolerance=math.log1p(cfg.plateau_tolerance),
            comparison="at_least",
            untestable_reason=trend_reason,
        )
    )

    tim = pd.DataFrame(timings)
    numbers["time"] = {
        "wall_s": time.perf_counter() - t_wall,
        "cpu_s": time.process_time() - t_cpu,
        "train_cpu_s_by_arm": tim.groupby("arm").cpu_s.sum().to_dict(),
    }
    checks = {
        "runs": int(len(tim)),
        "steps_run": int(tim.steps_run.sum()),
        "reused_runs": int((tim.steps_run == 0).sum()),
        "finite_errors": bool(np.isfinite(nets.error).all()),
        "grid_points_high": int((bands == "high").sum()),
        "grid_points_low": int((bands == "low").sum()),
        "late_window_records": n_late,
    }
    return RunResult(numbers=numbers, claims=claims, checks=checks)


def _summ(values: np.ndarray, n_boot: int) -> dict[str, float]:
    est, lo, hi = _mean_ci(values, n_boot)
    return {"estimate": est, "lo": lo, "hi": hi}


# ----------------------------------------------------------------------------------------- plot


def plot(data: Path, out_prefix: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from ..metrics import bootstrap_table

    ps = pd.read_csv(data / "per_sigma.csv")
    ratios = pd.read_csv(data / "ratios.csv")
    hist = pd.read_csv(data / "history.csv")
    summary = json.loads((data / "summary.json").read_text())
    num = summary["numbers"]
    split = num["sigma_split"]
    sns.set_theme(style="whitegrid", context="paper")
    palette = dict(zip(ARMS, sns.color_palette("deep", 4), strict=True))
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.2))
    axes = axes.ravel()

    # (a) per-σ error, mean over seeds with bootstrap 95% intervals
    ax = axes[0]
    nets = ps[ps.arm != "constant"]
    table = bootstrap_table(nets, ["arm", "sigma"], "error", n_boot=1000)
    for arm in [a for a in ARMS if a in set(table.arm)]:
        g = table[table.arm == arm].sort_values("sigma")
        ax.plot(g.sigma, g.estimate, "o-", ms=3, color=palette[arm], label=ARM_LABELS[arm])
        ax.fill_between(g.sigma, g.lo, g.hi, color=palette[arm], alpha=0.25, lw=0)
    const = ps[ps.arm == "constant"].sort_values("sigma")
    ax.plot(const.sigma, const.error, ":", color="gray", label="constant D ≡ E[x₀]")
    ax.axvline(split, color="black", lw=0.8, ls="--")
    ax.set(xscale="log", yscale="log", xlabel="noise level σ", ylabel="error  E‖D − D*‖²/dim")
    ax.set_title("(a) per-σ error vs the reference denoiser")
    ax.legend(fontsize=7, loc="lower right")

    # (b) ratios vs σ
    ax = axes[1]
    per = ratios[ratios.scope == "sigma"]
    lines = []
    for (_num, den), g in per.groupby(["numerator", "denominator"], sort=False):
        g = g.sort_values("sigma")
        color = palette[den]
        own = "low" if den == "low" else "high"  # the band this comparison is about: solid there
        ax.plot(g.sigma, g.estimate, "-", lw=0.8, color=color, alpha=0.35)
        g = g[g.band == own]
        ax.plot(g.sigma, g.estimate, "o-", ms=3, color=color, label=f"full / {ARM_LABELS[den]} ({own} band)")
        ax.fill_between(g.sigma, g.lo, g.hi, color=color, alpha=0.25, lw=0)
        r = num["band_ratio"].get(f"full/{den}@{own}")
        if r:
            lines.append(f"{own} band, full / {ARM_LABELS[den]}: {r['estimate']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axvline(split, color="black", lw=0.8, ls="--")
    ax.set(xscale="log", yscale="log", xlabel="noise level σ", ylabel="error ratio (geometric mean over seeds)")
    ax.set_title("(b) error ratio full-range ÷ band-only")
    ax.text(0.02, 0.03, "\n".join(lines), transform=ax.transAxes, fontsize=6.5, va="bottom")
    ax.legend(fontsize=7, loc="upper left")

    # (c), (d) band errors over training
    for ax, band, arms_here, title in (
        (axes[2], "high", ("full", "high"), f"(c) high-σ band error (σ ≥ {split:g}) over training"),
        (axes[3], "low", ("full", "low"), f"(d) low-σ band error (σ < {split:g}) over training"),
    ):
        col = f"err_{band}"
        h = hist[hist.arm.isin(arms_here) & hist[col].notna()]
        tb = bootstrap_table(h, ["arm", "step"], col, n_boot=1000)
        for arm in [a for a in arms_here if a in set(tb.arm)]:
            g = tb[tb.arm == arm].sort_values("step")
            ax.plot(g.step, g.estimate, "-", color=palette[arm], label=ARM_LABELS[arm])
            ax.fill_between(g.step, g.lo, g.hi, color=palette[arm], alpha=0.25, lw=0)
        if band == "high" and "high_matched/high" in num["band_error"]:
            ax.axvline(
                num["high_matched_steps"],
                color=palette["high_matched"],
                ls=":",
                lw=1.2,
                label="high-only ≡ matched control here",
            )
        ax.axvspan(num["late_window_start"], float(h.step.max()), color="gold", alpha=0.12, label="late window")
        t = num["late_trend"].get(f"full/{band}", {})
        if t.get("estimate") is not None:
            ax.text(
                0.02,
                0.03,
                f"full, late Δ ln error: {t['estimate']:+.2f} [{t['lo']:+.2f}, {t['hi']:+.2f}]",
                transform=ax.transAxes,
                fontsize=7,
            )
        ax.set(yscale="log", xlabel="training step", ylabel="band error (geometric mean over σ)")
        ax.set_title(title)
        ax.legend(fontsize=7, loc="upper right")

    # (e) high-σ band error against the number of high-σ training examples seen (the dilution view)
    ax = axes[4]
    h = hist[hist.arm.isin(("full", "high")) & (hist.examples_high > 0)]
    tb = bootstrap_table(h, ["arm", "examples_high"], "err_high", n_boot=1000)
    for arm in ("full", "high"):
        g = tb[tb.arm == arm].sort_values("examples_high")
        ax.plot(g.examples_high, g.estimate, "-", color=palette[arm], label=ARM_LABELS[arm])
        ax.fill_between(g.examples_high, g.lo, g.hi, color=palette[arm], alpha=0.25, lw=0)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="high-σ training examples seen (steps × batch × P(σ ≥ σ_split))",
        ylabel="high-σ band error (geometric mean over σ)",
    )
    ax.set_title("(e) high-σ band error per high-σ example (dilution removed)")
    ax.legend(fontsize=7, loc="upper right")

    # (f) the claims
    ax = axes[5]
    ax.axis("off")
    rows = [
        [c["claim"].split(":")[0], "—" if c["measured"] is None else f"{c['measured']:.3g}", c["verdict"]]
        for c in summary["claims"]
    ]
    table = ax.table(cellText=rows, colLabels=["claim (see ledger)", "measured bound", "verdict"], loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width([0, 1, 2])
    table.scale(1, 1.5)
    for (row, col), cell in table.get_celld().items():
        if col == 0 and row > 0:
            cell.set_text_props(ha="left")
            cell.PAD = 0.03
    ax.set_title("(f) claims: 95% bounds over seeds (full wording in the ledger)")

    fig.suptitle(
        f"See-saw of noise levels — {num['data']} (D = {num['dim']}), reference: {num['reference']}; identical nets, "
        f"{num['seeds']} seeds, shaded: 95% bootstrap intervals over seeds; σ_split = {split:g} (dashed)",
        fontsize=11,
    )
    save_figure(fig, out_prefix)


EXPERIMENT = Experiment(
    name="seesaw_noise",
    description="2508.16154 see-saw: nets trained on the full σ range vs high-σ only vs low-σ only, per-σ error",
    config_cls=Config,
    run=run,
    plot=plot,
    outputs=OUTPUTS,
)
