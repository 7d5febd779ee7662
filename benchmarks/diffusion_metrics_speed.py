"""Benchmark: every collapse metric of ``diffusion.metrics.collapse_report`` for N = 5000, D = 64.

    .venv/bin/python benchmarks/diffusion_metrics_speed.py [--n 5000 --dim 64 --repeats 3]

Goal: ≤ 2 s on one core. BLAS is limited to one thread; both wall and process CPU time are reported
(on a shared machine the CPU time is what an idle core would need). Result in
``benchmarks/results/diffusion_metrics_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages" / "diffusion" / "src"))
from diffusion.metrics import collapse_report  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--modes", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "diffusion_metrics_speed.json")
    args = parser.parse_args()
    rng = np.random.default_rng(10)
    means = 3 * rng.standard_normal((args.modes, args.dim))
    gen = means[rng.integers(0, args.modes, args.n)] + rng.standard_normal((args.n, args.dim))
    real = means[rng.integers(0, args.modes, args.n)] + rng.standard_normal((args.n, args.dim))
    mixture = (means, np.ones(args.modes), np.full(args.modes, 1 / args.modes))
    walls, cpus = [], []
    with threadpool_limits(limits=1):
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            report = collapse_report(gen, real, mixture)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    result = {
        "n": args.n,
        "dim": args.dim,
        "modes": args.modes,
        "best_wall_s": min(walls),
        "best_cpu_s": min(cpus),
        "goal_s": 2.0,
        "nn_ratio_same_distribution": float(report["nn_ratio"]),
        "python": platform.python_version(),
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    print(f"collapse_report N={args.n} D={args.dim}: best {min(walls):.2f} s wall, {min(cpus):.2f} s CPU (goal 2 s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
