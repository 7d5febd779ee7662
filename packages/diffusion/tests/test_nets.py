"""Networks F(x, c_noise): shapes, zero output at init, noise conditioning, per-sample independence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffusion.nets import MLPNet, NoiseEmbedding, SmallUNet, num_params


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on 2 busy cores, 2 threads make these small convolutions ~100× slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give the zero-initialised layers PyTorch's default random init, so they no longer hide the input."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.reset_parameters()
    return net


NETS = {
    "mlp": (lambda: MLPNet(5, width=32, depth=3, emb_dim=16), (5,)),
    "unet_digits": (lambda: SmallUNet(channels=1, image_size=8, base=16), (1, 8, 8)),
    "unet_cifar": (lambda: SmallUNet(channels=3, image_size=32, base=16, mults=(1, 2, 2)), (3, 32, 32)),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_shapes_and_zero_output_at_init(name):
    make, shape = NETS[name]
    torch.manual_seed(0)
    net = make()
    x = torch.randn(4, *shape)
    out = net(x, torch.linspace(-1, 1, 4))
    assert out.shape == x.shape
    # last layer is zero-initialised: F ≡ 0, so a preconditioned denoiser starts at c_skip·x
    assert torch.count_nonzero(out) == 0
    assert num_params(net) > 0


@pytest.mark.parametrize("name", sorted(NETS))
def test_noise_conditioning_changes_output(name):
    make, shape = NETS[name]
    net = _randomise(make())
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    lo = net(x, torch.full((3,), -1.0))
    hi = net(x, torch.full((3,), 1.0))
    assert torch.isfinite(lo).all() and torch.isfinite(hi).all()
    # a difference of a few percent of the output's scale: far above float32 round-off (~1e-7)
    assert (lo - hi).abs().max() > 1e-2 * lo.abs().max()
    # a scalar c_noise is broadcast to every sample
    assert torch.allclose(net(x, torch.tensor(0.3)), net(x, torch.full((3,), 0.3)), atol=1e-6)


@pytest.mark.parametrize("name", sorted(NETS))
def test_samples_are_independent_and_gradients_flow(name):
    make, shape = NETS[name]
    net = _randomise(make(), seed=2)
    gen = torch.Generator().manual_seed(3)
    x, c = torch.randn(5, *shape, generator=gen), torch.randn(5, generator=gen)
    full = net(x, c)
    # no batch mixing (no batch norm, attention only over positions): sample 1 alone gives the same output
    assert torch.allclose(net(x[1:2], c[1:2]), full[1:2], atol=1e-5)
    full.square().sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_unet_accepts_flat_images_and_checks_size():
    net = _randomise(SmallUNet(channels=1, image_size=8, base=16))
    x = torch.randn(2, 1, 8, 8)
    c = torch.zeros(2)
    assert torch.allclose(net(x.reshape(2, 64), c), net(x, c).reshape(2, 64), atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        SmallUNet(channels=1, image_size=6, mults=(1, 2, 2))


def test_embedding_kinds():
    c = torch.tensor([0.0, 500.0, 999.0])  # VP's c_noise range
    for kind in ("positional", "fourier"):
        emb = NoiseEmbedding(16, kind)
        out = emb(c, 3)
        assert out.shape == (3, 16) and torch.isfinite(out).all()
    with pytest.raises(ValueError):
        NoiseEmbedding(16, "nope")
