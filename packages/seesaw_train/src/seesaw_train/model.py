"""A decoder-only transformer in the OLMo style used by the Seesaw experiments, in one readable file.

Shape of the network (DESIGN §2: RoPE, no biases, untied embeddings, QK-norm, z-loss)::

    idx (B, T) → wte (V × d) → n_layer × Block → RMSNorm → lm_head (d × V) → logits (B, T, V)

    Block:  x ← x + Attention(RMSNorm(x))      (pre-norm residual blocks)
            x ← x + MLP(RMSNorm(x))

- Attention: one fused q/k/v projection (d → 3d), n_head heads of size d/n_head; optional QK-norm
  (an RMSNorm over each head's q and k vectors, one learned scale of size head_dim shared by the
  heads — OLMo normalises over the full width instead; per head is the form asked for here); rotary
  position embedding on q and k (after the QK-norm); causal ``scaled_dot_product_attention``; output
  projection d → d.
- MLP: GELU (exact erf form), d → d_mlp → d, two matrices. Chosen over SwiGLU because it is what makes
  the paper's names come out: the OLMo configs of the critical-batch-size study (Zhang et al. 2024,
  arXiv 2410.21676, whose 151M/302M shapes match the Seesaw 150M/300M) use ``activation_type: gelu``
  with ``mlp_hidden_size`` 4096 at d 1024, and 12 layers of 4d² + 2·d·d_mlp = 12.58 M weights give
  151 M non-embedding parameters (24 layers: 302 M; the 600M shape, d 1408 / MLP 5632 / 24 layers:
  571 M). A three-matrix SwiGLU with the same d_mlp would give 201 M for "150M".
- RMSNorm: y = x / sqrt(mean(x²) + ε) · g, learned scale g, no bias (ε = 1e-5).
- RoPE (Su et al. 2021, arXiv 2104.09864), "rotate-half" pairing: feature i of a head is paired
  with feature i + head_dim/2 and the pair is rotated by the angle p·θ_i at position p, with
  θ_i = base^(−2i/head_dim), base 10,000. Then ⟨R_m q, R_n k⟩ depends on m and n only through m − n.
- No bias in any Linear, no dropout, input embedding and output head are separate matrices.
- Loss: mean cross-entropy over positions whose target is not −100 (PyTorch's ignore index), and
  separately the z-loss z_loss · mean(logsumexp(logits)²) over the same positions (PaLM, Chowdhery
  et al. 2022, arXiv 2204.02311, used coefficient 1e-4). ``forward`` returns (logits, ce, z): the
  trainer minimises ce + z and logs ce.
- Init (deterministic from a seed): every weight matrix and both embeddings N(0, init_std²); the
  two residual-branch output projections N(0, (init_std/√(2·n_layer))²) (GPT-2's scaling, Radford
  et al. 2019); norm scales 1.

Parameter count: each layer has 4d² (attention) + 2·d·d_mlp (MLP) + 2d (norms) [+ 2·head_dim with
QK-norm]; plus V·d input embedding, V·d output head and d for the final norm. ``num_params
(non_embedding=True)`` leaves out both V·d matrices (Kaplan et al. 2020's N excludes all vocabulary embeddings).

FLOPs per token (``flops_per_token``) for a training step (forward + backward = 3 × forward), the
estimate used for MFU (Kaplan et al. 2020, arXiv 2001.08361; PaLM appendix B):
    6·N_matmul + 12·n_layer·d·seq_len,
where N_matmul = the weight matrices of the blocks + V·d of the output head (the input embedding
is a lookup, no multiply; norm scales are elementwise), and the second term is the attention
scores QKᵀ and their weighted sum AV (2·T·d multiply-adds each per token and layer in the forward,
×3 with the backward), counted over the full T×T square as is customary even though causal
kernels skip about half of it. ``torch.utils.flop_counter`` agrees exactly with the math SDPA path.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Shape and loss settings. ``d_mlp`` is the MLP's hidden width; ``z_loss`` the coefficient of
    mean(logsumexp²) (0 switches it off); ``init_std`` the std of the N(0, ·) weight init."""

    vocab_size: int = 4096
    seq_len: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    d_mlp: int = 512
    qk_norm: bool = True
    z_loss: float = 1e-4
    init_std: float = 0.02
    rope_base: float = 10_000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "n_layer", "n_head", "d_model", "d_mlp"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")
        if (self.d_model // self.n_head) % 2:
            raise ValueError(f"head size {self.d_model // self.n_head} must be even for RoPE")
        if self.z_loss < 0 or self.init_std <= 0:
            raise ValueError("z_loss must be >= 0 and init_std > 0")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)


T5_VOCAB = 32_128  # T5's embedding size (32,100 ids padded to a multiple of 128)

CONFIGS: dict[str, ModelConfig] = {
    # CPU-sized model for the local/ci scales (byte-level BPE of 4,096 ids on the stdlib corpus)
    "tiny": ModelConfig(vocab_size=4096, seq_len=128, n_layer=4, n_head=4, d_model=128, d_mlp=512),
    # the Seesaw paper's shapes (DESIGN §2), T5 tokenizer, context 1024
    "150M": ModelConfig(vocab_size=T5_VOCAB, seq_len=1024, n_layer=12, n_head=16, d_model=1024, d_mlp=4096),
    "300M": ModelConfig(vocab_size=T5_VOCAB, seq_len=1024, n_layer=24, n_head=16, d_model=1024, d_mlp=4096),
    "600M": ModelConfig(vocab_size=T5_VOCAB, seq_len=1024, n_layer=24, n_head=22, d_model=1408, d_mlp=5632),
}


def get_config(name: str, **overrides) -> ModelConfig:
    """A named config, with fields replaced by ``overrides`` (e.g. ``vocab_size`` of the prepared data)."""
    if name not in CONFIGS:
        raise KeyError(f"unknown model config {name!r} (known: {', '.join(CONFIGS)})")
    return replace(CONFIGS[name], **overrides)


# --------------------------------------------------------------------------------------- components


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · weight, over the last dimension; no bias.

    The scale is cast to the input's dtype (under bf16 autocast q and k arrive in bf16 while the
    residual stream stays fp32), so that PyTorch's fused kernel is used; it accumulates in fp32.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


def rope_cache(seq_len: int, head_dim: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angles p·θ_i, θ_i = base^(−2i/head_dim); each of shape (seq_len, head_dim/2)."""
    theta = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), theta)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the pairs (x_i, x_{i+h/2}) of ``x`` (…, T, h) by the angles of positions 0..T−1.

    (x₁, x₂) ↦ (x₁ cos − x₂ sin, x₁ sin + x₂ cos), a rotation by p·θ_i in each pair's plane.
    """
    T = x.shape[-2]
    cos, sin = cos[:T].to(x.dtype), sin[:T].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        # (B, T, 3C) → three (B, n_head, T, head_dim)
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_mlp, bias=False)
        self.proj = nn.Linear(cfg.d_mlp, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        x = x + self.mlp(self.mlp_norm(x))
        return x


def lm_losses(
    logits: torch.Tensor, targets: torch.Tensor, z_coef: float, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, z-loss), both averaged over positions whose target is not ``ignore_index``.

    With lse = logsumexp(logits) per position (in float32): ce = mean(lse − logits[target]) and
    z = z_coef · mean(lse²). One logsumexp serves both terms: a separate ``cross_entropy`` plus a
    ``logsumexp`` normalises the (B·T × V) logits twice (measured on ``tiny``, micro-batch 16, one CPU
    thread: loss forward + backward 150–215 ms this way against 215–270 ms that way, in a ≈ 1 s step).
    """
    flat = logits.reshape(-1, logits.shape[-1]).float()
    flat_targets = targets.reshape(-1)
    valid = flat_targets != ignore_index
    lse = torch.logsumexp(flat, dim=-1)
    target_logit = flat.gather(1, flat_targets.masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
    n = valid.sum().clamp(min=1)
    ce = ((lse - target_logit) * valid).sum() / n
    z = z_coef * (lse.square() * valid).sum() / n if z_coef > 0 else torch.zeros((), device=logits.device)
    return ce, z


# ------------------------------------------------------------------------------------------- model


class Transformer(nn.Module):
    """Decoder-only LM. ``forward(idx, targets=None) → (logits, ce_loss, z_loss)``."""

    def __init__(self, cfg: ModelConfig, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        cos, sin = rope_cache(cfg.seq_len, cfg.head_dim, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Deterministic init from ``seed`` (module docstring); a no-op for meta-device parameters."""
        if self.wte.weight.is_meta:
            return
        gen = torch.Generator(device=self.wte.weight.device).manual_seed(seed)
        std_out = self.cfg.init_std / math.sqrt(2 * self.cfg.n_layer)
        for name, p in self.named_parameters():  # named_parameters order is fixed by construction
            if p.ndim == 1:  # RMSNorm scales
                p.fill_(1.0)
            elif name.endswith(("attn.proj.weight", "mlp.proj.weight")):
                nn.init.normal_(p, 0.0, std_out, generator=gen)
            else:
                nn.init.normal_(p, 0.0, self.cfg.init_std, generator=gen)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        B, T = idx.shape
        if T > self.cfg.seq_len:
            raise ValueError(f"sequence of {T} tokens is longer than the model's seq_len {self.cfg.seq_len}")
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x, self.rope_cos, self.rope_sin)
        logits = self.lm_head(self.norm_f(x))
        if targets is None:
            return logits, None, None
        ce, z = lm_losses(logits, targets, self.cfg.z_loss)
        return logits, ce, z

    # ------------------------------------------------------------------------------ accounting

    def num_params(self, non_embedding: bool = True) -> int:
        """All parameters, or without the input embedding and the output head (V·d each)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel() + self.lm_head.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token: 6·N_matmul + 12·n_layer·d·seq_len (module docstring).

        N_matmul counts the weight matrices a token is multiplied by: all 2-D parameters except the
        input embedding (attention, MLP, output head); norm scales are elementwise and left out.
        """
        T = self.cfg.seq_len if seq_len is None else seq_len
        n_matmul = sum(p.numel() for name, p in self.named_parameters() if p.ndim == 2 and not name.startswith("wte"))
        return 6.0 * n_matmul + 12.0 * self.cfg.n_layer * self.cfg.d_model * T


def analytic_num_params(cfg: ModelConfig, non_embedding: bool = True) -> int:
    """Closed-form parameter count (module docstring), for checks without building the model."""
    per_layer = 4 * cfg.d_model**2 + 2 * cfg.d_model * cfg.d_mlp + 2 * cfg.d_model
    per_layer += 2 * cfg.head_dim if cfg.qk_norm else 0
    n = cfg.n_layer * per_layer + cfg.d_model
    return n if non_embedding else n + 2 * cfg.vocab_size * cfg.d_model
