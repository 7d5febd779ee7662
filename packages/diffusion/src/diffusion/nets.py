"""Denoiser networks ``F(x_in, c_noise)``: a noise-conditioned MLP and a small UNet.

Both networks are the raw function ``F`` of the EDM parametrisation (Karras et al. 2022,
arXiv 2206.00364); a preconditioning wrapper (``diffusion.precond``) turns them into a denoiser

    D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ)).

``forward(x, c_noise)`` takes ``x`` of shape [N, ...] and ``c_noise`` of shape [N] (a scalar is
broadcast). The noise level enters through an embedding of ``c_noise``:

* ``"positional"`` (default): e_j = cos(c·ω_j), sin(c·ω_j) with ω_j = (1/10000)^(j/half),
  j = 0..half−1 — the transformer/DDPM sinusoidal embedding; it resolves both the small range
  of EDM's c_noise = ln(σ)/4 and VP's c_noise = (M−1)·t ∈ [0, 999].
* ``"fourier"``: the same cos/sin pair with fixed random frequencies ω_j ~ N(0, scale²)
  (drawn once from ``seed``, stored as a buffer).

The embedding e goes through a two-layer SiLU MLP and then enters every hidden block: the MLP adds
a projection of it before the nonlinearity (h ← h + W·SiLU(LN(h) + V·e) — cheap, which matters on
a CPU), the UNet's residual blocks modulate by FiLM, h ← GN(h)·(1 + a(e)) + b(e).

The last layer of both networks starts at zero, so at initialisation F ≡ 0 and the denoiser is
D = c_skip·x (with EDM's preconditioning, the optimal denoiser of N(0, σ_d²·I)); residual branches
end in a zero-initialised layer too, so every block starts as the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------------------- embedding


class NoiseEmbedding(nn.Module):
    """c_noise [N] → features [N, emb_dim]: cos/sin features followed by Linear–SiLU–Linear."""

    def __init__(self, emb_dim: int = 64, kind: str = "positional", scale: float = 16.0, seed: int = 0):
        super().__init__()
        if emb_dim % 2:
            raise ValueError(f"emb_dim must be even, got {emb_dim}")
        half = emb_dim // 2
        if kind == "positional":
            freqs = (1.0 / 10000.0) ** (torch.arange(half, dtype=torch.float32) / half)
        elif kind == "fourier":
            gen = torch.Generator().manual_seed(seed)
            freqs = torch.randn(half, generator=gen) * scale
        else:
            raise ValueError(f"unknown embedding kind {kind!r} (positional | fourier)")
        self.kind = kind
        self.register_buffer("freqs", freqs)
        self.mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, c_noise: torch.Tensor, n: int) -> torch.Tensor:
        c = torch.as_tensor(c_noise, dtype=self.freqs.dtype, device=self.freqs.device).reshape(-1)
        if c.numel() == 1:
            c = c.expand(n)
        angles = c[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=1))


def _zero_(layer: nn.Module) -> nn.Module:
    """Zero a layer's weight and bias in place (the layer then outputs 0 at initialisation)."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


# ----------------------------------------------------------------------------------------- MLP


class MLPBlock(nn.Module):
    """Residual block h ← h + W·SiLU(LN(h) + V·e): one hidden layer, noise embedding e added before the SiLU."""

    def __init__(self, width: int, emb_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.emb = nn.Linear(emb_dim, width)
        self.fc = _zero_(nn.Linear(width, width))

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.fc(F.silu(self.norm(h) + self.emb(emb)))


class MLPNet(nn.Module):
    """Noise-conditioned MLP for vectors x ∈ ℝ^dim: Linear → ``depth`` residual blocks → LN, SiLU, Linear.

    Args:
        dim: data dimension D (input and output).
        width: hidden width.
        depth: number of residual blocks (one hidden Linear layer each).
        emb_dim: size of the noise embedding.
        embedding: ``"positional"`` or ``"fourier"`` (see module docstring).
    """

    def __init__(self, dim: int, width: int = 256, depth: int = 4, emb_dim: int = 64, embedding: str = "positional"):
        super().__init__()
        self.dim = dim
        self.embed = NoiseEmbedding(emb_dim, embedding)
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(MLPBlock(width, emb_dim) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.out = _zero_(nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        h = self.inp(x.reshape(shape[0], -1))
        emb = F.silu(self.embed(c_noise, shape[0]))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.out_norm(h))).reshape(shape)


# ----------------------------------------------------------------------------------------- UNet


def _groups(channels: int) -> int:
    """Largest GroupNorm group count in (32, 16, 8, 4, 2, 1) dividing ``channels`` with ≥ 4 channels a group."""
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 4:
            return g
    return 1


class ResBlock(nn.Module):
    """h = conv₁(SiLU(GN(x))); h = conv₂(drop(SiLU(GN(h)·(1 + a) + b))); out = skip(x) + h."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero_(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        a, b = self.film(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + a) + b)
        return self.skip(x) + self.conv2(self.dropout(h))


class AttnBlock(nn.Module):
    """Single-head self-attention over the H·W positions, residual: x + proj(softmax(qkᵀ/√c)·v)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero_(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, hgt, wid = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, hgt * wid).transpose(2, 3).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)  # [N, HW, C]
        return x + self.proj(h.transpose(1, 2).reshape(n, c, hgt, wid))


class SmallUNet(nn.Module):
    """A small UNet for images [N, C, H, W] (or flattened [N, C·H·W], reshaped and restored).

    Layout, with chs = base·mults: conv_in → for each level ℓ: ``num_blocks`` ResBlocks at chs[ℓ]
    (output kept as a skip), then a stride-2 conv (all but the last level) → middle: ResBlock,
    self-attention (if ``attention``), ResBlock → for each level from the bottom: concatenate the
    level's skip, ``num_blocks`` ResBlocks, nearest ×2 upsampling + conv (all but the top level)
    → GN, SiLU, conv_out (zero-initialised).

    8×8×1 digits: ``SmallUNet(1, 8)`` (levels 8, 4); 32×32×3 CIFAR: e.g.
    ``SmallUNet(3, 32, base=64, mults=(1, 2, 2, 2))`` (levels 32, 16, 8, 4).
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 8,
        base: int = 32,
        mults: tuple[int, ...] = (1, 2),
        emb_dim: int = 64,
        num_blocks: int = 1,
        attention: bool = True,
        dropout: float = 0.0,
        embedding: str = "positional",
    ):
        super().__init__()
        if image_size % 2 ** (len(mults) - 1):
            raise ValueError(f"image_size {image_size} is not divisible by 2^{len(mults) - 1} (mults={mults})")
        self.channels, self.image_size = channels, image_size
        chs = [base * m for m in mults]
        self.embed = NoiseEmbedding(emb_dim, embedding)
        self.conv_in = nn.Conv2d(channels, chs[0], 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = chs[0]
        for level, ch in enumerate(chs):
            blocks = nn.ModuleList()
            for _ in range(num_blocks):
                blocks.append(ResBlock(c, ch, emb_dim, dropout))
                c = ch
            self.down.append(blocks)
            last = level == len(chs) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1))

        self.mid1 = ResBlock(c, c, emb_dim, dropout)
        self.mid_attn = AttnBlock(c) if attention else nn.Identity()
        self.mid2 = ResBlock(c, c, emb_dim, dropout)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(chs))):
            ch = chs[level]
            blocks = nn.ModuleList()
            for i in range(num_blocks):
                blocks.append(ResBlock(c + (ch if i == 0 else 0), ch, emb_dim, dropout))
                c = ch
            self.up.append(blocks)
            self.upsample.append(nn.Identity() if level == 0 else nn.Conv2d(ch, chs[level - 1], 3, padding=1))
            if level:
                c = chs[level - 1]

        self.out_norm = nn.GroupNorm(_groups(c), c)
        self.conv_out = _zero_(nn.Conv2d(c, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(shape[0], self.channels, self.image_size, self.image_size)
        emb = self.embed(c_noise, shape[0])

        h = self.conv_in(x)
        skips = []
        for blocks, down in zip(self.down, self.downsample, strict=True):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            h = down(h)

        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)

        for blocks, up in zip(self.up, self.upsample, strict=True):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))

        return self.conv_out(F.silu(self.out_norm(h))).reshape(shape)


def num_params(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


__all__ = ["MLPNet", "SmallUNet", "NoiseEmbedding", "num_params"]
