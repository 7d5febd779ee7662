"""Checks every fulcrum package's test suite runs against its own command line."""

from __future__ import annotations

import subprocess
import sys


def run_cli(package: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", package, *args], capture_output=True, text=True)


def check_cli_contract(package: str, experiments: set[str]) -> None:
    """`list` names exactly ``experiments``; `run` of an unknown experiment exits 2 naming it."""
    listed = run_cli(package, "list")
    assert listed.returncode == 0, listed.stderr
    if experiments:
        assert {line.split()[0] for line in listed.stdout.splitlines() if line.strip()} == experiments
    else:
        assert f"{package}: no experiments yet" in listed.stdout
    bad = run_cli(package, "run", "no_such_experiment", "--out", "unused")
    assert bad.returncode == 2
    assert "no_such_experiment" in bad.stderr
