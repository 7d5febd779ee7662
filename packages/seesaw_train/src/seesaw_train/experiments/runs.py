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
                "serial_steps": int(run["run"]["serial_steps"]),
                "wall_clock_s": float(last.wall_clock_s),
            }
        )
    return pd.DataFrame(rows)
