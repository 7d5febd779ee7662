"""The ``python -m <package>`` command line shared by every fulcrum package.

    python -m optim_theory list
    python -m optim_theory run sgd_bias_variance --config cfg.yaml --out results/x
    python -m optim_theory plot sgd_bias_variance --data results/x --out results/x/figure

``run`` validates the config (errors name the key), lets the experiment write its data into a
staging folder inside ``--out``, adds ``summary.json`` (numbers + claim records with computed
verdicts) and ``provenance.json``, and only then moves the files into ``--out``. A failing run
leaves no output files behind, stale ones from an earlier run included.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .claims import Claim
from .config import ConfigError, from_mapping, load_mapping, to_mapping
from .provenance import build_provenance, write_json

SUMMARY = "summary.json"
PROVENANCE = "provenance.json"
FIGURE_FORMATS = ("png", "pdf")


@dataclass
class RunResult:
    """What an experiment's ``run`` returns: fitted numbers, claims, and self-checks."""

    numbers: dict[str, Any]
    claims: list[Claim] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config_cls: type
    run: Callable[[Any, Path], RunResult]
    plot: Callable[[Path, Path], None]
    outputs: tuple[str, ...]
    extra_packages: tuple[str, ...] = ()


def run_experiment(
    package: str,
    exp: Experiment,
    config: Mapping[str, Any],
    out: Path,
    *,
    source: str | Path | None = None,
) -> dict[str, Any]:
    """Run ``exp`` with ``config`` into ``out``; returns the summary written there."""
    cfg = from_mapping(exp.config_cls, config, where=exp.name)
    out.mkdir(parents=True, exist_ok=True)
    final_names = (*exp.outputs, SUMMARY, PROVENANCE)
    for name in final_names:
        (out / name).unlink(missing_ok=True)
    staging = out / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    started = _dt.datetime.now(_dt.UTC)
    try:
        result = exp.run(cfg, staging)
        missing = [name for name in exp.outputs if not (staging / name).is_file()]
        if missing:
            raise RuntimeError(f"experiment {exp.name} did not write {missing}")
        summary = {
            "package": package,
            "experiment": exp.name,
            "numbers": result.numbers,
            "claims": [c.record() for c in result.claims],
            "checks": result.checks,
        }
        write_json(staging / SUMMARY, summary)
        finished = _dt.datetime.now(_dt.UTC)
        write_json(
            staging / PROVENANCE,
            build_provenance(
                package=package,
                experiment=exp.name,
                config=to_mapping(cfg),
                seed=getattr(cfg, "seed", None),
                started=started,
                finished=finished,
                extra_packages=(f"fulcrum-{package.replace('_', '-')}", *exp.extra_packages),
                source=source,
            ),
        )
        for name in final_names:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def save_figure(fig, out_prefix: Path, dpi: int = 150) -> None:
    """Lay out ``fig``, write ``out_prefix``.png and .pdf, and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    for ext in FIGURE_FORMATS:
        fig.savefig(out_prefix.with_name(f"{out_prefix.name}.{ext}"), dpi=dpi)
    plt.close(fig)


def plot_experiment(exp: Experiment, data: Path, out_prefix: Path) -> list[Path]:
    """Draw ``exp``'s figure from its data folder into ``out_prefix``.{png,pdf}."""
    missing = [name for name in exp.outputs if not (data / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{data}: missing data file(s) {missing}; run the experiment first")
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    exp.plot(data, out_prefix)
    paths = [out_prefix.with_name(f"{out_prefix.name}.{ext}") for ext in FIGURE_FORMATS]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise RuntimeError(f"plot of {exp.name} did not write {absent}")
    return paths


def main(
    package: str,
    experiments: Sequence[Experiment],
    argv: Sequence[str] | None = None,
    *,
    source: str | Path | None = None,
) -> int:
    registry = {e.name: e for e in experiments}
    parser = argparse.ArgumentParser(prog=f"python -m {package}", description=f"fulcrum {package} experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    p_run = sub.add_parser("run", help="run an experiment: data + summary.json + provenance.json")
    p_run.add_argument("experiment", choices=sorted(registry))
    p_run.add_argument("--config", help="YAML/JSON file, or an inline JSON object; default: built-in defaults")
    p_run.add_argument("--out", required=True, type=Path, help="output folder")
    p_plot = sub.add_parser("plot", help="draw an experiment's figure from its data")
    p_plot.add_argument("experiment", choices=sorted(registry))
    p_plot.add_argument("--data", required=True, type=Path, help="folder written by `run`")
    p_plot.add_argument("--out", required=True, type=Path, help="figure path without extension")
    args = parser.parse_args(argv)

    if args.command == "list":
        if not registry:
            print(f"{package}: no experiments yet")
        for name, exp in sorted(registry.items()):
            print(f"{name:28s} {exp.description}")
        return 0
    exp = registry[args.experiment]
    try:
        if args.command == "run":
            summary = run_experiment(package, exp, load_mapping(args.config), args.out, source=source)
            for rec in summary["claims"]:
                print(
                    f"[{rec['verdict']}] {rec['claim']}: predicted {rec['predicted']:.4g}, measured {rec['measured']}"
                )
            print(f"wrote {args.out}")
        else:
            for path in plot_experiment(exp, args.data, args.out):
                print(f"wrote {path}")
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
