"""Data sets: Gaussian mixtures (exact denoisers available), scikit-learn's digits, CIFAR-10.

Normalisation. EDM's preconditioning assumes per-coordinate data standard deviation σ_data ≈ 0.5
(Karras et al. 2022 use 0.5 for images scaled to [−1, 1]). The builders here follow that:

- :func:`ring_mixture` — k equal-weight isotropic Gaussians on a circle of radius r in 2-D. Per-coordinate
  variance r²/2 + std², so the defaults r = 0.7, std = 0.05 give σ_data = sqrt(0.245 + 0.0025) ≈ 0.497.
  Neighbouring centres are 2r·sin(π/k) ≈ 0.536 apart (≈ 10.7 std) for k = 8.
- :func:`random_mixture` — k Gaussians in ``dim`` dimensions with means drawn N(0, I), centred (weighted)
  and rescaled so that the mixture's per-coordinate variance tr(Cov)/dim equals ``sigma_data`` exactly:
  tr(Cov)/dim = Σ_k w_k‖μ_k − μ̄‖²/dim + Σ_k w_k tr(Σ_k)/dim.
- :func:`load_digits_tensor` — scikit-learn's bundled 8×8 digits (1,797 real images, pixel values
  0..16) mapped by v/8 − 1 to [−1, 1]. Measured: overall std 0.75, per-pixel std (about each pixel's
  mean) 0.54 averaged over pixels — σ_data = 0.5 is a sensible default, the exact value can be passed on.
- :func:`cifar10` — the official python tarball (``cifar-10-python.tar.gz``, md5
  c58f30108f718f92721af3b95e74349a), pixels v/127.5 − 1 ∈ [−1, 1] (std ≈ 0.5). It never touches the
  network unless ``download=True``; a missing or corrupt file raises :class:`DataError` naming the URL
  and the local path.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

from diffusion.exact import GMMDenoiser, parse_covariances

__all__ = [
    "DataError",
    "GaussianMixture",
    "ring_mixture",
    "random_mixture",
    "load_digits_tensor",
    "cifar10",
    "CIFAR10_URL",
    "CIFAR10_MD5",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


class DataError(RuntimeError):
    """A data set is not available locally (and could not be downloaded) or failed its checksum."""


# ------------------------------------------------------------------------------------ Gaussian mixture


class GaussianMixture:
    """x₀ ~ Σ_k w_k N(μ_k, Σ_k); ``covs`` [K, D, D] (full), [K, D] (diagonal) or [K] (isotropic).

    Parameters are kept in float64. :meth:`sample` draws (x, labels); :meth:`denoiser` returns the exact
    :class:`~diffusion.exact.GMMDenoiser`.
    """

    def __init__(self, means: torch.Tensor, covs: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        self.means = torch.as_tensor(means, dtype=torch.float64)
        if self.means.ndim != 2:
            raise ValueError(f"means must be [K, D], got shape {tuple(self.means.shape)}")
        k, d = self.means.shape
        self.covs = torch.as_tensor(covs, dtype=torch.float64)
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else torch.as_tensor(weights)
        w = w.to(torch.float64).reshape(-1)
        if w.numel() != k or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be K={k} non-negative numbers with a positive sum")
        self.weights = w / w.sum()
        self.lam, self.U, self.kind = parse_covariances(self.covs, k, d)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def covariance_matrices(self) -> torch.Tensor:
        """Σ_k as a [K, D, D] tensor whatever form was given."""
        if self.U is None:
            return torch.diag_embed(self.lam)
        return self.U @ torch.diag_embed(self.lam) @ self.U.transpose(-1, -2)

    def mean(self) -> torch.Tensor:
        """μ̄ = Σ_k w_k μ_k."""
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        """Cov(x₀) = Σ_k w_k (Σ_k + (μ_k − μ̄)(μ_k − μ̄)ᵀ)."""
        c = self.means - self.mean()
        return torch.einsum("k,kij->ij", self.weights, self.covariance_matrices()) + (c.T * self.weights) @ c

    @property
    def sigma_data(self) -> float:
        """Per-coordinate standard deviation sqrt(tr Cov(x₀) / D)."""
        return math.sqrt(float(torch.trace(self.covariance())) / self.dim)

    def sample(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [n, D] in ``dtype``, component labels [n] int64): k ~ Categorical(w), x = μ_k + U_k sqrt(λ_k) ⊙ z."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        z = z * torch.sqrt(self.lam[labels])
        if self.U is not None:
            z = torch.einsum("nde,ne->nd", self.U[labels], z)
        return (self.means[labels] + z).to(dtype), labels

    def denoiser(self) -> GMMDenoiser:
        """The exact denoiser D(x; σ) = E[x₀ | x₀ + σε = x] of this mixture."""
        return GMMDenoiser(self.means, self.covs, self.weights)

    def log_prob(self, x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """log p_σ(x) (float64 [N]); σ = 0 gives the data density itself (needs non-singular Σ_k)."""
        return self.denoiser().log_prob(x, sigma)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components}, D={self.dim}, covs={self.kind}, σ_data={self.sigma_data:.3f})"


def ring_mixture(
    k: int = 8, radius: float = 0.7, std: float = 0.05, weights: torch.Tensor | None = None
) -> GaussianMixture:
    """k isotropic Gaussians N((r cos 2πj/k, r sin 2πj/k), std²I) in 2-D; σ_data = sqrt(r²/2 + std²) for k ≥ 3."""
    if k < 1 or radius < 0 or std < 0:
        raise ValueError(f"need k >= 1, radius >= 0, std >= 0; got k={k}, radius={radius}, std={std}")
    angle = 2.0 * math.pi * torch.arange(k, dtype=torch.float64) / k
    means = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return GaussianMixture(means, torch.full((k,), std**2, dtype=torch.float64), weights)


def random_mixture(
    dim: int,
    k: int,
    *,
    std: float = 0.1,
    sigma_data: float = 0.5,
    cov_type: str = "isotropic",
    weight_concentration: float | None = None,
    seed: int = 0,
) -> GaussianMixture:
    """A seeded random mixture in ``dim`` dimensions with per-coordinate std exactly ``sigma_data``.

    - component covariances: ``"isotropic"`` std²I; ``"diag"`` variances std²·2^u, u ~ U(−1, 1) per
      coordinate; ``"full"`` Q diag(std²·2^u) Qᵀ with Q a random orthogonal matrix (QR of a Gaussian);
    - weights: equal, or Dirichlet(α·1) when ``weight_concentration`` = α is given;
    - means: g_k ~ N(0, I), centred by the weighted mean and scaled by c so that
      Σ_k w_k‖μ_k‖²/dim = sigma_data² − Σ_k w_k tr(Σ_k)/dim (needs sigma_data² above the mean variance).
    """
    if dim < 1 or k < 1:
        raise ValueError(f"need dim >= 1 and k >= 1; got dim={dim}, k={k}")
    if cov_type not in ("isotropic", "diag", "full"):
        raise ValueError(f"cov_type must be 'isotropic', 'diag' or 'full', got {cov_type!r}")
    rng = np.random.default_rng(seed)
    if weight_concentration is None:
        w = np.full(k, 1.0 / k)
    else:
        if weight_concentration <= 0:
            raise ValueError(f"weight_concentration must be positive, got {weight_concentration}")
        w = rng.dirichlet(np.full(k, float(weight_concentration)))
    if cov_type == "isotropic":
        covs = np.full(k, std**2)
        mean_var = std**2
    else:
        var = std**2 * 2.0 ** rng.uniform(-1.0, 1.0, size=(k, dim))
        mean_var = float(w @ var.mean(axis=1))
        if cov_type == "diag":
            covs = var
        else:
            q, r = np.linalg.qr(rng.standard_normal((k, dim, dim)))
            q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]  # Haar-distributed Q
            covs = np.einsum("kij,kj,klj->kil", q, var, q)
    spread = sigma_data**2 - mean_var
    if spread < 0:
        raise ValueError(f"sigma_data={sigma_data} is below the mean component std; lower std={std}")
    g = rng.standard_normal((k, dim))
    g = g - w @ g
    norm = float(w @ (g**2).sum(axis=1)) / dim
    means = g * math.sqrt(spread / norm) if norm > 0 else g
    return GaussianMixture(torch.from_numpy(means), torch.from_numpy(np.asarray(covs)), torch.from_numpy(w))


# ---------------------------------------------------------------------------------------------- digits


def load_digits_tensor(images: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 real 8×8 digits as float32 in [−1, 1] (v/8 − 1) and int64 labels.

    Returns x of shape [1797, 64], or [1797, 1, 8, 8] with ``images=True``. Bundled with scikit-learn:
    no network.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(np.asarray(bunch.data, dtype=np.float32) / 8.0 - 1.0)
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return (x.reshape(-1, 1, 8, 8) if images else x), y


# --------------------------------------------------------------------------------------------- CIFAR-10


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _folder_complete(folder: Path, split: str) -> bool:
    return all((folder / name).is_file() for name in CIFAR10_FILES[split])


def _download(url: str, archive: Path) -> None:
    part = archive.with_name(archive.name + ".part")
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f, length=1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        part.unlink(missing_ok=True)
        raise DataError(
            f"could not download CIFAR-10 from {url} to {archive}: {err}. Without network, fetch the file "
            f"elsewhere and place it at {archive} (md5 {CIFAR10_MD5})."
        ) from err
    part.replace(archive)


def _read_batches(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for name in CIFAR10_FILES[split]:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")  # trusted: the archive passed its md5 check
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
    x = torch.from_numpy(np.concatenate(xs).astype(np.float32) / 127.5 - 1.0)
    return x, torch.from_numpy(np.concatenate(ys))


def cifar10(
    root: str | Path,
    download: bool = False,
    split: str = "train",
    *,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 as (x float32 [N, 3, 32, 32] in [−1, 1], labels int64 [N]); N = 50,000 train / 10,000 test.

    Looks for ``root/cifar-10-batches-py`` (already extracted), else ``root/cifar-10-python.tar.gz``;
    with ``download=True`` and no archive, fetches ``url`` first. The archive's md5 must equal ``md5``
    before it is extracted (tar members filtered with the ``"data"`` filter). Raises :class:`DataError`
    when the data are missing and ``download`` is False, when the download fails (offline) and when the
    checksum does not match — each message names the URL and the local path.
    """
    if split not in CIFAR10_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    folder, archive = root / CIFAR10_FOLDER, root / CIFAR10_ARCHIVE
    if not _folder_complete(folder, split):
        if not archive.is_file():
            if not download:
                raise DataError(
                    f"CIFAR-10 not found: neither {folder} nor {archive} exists. Call cifar10(root, download=True) "
                    f"(needs network) to fetch {url} (md5 {md5}), or place that file at {archive}."
                )
            _download(url, archive)
        got = file_md5(archive)
        if got != md5:
            raise DataError(
                f"checksum mismatch for {archive}: md5 {got}, expected {md5} (source {url}). "
                f"Delete the file and download it again."
            )
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(root, filter="data")
        if not _folder_complete(folder, split):
            raise DataError(f"{archive} (from {url}) did not contain the expected files under {folder}")
    return _read_batches(folder, split)
