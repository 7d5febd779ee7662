"""Real Lightning training on CPU: ledger, validation log, exact resume, and 2-process DDP."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from pytorch_lightning.callbacks import Callback

from fulcrum_core.config import from_mapping, to_mapping
from seesaw_train.schedules import make_schedule
from seesaw_train.train import TrainConfig, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Token shards of a learnable order-1 Markov stream over 64 symbols."""
    out = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    p1, p2 = rng.permutation(64), rng.permutation(64)

    def stream(n):
        x = np.zeros(n, dtype=np.uint16)
        u, r = rng.random(n), rng.integers(0, 64, n)
        for i in range(1, n):
            x[i] = p1[x[i - 1]] if u[i] < 0.7 else (p2[x[i - 1]] if u[i] < 0.9 else r[i])
        return x

    stream(30_000).tofile(out / "train.bin")
    stream(3_000).tofile(out / "val.bin")
    (out / "meta.json").write_text(json.dumps({"vocab_size": 64}))
    return out


def config(data_dir, **overrides):
    base = {
        "data_dir": str(data_dir),
        "model_overrides": {"vocab_size": 64, "seq_len": 32, "n_layer": 2, "n_head": 2, "d_model": 32, "d_mlp": 64},
        "schedule": "seesaw",
        "peak_lr": 0.01,
        "total_tokens": 40_000,
        "batch_size": 8,
        "micro_batch": 4,
        "val_every_tokens": 10_000,
        "val_windows": 16,
        "checkpoint_every_tokens": 12_000,
        "progress_bar": False,
    }
    base.update(overrides)
    return from_mapping(TrainConfig, base)


@pytest.fixture(scope="module")
def reference_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(config(data_dir), out)
    return out


def test_ledger_follows_the_schedule_and_the_loss_falls(reference_run, data_dir):
    steps = pd.read_csv(reference_run / "steps.csv")
    sched = make_schedule("seesaw", peak_lr=0.01, total_tokens=40_000, warmup_tokens=4_000, batch_size=8, seq_len=32)
    table = sched.table()
    assert len(steps) == sched.serial_steps()
    np.testing.assert_array_equal(steps.tokens, table["tokens"])
    np.testing.assert_array_equal(steps.batch_size, table["batch_size"])
    np.testing.assert_allclose(steps.lr, table["lr"])
    assert steps.batch_size.iloc[-1] > steps.batch_size.iloc[0]  # the ramp happened mid-run
    # ln 64 = 4.16 at init; the stream's conditional entropy is ≈ 1.0 nats
    assert steps.train_loss.iloc[0] == pytest.approx(np.log(64), abs=0.1)
    assert steps.train_loss.iloc[-10:].mean() < 1.6
    val = pd.read_csv(reference_run / "logs" / "version_0" / "metrics.csv").dropna(subset=["val_loss"])
    assert list(val.tokens) == sorted(val.tokens) and val.tokens.iloc[-1] >= 40_000
    assert {"serial_steps", "wall_clock_s"} <= set(val.columns)
    run = json.loads((reference_run / "run.json").read_text())
    assert run["serial_steps"] == len(steps) and run["final"]["val_loss"] == pytest.approx(val.val_loss.iloc[-1])
    assert (reference_run / "checkpoints" / "last.ckpt").is_file()


class Crash(Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated crash")


def test_killed_mid_ramp_and_resumed_gives_identical_losses(reference_run, data_dir, tmp_path):
    cfg = config(data_dir)
    sched = cfg.make_schedule(32)
    crash_step = int(np.searchsorted(sched.table()["tokens"], 30_000))  # after a checkpoint, mid-ramp
    assert sched.table()["batch_size"][crash_step] > 8
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path, callbacks=[Crash(crash_step)])
    train(cfg, tmp_path, resume="auto")
    a = pd.read_csv(reference_run / "steps.csv")
    b = pd.read_csv(tmp_path / "steps.csv")
    np.testing.assert_array_equal(a.step, b.step)
    np.testing.assert_array_equal(a.train_loss, b.train_loss)  # bit-identical on CPU, same seed


def test_two_process_ddp_matches_one_process(reference_run, data_dir, tmp_path):
    cfg = json.dumps({**to_mapping(config(data_dir)), "devices": 2, "accelerator": "cpu"})
    proc = subprocess.run(
        [sys.executable, "-m", "seesaw_train.train", "--config", cfg, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = pd.read_csv(reference_run / "steps.csv")
    b = pd.read_csv(tmp_path / "steps.csv")
    assert len(a) == len(b)
    # same global batches, gradients averaged over 2 ranks: equal up to float summation order
    np.testing.assert_allclose(b.train_loss, a.train_loss, rtol=1e-5)


def test_bad_config_is_named(data_dir):
    from fulcrum_core import ConfigError

    with pytest.raises(ConfigError, match="model_overrides: unknown key 'n_layers'"):
        config(data_dir, model_overrides={"n_layers": 3}).model_config()
    with pytest.raises(ConfigError, match="schedule: unknown schedule"):
        config(data_dir, schedule="linear").make_schedule(32)
