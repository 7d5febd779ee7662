import numpy as np
import pytest

from seesaw_train.batching import StepBatchSampler, WindowDataset
from seesaw_train.schedules import make_schedule

SEQ = 8


def schedule(name="seesaw", **params):
    return make_schedule(
        name, peak_lr=1e-3, total_tokens=40_000, warmup_tokens=4_000, batch_size=6, seq_len=SEQ, **params
    )


def test_each_step_has_the_schedules_global_batch_and_ranks_partition_it():
    s = schedule()
    full = list(StepBatchSampler(s, 300, seed=1))
    sizes = s.table()["batch_size"]
    assert [len(b) for b in full] == list(sizes)
    ranks = [list(StepBatchSampler(s, 300, seed=1, rank=r, world_size=3)) for r in range(3)]
    for step, batch in enumerate(full):
        parts = [ranks[r][step] for r in range(3)]
        assert sorted(sum(parts, [])) == sorted(batch)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_stream_is_a_permutation_per_pass_and_batch_changes_mid_pass():
    s = schedule()
    sampler = StepBatchSampler(s, 97, seed=3)
    stream = [i for b in sampler for i in b]
    for p in range(len(stream) // 97):
        assert sorted(stream[p * 97 : (p + 1) * 97]) == list(range(97))
    # passes are reshuffled
    assert stream[:97] != stream[97:194]
    # some batch-size change falls strictly inside a pass
    offsets = np.cumsum(s.table()["batch_size"])
    changes = offsets[:-1][np.diff(s.table()["batch_size"]) != 0]
    assert any(c % 97 != 0 for c in changes)


def test_resume_from_a_step_continues_the_same_stream():
    s = schedule()
    full = list(StepBatchSampler(s, 300, seed=7, rank=1, world_size=2))
    resumed = list(StepBatchSampler(s, 300, seed=7, rank=1, world_size=2, start_step=11))
    assert resumed == full[11:]
    assert len(StepBatchSampler(s, 300, seed=7, start_step=11)) == len(full) - 11


def test_window_dataset_targets_are_inputs_shifted():
    tokens = np.arange(50, dtype=np.uint16)
    ds = WindowDataset(tokens, SEQ)
    assert len(ds) == (50 - 1) // SEQ
    x, y = ds[2]
    assert x.tolist() == list(range(16, 24)) and y.tolist() == list(range(17, 25))
    with pytest.raises(ValueError, match="shorter than one window"):
        WindowDataset(np.arange(5, dtype=np.uint16), SEQ)


def test_too_many_ranks_for_the_batch():
    with pytest.raises(ValueError, match="cannot be split"):
        StepBatchSampler(schedule(), 300, seed=0, world_size=7)
