"""Token-budget batching: one dataloader batch per optimizer step, its size set by the schedule.

The training stream is a fixed sequence of fixed-length windows of the token shard, in a seeded
order that is reshuffled every pass over the data (pass p uses permutation(seed, p)). Step s takes
the next B_s windows of that stream, B_s = the schedule's batch size for the tokens consumed before
step s, so a batch-size change lands exactly at the step that starts at or after a milestone, in
the middle of a pass if need be. Because the window a step uses depends only on (seed, s), a run
restarted from a checkpoint at step s continues with exactly the batches an uninterrupted run
would have used. With several data-parallel ranks the global batch of a step is split by stride
(rank r takes windows r, r + W, …), so the union over ranks is the 1-process batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .schedules import Schedule


class WindowDataset(Dataset):
    """Window i = tokens[i·L : i·L + L + 1] as (input, target) int64 tensors of length L."""

    def __init__(self, tokens: np.ndarray, seq_len: int):
        self.tokens = tokens
        self.seq_len = int(seq_len)
        self.n_windows = (len(tokens) - 1) // self.seq_len
        if self.n_windows < 1:
            raise ValueError(f"token shard of {len(tokens)} tokens is shorter than one window of {seq_len + 1}")

    def __len__(self) -> int:
        return self.n_windows

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = int(i) * self.seq_len
        chunk = torch.from_numpy(np.asarray(self.tokens[start : start + self.seq_len + 1], dtype=np.int64))
        return chunk[:-1], chunk[1:]


class StepBatchSampler(Sampler[list[int]]):
    """Yields this rank's window indices for every optimizer step from ``start_step`` on."""

    def __init__(
        self,
        schedule: Schedule,
        n_windows: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        table = schedule.table()
        self.sizes = table["batch_size"]
        if self.sizes.size and self.sizes.min() < world_size:
            raise ValueError(f"a global batch of {self.sizes.min()} sequences cannot be split over {world_size} ranks")
        self.offsets = np.r_[0, np.cumsum(self.sizes)]
        self.n_windows = int(n_windows)
        self.seed = int(seed)
        self.rank, self.world_size = rank, world_size
        self.start_step = int(start_step)
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return max(0, len(self.sizes) - self.start_step)

    def _permutation(self, data_pass: int) -> np.ndarray:
        if data_pass not in self._perms:
            self._perms = {data_pass: np.random.default_rng([self.seed, data_pass]).permutation(self.n_windows)}
        return self._perms[data_pass]

    def global_batch(self, step: int) -> list[int]:
        """Window indices of the whole (all-rank) batch of ``step``."""
        out = []
        for p in range(int(self.offsets[step]), int(self.offsets[step + 1])):
            out.append(int(self._permutation(p // self.n_windows)[p % self.n_windows]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, len(self.sizes)):
            yield self.global_batch(step)[self.rank :: self.world_size]
