"""A small decoder-only transformer for the CPU serving engine, with a slot-based KV cache.

The parameter names and shapes are those of ``seesaw_train.model.Transformer`` so that a seesaw_train
checkpoint loads here unchanged, yet this file does not import seesaw_train (``serving`` installs alone)::

    wte.weight                         (V, d)         input embedding
    blocks.{i}.attn_norm.weight        (d,)           RMSNorm before attention
    blocks.{i}.attn.qkv.weight         (3d, d)        fused q/k/v projection, no bias
    blocks.{i}.attn.q_norm.weight      (d/h,)         QK-norm scales (only with qk_norm)
    blocks.{i}.attn.k_norm.weight      (d/h,)
    blocks.{i}.attn.proj.weight        (d, d)         attention output projection
    blocks.{i}.mlp_norm.weight         (d,)           RMSNorm before the MLP
    blocks.{i}.mlp.fc.weight           (d_mlp, d)     GELU MLP
    blocks.{i}.mlp.proj.weight         (d, d_mlp)
    norm_f.weight                      (d,)           final RMSNorm
    lm_head.weight                     (V, d)         output head (untied)

Computation per block (pre-norm): x ← x + Attn(RMSNorm(x)); x ← x + MLP(RMSNorm(x)), with
RMSNorm(x) = x / sqrt(mean(x²) + ε) · g, MLP(x) = W₂ GELU(W₁ x) (exact erf GELU), attention with
QK-norm (an RMSNorm over each head's q and k) applied before the rotary embedding. RoPE in the
rotate-half form: feature i of a head pairs with feature i + h/2 and the pair at position p is
rotated by p·θ_i, θ_i = base^(−2i/h).

Three entry points:

- ``forward(idx)`` — the full causal forward of a (B, T) batch, logits (B, T, V); the reference that
  the cached paths are tested against.
- ``prefill(ids)`` — one prompt of T tokens: last-position logits (V,) and its keys and values, each
  (n_layer, n_head, T, head_dim) — the unit that a prefill worker ships to a decode worker.
- ``decode(tokens, positions, cache)`` — one new token for each of B running sequences whose keys
  and values are in ``cache`` slots 0..B−1. The new token's key and value are written at its
  position, then each query attends to positions 0..pos_b of its own slot (a boolean mask hides the
  padding beyond a shorter sequence's end). Sequence b's logits equal the last row of
  ``forward`` on its full token list up to float rounding (tested).

Positions beyond the trained ``seq_len`` are served by extending the rotary table (RoPE has no
learned position table); the text quality there is not the point of this engine, the serving
behaviour is.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, ModelSpec, load_model_config, named_configs

__all__ = [
    "Decoder",
    "KVCache",
    "ModelConfig",
    "ModelSpec",
    "build_model",
    "load_model_config",
    "load_state",
    "named_configs",
    "read_checkpoint",
]

# ------------------------------------------------------------------------------------------ pieces


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · weight over the last dimension."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


def rotary_table(n_pos: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of p·θ_i for p < n_pos, θ_i = base^(−2i/head_dim), computed in float64; (n_pos, head_dim/2)."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(n_pos, dtype=torch.float64)[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the pairs (x_i, x_{i+h/2}) by the angles whose cos/sin broadcast against x's halves."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None

    def project(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, d) → q, k, v each (B, n_head, T, head_dim), q and k normalised and rotated."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return rotate(q, cos, sin), rotate(k, cos, sin), v

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """(B, n_head, T, head_dim) → output projection of the concatenated heads, (B, T, d)."""
        B, _, T, _ = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))


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
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)


# ------------------------------------------------------------------------------------------ KV cache


class KVCache:
    """Keys and values of up to ``slots`` sequences: two tensors (n_layer, slots, n_head, capacity, head_dim).

    Running sequences occupy slots 0..B−1 (the engine compacts on removal, ``move``), so a decode step
    reads the view ``k[layer, :B, :, :L]`` with no gather. ``capacity`` grows by doubling up to
    ``max_len`` when a longer sequence arrives (one copy), so short workloads stay small.
    """

    def __init__(self, cfg: ModelConfig, slots: int, max_len: int, capacity: int = 256) -> None:
        self.cfg, self.slots, self.max_len = cfg, int(slots), int(max_len)
        cap = max(1, min(int(capacity), self.max_len))
        shape = (cfg.n_layer, self.slots, cfg.n_head, cap, cfg.head_dim)
        self.k = torch.zeros(shape)
        self.v = torch.zeros(shape)

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def ensure(self, length: int) -> None:
        """Make room for ``length`` positions per slot (≤ max_len)."""
        if length > self.max_len:
            raise ValueError(f"sequence of {length} positions exceeds the cache's max_len {self.max_len}")
        if length <= self.capacity:
            return
        cap = self.capacity
        while cap < length:
            cap *= 2
        cap = min(cap, self.max_len)
        for name in ("k", "v"):
            old = getattr(self, name)
            new = torch.zeros(old.shape[:3] + (cap,) + old.shape[4:])
            new[:, :, :, : old.shape[3]] = old
            setattr(self, name, new)

    def put(self, slot: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store a prompt's keys and values (n_layer, n_head, T, head_dim) in ``slot`` at positions 0..T−1."""
        T = k.shape[2]
        self.ensure(T + 1)
        self.k[:, slot, :, :T] = k
        self.v[:, slot, :, :T] = v

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy the first ``length`` positions of slot ``src`` into slot ``dst``."""
        self.k[:, dst, :, :length] = self.k[:, src, :, :length]
        self.v[:, dst, :, :length] = self.v[:, src, :, :length]

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2


# ------------------------------------------------------------------------------------------ model


class Decoder(nn.Module):
    """The decoder above; ``max_len`` bounds the positions served (the rotary table's length)."""

    def __init__(self, cfg: ModelConfig, max_len: int | None = None, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.max_len = int(max_len or cfg.seq_len)
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        cos, sin = rotary_table(self.max_len, cfg.head_dim, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.init_weights(seed)

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Seeded init: matrices N(0, init_std²), the two residual output projections N(0, (init_std/√(2L))²),
        norm scales 1 (the scheme seesaw_train uses; a random model is what the engine serves by default)."""
        gen = torch.Generator().manual_seed(int(seed))
        std, std_out = self.cfg.init_std, self.cfg.init_std / math.sqrt(2 * self.cfg.n_layer)
        for name, p in self.named_parameters():
            if p.ndim == 1:
                p.fill_(1.0)
            else:
                out = name.endswith(("attn.proj.weight", "mlp.proj.weight"))
                p.normal_(0.0, std_out if out else std, generator=gen)

    def _check_len(self, n: int) -> None:
        if n > self.max_len:
            raise ValueError(f"sequence of {n} tokens is longer than the engine's max_len {self.max_len}")

    @torch.no_grad()
    def forward(self, idx: torch.Tensor, return_kv: bool = False) -> Any:
        """Full causal forward of idx (B, T) → logits (B, T, V) [and k, v: (n_layer, B, n_head, T, head_dim)]."""
        _, T = idx.shape
        self._check_len(T)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.wte(idx)
        ks, vs = [], []
        for block in self.blocks:
            q, k, v = block.attn.project(block.attn_norm(x), cos, sin)
            x = x + block.attn.merge(F.scaled_dot_product_attention(q, k, v, is_causal=True))
            x = x + block.mlp(block.mlp_norm(x))
            if return_kv:
                ks.append(k)
                vs.append(v)
        logits = self.lm_head(self.norm_f(x))
        if return_kv:
            return logits, torch.stack(ks), torch.stack(vs)
        return logits

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One prompt ids (T,) → (logits of the last position (V,), k, v each (n_layer, n_head, T, head_dim)).

        Only the last position goes through the output head (the others' logits are never sampled).
        """
        T = ids.shape[0]
        self._check_len(T)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.wte(ids[None, :])
        ks, vs = [], []
        for block in self.blocks:
            q, k, v = block.attn.project(block.attn_norm(x), cos, sin)
            x = x + block.attn.merge(F.scaled_dot_product_attention(q, k, v, is_causal=True))
            x = x + block.mlp(block.mlp_norm(x))
            ks.append(k[0])
            vs.append(v[0])
        logits = self.lm_head(self.norm_f(x[0, -1]))
        return logits, torch.stack(ks), torch.stack(vs)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """tokens (B,) at positions (B,) for the sequences in cache slots 0..B−1 → logits (B, V).

        Writes each token's key/value at (slot b, position pos_b); query b attends to positions
        0..pos_b of slot b: scores over the padded length L = max pos + 1 with mask[b, j] = (j ≤ pos_b).
        """
        B = tokens.shape[0]
        L = int(positions.max()) + 1
        self._check_len(L)
        cache.ensure(L)
        cos = self.rope_cos[positions][:, None, None, :]
        sin = self.rope_sin[positions][:, None, None, :]
        mask = (torch.arange(L)[None, :] <= positions[:, None])[:, None, None, :]
        rows = torch.arange(B)
        x = self.wte(tokens)[:, None, :]
        for layer, block in enumerate(self.blocks):
            q, k, v = block.attn.project(block.attn_norm(x), cos, sin)
            kl, vl = cache.k[layer], cache.v[layer]
            kl[rows, :, positions] = k[:, :, 0]
            vl[rows, :, positions] = v[:, :, 0]
            y = F.scaled_dot_product_attention(q, kl[:B, :, :L], vl[:B, :, :L], attn_mask=mask)
            x = x + block.attn.merge(y)
            x = x + block.mlp(block.mlp_norm(x))
        return self.lm_head(self.norm_f(x[:, 0]))


# ------------------------------------------------------------------------------------------ checkpoints


def _unwrap_state_dict(obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(model state dict with plain parameter names, recorded model config or None) from a loaded file.

    Accepted layouts: a Lightning checkpoint of seesaw_train (``state_dict`` with keys ``model.<name>``,
    the config under ``fulcrum.model_config``), a bare state dict with or without the ``model.``
    prefix, and ``torch.compile``'s ``_orig_mod.`` infix.
    """
    config = None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        meta = obj.get("fulcrum")
        if isinstance(meta, dict) and isinstance(meta.get("model_config"), dict):
            config = meta["model_config"]
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("checkpoint holds no state dict of tensors")
    out: dict[str, torch.Tensor] = {}
    has_prefix = any(k.startswith("model.") for k in obj)
    for key, value in obj.items():
        if has_prefix:
            if not key.startswith("model."):
                continue  # other modules of a LightningModule
            key = key[len("model.") :]
        key = key.replace("_orig_mod.", "")
        out[key] = value
    return out, config


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig | None]:
    """Load ``path`` (tensors only: ``torch.load(weights_only=True)``) → (state dict, its recorded config)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unpickling problem with the file name
        raise ValueError(f"{path}: cannot be read as a tensors-only checkpoint ({exc})") from exc
    state, cfg = _unwrap_state_dict(obj)
    return state, (ModelConfig.from_dict(cfg) if cfg is not None else None)


def load_state(model: Decoder, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy ``state`` into ``model``; every parameter must be present with its exact shape."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}")
        if bad:
            parts.append(f"shape mismatch {bad[:5]}")
        raise ValueError(f"{source} does not match the model config: " + "; ".join(parts))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


def build_model(spec: ModelSpec) -> Decoder:
    """A Decoder in eval mode: seeded random weights, or the checkpoint's."""
    model = Decoder(spec.config, max_len=spec.max_len, seed=spec.seed)
    if spec.checkpoint is not None:
        state, _ = read_checkpoint(spec.checkpoint)
        load_state(model, state, source=str(spec.checkpoint))
    return model.eval()
