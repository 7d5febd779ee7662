"""One training run: config → Lightning Trainer → ledger, val curve, checkpoints.

    python -m seesaw_train.train --config run.yaml --out runs/x [--resume runs/x/checkpoints/last.ckpt]

``--resume auto`` resumes from ``<out>/checkpoints/last.ckpt`` when it exists. Devices/strategy come
from the config (``accelerator: auto`` picks a GPU when there is one; ``devices: 2`` on CPU runs
DDP over gloo). Outputs in ``<out>``: ``steps.csv`` (every step), ``logs/…/metrics.csv`` (val loss
vs tokens, serial steps, wall-clock), ``checkpoints/last.ckpt`` (every ``checkpoint_every_tokens``),
``run.json`` (config, final numbers).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import CSVLogger

from fulcrum_core.config import ConfigError, from_mapping, load_mapping, to_mapping

from .model import CONFIGS, ModelConfig
from .module import SeesawLM, TokenDataModule, crossed_multiple
from .schedules import make_schedule


@dataclass(frozen=True)
class TrainConfig:
    data_dir: str
    model: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    schedule: str = "cosine"
    schedule_params: dict[str, Any] = field(default_factory=dict)
    peak_lr: float = 3e-3
    total_tokens: int = 1_000_000
    warmup_fraction: float = 0.1
    batch_size: int = 16
    micro_batch: int = 16
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    val_every_tokens: int = 100_000
    val_windows: int = 64
    checkpoint_every_tokens: int = 0
    seed: int = 0
    threads: int = 1
    accelerator: str = "auto"
    devices: int = 1
    precision: str = "32-true"
    progress_bar: bool = True

    def __post_init__(self):
        if self.model not in CONFIGS:
            raise ConfigError(f"model: unknown config {self.model!r} (choose from {', '.join(CONFIGS)})")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError("warmup_fraction must lie in [0, 1)")

    def model_config(self) -> ModelConfig:
        base = CONFIGS[self.model]
        unknown = set(self.model_overrides) - {f.name for f in dataclasses.fields(base)}
        if unknown:
            raise ConfigError(f"model_overrides: unknown key {sorted(unknown)[0]!r}")
        return dataclasses.replace(base, **self.model_overrides)

    def make_schedule(self, seq_len: int):
        try:
            return make_schedule(
                self.schedule,
                peak_lr=self.peak_lr,
                total_tokens=self.total_tokens,
                warmup_tokens=int(self.warmup_fraction * self.total_tokens),
                batch_size=self.batch_size,
                seq_len=seq_len,
                **self.schedule_params,
            )
        except ValueError as exc:
            raise ConfigError(f"schedule: {exc}") from exc


class TokenCheckpoint(Callback):
    """Save ``last.ckpt`` whenever the tokens consumed cross a multiple of ``every_tokens``."""

    def __init__(self, dirpath: Path, every_tokens: int):
        self.dirpath = Path(dirpath)
        self.every_tokens = int(every_tokens)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step  # optimizer steps done
        before = int(pl_module.step_tokens[step - 1])
        after = before + int(pl_module.step_batch[step - 1]) * pl_module.model_config.seq_len
        if crossed_multiple(before, after, self.every_tokens):
            tmp = self.dirpath / f".last-{step}.ckpt.tmp"
            trainer.save_checkpoint(tmp)
            if trainer.is_global_zero:
                os.replace(tmp, self.dirpath / "last.ckpt")
            trainer.strategy.barrier()


def train(cfg: TrainConfig, out: Path, *, resume: str | Path | None = None, callbacks=()) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    mcfg = cfg.model_config()
    meta_path = Path(cfg.data_dir) / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: prepare the token shards first")
    meta = json.loads(meta_path.read_text())
    if meta["vocab_size"] > mcfg.vocab_size:
        raise ConfigError(f"model vocab_size {mcfg.vocab_size} < tokenizer vocab {meta['vocab_size']}")
    schedule = cfg.make_schedule(mcfg.seq_len)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    if resume == "auto":
        resume = ckpt_dir / "last.ckpt" if (ckpt_dir / "last.ckpt").is_file() else None
    module = SeesawLM(
        mcfg,
        schedule,
        betas=cfg.betas,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        grad_clip=cfg.grad_clip,
        micro_batch=cfg.micro_batch,
        val_every_tokens=cfg.val_every_tokens,
        ledger_path=out / "steps.csv",
        seed=cfg.seed,
    )
    if resume is None:
        (out / "steps.csv").unlink(missing_ok=True)
    data = TokenDataModule(cfg.data_dir, schedule, seq_len=mcfg.seq_len, seed=cfg.seed, val_windows=cfg.val_windows)
    cbs = list(callbacks)
    if cfg.checkpoint_every_tokens:
        cbs.append(TokenCheckpoint(ckpt_dir, cfg.checkpoint_every_tokens))
    strategy = "ddp" if cfg.devices > 1 else "auto"
    # StepBatchSampler restarts at the checkpoint's global step by construction (see batching), so
    # Lightning's generic "dataloader is not resumable" warning does not apply here.
    warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=strategy,
        precision=cfg.precision,
        max_steps=module.total_steps,
        max_epochs=1,
        use_distributed_sampler=False,
        logger=CSVLogger(out, name="logs", version=0),
        callbacks=cbs,
        enable_checkpointing=False,
        enable_progress_bar=cfg.progress_bar,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None)
    result = {
        "config": to_mapping(cfg),
        "serial_steps": module.total_steps,
        "final": getattr(module, "last_val", None),
        "model_params": module.model.num_params(),
    }
    if trainer.is_global_zero:
        (out / "run.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seesaw_train.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML/JSON file or inline JSON")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--resume", help="checkpoint path, or 'auto'")
    args = parser.parse_args(argv)
    try:
        cfg = from_mapping(TrainConfig, load_mapping(args.config), where="train")
        train(cfg, args.out, resume=args.resume)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
