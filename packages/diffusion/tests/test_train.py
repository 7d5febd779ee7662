"""Lightning training: learns a 2-D mixture's denoiser, resumes bit-for-bit, records history."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from diffusion.data import load_digits_tensor, ring_mixture
from diffusion.train import SigmaConfig, TrainConfig, load_denoiser, train_denoiser
from fulcrum_core.config import ConfigError, from_mapping


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def mixture():
    gm = ring_mixture(4)  # 4 modes on a circle of radius 0.7, std 0.05: σ_data ≈ 0.5
    data, _ = gm.sample(4096, torch.Generator().manual_seed(0))
    return gm, data


def per_sigma_error(gm, sigmas=(0.2, 0.5), n=2000):
    """eval_fn: E‖D_θ(x; σ) − D*(x; σ)‖², x = x₀ + σε, against the exact mixture denoiser D*."""
    exact = gm.denoiser()
    gen = torch.Generator().manual_seed(1)
    x0, _ = gm.sample(n, gen)
    eps = torch.randn(x0.shape, generator=gen)

    def eval_fn(den, step):
        out = {}
        for s in sigmas:
            x = x0 + s * eps
            out[f"err_{s}"] = float((den(x, s).double() - exact(x.double(), s)).square().sum(1).mean())
        return out

    return eval_fn


def test_training_learns_the_mixture_denoiser(mixture, tmp_path):
    gm, data = mixture
    cfg = TrainConfig(width=64, depth=3, batch_size=256, lr=2e-3, steps=400, ema=0.99, eval_every=100)
    result = train_denoiser(cfg, data, tmp_path, eval_fn=per_sigma_error(gm))
    hist = result.history
    assert list(hist["step"]) == [0, 100, 200, 300, 400]
    assert {"train_loss", "err_0.2", "err_0.5"} <= set(hist.columns)
    assert math.isnan(hist["train_loss"].iloc[0]) and (hist["train_loss"].iloc[1:] > 0).all()
    first, last = hist.iloc[0], hist.iloc[-1]
    # at init D = c_skip·x (F ≡ 0), the Gaussian-optimal denoiser; training must beat it by ≥ 5× at mid σ.
    # Measured here: ≈ 20× at both σ, so the bound leaves a 4× margin for platform differences.
    for s in (0.2, 0.5):
        assert last[f"err_{s}"] < 0.2 * first[f"err_{s}"], (s, first[f"err_{s}"], last[f"err_{s}"])
    assert not result.denoiser.training
    assert all(not p.requires_grad for p in result.denoiser.parameters())
    assert result.steps == 400 and result.steps_run == 400 and result.steps_per_s > 0
    assert (tmp_path / "logs" / "metrics.csv").is_file()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "history.csv"), hist, check_dtype=False)


def _small_cfg(**kw) -> TrainConfig:
    base = dict(width=32, depth=2, emb_dim=16, batch_size=64, lr=2e-3, warmup_steps=10, ema=0.9, grad_clip=1.0)
    base.update(kw)
    return TrainConfig(**{"progress_bar": False, **base})


def _ckpt_tensors(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    tensors = dict(ckpt["state_dict"])
    for i, state in ckpt["optimizer_states"][0]["state"].items():
        tensors.update({f"opt.{i}.{k}": v for k, v in state.items()})
    return ckpt["global_step"], tensors


def test_resume_matches_uninterrupted_run(mixture, tmp_path):
    gm, data = mixture
    eval_fn = per_sigma_error(gm, sigmas=(0.5,), n=200)
    full = train_denoiser(
        _small_cfg(steps=30, checkpoint_every=15, eval_every=10), data, tmp_path / "a", eval_fn=eval_fn
    )

    part = tmp_path / "b"
    first = train_denoiser(_small_cfg(steps=15, checkpoint_every=15, eval_every=10), data, part, eval_fn=eval_fn)
    assert first.steps == 15 and first.resumed_from is None
    step_mid, mid = _ckpt_tensors(part / "checkpoints" / "last.ckpt")
    second = train_denoiser(_small_cfg(steps=30, checkpoint_every=15, eval_every=10), data, part, eval_fn=eval_fn)
    assert second.resumed_from == 15 and second.steps == 30 and second.steps_run == 15

    step_a, a = _ckpt_tensors(tmp_path / "a" / "checkpoints" / "last.ckpt")
    step_b, b = _ckpt_tensors(part / "checkpoints" / "last.ckpt")
    assert (step_mid, step_a, step_b) == (15, 30, 30)
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a) and any(k.startswith("opt.") for k in a)
    # identical weights, EMA weights and Adam moments, bit for bit (CPU, same thread count)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    # …and the second segment really trained: the weights moved after step 15
    assert not all(torch.equal(mid[k], b[k]) for k in mid if k.startswith("precond."))
    pd.testing.assert_frame_equal(full.history, second.history)
    assert list(second.history["step"]) == [0, 10, 20, 30]

    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(2))
    ref = full.denoiser(x, 0.3)
    assert torch.equal(second.denoiser(x, 0.3), ref)
    assert torch.equal(load_denoiser(tmp_path / "a" / "checkpoints" / "last.ckpt")(x, 0.3), ref)

    # a finished run resumed at its last step trains no further
    again = train_denoiser(_small_cfg(steps=30, checkpoint_every=15, eval_every=10), data, part, eval_fn=eval_fn)
    assert again.resumed_from == 30 and again.steps_run == 0 and torch.equal(again.denoiser(x, 0.3), ref)

    # another seed gives another run (the equalities above are not vacuous)
    other = train_denoiser(_small_cfg(steps=30, seed=1), data, tmp_path / "c")
    assert not torch.equal(other.denoiser(x, 0.3), ref)

    # a checkpoint of a different config is set aside, not resumed
    with pytest.warns(UserWarning, match="set aside"):
        fresh = train_denoiser(_small_cfg(steps=5, lr=1e-3, checkpoint_every=5), data, part)
    assert fresh.resumed_from is None and fresh.steps_run == 5
    assert (part / "checkpoints" / "last.ckpt.incompatible").is_file()


def test_unet_on_digits_and_config_errors(tmp_path):
    x, _ = load_digits_tensor()
    cfg = TrainConfig(net="unet", base=8, emb_dim=16, batch_size=16, steps=3, progress_bar=False)
    result = train_denoiser(cfg, x[:256], tmp_path)
    assert result.steps == 3
    out = result.denoiser(x[:4], torch.tensor([0.1, 0.5, 1.0, 5.0]))
    assert out.shape == (4, 64) and torch.isfinite(out).all()

    with pytest.raises(ConfigError, match="net"):
        TrainConfig(net="transformer")
    with pytest.raises(ConfigError, match="kind"):
        SigmaConfig(kind="uniform")
    cfg = from_mapping(TrainConfig, {"sigma": {"kind": "loguniform", "band_lo": 1.0}, "precond": "ve"})
    assert cfg.sigma.build().name.startswith("loguniform") and cfg.sigma.build().lo == 1.0
    with pytest.raises(ConfigError, match="no mass"):
        SigmaConfig(kind="loguniform", sigma_max=1.0, band_lo=2.0).build()
