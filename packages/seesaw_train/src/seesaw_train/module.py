"""Lightning pieces: the language-model module (manual optimisation) and the token DataModule.

One dataloader batch = one optimizer step (see ``batching``). The module reads the step's
learning rate and global batch from the schedule, splits its share of the batch into micro-batches
of at most ``micro_batch`` sequences, and scales each micro-batch loss by
world_size / (global batch tokens): after DDP averages the gradients over ranks, the update is the
gradient of the mean token loss over the whole global batch — the same as one process would take,
whatever the split. Gradients are synchronised only on the last micro-batch; every rank runs the
same number of micro-batches (an empty one does a zero-weight forward) so collectives line up.

Logged: per step a ledger row (step, tokens, lr, batch, train loss, wall-clock) in
``steps.csv`` (rank 0), and at every ``val_every_tokens`` the validation loss against tokens,
serial steps and wall-clock through the Lightning logger (CSVLogger).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from .batching import StepBatchSampler, WindowDataset
from .model import ModelConfig, Transformer
from .schedules import Schedule

LEDGER_COLUMNS = ("step", "tokens", "lr", "batch_size", "train_loss", "wall_clock_s")


def crossed_multiple(before: int, after: int, every: int) -> bool:
    """Did the token count pass a multiple of ``every`` (> 0) between two steps?"""
    return every > 0 and after // every > before // every


class SeesawLM(pl.LightningModule):
    def __init__(
        self,
        model_config: ModelConfig,
        schedule: Schedule,
        *,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
        micro_batch: int = 16,
        val_every_tokens: int = 0,
        ledger_path: str | Path | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.automatic_optimization = False
        torch.manual_seed(seed)
        self.model = Transformer(model_config, seed=seed)
        self.model_config = model_config
        self.schedule = schedule
        table = schedule.table()
        self.step_tokens = table["tokens"]
        self.step_batch = table["batch_size"]
        self.total_steps = int(self.step_tokens.size)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.grad_clip = grad_clip
        self.micro_batch = int(micro_batch)
        self.val_every_tokens = int(val_every_tokens)
        self.ledger_path = Path(ledger_path) if ledger_path else None
        self.elapsed_before = 0.0  # wall-clock of earlier (pre-resume) segments
        self._t0 = None

    # ---------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        fused = torch.cuda.is_available() and next(self.parameters()).is_cuda
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.schedule.peak_lr,
            betas=self.betas,
            eps=self.eps,
            weight_decay=self.weight_decay,
            fused=fused or None,
        )

    def on_train_start(self) -> None:
        self._t0 = time.perf_counter()
        if self.ledger_path and self.trainer.is_global_zero:
            self._truncate_ledger(self.global_step)

    def wall_clock(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t0 if self._t0 else 0.0)

    def training_step(self, batch, batch_idx):
        step = self.global_step
        if step >= self.total_steps:
            raise RuntimeError(f"step {step} beyond the schedule's {self.total_steps} steps")
        tokens_before = int(self.step_tokens[step])
        global_batch = int(self.step_batch[step])
        lr = self.schedule.lr(tokens_before)
        opt = self.optimizers()
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = batch
        world = self.trainer.world_size
        n_micro = math.ceil(math.ceil(global_batch / world) / self.micro_batch)
        scale = world / (global_batch * x.shape[1])
        loss_sum = torch.zeros((), device=self.device)
        for j in range(n_micro):
            xs, ys = (
                x[j * self.micro_batch : (j + 1) * self.micro_batch],
                y[j * self.micro_batch : (j + 1) * self.micro_batch],
            )
            weight = 1.0
            if xs.shape[0] == 0:  # keep collectives aligned across ranks
                xs, ys, weight = x[:1], y[:1], 0.0
            with opt.toggle_model(sync_grad=(j == n_micro - 1)):
                _, ce, z = self.model(xs, ys)
                n_tok = ys.numel()
                self.manual_backward((ce + z) * (n_tok * scale * weight))
            loss_sum += ce.detach() * n_tok * weight
        if self.grad_clip:
            self.clip_gradients(opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        opt.zero_grad(set_to_none=True)

        total = self.trainer.strategy.reduce(loss_sum, reduce_op="sum")
        train_loss = float(total) / (global_batch * x.shape[1])
        tokens_after = tokens_before + global_batch * x.shape[1]
        if self.ledger_path and self.trainer.is_global_zero:
            self._append_ledger(step, tokens_before, lr, global_batch, train_loss)
        self.log("train_loss", train_loss, prog_bar=True, on_step=True, rank_zero_only=True, batch_size=global_batch)
        self.log("tokens", float(tokens_after), prog_bar=True, on_step=True, rank_zero_only=True)
        if crossed_multiple(tokens_before, tokens_after, self.val_every_tokens) or step + 1 == self.total_steps:
            self._validate(step + 1, tokens_after)

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def _validate(self, serial_steps: int, tokens: int) -> None:
        dm = self.trainer.datamodule
        was_training = self.model.training
        self.model.eval()
        total = torch.zeros(2, device=self.device)  # (sum of token losses, tokens)
        for x, y in dm.val_batches(self.trainer.global_rank, self.trainer.world_size):
            x, y = x.to(self.device), y.to(self.device)
            _, ce, _ = self.model(x, y)
            total += torch.stack([ce * y.numel(), torch.tensor(float(y.numel()), device=self.device)])
        total = self.trainer.strategy.reduce(total, reduce_op="sum")
        self.model.train(was_training)
        val_loss = float(total[0] / total[1])
        metrics = {
            "val_loss": val_loss,
            "tokens": float(tokens),
            "serial_steps": float(serial_steps),
            "wall_clock_s": self.wall_clock(),
        }
        if self.trainer.is_global_zero and self.logger is not None:
            self.logger.log_metrics(metrics, step=serial_steps)
        self.last_val = metrics

    # ---------------------------------------------------------------- ledger and checkpoints
    def _append_ledger(self, step, tokens, lr, batch, loss) -> None:
        new = not self.ledger_path.exists()
        with open(self.ledger_path, "a") as fh:
            if new:
                fh.write(",".join(LEDGER_COLUMNS) + "\n")
            fh.write(f"{step},{tokens},{lr!r},{batch},{loss!r},{self.wall_clock():.4f}\n")

    def _truncate_ledger(self, step: int) -> None:
        """On resume, drop ledger rows of steps the crashed run did after its last checkpoint."""
        if not self.ledger_path.exists():
            return
        lines = self.ledger_path.read_text().splitlines()
        kept = [lines[0]] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) < step]
        self.ledger_path.write_text("\n".join(kept) + "\n")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["fulcrum"] = {"wall_clock_s": self.wall_clock(), "model_config": asdict(self.model_config)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.elapsed_before = float(checkpoint.get("fulcrum", {}).get("wall_clock_s", 0.0))


class TokenDataModule(pl.LightningDataModule):
    """Train/val token shards (uint16 memmaps ``train.bin`` / ``val.bin`` + ``meta.json``)."""

    def __init__(
        self,
        data_dir: str | Path,
        schedule: Schedule,
        *,
        seq_len: int,
        seed: int,
        val_windows: int = 64,
        val_batch: int = 16,
    ):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.schedule = schedule
        self.seq_len = seq_len
        self.seed = seed
        self.val_windows = val_windows
        self.val_batch = val_batch

    def setup(self, stage: str | None = None) -> None:
        meta_path = self.data_dir / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: prepare the token shards first")
        self.meta = json.loads(meta_path.read_text())
        self.train = WindowDataset(np.memmap(self.data_dir / "train.bin", dtype=np.uint16, mode="r"), self.seq_len)
        self.val = WindowDataset(np.memmap(self.data_dir / "val.bin", dtype=np.uint16, mode="r"), self.seq_len)

    def train_dataloader(self) -> DataLoader:
        sampler = StepBatchSampler(
            self.schedule,
            len(self.train),
            seed=self.seed,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
            start_step=self.trainer.global_step,
        )
        return DataLoader(self.train, batch_sampler=sampler, num_workers=0)

    def val_batches(self, rank: int, world_size: int):
        """The first ``val_windows`` validation windows, this rank's stride, in batches."""
        idx = list(range(min(self.val_windows, len(self.val))))[rank::world_size]
        for i in range(0, len(idx), self.val_batch):
            items = [self.val[j] for j in idx[i : i + self.val_batch]]
            yield torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
