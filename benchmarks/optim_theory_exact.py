"""Benchmark: exact SGD risk with tail averaging for a grid of K = 16 schedules.

    .venv/bin/python benchmarks/optim_theory_exact.py [--quick]

Reports coordinate-updates per second (d·T·K / wall time) of
``optim_theory.linreg.exact.sgd_tail_average_risk`` (fused numba kernel, float64, both cores)
and of the plain numpy reference recursion, at d = 10⁴ and 10⁵, and the cost of a Monte-Carlo
estimate of the same tail-averaged risk to equal accuracy (±1% at 95%). Writes
``benchmarks/results/optim_theory_exact.json``.

Anchors (issue #3, measured on this 2-core machine): the Seesaw authors' public JAX recursion
(jit + scan, float64, with averaging) does 1.0e9 updates/s at d = 10⁴ and 3.4e8 at d = 10⁵; a
plain in-place numpy loop without averaging 1.4e9 at d = 10⁴. Goal: ≥ 3× the JAX anchor at both
sizes, and ≥ 100× cheaper than Monte Carlo at equal accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from optim_theory.linreg import exact, spectra
from optim_theory.montecarlo import simulate_sgd

JAX_ANCHOR = {10_000: 1.0e9, 100_000: 3.4e8}
K = 16


def schedules(T: int) -> np.ndarray:
    """K geometric decays from 0.2/tr(H)-scale stepsizes, different final factors."""
    finals = np.geomspace(1.0, 0.01, K)
    return np.stack([np.geomspace(0.3, 0.3 * f, T) for f in finals])


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_exact(d: int, T: int, repeats: int) -> dict:
    lam = spectra.power_law(d, 1.5)
    m0 = spectra.source_prior(lam, 2.0)
    lrs = schedules(T) / lam.sum()
    exact.sgd_tail_average_risk(lam, m0, 1.0, lrs[:, :8], 1, start=4)  # compile / load the kernel cache
    fused = best_time(lambda: exact.sgd_tail_average_risk(lam, m0, 1.0, lrs, 1, start=T // 2), repeats)
    args = exact._prepare(lam, m0, 1.0, lrs, 1)[:5]
    ref_T = min(T, max(50, T // 20))  # the reference is slow: time a shorter run, rates are per update
    ref_args = exact._prepare(lam, m0, 1.0, lrs[:, :ref_T], 1)[:5]
    reference = best_time(lambda: exact._run(*ref_args, ref_T // 2, ref_T, reference=True), 1)
    # same numbers from both implementations
    a = exact._run(*args, T // 2, T)[1]
    b_args = exact._prepare(lam, m0, 1.0, lrs[:2], 1)[:5]
    b = exact._run(*b_args, T // 2, T, reference=True)[1]
    rate = d * T * K / fused
    return {
        "d": d,
        "T": T,
        "K": K,
        "fused_seconds": fused,
        "fused_updates_per_s": rate,
        "numpy_reference_updates_per_s": d * ref_T * K / reference,
        "jax_anchor_updates_per_s": JAX_ANCHOR[d],
        "speedup_vs_jax_anchor": rate / JAX_ANCHOR[d],
        "max_rel_diff_fused_vs_reference": float(np.max(np.abs(a[:2] / b - 1))),
    }


def bench_monte_carlo(d: int, T: int, pilot_runs: int, rel_halfwidth: float = 0.01) -> dict:
    """Exact vs MC for one schedule: MC runs needed for a ±rel_halfwidth 95% interval."""
    lam = spectra.power_law(d, 1.5)
    m0 = spectra.source_prior(lam, 2.0)
    lrs = schedules(T)[K // 2] / lam.sum()
    t_exact = best_time(lambda: exact.sgd_tail_average_risk(lam, m0, 1.0, lrs, 1, start=T // 2), 3)
    t0 = time.perf_counter()
    sim = simulate_sgd(lam, m0, 1.0, lrs, 1, runs=pilot_runs, seed=0, record_steps=[T], tail_start=T // 2, chunk=64)
    t_pilot = time.perf_counter() - t0
    cv = float(sim.tail.std(ddof=1) / sim.tail.mean())
    runs_needed = int(np.ceil((1.96 * cv / rel_halfwidth) ** 2))
    t_mc = t_pilot / pilot_runs * runs_needed
    return {
        "d": d,
        "T": T,
        "exact_seconds": t_exact,
        "mc_pilot_runs": pilot_runs,
        "mc_seconds_per_run": t_pilot / pilot_runs,
        "mc_coefficient_of_variation": cv,
        "mc_runs_for_1pct_at_95": runs_needed,
        "mc_seconds_for_1pct_at_95": t_mc,
        "exact_advantage": t_mc / t_exact,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test, not a record)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "optim_theory_exact.json")
    args = parser.parse_args()
    sizes = {10_000: 4000, 100_000: 600} if not args.quick else {10_000: 200, 100_000: 40}
    results = {
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "numba_threads": int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count())),
        "exact": [bench_exact(d, T, repeats=3) for d, T in sizes.items()],
        "monte_carlo": [bench_monte_carlo(10_000, 400 if not args.quick else 50, 200 if not args.quick else 20)],
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    for row in results["exact"]:
        print(
            f"d={row['d']:>7,}: fused {row['fused_updates_per_s']:.3g} updates/s "
            f"({row['speedup_vs_jax_anchor']:.1f}× the JAX anchor), numpy reference "
            f"{row['numpy_reference_updates_per_s']:.3g}/s, max rel. diff {row['max_rel_diff_fused_vs_reference']:.1e}"
        )
    mc = results["monte_carlo"][0]
    print(
        f"Monte Carlo at d={mc['d']:,}, T={mc['T']}: {mc['mc_runs_for_1pct_at_95']} runs for ±1% "
        f"→ {mc['mc_seconds_for_1pct_at_95']:.3g} s vs exact {mc['exact_seconds']:.3g} s "
        f"({mc['exact_advantage']:.3g}× cheaper)"
    )
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
