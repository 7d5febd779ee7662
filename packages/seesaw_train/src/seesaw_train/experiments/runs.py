"""Reading finished training runs (the folders written by ``seesaw_train.train``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fulcrum_core import ConfigError


def load_run(path: str | Path) -> dict:
    """A run's config, final numbers, per-step ledger and validation curve."""
    path = Path(path)
    run_json = path / "run.json"
    if not run_json.is_file():
        raise FileNotFoundError(f"{run_json} not found: the training run did not finish")
    run = json.loads(run_json.read_text())
    steps = pd.read_csv(path / "steps.csv")
    metrics = pd.read_csv(path / "logs" / "version_0" / "metrics.csv")
    val = metrics.dropna(subset=["val_loss"])[["tokens", "serial_steps", "wall_clock_s", "val_loss"]]
    if val.empty:
        raise ConfigError(f"{path}: no validation loss was logged")
    return {"path": str(path), "config": run["config"], "run": run, "steps": steps, "val": val.reset_index(drop=True)}


def val_curves(runs: dict[str, dict]) -> pd.DataFrame:
    """Tidy validation curves of named runs: run, tokens, serial_steps, wall_clock_s, val_loss + config."""
    frames = []
    for name, run in runs.items():
        cfg = run["config"]
        frame = run["val"].copy()
        frame.insert(0, "run", name)
        frame["schedule"] = cfg["schedule"]
        frame["batch_size"] = cfg["batch_size"]
        frame["peak_lr"] = cfg["peak_lr"]
        frame["seed"] = cfg["seed"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def finals(runs: dict[str, dict]) -> pd.DataFrame:
    """One row per run: final val loss, serial steps, wall-clock, tokens."""
    rows = []
    for name, run in runs.items():
        cfg, last = run["config"], run["val"].iloc[-1]
        rows.append(
            {
                "run": name,
                "schedule": cfg["schedule"],
                "batch_size": cfg["batch_size"],
                "peak_lr": cfg["peak_lr"],
                "seed": cfg["seed"],
                "final_val_loss": float(last.val_loss),
                "tokens": int(last.tokens),
                "total_tokens": int(cfg["total_tokens"]),
                "serial_steps": int(run["run"]["serial_steps"]),
                "wall_clock_s": float(last.wall_clock_s),
            }
        )
    return pd.DataFrame(rows)


def require_shared(table: pd.DataFrame, keys: tuple[str, ...]) -> None:
    """Every run of a comparison must share these finals columns (e.g. batch, peak LR, token budget)."""
    for key in keys:
        if table[key].nunique() != 1:
            raise ConfigError(f"runs: every run needs the same {key}, got {sorted(set(table[key]))}")


# the two loss-curve panels every seesaw figure starts with: (axis index, curves column, x label)
CURVE_PANELS = ((0, "tokens", "tokens"), (1, "serial_steps", "serial optimizer steps"))


def figure(ncols: int, figsize: tuple[float, float], width_ratios: list[float] | None = None):
    """A seaborn-themed row of panels (Agg backend); the first two hold loss curves (CURVE_PANELS)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    gridspec = {"width_ratios": width_ratios} if width_ratios else None
    return plt.subplots(1, ncols, figsize=figsize, gridspec_kw=gridspec)


def style_curve_axis(ax, xlabel: str) -> None:
    """Log x axis without minor tick labels, validation loss on y."""
    from matplotlib.ticker import NullFormatter

    ax.set(xscale="log", xlabel=xlabel, ylabel="validation loss (nats/token)")
    ax.xaxis.set_minor_formatter(NullFormatter())
