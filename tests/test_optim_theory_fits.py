"""At ci scale, every optim_theory figure's fitted numbers land within stated tolerances of theory.

The tolerances are set from the theory's finite-size corrections, not from the measured values:
- power-law slopes: ±0.1 — the fit ranges at ci span ~1.5 decades, where the next-order terms of
  the bounds (k* is an integer; the bias tail is truncated at finite d) shift a log-log slope by a
  few hundredths; 0.1 is the usual tolerance the issue names for slopes.
- Seesaw equivalence ratios: within 15% of 1 — the theory says "equal up to a constant"; at ci the
  last phase still carries ~13% bias, which the batch ramps reduce at a different per-step rate.
"""

import json

import pytest

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

EXPECTED = {
    "gd_ridge_sgd": {
        # theory slopes derived in the module docstring: (b) GD −(b−1)/b, ridge −2a/(2a+1) with a = 1.5,
        # b = 8; (c) GD floor ∝ n^(2(q−1)), q = 3/4, SGD ∝ σ²/n. The (c) GD slope gets ±0.15: its floor
        # (ρ/(1+ρ))² bends the curve over n = 64…512 at ci and the spike's norm varies per design.
        "b_gd_slope": (-0.875, 0.1),
        "b_ridge_slope": (-0.75, 0.1),
        "c_gd_slope": (-0.5, 0.15),
        "c_sgd_slope": (-1.0, 0.1),
    },
    "sgd_bias_variance": {
        # −(1 − 1/a) with a = 2
        "tail_variance_slope": (-0.5, 0.1),
        # (1 − b)/a with a = 2, b = 2.5
        "tail_bias_slope": (-0.75, 0.1),
    },
    "multipass_scaling": {
        "slope_M": (-0.5, 0.1),  # 1 − b; exact given the sketch, spread over sketches ≈ 0.02
        "slope_N_one_pass": (-0.25, 0.1),  # (1 − b)/a
        "slope_N_multi_pass": (-1 / 3, 0.1),  # (1 − b)/b with L = N^(a/b)
    },
    # logistic regression: ±0.15 — one log factor (log κ or log 1/γ²)^±1 over the fitted range moves
    # a log-log slope by ≈ 1/ln κ ≈ 0.1–0.2; step counts are integers (±1 step at large η)
    "logreg_large_stepsize": {"small_step_slope": (1.0, 0.15), "large_step_slope_c4": (0.5, 0.15)},
    "logreg_adaptive": {"gd_separation_slope_pooled": (1.0, 0.15), "perceptron_slope": (1.0, 0.15)},
    "seesaw_linreg": {
        "final_risk_ratio_SGD_1.41_1.41": (1.0, 0.15),
        "final_risk_ratio_SGD_1_2": (1.0, 0.15),
        "final_risk_ratio_NSGD_1.41_2": (1.0, 0.15),
    },
}
# The multi-pass L-slope is the noisiest number at ci (6 draws, per-draw sd ≈ 0.09): the test
# checks a sanity band [−0.35, −0.15] around (1 − b)/a = −0.25, the claim's ±0.1 is for local scale.
BANDS = {
    "multipass_scaling": {"slope_L_multi_pass": (-0.35, -0.15), "multi_over_one_pass_at_pivot": (0.0, 0.85)},
    # 2509.17251: ratios bounded by the commuting-case constant 4; growth slopes of the GD/ridge and
    # GD/SGD ratios beyond the theory's 0.125 / 0.5 / ≤ 0 within the ci drift tolerance ln 1.25 / ln(n range)
    "logreg_large_stepsize": {"large_step_nonmonotone_fraction": (1.0, 1.0)},
    # exp(−Θ(η)) after burn-in: negative slope of log risk in η, linear (R² ≥ 0.95); Perceptron ≤ Novikoff
    "logreg_adaptive": {
        "post_burn_in_slope": (-100.0, 0.0),
        "post_burn_in_r2": (0.95, 1.0),
        "perceptron_over_novikoff_max": (0.0, 1.0),
    },
    "gd_ridge_sgd": {
        "a_max_ratio_comparable": (0.0, 4.0),
        "a_max_ratio_tuned": (0.0, 4.0),
        "d_exp_ratio_max": (0.0, 4.0),
        "d_power_ratio_max": (0.0, 4.0),
        "d_exp_ratio_slope": (-10.0, 0.08),
        "d_power_ratio_slope": (-10.0, 0.08),
        "b_ratio_slope": (0.045, 10.0),
        "c_ratio_slope": (0.39, 10.0),
    },
}
AT_LEAST = {
    # α < √β breaks NSGD's equivalence: the ledger's threshold 1.2× the base risk
    "seesaw_linreg": {"final_risk_ratio_NSGD_1_4": 1.2},
}


@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_ci_fits_within_tolerance(ci_workdir, experiment):
    numbers = json.loads((ci_workdir / f"results/optim_theory/{experiment}/summary.json").read_text())["numbers"]
    for key, (theory, tol) in EXPECTED[experiment].items():
        assert abs(numbers[key] - theory) <= tol, (key, numbers[key], theory, tol)
    for key, floor in AT_LEAST.get(experiment, {}).items():
        assert numbers[key] >= floor, (key, numbers[key], floor)
    for key, (lo, hi) in BANDS.get(experiment, {}).items():
        assert lo <= numbers[key] <= hi, (key, numbers[key], lo, hi)
