"""Shared helpers for the diffusion experiments (owned by helper "samplers"; others import, ask for additions).

API (everything an experiment needs between "config" and "tidy CSV"):

Config pieces (frozen dataclasses, nest them in an experiment's ``Config``; errors name ``data.*`` / ``sampling.*``):

- :class:`DataConfig` — ``kind`` ∈ {"ring", "mixture", "digits", "cifar10"} and its parameters
  (ring: k, radius, std; mixture: dim, k, std, cov_type, seed; digits: none; cifar10: root, download),
  ``n_train`` (training-set size; mixtures: that many fixed draws, images: first n_train, 0 = all).
- :class:`SamplingConfig` — Karras σ grid (sigma_min, sigma_max, rho), EDM churn (s_churn, s_tmin, s_tmax,
  s_noise), DDIM η, batch_size.

Data:

- ``build_data(cfg: DataConfig) -> Dataset``. ``Dataset.train`` is the training set, always flat
  [M, D] float32 (images too: nets.SmallUNet reshapes flat input; see :func:`adapt_train_config`);
  ``Dataset.reference`` is the reference denoiser — the *exact* GMM denoiser for mixtures, the
  *empirical* denoiser of the training set for digits/CIFAR (it memorises: sampling with it returns
  training images, so it is "exact" only for the empirical distribution); ``Dataset.mixture`` (or None)
  is what ``metrics.collapse_report`` reads for the mode statistics; ``Dataset.real(n, seed)`` gives the
  real reference set for metrics (fresh mixture draws, or a seeded subsample of the training set).

Training:

- ``train_folder(train_dir: str, out: Path, name: str) -> Path`` — ``Path(train_dir)/name`` when the
  ``train_dir`` config field is set (the workflow passes ``results/diffusion/<exp>/train`` so runs resume),
  else ``out/"train"/name``.
- ``adapt_train_config(cfg: TrainConfig, ds, *, threads, progress_bar) -> TrainConfig`` — runtime keys
  from the experiment config, ``checkpoint_every`` = steps when 0 (so a finished run is found and reused),
  UNet channels/image size from the data.
- ``train(cfg: TrainConfig, ds, folder, *, threads, progress_bar, eval_fn=None) -> TrainResult`` —
  the two above + ``diffusion.train.train_denoiser`` (resumes / reuses ``folder/checkpoints/last.ckpt``).

Sampling:

- ``SAMPLERS`` = ("euler", "heun", "edm", "euler_maruyama", "ddim"); ``DETERMINISTIC`` = ("euler", "heun")
  (plus "ddim" when η = 0 — use :func:`is_deterministic`).
- ``sigma_grid(steps, sampling) -> Tensor`` — Karras grid, length steps + 1, ending in 0.
- ``generate(denoiser, sampler, steps, n, dim, sampling, seed, *, device=None) -> Tensor [n, dim]`` (CPU
  float32). The initial noise x = σ_max·z depends on ``seed`` only (common random numbers: every sampler
  and denoiser starts from the same points for a given seed); the sampler's own noise (churn, EM, DDIM η>0)
  comes from an independent stream of the same seed. ``device`` None = the denoiser's; a torch module
  denoiser is moved there (Lightning hands the trained net back on the CPU). ``n_function_evals(sampler,
  steps)`` = denoiser calls. ``resolve_device("auto" | "cpu" | "cuda" | …)`` → torch.device;
  ``device_of(denoiser)`` → its parameters' device (CPU for exact denoisers).

Metrics:

- ``METRICS`` — the ``collapse_report`` keys the figures use (spread_ratio, off_mode_mass, nn_ratio,
  near_duplicate_rate, density, coverage, occupancy_tv, …).
- ``collapse_metrics(gen, real, ds, *, n=None, k=5, quantile=0.01, seed=0) -> dict`` — ``metrics.collapse_report``
  with the dataset's mixture (mode statistics NaN without one).
- ``bootstrap_over_seeds(df, by, metrics, *, n_boot=2000, seed=0)`` — percentile-bootstrap 95% intervals of the
  seed mean per group (tidy: by…, metric, estimate, lo, hi, n, degenerate).
- ``paired_difference(df, by, pair, a, b, metric, *, seed_col="seed", ...)`` — bootstrap interval of the mean over
  seeds of metric(pair = a) − metric(pair = b), paired by seed within each group (e.g. SDE − ODE).
- ``set_threads(n)`` — torch.set_num_threads(n) when n > 0 (call at the start of ``run``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fulcrum_core import ConfigError

from .. import metrics as M
from .. import samplers as S
from ..data import GaussianMixture, cifar10, load_digits_tensor, random_mixture, ring_mixture
from ..exact import EmpiricalDenoiser
from ..schedules import karras_sigmas
from ..train import TrainConfig, TrainResult, train_denoiser

__all__ = [
    "DataConfig",
    "SamplingConfig",
    "Dataset",
    "build_data",
    "train_folder",
    "adapt_train_config",
    "train",
    "SAMPLERS",
    "DETERMINISTIC",
    "is_deterministic",
    "sigma_grid",
    "generate",
    "n_function_evals",
    "resolve_device",
    "device_of",
    "METRICS",
    "collapse_metrics",
    "bootstrap_over_seeds",
    "paired_difference",
    "set_threads",
]

DATA_KINDS = ("ring", "mixture", "digits", "cifar10")
SAMPLERS = ("euler", "heun", "edm", "euler_maruyama", "ddim")
DETERMINISTIC = ("euler", "heun")
METRICS = (
    "spread_ratio",
    "off_mode_mass",
    "nn_ratio",
    "near_duplicate_rate",
    "density",
    "coverage",
    "occupancy_tv",
    "modes_occupied",
    "precision",
    "recall",
)

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DataConfig:
    """Which data set (``kind``) and its parameters; unused parameters are ignored for a kind.

    ring: ``k`` Gaussians N(r(cos 2πj/k, sin 2πj/k), std²I) in 2-D (σ_data ≈ 0.5 for r = 0.7, std = 0.05).
    mixture: ``data.random_mixture(dim, k, std=std, cov_type=cov_type, seed=seed)`` (σ_data = 0.5 exactly).
    digits: scikit-learn's 1,797 8×8 digits in [−1, 1] (D = 64). cifar10: CIFAR-10 train split from ``root``
    (``download`` fetches it, md5-checked), D = 3072. ``n_train``: training-set size — mixtures draw
    ``n_train`` fixed points with seed ``seed`` (must be ≥ 2); images keep the first ``n_train`` (0 = all).
    """

    kind: str = "ring"
    k: int = 8
    radius: float = 0.7
    std: float = 0.05
    dim: int = 8
    cov_type: str = "isotropic"
    seed: int = 0
    n_train: int = 20000
    root: str = "data/cifar10"
    download: bool = False

    def __post_init__(self):
        if self.kind not in DATA_KINDS:
            raise ConfigError(f"data.kind: unknown {self.kind!r} ({' | '.join(DATA_KINDS)})")
        if self.k < 1:
            raise ConfigError("data.k must be >= 1")
        if self.radius <= 0:
            raise ConfigError("data.radius must be positive")
        if self.std <= 0:
            raise ConfigError("data.std must be positive")
        if self.dim < 1:
            raise ConfigError("data.dim must be >= 1")
        if self.cov_type not in ("isotropic", "diag", "full"):
            raise ConfigError(f"data.cov_type: unknown {self.cov_type!r} (isotropic | diag | full)")
        if self.seed < 0:
            raise ConfigError("data.seed must be >= 0")
        if self.n_train < 0 or (self.kind in ("ring", "mixture") and self.n_train < 2):
            raise ConfigError("data.n_train must be >= 2 for mixtures (>= 0 for images, 0 = all)")
        if self.kind == "mixture" and self.std >= 0.5:
            raise ConfigError("data.std must be below σ_data = 0.5 for a random mixture")


@dataclass(frozen=True)
class SamplingConfig:
    """σ grid and sampler options shared by all samplers.

    Grid: Karras et al. (2022) ρ-schedule from ``sigma_max`` to ``sigma_min`` in ``steps`` steps, then 0.
    EDM churn (Alg. 2): γ = min(s_churn/steps, √2 − 1) for s_tmin ≤ σ ≤ s_tmax, noise scale ``s_noise``.
    ``ddim_eta``: η of the "ddim" sampler (0 = Euler). ``batch_size``: samples per sampler call (0 = all).
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    s_churn: float = 40.0
    s_tmin: float = 0.05
    s_tmax: float = 50.0
    s_noise: float = 1.0
    ddim_eta: float = 0.0
    batch_size: int = 0

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ConfigError("sampling.sigma_min/sigma_max: need 0 < sigma_min < sigma_max")
        if self.rho <= 0:
            raise ConfigError("sampling.rho must be positive")
        if self.s_churn < 0:
            raise ConfigError("sampling.s_churn must be >= 0")
        if not 0 <= self.s_tmin <= self.s_tmax:
            raise ConfigError("sampling.s_tmin/s_tmax: need 0 <= s_tmin <= s_tmax")
        if self.s_noise < 0:
            raise ConfigError("sampling.s_noise must be >= 0")
        if not 0 <= self.ddim_eta <= 1:
            raise ConfigError("sampling.ddim_eta must lie in [0, 1]")
        if self.batch_size < 0:
            raise ConfigError("sampling.batch_size must be >= 0 (0 = all at once)")


def check_choices(key: str, values: Sequence[Any], allowed: Sequence[Any] | None = None, *, min_value=None) -> None:
    """Raise ConfigError naming ``key`` when ``values`` is empty, repeats, leaves ``allowed`` or is < ``min_value``."""
    if len(values) == 0:
        raise ConfigError(f"{key}: needs at least one value")
    if len(set(values)) != len(values):
        raise ConfigError(f"{key}: values repeat: {list(values)}")
    for v in values:
        if allowed is not None and v not in allowed:
            raise ConfigError(f"{key}: unknown {v!r} ({' | '.join(map(str, allowed))})")
        if min_value is not None and v < min_value:
            raise ConfigError(f"{key}: values must be >= {min_value}, got {v!r}")


def set_threads(n: int) -> None:
    """torch.set_num_threads(n) for n > 0 (0 leaves torch's setting)."""
    if n > 0:
        torch.set_num_threads(n)


# ----------------------------------------------------------------------------------------- data


@dataclass
class Dataset:
    """A built data set: flat training data, its reference denoiser and (for mixtures) the mixture."""

    kind: str
    train: torch.Tensor
    reference: Denoiser
    reference_name: str
    mixture: GaussianMixture | None
    image_shape: tuple[int, int, int] | None
    sigma_data: float

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])

    def real(self, n: int, seed: int) -> torch.Tensor:
        """A real reference set [n, D] float32: fresh mixture draws (seeded), else a seeded subsample of
        the training set without replacement (n is capped at its size)."""
        gen = torch.Generator().manual_seed(int(seed))
        if self.mixture is not None:
            return self.mixture.sample(n, generator=gen)[0]
        idx = torch.randperm(self.train.shape[0], generator=gen)[: min(n, self.train.shape[0])]
        return self.train[idx]


def build_data(cfg: DataConfig) -> Dataset:
    """Build the data set of ``cfg`` (see :class:`DataConfig`); raises ``data.DataError`` for missing CIFAR-10."""
    if cfg.kind in ("ring", "mixture"):
        if cfg.kind == "ring":
            mix = ring_mixture(cfg.k, cfg.radius, cfg.std)
        else:
            mix = random_mixture(cfg.dim, cfg.k, std=cfg.std, cov_type=cfg.cov_type, seed=cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        train_x = mix.sample(cfg.n_train, generator=gen)[0]
        return Dataset(cfg.kind, train_x, mix.denoiser(), "exact GMM", mix, None, mix.sigma_data)
    if cfg.kind == "digits":
        x, _ = load_digits_tensor()
        shape: tuple[int, int, int] = (1, 8, 8)
    else:
        x, _ = cifar10(cfg.root, download=cfg.download)
        shape = (3, 32, 32)
    x = x.reshape(x.shape[0], -1).to(torch.float32)
    if cfg.n_train:
        x = x[: cfg.n_train]
    x = x.contiguous()
    sigma_data = float(x.std(dim=0).mean())
    return Dataset(cfg.kind, x, EmpiricalDenoiser(x), "empirical (training set; memorises)", None, shape, sigma_data)


# ----------------------------------------------------------------------------------------- training


def train_folder(train_dir: str, out: Path, name: str) -> Path:
    """Where a training run lives: ``train_dir/name`` when ``train_dir`` is set, else ``out/train/name``."""
    root = Path(train_dir) if train_dir else Path(out) / "train"
    return root / name


def adapt_train_config(cfg: TrainConfig, ds: Dataset, *, threads: int, progress_bar: bool) -> TrainConfig:
    """Runtime keys from the experiment, a final checkpoint (checkpoint_every = steps when 0), UNet image shape."""
    changes: dict[str, Any] = {"threads": threads, "progress_bar": progress_bar}
    if not cfg.checkpoint_every:
        changes["checkpoint_every"] = max(1, cfg.steps)
    if cfg.net == "unet":
        if ds.image_shape is None:
            raise ConfigError(f"train.net: 'unet' needs image data, data.kind is {ds.kind!r}")
        changes["channels"], changes["image_size"] = ds.image_shape[0], ds.image_shape[1]
    return replace(cfg, **changes)


def train(
    cfg: TrainConfig,
    ds: Dataset,
    folder: Path,
    *,
    threads: int,
    progress_bar: bool,
    eval_fn: Callable | None = None,
) -> TrainResult:
    """Train (or resume / reuse a finished run in ``folder``) on ``ds.train``; see :func:`adapt_train_config`."""
    cfg = adapt_train_config(cfg, ds, threads=threads, progress_bar=progress_bar)
    return train_denoiser(cfg, ds.train, folder, eval_fn=eval_fn)


# ----------------------------------------------------------------------------------------- sampling


def is_deterministic(sampler: str, sampling: SamplingConfig) -> bool:
    """True for the ODE samplers (Euler, Heun, DDIM with η = 0, EDM with S_churn = 0)."""
    if sampler == "ddim":
        return sampling.ddim_eta == 0
    if sampler == "edm":
        return sampling.s_churn == 0
    return sampler in DETERMINISTIC


def sigma_grid(steps: int, sampling: SamplingConfig) -> torch.Tensor:
    """Karras grid σ_0 = σ_max > … > σ_{steps−1} = σ_min > σ_steps = 0 (float64)."""
    return karras_sigmas(steps, sampling.sigma_min, sampling.sigma_max, sampling.rho)


def n_function_evals(sampler: str, steps: int) -> int:
    """Denoiser calls per sample: Heun/EDM 2·steps − 1 (no correction on the step to 0), others ``steps``."""
    return 2 * steps - 1 if sampler in ("heun", "edm") else steps


def _seed_stream(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def resolve_device(name: str) -> torch.device:
    """ "auto" → CUDA when available else CPU; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_of(denoiser: Any) -> torch.device:
    """The device of a torch-module denoiser's parameters; CPU for anything else (exact denoisers)."""
    if isinstance(denoiser, torch.nn.Module):
        p = next(iter(denoiser.parameters()), None)
        if p is not None:
            return p.device
    return torch.device("cpu")


def generate(
    denoiser: Denoiser,
    sampler: str,
    steps: int,
    n: int,
    dim: int,
    sampling: SamplingConfig,
    seed: int,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw ``n`` samples [n, dim] (CPU float32) with ``sampler`` over ``sigma_grid(steps, sampling)``.

    x_init = σ_max·z with z ~ N(0, I) from stream (seed, 0) — the same for every sampler/denoiser at this
    seed; sampler noise for batch b from stream (seed, 1 + b). ``device``: default the denoiser's device.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r} ({' | '.join(SAMPLERS)})")
    device = torch.device(device) if device is not None else device_of(denoiser)
    if isinstance(denoiser, torch.nn.Module):
        denoiser.to(device)
    sigmas = sigma_grid(steps, sampling)
    z = torch.randn(n, dim, generator=torch.Generator().manual_seed(_seed_stream(seed, 0)))
    batch = sampling.batch_size or n
    out = []
    for b, start in enumerate(range(0, n, batch)):
        x = (float(sigmas[0]) * z[start : start + batch]).to(device)
        gen = torch.Generator(device=device).manual_seed(_seed_stream(seed, 1 + b))
        if sampler == "euler":
            x = S.sample_euler(denoiser, x, sigmas)
        elif sampler == "heun":
            x = S.sample_heun(denoiser, x, sigmas)
        elif sampler == "edm":
            x = S.sample_edm(
                denoiser,
                x,
                sigmas,
                s_churn=sampling.s_churn,
                s_tmin=sampling.s_tmin,
                s_tmax=sampling.s_tmax,
                s_noise=sampling.s_noise,
                generator=gen,
            )
        elif sampler == "euler_maruyama":
            x = S.sample_euler_maruyama(denoiser, x, sigmas, generator=gen)
        else:
            x = S.sample_ddim(denoiser, x, sigmas, eta=sampling.ddim_eta, generator=gen)
        out.append(x.detach().to("cpu", torch.float32))
    return torch.cat(out)


# ----------------------------------------------------------------------------------------- metrics


def collapse_metrics(
    gen: Any, real: Any, ds: Dataset, *, n: int | None = None, k: int = 5, quantile: float = 0.01, seed: int = 0
) -> dict[str, float]:
    """``metrics.collapse_report(gen, real, ds.mixture, ...)``: all ``metrics.REPORT_KEYS`` (mode statistics
    NaN without a mixture). Non-finite samples (a diverged sampler) are counted in ``n_nonfinite`` and dropped."""
    g = M.as_samples(gen)
    finite = np.isfinite(g).all(axis=1)
    report = M.collapse_report(g[finite], real, ds.mixture, k=k, quantile=quantile, n=n, seed=seed)
    report["n_nonfinite"] = float((~finite).sum())
    return report


def bootstrap_over_seeds(
    df: pd.DataFrame, by: str | Sequence[str], metrics: str | Sequence[str], *, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Percentile-bootstrap 95% interval of the mean over the rows (one per seed) of each group of ``by``."""
    return M.bootstrap_table(df, by, metrics, n_boot=n_boot, level=0.95, seed=seed)


def paired_difference(
    df: pd.DataFrame,
    by: str | Sequence[str],
    pair: str,
    a: Any,
    b: Any,
    metric: str,
    *,
    seed_col: str = "seed",
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per group of ``by``: bootstrap 95% interval of mean_seeds[metric(pair = a) − metric(pair = b)].

    Rows are matched on ``seed_col`` within each group (seeds present in only one arm are dropped).
    Returns by…, metric, a, b, estimate, lo, hi, n.
    """
    by_cols = [by] if isinstance(by, str) else list(by)
    rows = []
    groups = df.groupby(by_cols, sort=True) if by_cols else [((), df)]
    for key, group in groups:
        key_t = key if isinstance(key, tuple) else (key,)
        va = group[group[pair] == a].set_index(seed_col)[metric]
        vb = group[group[pair] == b].set_index(seed_col)[metric]
        diff = (va - vb).dropna()
        ci = M.bootstrap_ci(diff.to_numpy(dtype=float), n_boot=n_boot, level=0.95, seed=seed)
        row = dict(zip(by_cols, key_t, strict=True))
        row.update(metric=metric, a=a, b=b, estimate=ci.estimate, lo=ci.lo, hi=ci.hi, n=ci.n)
        rows.append(row)
    return pd.DataFrame(rows)


def finite_or_none(value: Any) -> float | None:
    """float(value) if finite else None (for summary.json numbers)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


_device_of = device_of  # backwards-compatible private name
