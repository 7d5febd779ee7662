"""Pick the best peak LR of a finished LR grid (lowest seed-mean final validation loss).

    python -m seesaw_train.experiments.select_lr --out best_lr.json RUN_DIR [RUN_DIR ...]

Used by the workflow's checkpoint rule: the chosen LR decides which comparison runs are trained.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .runs import finals, load_run
from .seesaw_vs_cosine import best_lr


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seesaw_train.experiments.select_lr")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        grid = finals({str(p): load_run(p) for p in args.runs})
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {
        "best_lr": best_lr(grid),
        "final_val_loss_by_lr": {
            f"{lr:g}": float(v) for lr, v in grid.groupby("peak_lr").final_val_loss.mean().items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"best LR {result['best_lr']:g} of {sorted(result['final_val_loss_by_lr'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
