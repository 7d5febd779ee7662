"""``provenance.json``: what produced a result, so any number can be traced and re-made."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

BASE_PACKAGES = ("fulcrum-core", "numpy", "scipy", "pandas", "torch", "snakemake")


def git_state(start: str | Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the git checkout holding ``start`` (or the cwd)."""
    candidates = [Path(start)] if start is not None else []
    candidates.append(Path.cwd())
    for where in candidates:
        where = where if where.is_dir() else where.parent
        try:
            commit = subprocess.run(
                ["git", "-C", str(where), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        return {"commit": commit, "dirty": bool(dirty)}
    return {"commit": None, "dirty": None}


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "accelerator": None,
    }
    if "torch" in sys.modules:  # only report torch's view when the experiment loaded it
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            info["accelerator"] = torch.cuda.get_device_name(0)
        info["torch_threads"] = torch.get_num_threads()
    return info


def build_provenance(
    *,
    package: str,
    experiment: str,
    config: Mapping[str, Any],
    seed: int | None,
    started: _dt.datetime,
    finished: _dt.datetime,
    extra_packages: Iterable[str] = (),
    source: str | Path | None = None,
) -> dict[str, Any]:
    return {
        "package": package,
        "experiment": experiment,
        "config": dict(config),
        "seed": seed,
        "packages": package_versions([*BASE_PACKAGES, *extra_packages]),
        "git": git_state(source),
        "device": device_info(),
        "command": sys.argv,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "wall_time_s": round((finished - started).total_seconds(), 3),
    }


def write_json(path: str | Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
