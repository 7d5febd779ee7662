#!/usr/bin/env bash
# Snakemake runs this inside the new conda env, from the working directory (the repo root).
# Dependencies come from fulcrum_core.yaml, so pip only links this checkout's code.
set -euo pipefail
python -m pip install --no-deps -e packages/fulcrum_core
