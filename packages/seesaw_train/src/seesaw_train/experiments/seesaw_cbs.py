"""fig_seesaw_cbs — the critical batch size (CBS) of the tiny model at this scale.

Seesaw (arXiv 2510.14717) claims its batch ramp matches cosine for starting batch sizes at or
below the CBS, so the other figures need the CBS of the model/data/token budget they use. Runs:
cosine decay at the same peak LR and token budget for a ladder of batch sizes (one run per batch
size and seed, trained by the ``seesaw_train_run`` rule). At a fixed token budget the final
validation loss is flat in B up to the CBS and rises beyond it (fewer optimizer steps no longer
buy the same progress). Definition used here (ours; the CBS study arXiv 2410.21676 uses a similar
"loss within a tolerance of the best" rule): the CBS is the largest batch size whose seed-mean final
validation loss is within ``tolerance`` (relative) of the smallest seed-mean loss over the ladder.

This figure measures a quantity; it makes no paper claim of its own, so its summary has no
ledger rows — the CBS it reports is used to place the other experiments' batch sizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fulcrum_core import ConfigError, Experiment, RunResult
from fulcrum_core.cli import save_figure

from .runs import CURVE_PANELS, figure, finals, load_run, style_curve_axis, val_curves

OUTPUTS = ("curves.csv", "finals.csv")


@dataclass(frozen=True)
class Config:
    runs: dict[str, str]
    tolerance: float = 0.02

    def __post_init__(self):
        if len(self.runs) < 2:
            raise ConfigError("runs: need at least two runs (a batch-size ladder)")
        if not 0 < self.tolerance < 1:
            raise ConfigError("tolerance must lie in (0, 1)")


def critical_batch_size(table: pd.DataFrame, tolerance: float) -> tuple[int, pd.Series]:
    """Largest B whose seed-mean final loss is within ``tolerance`` of the best mean."""
    mean = table.groupby("batch_size").final_val_loss.mean().sort_index()
    within = mean[mean <= mean.min() * (1 + tolerance)]
    return int(within.index.max()), mean


def run(cfg: Config, out: Path) -> RunResult:
    runs = {name: load_run(path) for name, path in cfg.runs.items()}
    schedules = {r["config"]["schedule"] for r in runs.values()}
    tokens = {r["config"]["total_tokens"] for r in runs.values()}
    if schedules != {"cosine"} or len(tokens) != 1:
        raise ConfigError(f"runs: expected cosine runs at one token budget, got {schedules} and {tokens}")
    curves, table = val_curves(runs), finals(runs)
    curves.to_csv(out / "curves.csv", index=False)
    table.to_csv(out / "finals.csv", index=False)
    cbs, mean = critical_batch_size(table, cfg.tolerance)
    ladder = list(mean.index)
    numbers = {
        "critical_batch_size": cbs,
        "tolerance": cfg.tolerance,
        "token_budget": int(next(iter(tokens))),
        "mean_final_val_loss_by_batch": {int(b): float(v) for b, v in mean.items()},
        "cbs_is_ladder_maximum": bool(cbs == max(ladder)),
        "cbs_is_ladder_minimum": bool(cbs == min(ladder)),
    }
    checks = {"runs": len(runs), "seeds_per_batch": int(table.groupby("batch_size").seed.nunique().min())}
    return RunResult(numbers=numbers, claims=[], checks=checks)


def plot(data: Path, out_prefix: Path) -> None:
    import matplotlib
    import seaborn as sns

    curves = pd.read_csv(data / "curves.csv")
    table = pd.read_csv(data / "finals.csv")
    numbers = json.loads((data / "summary.json").read_text())["numbers"]
    fig, axes = figure(3, (15, 4.2))
    palette = dict(
        zip(sorted(curves.batch_size.unique()), sns.color_palette("viridis", curves.batch_size.nunique()), strict=True)
    )
    for i, x, label in CURVE_PANELS:
        ax = axes[i]
        for (b, seed), g in curves.groupby(["batch_size", "seed"]):
            ax.plot(g[x], g.val_loss, color=palette[b], lw=1.3, label=f"B = {b}" if seed == curves.seed.min() else None)
        style_curve_axis(ax, label)
        ax.legend(fontsize=7, title="cosine, batch (sequences)")
    axes[0].set_title("validation loss vs tokens")
    axes[1].set_title("validation loss vs serial steps")
    ax = axes[2]
    ax.scatter(table.batch_size, table.final_val_loss, color="0.5", s=14, label="runs (seeds)")
    mean = table.groupby("batch_size").final_val_loss.mean()
    ax.plot(mean.index, mean.values, "o-", color="black", label="seed mean")
    ax.axhline(
        mean.min() * (1 + numbers["tolerance"]), color="tab:red", ls=":", label=f"best + {numbers['tolerance']:.0%}"
    )
    cbs = numbers["critical_batch_size"]
    ax.axvline(cbs, color="tab:red", ls="--", label=f"CBS = {cbs}")
    ax.set(
        xscale="log",
        xlabel="batch size (sequences)",
        ylabel="final validation loss",
        title=f"final loss at {numbers['token_budget']:,} tokens",
    )
    ax.set_xticks(mean.index, [str(int(b)) for b in mean.index])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.legend(fontsize=7)
    fig.suptitle("Critical batch size of the tiny model at this token budget (cosine decay, same peak LR)", fontsize=10)
    save_figure(fig, out_prefix)


EXPERIMENT = Experiment(
    name="seesaw_cbs",
    description="critical batch size of the model at this scale (cosine at a batch-size ladder)",
    config_cls=Config,
    run=run,
    plot=plot,
    outputs=OUTPUTS,
)

__all__ = ["EXPERIMENT", "Config", "critical_batch_size"]
