"""Train a denoiser with PyTorch Lightning: config → ``DenoiserModule`` → (EMA) denoiser + eval history.

    result = train_denoiser(TrainConfig(net="mlp", width=128, steps=2000), data, out, eval_fn=fn)
    result.denoiser(x, sigma)          # D(x; σ), a precond module in eval mode
    result.history                     # pandas frame: step, train_loss, <eval_fn's numbers>

One optimizer step on a batch x₀ of ``batch_size`` rows drawn with replacement from ``data``
minimises the mean of the per-sample loss of :func:`diffusion.loss.denoising_loss`,
λ(σ)·mean_j (D(x₀ + σε; σ) − x₀)_j², with Adam (lr after an optional linear warm-up of
``warmup_steps``) and optional gradient-norm clipping. With ``ema > 0`` an exponential moving
average of the weights, θ̄ ← d·θ̄ + (1 − d)·θ with d = min(ema, (1 + n)/(10 + n)) after the n-th
update (the usual warm-up of the decay, so short runs are not dominated by the initial weights),
is the returned denoiser.

Determinism and resume: all randomness of step k (batch indices, σ, ε) comes from generators
seeded by (seed, k) alone, and the network is initialised from ``seed`` inside a forked RNG. A run
is therefore a pure function of (config, data) on CPU, and a run resumed from a checkpoint at step
k continues bit-for-bit like the uninterrupted run (tested on CPU; a one-off check on an H100 gave
identical outputs too, but CUDA kernels are not guaranteed deterministic). ``checkpoints/last.ckpt`` also carries
the config, a fingerprint of the data and the eval history; a checkpoint of a different config or
data set is set aside (renamed ``last.ckpt.incompatible``) rather than resumed. Config keys that
may change between segments: ``RUNTIME_KEYS`` (``steps`` among them, to extend a run).

Outputs under ``out``: ``logs/metrics.csv`` (CSVLogger: train loss every ``log_every`` steps, eval
numbers), ``checkpoints/last.ckpt`` (every ``checkpoint_every`` steps and at the end; after a resume
the previous segment's metrics file is kept as ``logs/metrics.until_step<k>.csv``),
``history.csv``.

Threads: ``threads > 0`` sets ``torch.set_num_threads`` for the call and restores it afterwards (on 2
busy cores, two threads made small convolutions ~100× slower than one). ``accelerator="auto"`` picks
a GPU when there is one; the returned denoiser then lives on it, and ``eval_fn`` must move its inputs
to ``next(denoiser.parameters()).device``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from fulcrum_core.config import ConfigError, to_mapping

from .loss import (
    BandLimited,
    LogNormalSigma,
    LogUniformSigma,
    SigmaDistribution,
    denoising_loss,
    edm_weight,
    inverse_sigma2_weight,
    unit_weight,
)
from .nets import MLPNet, SmallUNet
from .precond import EDMPrecond, Precond, VEPrecond, VPPrecond

__all__ = [
    "SigmaConfig",
    "TrainConfig",
    "TrainResult",
    "DenoiserModule",
    "TensorBatches",
    "TensorDataModule",
    "train_denoiser",
    "load_denoiser",
    "RUNTIME_KEYS",
]

EvalFn = Callable[[nn.Module, int], Mapping[str, float]]

#: config keys that do not change the trajectory of training; they may differ when resuming
RUNTIME_KEYS = frozenset(
    {"steps", "threads", "progress_bar", "log_every", "checkpoint_every", "eval_every", "resume", "accelerator"}
)


# ----------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SigmaConfig:
    """Training noise-level distribution p(σ), optionally restricted to a band [band_lo, band_hi].

    kind ``lognormal``: ln σ ~ N(p_mean, p_std²); ``loguniform``: ln σ ~ U(ln sigma_min, ln sigma_max).
    ``band_lo`` / ``band_hi`` (None = open) condition p on the band (see ``loss.BandLimited``).
    """

    kind: str = "lognormal"
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    band_lo: float | None = None
    band_hi: float | None = None

    def __post_init__(self):
        if self.kind not in ("lognormal", "loguniform"):
            raise ConfigError(f"sigma.kind: unknown {self.kind!r} (lognormal | loguniform)")
        if self.p_std <= 0:
            raise ConfigError("sigma.p_std must be positive")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ConfigError("sigma: need 0 < sigma_min < sigma_max")
        lo = self.band_lo or 0.0
        hi = math.inf if self.band_hi is None else self.band_hi
        if lo < 0 or not lo < hi:
            raise ConfigError(f"sigma: need 0 <= band_lo < band_hi, got {self.band_lo}, {self.band_hi}")

    def build(self) -> SigmaDistribution:
        base: SigmaDistribution
        if self.kind == "lognormal":
            base = LogNormalSigma(self.p_mean, self.p_std)
        else:
            base = LogUniformSigma(self.sigma_min, self.sigma_max)
        if self.band_lo is None and self.band_hi is None:
            return base
        try:
            return BandLimited(base, self.band_lo or 0.0, math.inf if self.band_hi is None else self.band_hi)
        except ValueError as exc:
            raise ConfigError(f"sigma: {exc}") from exc


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run (see the module docstring for the semantics)."""

    # network: "mlp" (width, depth) or "unet" (base, mults, num_blocks, attention; channels/image_size,
    # image_size 0 = inferred from the data: [N, C, H, W] or flat [N, C·H·W] with H = W)
    net: str = "mlp"
    width: int = 256
    depth: int = 4
    emb_dim: int = 64
    base: int = 32
    mults: tuple[int, ...] = (1, 2)
    num_blocks: int = 1
    attention: bool = True
    dropout: float = 0.0
    channels: int = 1
    image_size: int = 0
    # parametrisation and loss
    precond: str = "edm"
    sigma_data: float = 0.5
    sigma: SigmaConfig = field(default_factory=SigmaConfig)
    weighting: str = "edm"
    # optimisation
    lr: float = 1e-3
    warmup_steps: int = 0
    grad_clip: float = 0.0
    batch_size: int = 256
    steps: int = 2000
    ema: float = 0.999
    seed: int = 0
    # runtime
    threads: int = 1
    progress_bar: bool = True
    log_every: int = 50
    checkpoint_every: int = 0
    eval_every: int = 0
    resume: bool = True
    accelerator: str = "auto"

    def __post_init__(self):
        checks = [
            (self.net in ("mlp", "unet"), f"net: unknown {self.net!r} (mlp | unet)"),
            (self.precond in ("edm", "vp", "ve"), f"precond: unknown {self.precond!r} (edm | vp | ve)"),
            (
                self.weighting in ("edm", "unit", "inv_sigma2"),
                f"weighting: unknown {self.weighting!r} (edm | unit | inv_sigma2)",
            ),
            (min(self.width, self.depth, self.emb_dim, self.base, self.num_blocks, self.channels) >= 1, "sizes >= 1"),
            (self.emb_dim % 2 == 0, "emb_dim must be even"),
            (len(self.mults) >= 1 and min(self.mults) >= 1, "mults: need at least one positive multiplier"),
            (self.image_size >= 0, "image_size must be >= 0 (0 = infer)"),
            (0 <= self.dropout < 1, "dropout must lie in [0, 1)"),
            (self.sigma_data > 0, "sigma_data must be positive"),
            (self.lr > 0, "lr must be positive"),
            (self.warmup_steps >= 0 and self.grad_clip >= 0, "warmup_steps and grad_clip must be >= 0"),
            (self.batch_size >= 1 and self.steps >= 0, "batch_size >= 1 and steps >= 0"),
            (0 <= self.ema < 1, "ema must lie in [0, 1) (0 = off)"),
            (self.seed >= 0, "seed must be >= 0"),
            (self.threads >= 0, "threads must be >= 0 (0 = leave torch's setting)"),
            (min(self.log_every, 1 + self.checkpoint_every, 1 + self.eval_every) >= 1, "log_every >= 1, others >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    def trajectory_mapping(self) -> dict[str, Any]:
        """The config without ``RUNTIME_KEYS`` — what must match for a checkpoint to be resumed."""
        return {k: v for k, v in to_mapping(self).items() if k not in RUNTIME_KEYS}


def build_net(cfg: TrainConfig, data_shape: tuple[int, ...]) -> nn.Module:
    """The raw network F for samples of shape ``data_shape`` (without the batch dimension)."""
    dim = int(np.prod(data_shape))
    if cfg.net == "mlp":
        return MLPNet(dim, cfg.width, cfg.depth, cfg.emb_dim)
    channels, size = cfg.channels, cfg.image_size
    if len(data_shape) == 3:
        channels, size = data_shape[0], data_shape[1]
    elif size == 0:
        size = math.isqrt(dim // channels)
    if channels * size * size != dim:
        raise ConfigError(f"unet: samples of shape {data_shape} are not {channels}×{size}×{size} images")
    return SmallUNet(
        channels, size, cfg.base, tuple(cfg.mults), cfg.emb_dim, cfg.num_blocks, cfg.attention, cfg.dropout
    )


def build_precond(cfg: TrainConfig, net: nn.Module) -> Precond:
    if cfg.precond == "edm":
        return EDMPrecond(net, cfg.sigma_data)
    if cfg.precond == "vp":
        return VPPrecond(net)
    return VEPrecond(net)


def build_weight(cfg: TrainConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    if cfg.weighting == "edm":
        sigma_data = cfg.sigma_data
        return lambda sigma: edm_weight(sigma, sigma_data)
    return unit_weight if cfg.weighting == "unit" else inverse_sigma2_weight


# ----------------------------------------------------------------------------------------- data


def step_generator(seed: int, step: int, stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator for (seed, stream, step): independent streams, reproducible per step."""
    state = np.random.SeedSequence([seed, stream, step]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state >> np.uint64(1)))


class TensorBatches(IterableDataset):
    """Endless (step, x₀) pairs, x₀ = ``batch_size`` rows of ``data`` drawn with replacement.

    Batch k depends only on (seed, k), so starting at ``start_step`` continues any run exactly.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int, start_step: int = 0):
        self.data, self.batch_size, self.seed, self.start_step = data, batch_size, seed, start_step

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        step = self.start_step
        n = self.data.shape[0]
        while True:
            idx = torch.randint(n, (self.batch_size,), generator=step_generator(self.seed, step, stream=0))
            yield torch.tensor(step), self.data[idx]
            step += 1


class TensorDataModule(pl.LightningDataModule):
    """Wraps ``TensorBatches``; the loader starts at the trainer's (possibly restored) global step."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int):
        super().__init__()
        self.data, self.batch_size, self.seed = data, batch_size, seed

    def train_dataloader(self) -> DataLoader:
        start = self.trainer.global_step if self.trainer is not None else 0
        return DataLoader(TensorBatches(self.data, self.batch_size, self.seed, start), batch_size=None)


def data_fingerprint(data: torch.Tensor) -> list[float]:
    """Shape, sum and sum of squares (float64) — enough to tell data sets apart for resuming."""
    d = data.double()
    return [*map(float, data.shape), float(d.sum()), float(d.square().sum())]


# ----------------------------------------------------------------------------------------- module


class DenoiserModule(pl.LightningModule):
    """Lightning module: ``precond`` (trained), ``ema`` (its moving average, or None), eval history."""

    def __init__(self, cfg: TrainConfig, data_shape: tuple[int, ...], eval_fn: EvalFn | None = None):
        super().__init__()
        self.cfg = cfg
        self.data_shape = tuple(int(s) for s in data_shape)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = build_net(cfg, self.data_shape)
        self.precond = build_precond(cfg, net)
        self.ema = copy.deepcopy(self.precond).requires_grad_(False) if cfg.ema > 0 else None
        self.sigma_dist = cfg.sigma.build()
        self.weight_fn = build_weight(cfg)
        self.eval_fn = eval_fn
        self.history: list[dict[str, float]] = []
        self.data_fingerprint: list[float] | None = None
        self._loss_sum = torch.zeros(())
        self._loss_n = 0
        self.loop_seconds = 0.0
        self._t_start: float | None = None
        self._ema_pairs: tuple[list[torch.Tensor], ...] = ([], [], [], [])
        self._end_row: int | None = None

    def denoiser(self) -> Precond:
        """The model to use: the EMA copy when ``ema > 0``, else the trained weights."""
        return self.ema if self.ema is not None else self.precond

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        # fused Adam: one kernel for all tensors (≈ 5× faster than the per-tensor loop on a CPU)
        opt = torch.optim.Adam(self.precond.parameters(), lr=self.cfg.lr, fused=True)
        if not self.cfg.warmup_steps:
            return opt
        warmup = self.cfg.warmup_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch, batch_idx):
        step, x0 = batch
        if int(step) != self.global_step:  # the data stream must follow the (restored) step counter
            raise RuntimeError(f"data batch for step {int(step)} arrived at global step {self.global_step}")
        gen = step_generator(self.cfg.seed, self.global_step, stream=1, device=x0.device)
        loss = denoising_loss(self.precond, x0, self.sigma_dist, self.weight_fn, gen).mean()
        detached = loss.detach()
        self._loss_sum = self._loss_sum.to(detached.device) + detached
        self._loss_n += 1
        if (self.global_step + 1) % self.cfg.log_every == 0:
            self.log("train_loss", detached, on_step=True, prog_bar=True, batch_size=x0.shape[0])
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            n = self.trainer.global_step  # updates done, this one included
            d = min(self.cfg.ema, (1 + n) / (10 + n))
            ema_params, params, ema_buffers, buffers = self._ema_pairs
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, params, 1.0 - d)
                for e, b in zip(ema_buffers, buffers, strict=True):
                    e.copy_(b)

    # ------------------------------------------------------------------ evaluation
    def record(self, step: int, end: bool = False) -> None:
        """Append a history row: mean train loss since the last regular row, and eval_fn's numbers.

        ``end`` marks a row taken only because the run stops at ``step``: it does not restart the loss
        average, and a later resume from this step drops it again, so that a run split into segments
        has the same history as the uninterrupted run.
        """
        row: dict[str, float] = {"step": int(step)}
        if self._loss_n:
            row["train_loss"] = float(self._loss_sum) / self._loss_n
        if not end:
            self._loss_sum, self._loss_n = torch.zeros(()), 0
        self._end_row = int(step) if end else None
        if self.eval_fn is not None:
            den = self.denoiser()
            was_training = den.training
            den.eval()
            with torch.no_grad():
                numbers = self.eval_fn(den, int(step))
            den.train(was_training)
            row.update({k: float(v) for k, v in numbers.items()})
        self.history.append(row)
        if self.logger is not None:
            self.logger.log_metrics({f"eval/{k}": v for k, v in row.items() if k != "step"}, step=int(step))

    # ------------------------------------------------------------------ timing and checkpoints
    def on_train_start(self) -> None:
        if self.ema is not None:  # cached: iterating module parameters every step is measurable on a CPU
            self._ema_pairs = (
                list(self.ema.parameters()),
                list(self.precond.parameters()),
                list(self.ema.buffers()),
                list(self.precond.buffers()),
            )
        self._t_start = time.perf_counter()

    def on_train_end(self) -> None:
        if self._t_start is not None:
            self.loop_seconds = time.perf_counter() - self._t_start

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["diffusion"] = {
            "config": to_mapping(self.cfg),
            "data_shape": list(self.data_shape),
            "data_fingerprint": self.data_fingerprint,
            "history": list(self.history),
            "loss_sum": float(self._loss_sum),
            "loss_n": self._loss_n,
            "end_row": self._end_row,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("diffusion", {})
        self.history = list(extra.get("history", []))
        self._loss_sum = torch.tensor(float(extra.get("loss_sum", 0.0)))
        self._loss_n = int(extra.get("loss_n", 0))
        self._end_row = extra.get("end_row")


class PeriodicRecord(Callback):
    """Calls ``DenoiserModule.record`` at step 0, every ``every`` steps (0 = never) and at the last step.

    Lightning runs ModelCheckpoint after all other callbacks, so a checkpoint at step k already holds
    the row of step k.
    """

    def __init__(self, every: int):
        self.every = int(every)

    def on_train_start(self, trainer: pl.Trainer, pl_module: DenoiserModule) -> None:
        step = trainer.global_step
        if pl_module._end_row is not None and pl_module._end_row == step < trainer.max_steps:
            pl_module.history.pop()  # the previous segment's end row: this run goes on past it
            pl_module._end_row = None
        if step == 0 and not pl_module.history:
            pl_module.record(0)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: DenoiserModule, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every and step % self.every == 0:
            pl_module.record(step)
        elif step == trainer.max_steps:
            pl_module.record(step, end=True)


# ----------------------------------------------------------------------------------------- entry points


@dataclass
class TrainResult:
    """``denoiser``: D(x; σ) in eval mode without grads, on the training device; ``history``: one row
    per record (step, train_loss = mean loss since the previous row, eval numbers); timings of this
    call (``steps_run`` steps in ``loop_s`` seconds of the training loop, ``wall_s`` in total)."""

    denoiser: Precond
    history: pd.DataFrame
    steps: int
    steps_run: int
    wall_s: float
    loop_s: float
    resumed_from: int | None = None

    @property
    def steps_per_s(self) -> float:
        return self.steps_run / self.loop_s if self.loop_s > 0 else float("nan")


@contextlib.contextmanager
def _quiet_lightning():
    """Hide Lightning's per-fit banners (GPU available…, max_steps reached) and known-benign warnings."""
    names = ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern in (
            ".*does not have many workers.*",
            ".*dataloader is not resumable.*",
            ".*Experiment logs directory.*",
            ".*Checkpoint directory .* exists and is not empty.*",
            ".*exists and is not empty.*",
            ".*_IterableDataset.*",
            ".*`srun` command is available.*",
            ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
        ):
            warnings.filterwarnings("ignore", message=pattern)
        try:
            yield
        finally:
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)


def _resumable(path: Path, cfg: TrainConfig, fingerprint: list[float]) -> tuple[bool, int]:
    """Can ``path`` continue this run? Returns (ok, its global step)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    extra = ckpt.get("diffusion", {})
    saved = {k: v for k, v in extra.get("config", {}).items() if k not in RUNTIME_KEYS}
    ok = saved == cfg.trajectory_mapping() and extra.get("data_fingerprint") == fingerprint
    return ok, int(ckpt.get("global_step", 0))


def train_denoiser(
    cfg: TrainConfig, data: torch.Tensor, out: str | Path, *, eval_fn: EvalFn | None = None
) -> TrainResult:
    """Train a denoiser on ``data`` ([N, …] float) with ``cfg``; see the module docstring.

    ``eval_fn(denoiser, step) -> {name: number}`` is called (under ``torch.no_grad``, denoiser in
    eval mode: the EMA copy when ``ema > 0``) at step 0, every ``eval_every`` steps and at the end.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = torch.as_tensor(data, dtype=torch.float32).contiguous()
    if data.ndim < 2 or data.shape[0] < 1:
        raise ValueError(f"data must have shape [N, ...] with N >= 1, got {tuple(data.shape)}")
    fingerprint = data_fingerprint(data)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    resume_path, resumed_from = None, None
    if cfg.resume and last.is_file():
        ok, resumed_from = _resumable(last, cfg, fingerprint)
        if ok:
            resume_path = last
        else:
            warnings.warn(
                f"{last} belongs to another config or data set: set aside, training from scratch", stacklevel=2
            )
            last.replace(last.with_name("last.ckpt.incompatible"))
            resumed_from = None
    logs = out / "logs"
    if resume_path is not None and (logs / "metrics.csv").is_file():
        (logs / "metrics.csv").replace(logs / f"metrics.until_step{resumed_from}.csv")

    module = DenoiserModule(cfg, tuple(data.shape[1:]), eval_fn=eval_fn)
    module.data_fingerprint = fingerprint
    callbacks: list[Callback] = [PeriodicRecord(cfg.eval_every)]
    if cfg.checkpoint_every:
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                every_n_train_steps=cfg.checkpoint_every,
                save_top_k=0,
                save_last=True,
                enable_version_counter=False,
            )
        )
    if cfg.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, cfg.steps // 200)))

    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    try:
        with _quiet_lightning():
            trainer = pl.Trainer(
                accelerator=cfg.accelerator,
                devices=1,
                max_steps=cfg.steps,
                max_epochs=-1,
                logger=CSVLogger(out, name="logs", version=""),
                callbacks=callbacks,
                enable_checkpointing=bool(cfg.checkpoint_every),
                enable_progress_bar=cfg.progress_bar,
                enable_model_summary=False,
                log_every_n_steps=cfg.log_every,
                num_sanity_val_steps=0,
                limit_val_batches=0,
                gradient_clip_val=cfg.grad_clip or None,
            )
            trainer.fit(module, datamodule=TensorDataModule(data, cfg.batch_size, cfg.seed), ckpt_path=resume_path)
    finally:
        torch.set_num_threads(threads_before)
    wall = time.perf_counter() - t0

    denoiser = module.denoiser().eval().requires_grad_(False)
    history = pd.DataFrame(module.history)
    history.to_csv(out / "history.csv", index=False)
    start = resumed_from if resume_path is not None else 0
    return TrainResult(
        denoiser=denoiser,
        history=history,
        steps=int(trainer.global_step),
        steps_run=max(0, int(trainer.global_step) - (start or 0)),
        wall_s=wall,
        loop_s=module.loop_seconds,
        resumed_from=resumed_from if resume_path is not None else None,
    )


def load_denoiser(checkpoint: str | Path, *, use_ema: bool = True, map_location: str = "cpu") -> Precond:
    """Rebuild the denoiser of a ``train_denoiser`` checkpoint (EMA weights when present and wanted)."""
    ckpt = torch.load(checkpoint, map_location=map_location, weights_only=False)
    extra = ckpt["diffusion"]
    raw = dict(extra["config"])
    raw["sigma"] = SigmaConfig(**raw["sigma"])
    raw["mults"] = tuple(raw["mults"])
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in raw.items() if k in names})
    module = DenoiserModule(cfg, tuple(extra["data_shape"]))
    module.load_state_dict(ckpt["state_dict"])
    den = module.ema if (use_ema and module.ema is not None) else module.precond
    return den.eval().requires_grad_(False)
