import pandas as pd
import pytest

from fulcrum_core import ConfigError
from fulcrum_core.config import from_mapping
from seesaw_train.experiments.seesaw_cbs import Config, critical_batch_size


def table(losses):
    return pd.DataFrame(
        [
            {"batch_size": b, "seed": s, "final_val_loss": v}
            for b, per_seed in losses.items()
            for s, v in enumerate(per_seed)
        ]
    )


def test_cbs_is_the_largest_batch_within_tolerance_of_the_best_mean():
    t = table({8: [3.00, 3.02], 16: [3.01, 3.03], 32: [3.05, 3.07], 64: [3.30, 3.40]})
    cbs, mean = critical_batch_size(t, 0.02)  # best mean 3.01 → threshold 3.0702
    assert cbs == 32
    assert mean[64] == pytest.approx(3.35)
    assert critical_batch_size(t, 0.01)[0] == 16
    assert critical_batch_size(t, 0.5)[0] == 64


def test_config_needs_a_ladder():
    with pytest.raises(ConfigError, match="runs"):
        from_mapping(Config, {"runs": {"a": "x"}})


def test_best_lr_is_the_lowest_seed_mean_loss():
    from seesaw_train.experiments.seesaw_vs_cosine import best_lr

    grid = pd.DataFrame({"peak_lr": [1e-3, 1e-3, 3e-3, 3e-3, 1e-2], "final_val_loss": [5.0, 5.2, 5.05, 5.05, 4.9]})
    assert best_lr(grid) == 1e-2
    assert best_lr(grid[grid.peak_lr < 5e-3]) == 3e-3  # 5.05 < 5.1
