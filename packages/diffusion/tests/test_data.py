import hashlib
import io
import math
import pickle
import tarfile
import urllib.request

import numpy as np
import pytest
import torch
from scipy.stats import norm

from diffusion.data import (
    CIFAR10_URL,
    DataError,
    GaussianMixture,
    cifar10,
    load_digits_tensor,
    random_mixture,
    ring_mixture,
)

# Monte-Carlo checks: two-sided Bonferroni at family level 99.9% over the comparisons of one test.
FAMILY_ALPHA = 1e-3


def test_sample_moments_per_component():
    means = torch.tensor([[0.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    covs = torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.05, -0.02], [-0.02, 0.1]]], dtype=torch.float64)
    mix = GaussianMixture(means, covs, torch.tensor([0.7, 0.3]))
    n = 100_000
    x, labels = mix.sample(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert x.shape == (n, 2) and labels.dtype == torch.int64
    # 2 weights + per component 2 means, 2 variances, 1 covariance; standard errors for Gaussian draws
    z_lim = norm.ppf(1 - FAMILY_ALPHA / (2 * 12))
    for k in range(2):
        xk, w, S = x[labels == k], mix.weights[k].item(), covs[k]
        nk = xk.shape[0]
        assert abs(nk / n - w) < z_lim * math.sqrt(w * (1 - w) / n)
        C = torch.cov(xk.T)
        for d in range(2):
            assert abs(xk[:, d].mean() - means[k, d]).item() < z_lim * math.sqrt(S[d, d].item() / nk)
            assert abs(C[d, d] - S[d, d]).item() < z_lim * S[d, d].item() * math.sqrt(2 / (nk - 1))
        assert abs(C[0, 1] - S[0, 1]).item() < z_lim * math.sqrt((S[0, 0] * S[1, 1] + S[0, 1] ** 2).item() / nk)
    # overall covariance formula Σ_k w_k(Σ_k + (μ_k − μ̄)(μ_k − μ̄)ᵀ) against the direct computation
    mbar = mix.mean()
    direct = sum(mix.weights[k] * (covs[k] + torch.outer(means[k] - mbar, means[k] - mbar)) for k in range(2))
    assert torch.allclose(mix.covariance(), direct)


def test_sampling_is_seeded_and_float32_by_default():
    mix = ring_mixture()
    a, la = mix.sample(100, generator=torch.Generator().manual_seed(3))
    b, lb = mix.sample(100, generator=torch.Generator().manual_seed(3))
    assert a.dtype == torch.float32 and torch.equal(a, b) and torch.equal(la, lb)


def test_ring_mixture_sigma_data():
    mix = ring_mixture(k=8, radius=0.7, std=0.05)
    assert mix.sigma_data == pytest.approx(math.sqrt(0.7**2 / 2 + 0.05**2), rel=1e-12)
    assert mix.n_components == 8 and mix.dim == 2
    assert torch.allclose(mix.means.norm(dim=1), torch.full((8,), 0.7, dtype=torch.float64))


@pytest.mark.parametrize("cov_type", ["isotropic", "diag", "full"])
def test_random_mixture(cov_type):
    mix = random_mixture(16, 6, std=0.1, sigma_data=0.5, cov_type=cov_type, weight_concentration=2.0, seed=4)
    assert mix.sigma_data == pytest.approx(0.5, rel=1e-10)
    again = random_mixture(16, 6, std=0.1, sigma_data=0.5, cov_type=cov_type, weight_concentration=2.0, seed=4)
    other = random_mixture(16, 6, std=0.1, sigma_data=0.5, cov_type=cov_type, weight_concentration=2.0, seed=5)
    assert torch.equal(mix.means, again.means) and not torch.allclose(mix.means, other.means)
    C = mix.covariance_matrices()
    assert torch.allclose(C, C.transpose(1, 2)) and bool((torch.linalg.eigvalsh(C) > 0).all())
    # the exact denoiser accepts what the mixture holds
    x = torch.randn(5, 16)
    assert mix.denoiser()(x, 0.3).shape == (5, 16)
    with pytest.raises(ValueError):
        random_mixture(4, 2, std=0.6, sigma_data=0.5)


def test_load_digits_tensor():
    x, y = load_digits_tensor()
    assert x.shape == (1797, 64) and x.dtype == torch.float32 and y.shape == (1797,)
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert set(y.tolist()) == set(range(10))
    images, _ = load_digits_tensor(images=True)
    assert images.shape == (1797, 1, 8, 8) and torch.equal(images.reshape(1797, 64), x)


# ------------------------------------------------------------------------------------------ CIFAR-10


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network must not be touched")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_cifar_missing_offline_names_url_and_path(tmp_path, no_network):
    with pytest.raises(DataError) as err:
        cifar10(tmp_path / "cifar")
    msg = str(err.value)
    assert CIFAR10_URL in msg and str(tmp_path / "cifar" / "cifar-10-python.tar.gz") in msg


def test_cifar_failed_download_names_url_and_path(tmp_path):
    url = (tmp_path / "nowhere.tar.gz").as_uri()  # a local file:// URL that does not exist: no network used
    with pytest.raises(DataError) as err:
        cifar10(tmp_path, download=True, url=url)
    assert url in str(err.value) and str(tmp_path / "cifar-10-python.tar.gz") in str(err.value)
    assert not (tmp_path / "cifar-10-python.tar.gz.part").exists()


def _fake_archive(path):
    """A tarball with the official layout: 5 train batches of 4 images and a test batch of 3."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 3)]:
            batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), b"labels": list(range(n))}
            blob = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cifar_download_checksum_extract_and_load(tmp_path):
    source = tmp_path / "source.tar.gz"
    md5 = _fake_archive(source)
    root = tmp_path / "data"
    # wrong checksum: refused, with the path and the URL in the message
    with pytest.raises(DataError, match="checksum") as err:
        cifar10(root, download=True, url=source.as_uri(), md5="0" * 32)
    assert source.as_uri() in str(err.value) and str(root / "cifar-10-python.tar.gz") in str(err.value)
    (root / "cifar-10-python.tar.gz").unlink()
    x, y = cifar10(root, download=True, url=source.as_uri(), md5=md5)
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32 and y.tolist() == [0, 1, 2, 3] * 5
    assert x.min().item() >= -1.0 and x.max().item() <= 1.0
    xt, yt = cifar10(root, split="test", md5=md5)  # extracted folder present: no download needed
    assert xt.shape == (3, 3, 32, 32) and yt.tolist() == [0, 1, 2]
