"""fig_seesaw_alpha_beta — the (α, β) family at cosine's halving points (paper Fig. 2).

Paper: arXiv 2510.14717. At each point where cosine decay would halve the LR (milestone factor
f = 1/2), a member of the family divides the LR by α and multiplies the batch by β. The paper's
normalised-SGD analysis (its proxy for Adam) makes members with equal α·√β follow the same loss
dynamics in the variance-dominated regime, and only while α ≥ √β: Seesaw, (α, β) = (√2, 2), is the
most aggressive batch ramp of the α√β = 2 family that still tracks the LR-halving schedule (2, 1);
(2^¼, 2^1.5) and (1, 4) go past that limit ("approaching the theoretical limit implied by our
analysis", abstract). We read the figure's claim that way: members with α ≥ √β match (2, 1), the
members beyond the limit fall behind it. Runs: one per member at the best cosine LR of
fig_seesaw_vs_cosine's grid and the smallest starting batch, plus cosine at the same LR as context.

Ledger claims (one per member other than (2, 1)): final val loss ÷ that of (2, 1) within
``loss_tolerance`` for α ≥ √β; at least 1 + ``loss_tolerance`` (clearly worse) for α < √β.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fulcrum_core import Claim, ConfigError, Experiment, RunResult
from fulcrum_core.cli import save_figure

from .runs import CURVE_PANELS, figure, finals, load_run, require_shared, style_curve_axis, val_curves

PAPER = "2510.14717"
OUTPUTS = ("curves.csv", "finals.csv")
# run names carry α and β to 6 significant digits (seesaw_run_name in workflow/rules/common.smk)
AB_RTOL = 1e-5


@dataclass(frozen=True)
class Config:
    runs: dict[str, str]
    loss_tolerance: float = 0.02
    alpha_sqrt_beta: float = 2.0

    def __post_init__(self):
        if len(self.runs) < 3:
            raise ConfigError("runs: need the (2, 1) member, at least one other member and cosine")
        if not 0 < self.loss_tolerance < 1:
            raise ConfigError("loss_tolerance must lie in (0, 1)")


def member_table(runs: dict[str, dict]) -> pd.DataFrame:
    """Finals with each run's (α, β) and f; cosine rows have NaN α, β."""
    table = finals(runs)
    params = [runs[name]["config"].get("schedule_params", {}) for name in table.run]
    table["alpha"] = [p.get("alpha", math.nan) for p in params]
    table["beta"] = [p.get("beta", math.nan) for p in params]
    table["f"] = [p.get("f", math.nan) for p in params]
    table["label"] = [
        "cosine" if s == "cosine" else f"(α, β) = ({a:.4g}, {b:.4g})"
        for s, a, b in zip(table.schedule, table.alpha, table.beta, strict=True)
    ]
    return table


def run(cfg: Config, out: Path) -> RunResult:
    runs = {name: load_run(path) for name, path in cfg.runs.items()}
    table = member_table(runs)
    family = table[table.schedule == "seesaw"]
    if set(table.schedule) != {"cosine", "seesaw"} or family.empty:
        raise ConfigError(f"runs: need cosine and seesaw-family runs, got {sorted(set(table.schedule))}")
    product = family.alpha * family.beta**0.5
    off = family[~((product - cfg.alpha_sqrt_beta).abs() <= AB_RTOL * cfg.alpha_sqrt_beta)]
    if not off.empty:
        raise ConfigError(f"runs: {list(off.run)} are not in the α√β = {cfg.alpha_sqrt_beta:g} family")
    if set(family.f) != {0.5}:
        raise ConfigError(f"runs: the family uses the halving points f = 1/2, got f = {sorted(set(family.f))}")
    require_shared(table, ("batch_size", "peak_lr", "total_tokens"))  # final tokens differ by < one batch
    base = family[(family.alpha - cfg.alpha_sqrt_beta).abs() <= AB_RTOL * cfg.alpha_sqrt_beta]
    if base.empty:
        raise ConfigError(f"runs: the LR-halving member (α, β) = ({cfg.alpha_sqrt_beta:g}, 1) is missing")
    base_loss = float(base.final_val_loss.mean())
    cosine_loss = float(table[table.schedule == "cosine"].final_val_loss.mean())
    table["ratio_to_halving"] = table.final_val_loss / base_loss
    table["within_limit"] = table.alpha >= table.beta**0.5 * (1 - AB_RTOL)
    table.to_csv(out / "finals.csv", index=False)
    val_curves(runs).merge(table[["run", "label", "alpha", "beta"]], on="run").to_csv(out / "curves.csv", index=False)

    numbers = {
        "batch_size": int(table.batch_size.iloc[0]),
        "peak_lr": float(table.peak_lr.iloc[0]),
        "loss_tolerance": cfg.loss_tolerance,
        "halving_final_val_loss": base_loss,
        "cosine_final_val_loss": cosine_loss,
        "halving_to_cosine_ratio": base_loss / cosine_loss,
        "members": {},
    }
    claims = []
    for row in family.sort_values("alpha", ascending=False).itertuples():
        ratio = float(row.final_val_loss / base_loss)
        within = bool(row.alpha >= math.sqrt(row.beta) * (1 - AB_RTOL))
        numbers["members"][f"{row.alpha:.6g},{row.beta:.6g}"] = {
            "alpha": float(row.alpha),
            "beta": float(row.beta),
            "final_val_loss": float(row.final_val_loss),
            "ratio_to_halving": ratio,
            "serial_steps": int(row.serial_steps),
            "alpha_at_least_sqrt_beta": within,
        }
        if abs(row.alpha - cfg.alpha_sqrt_beta) <= AB_RTOL * cfg.alpha_sqrt_beta:
            continue
        ab = f"(α, β) = ({row.alpha:.4g}, {row.beta:.4g})"
        if within:
            claim = Claim(
                PAPER,
                f"{ab}, α ≥ √β: matches the LR-halving schedule (2, 1) at equal tokens (final loss ratio)",
                predicted=1.0,
                measured=ratio,
                tolerance=cfg.loss_tolerance,
                relative=True,
            )
        else:
            claim = Claim(
                PAPER,
                f"{ab}, α < √β: past the ramp limit, ends clearly above the LR-halving schedule (2, 1) "
                f"(final loss ratio ≥ 1 + {cfg.loss_tolerance:g})",
                predicted=1.0 + cfg.loss_tolerance,
                measured=ratio,
                tolerance=0.0,
                comparison="at_least",
            )
        claims.append(claim)
    checks = {"runs": len(runs), "family_members": len(family)}
    return RunResult(numbers=numbers, claims=claims, checks=checks)


def plot(data: Path, out_prefix: Path) -> None:
    import seaborn as sns

    curves = pd.read_csv(data / "curves.csv")
    table = pd.read_csv(data / "finals.csv")
    fig, axes = figure(3, (16, 4.4), [1, 1, 0.9])
    members = table[table.schedule == "seesaw"].sort_values("alpha", ascending=False)
    palette = dict(zip(members.label, sns.color_palette("viridis", len(members)), strict=True))
    palette["cosine"] = (0.2, 0.2, 0.2)
    for i, x, label in CURVE_PANELS:
        ax = axes[i]
        for name in [*members.label, "cosine"]:
            g = curves[curves.label == name]
            ax.plot(g[x], g.val_loss, color=palette[name], lw=1.4, ls=":" if name == "cosine" else "-", label=name)
        style_curve_axis(ax, label)
        ax.legend(fontsize=7)
    axes[0].set_title("validation loss at equal tokens")
    axes[1].set_title("the same runs against serial steps")
    ax = axes[2]
    ax.bar(
        range(len(members)),
        members.ratio_to_halving,
        color=[palette[n] for n in members.label],
        edgecolor=["black" if w else "tab:red" for w in members.within_limit],
        linewidth=1.5,
    )
    ax.axhline(1.0, color="black", lw=0.8)
    tol = json.loads((data / "summary.json").read_text())["numbers"]["loss_tolerance"]
    ax.axhspan(1 - tol, 1 + tol, color="tab:green", alpha=0.12, label=f"±{tol:.0%} of (2, 1)")
    ticks = [f"({a:.3g}, {b:.3g})" for a, b in zip(members.alpha, members.beta, strict=True)]
    ax.set_xticks(range(len(members)), ticks)
    lo, hi = members.ratio_to_halving.min(), members.ratio_to_halving.max()
    ax.set_ylim(min(lo, 1 - tol) - 0.01, max(hi, 1 + tol) + 0.01)
    ax.set(xlabel="(α, β); red edge: α < √β", ylabel="final loss ÷ that of (2, 1)", title="end of training")
    ax.legend(fontsize=7)
    b0, lr = int(table.batch_size.iloc[0]), float(table.peak_lr.iloc[0])
    fig.suptitle(
        f"α√β = 2 family at cosine's halving points (LR ÷ α, batch × β), B₀ = {b0}, peak LR {lr:g} — tiny decoder, "
        "Python stdlib corpus",
        fontsize=10,
    )
    save_figure(fig, out_prefix)


EXPERIMENT = Experiment(
    name="seesaw_alpha_beta",
    description="2510.14717 Fig. 2: the α√β = 2 family at cosine's halving points against the LR-halving schedule",
    config_cls=Config,
    run=run,
    plot=plot,
    outputs=OUTPUTS,
)
