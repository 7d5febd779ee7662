"""Schedules: milestone algebra, warmup, the Seesaw step saving, errors."""

import math

import numpy as np
import pytest

from seesaw_train.schedules import SCHEDULES, cosine_milestones, make_schedule

KW = dict(peak_lr=3e-3, total_tokens=20_000_000, warmup_tokens=2_000_000, batch_size=64, seq_len=1024)


def test_milestones_sit_where_cosine_reaches_f_to_the_k():
    cos = make_schedule("cosine", **KW)
    f = 1 / 1.1
    ms = cosine_milestones(KW["total_tokens"], KW["warmup_tokens"], f, 0.1)
    assert len(ms) == math.floor(math.log(0.1) / math.log(f))  # k_max = 24
    for k, t in enumerate(ms, start=1):
        # rounding to whole tokens moves the cosine by at most one token's slope
        assert cos.lr(t) == pytest.approx(KW["peak_lr"] * f**k, rel=1e-6)
    assert ms == sorted(ms) and ms[0] > KW["warmup_tokens"] and ms[-1] <= KW["total_tokens"]


def test_warmup_is_linear_from_a_tenth_at_fixed_batch():
    for name in SCHEDULES:
        s = make_schedule(name, **KW)
        assert s.lr(0) == pytest.approx(0.1 * 3e-3)
        assert s.lr(1_000_000) == pytest.approx(0.55 * 3e-3)
        assert s.batch_size(1_999_999) == 64
        assert s.lr(2_000_000) == pytest.approx(3e-3)


def test_seesaw_values_per_phase_and_new_values_from_the_milestone_on():
    s = make_schedule("seesaw", **KW)
    for k, t in enumerate(s.milestones, start=1):
        assert s.lr(t - 1) == pytest.approx(3e-3 * 1.1 ** (-(k - 1) / 2))
        assert s.lr(t) == pytest.approx(3e-3 * 1.1 ** (-k / 2))
        assert s.batch_size(t) == math.floor(64 * 1.1**k + 1e-9)
    # cosine's final LR is α_f η₀; Seesaw divides it by √c only: α_f^½ η₀ at the end
    assert s.lr(KW["total_tokens"] - 1) == pytest.approx(3e-3 * 1.1 ** (-len(s.milestones) / 2))


def test_step_ledger_is_exact_in_tokens():
    s = make_schedule("seesaw", **KW)
    table = s.table()
    consumed = np.r_[0, np.cumsum(table["batch_size"] * KW["seq_len"])]
    np.testing.assert_array_equal(table["tokens"], consumed[:-1])
    assert consumed[-2] < KW["total_tokens"] <= consumed[-1]  # overshoot < one batch
    # every step uses the batch of the phase it starts in
    for tok, bs in zip(table["tokens"], table["batch_size"], strict=True):
        assert bs == s.batch_size(int(tok))


def test_seesaw_saves_about_38_percent_of_serial_steps():
    # DESIGN.md §2: f = 1/1.1 — the abstract's "≈36%" is a count of serial steps; our milestone
    # discretisation gives 1 − 190/306 = 37.9% for this budget.
    ratio = make_schedule("seesaw", **KW).serial_steps() / make_schedule("cosine", **KW).serial_steps()
    assert 1 - ratio == pytest.approx(0.38, abs=0.02)


def test_named_variants():
    step = make_schedule("step", **KW)
    ramp = make_schedule("constant_ramp", **KW)
    t_end = KW["total_tokens"] - 1
    k = len(step.milestones)
    assert step.lr(t_end) == pytest.approx(3e-3 * (1 / 1.1) ** k) and step.batch_size(t_end) == 64
    assert ramp.lr(t_end) == pytest.approx(3e-3) and ramp.batch_size(t_end) == math.floor(64 * 1.1**k + 1e-9)
    halving = make_schedule("seesaw", f=0.5, alpha=2**0.75, beta=2**0.5, **KW)
    assert len(halving.milestones) == 3  # 0.5^3 > 0.1 > 0.5^4
    wsd = make_schedule("wsd", decay_fraction=0.2, **KW)
    assert wsd.lr(15_999_999) == pytest.approx(3e-3)
    assert wsd.lr(18_000_000) == pytest.approx(3e-3 * (1 - 0.9 * 0.5))


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("linear", {}, "unknown schedule"),
        ("seesaw", {"gamma": 2}, "unknown parameter 'gamma'"),
        ("cosine", {"f": 0.5}, "unknown parameter 'f'"),
        ("seesaw", {"f": 1.5}, "factor f"),
        ("seesaw", {"beta": 0.5}, "beta"),
        ("wsd", {"decay_fraction": 0.95}, "decay_fraction"),
    ],
)
def test_errors(name, params, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(name, **KW, **params)
