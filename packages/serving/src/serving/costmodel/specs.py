"""Model and GPU specifications, their registries, and the cost-model protocol.

A :class:`ModelSpec` describes a dense decoder-only transformer by its shape; every derived
quantity (parameter count, weight bytes, KV bytes per token) is computed from that shape, so the
numbers can be checked by hand:

    head_dim           = hidden / heads
    kv_dim             = kv_heads · head_dim                      (GQA: kv_heads < heads)
    attention params   = hidden · (hidden + 2·kv_dim)  [Q, K, V]  + hidden²  [output proj]
    MLP params         = 3 · hidden · ffn   (gated SwiGLU: gate, up, down)   or
                         2 · hidden · ffn   (plain GELU MLP: up, down)
    norm params        = 2 · hidden per layer (+ biases where the model has them)
    layer params       = attention + MLP + norms (+ biases)
    embedding params   = vocab · hidden (input table) + vocab · hidden (LM head, unless tied)
    params             = layers · layer params + embedding params + hidden (final norm)
    kv_bytes_per_token = 2 · layers · kv_heads · head_dim · dtype_bytes   (K and V)

A :class:`GPUSpec` holds the datasheet peaks used by the roofline model: dense bf16 tensor-core
FLOP/s, HBM bandwidth, HBM capacity and the link bandwidth used to move KV caches and weights.

The cost-model protocol (:class:`CostModel`) is what the simulator calls; every implementation
(roofline, polynomial, table) satisfies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

__all__ = [
    "GB",
    "GIB",
    "GPUS",
    "MODELS",
    "PCAP_PROMPT_SLOWDOWN",
    "TP_CHOICES",
    "CostModel",
    "GPUSpec",
    "ModelSpec",
    "check_tp",
    "get_gpu",
    "get_model",
    "prefill_attn_pairs",
]

GB = 1e9  # decimal gigabyte, as bandwidth datasheets use it
GIB = 2**30  # binary gibibyte, as HBM capacities are actually sized ("80 GB" parts hold 80 GiB)
TP_CHOICES = (1, 2, 4, 8)  # one 8-GPU node (DGX/HGX); tensor parallelism does not cross nodes here


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a dense decoder-only transformer (see the module docstring for the formulas).

    ``gated_mlp``: SwiGLU MLP with three matrices (Llama) vs a two-matrix GELU MLP (BLOOM).
    ``tied_embeddings``: the LM head shares the input embedding table (BLOOM) or not (Llama).
    ``bias``: linear layers carry biases (BLOOM) — adds ``(hidden + 2·kv_dim) + hidden + ffn + hidden``
    per layer plus a bias per norm.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    dtype_bytes: int = 2
    gated_mlp: bool = True
    tied_embeddings: bool = False
    bias: bool = False

    def __post_init__(self) -> None:
        for field in ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "dtype_bytes"):
            if getattr(self, field) < 1:
                raise ValueError(f"ModelSpec {self.name!r}: {field} must be >= 1, got {getattr(self, field)}")
        if self.hidden % self.heads:
            raise ValueError(f"ModelSpec {self.name!r}: hidden {self.hidden} not divisible by heads {self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"ModelSpec {self.name!r}: heads {self.heads} not divisible by kv_heads {self.kv_heads}")

    # --- shape -------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        """hidden / heads."""
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        """kv_heads · head_dim: width of the K (and of the V) projection."""
        return self.kv_heads * self.head_dim

    # --- parameters --------------------------------------------------------------------------
    @property
    def attn_params(self) -> int:
        """hidden·(hidden + 2·kv_dim) for Q, K, V plus hidden² for the output projection."""
        return self.hidden * (self.hidden + 2 * self.kv_dim) + self.hidden * self.hidden

    @property
    def mlp_params(self) -> int:
        """(3 if gated else 2) · hidden · ffn."""
        return (3 if self.gated_mlp else 2) * self.hidden * self.ffn

    @property
    def layer_params(self) -> int:
        """Parameters of one transformer block: attention + MLP + two norms (+ biases)."""
        norms = 2 * self.hidden * (2 if self.bias else 1)  # RMSNorm: weight; LayerNorm: weight + bias
        biases = (self.hidden + 2 * self.kv_dim) + self.hidden + self.ffn + self.hidden if self.bias else 0
        return self.attn_params + self.mlp_params + norms + biases

    @property
    def params_nonembed(self) -> int:
        """layers · layer_params: the weights every token is multiplied with (2 FLOPs each)."""
        return self.layers * self.layer_params

    @property
    def embed_params(self) -> int:
        """Input embedding table: vocab · hidden."""
        return self.vocab * self.hidden

    @property
    def lm_head_params(self) -> int:
        """LM head: vocab · hidden (the same tensor as the embedding table when tied)."""
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        """Total stored parameters = layers·layer_params + embedding (+ untied LM head) + final norm."""
        head = 0 if self.tied_embeddings else self.lm_head_params
        final_norm = self.hidden * (2 if self.bias else 1)
        return self.params_nonembed + self.embed_params + head + final_norm

    # --- bytes -------------------------------------------------------------------------------
    @property
    def weight_bytes(self) -> int:
        """params · dtype_bytes."""
        return self.params * self.dtype_bytes

    @property
    def layer_bytes(self) -> int:
        """layer_params · dtype_bytes: what a layer-level weight migration moves."""
        return self.layer_params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """2 · layers · kv_heads · head_dim · dtype_bytes (K and V of every layer)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes


@dataclass(frozen=True)
class GPUSpec:
    """Datasheet peaks of one accelerator.

    flops: dense bf16 tensor-core FLOP/s (no 2:4 sparsity); hbm_bw: B/s; mem_bytes: HBM capacity;
    link_bw: B/s per GPU per direction on the link used for KV-cache / weight transfer and for the
    tensor-parallel all-reduce (NVLink inside a node); nic_bw: B/s per GPU on the inter-node network
    (InfiniBand), for transfers between machines as in Splitwise.
    """

    name: str
    flops: float
    hbm_bw: float
    mem_bytes: float
    link_bw: float
    nic_bw: float = 0.0

    def __post_init__(self) -> None:
        for field in ("flops", "hbm_bw", "mem_bytes", "link_bw"):
            if not getattr(self, field) > 0:
                raise ValueError(f"GPUSpec {self.name!r}: {field} must be > 0, got {getattr(self, field)}")

    @property
    def ridge_intensity(self) -> float:
        """flops / hbm_bw: arithmetic intensity (FLOP/B) where a kernel turns compute-bound."""
        return self.flops / self.hbm_bw


# --- registries ------------------------------------------------------------------------------
# Shapes from the public model cards / configs:
# - Llama 2 (Touvron et al., arXiv 2307.09288, and the released config.json): 70B has 80 layers,
#   hidden 8192, 64 heads, 8 KV heads (GQA), FFN 28672, vocab 32000; 13B has 40 layers, hidden 5120,
#   40 heads (MHA), FFN 13824, vocab 32000. Untied embeddings, RMSNorm, no biases.
# - Llama 3 8B (Meta model card / config.json): 32 layers, hidden 4096, 32 heads, 8 KV heads,
#   FFN 14336, vocab 128256.
# - BLOOM-176B (BigScience, arXiv 2211.05100): 70 layers, hidden 14336, 112 heads (MHA),
#   FFN 4·hidden = 57344 with GELU, vocab 250880, tied embeddings, LayerNorm and biases.
# The derived totals are checked in the tests against the published sizes (≈ 69.0B, 13.0B, 8.03B, 176B).
MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("llama2-70b", layers=80, hidden=8192, heads=64, kv_heads=8, ffn=28672, vocab=32000),
        ModelSpec("llama2-13b", layers=40, hidden=5120, heads=40, kv_heads=40, ffn=13824, vocab=32000),
        ModelSpec("llama3-8b", layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=128256),
        ModelSpec(
            "bloom-176b",
            layers=70,
            hidden=14336,
            heads=112,
            kv_heads=112,
            ffn=4 * 14336,
            vocab=250880,
            gated_mlp=False,
            tied_embeddings=True,
            bias=True,
        ),
    )
}

# Power-capped H100 (Splitwise, arXiv 2311.18677, the "HHcap" cluster design): Splitwise caps the
# power of the token-machine H100s because the memory-bound token phase keeps its latency under a
# cap while the compute-bound prompt phase slows down. We model the cap as a derate of the compute
# peak only — flops / PCAP_PROMPT_SLOWDOWN — with HBM bandwidth, capacity and links unchanged.
# The slowdown 1.3 is SplitwiseSim's own model of the capped part: in its perf profile
# (splitwise_perf_model.csv) every h100-80gb-pcap prompt_time is 1.30 × the h100-80gb one and every
# token_time is identical (checked by test_costmodel.py when the shared file is present). In the
# roofline this multiplies the compute term by 1.3 and leaves the memory, link and overhead terms.
PCAP_PROMPT_SLOWDOWN = 1.3

_A100 = GPUSpec(
    # NVIDIA A100 datasheet (SXM4 80GB): 312 TFLOP/s dense BF16, 2,039 GB/s HBM2e, 80 GB,
    # NVLink 3 600 GB/s total = 300 GB/s per direction. DGX A100: 8× 200 Gb/s HDR
    # InfiniBand, one per GPU = 25 GB/s.
    "a100-80gb",
    flops=312e12,
    hbm_bw=2.039e12,
    mem_bytes=80 * GIB,
    link_bw=300 * GB,
    nic_bw=25 * GB,
)
_H100 = GPUSpec(
    # NVIDIA H100 datasheet (SXM5 80GB): 989 TFLOP/s dense BF16 (1,979 with sparsity), 3.35 TB/s
    # HBM3, 80 GB, NVLink 4 900 GB/s total = 450 GB/s per direction. DGX H100: 8× 400 Gb/s
    # NDR InfiniBand, one per GPU = 50 GB/s.
    "h100-80gb",
    flops=989e12,
    hbm_bw=3.35e12,
    mem_bytes=80 * GIB,
    link_bw=450 * GB,
    nic_bw=50 * GB,
)
GPUS: dict[str, GPUSpec] = {
    g.name: g
    for g in (
        _A100,
        _H100,
        replace(_H100, name="h100-80gb-pcap", flops=_H100.flops / PCAP_PROMPT_SLOWDOWN),
    )
}


def get_model(model: str | ModelSpec) -> ModelSpec:
    """Resolve a registry name (or pass a ModelSpec through); unknown names list the known ones."""
    if isinstance(model, ModelSpec):
        return model
    try:
        return MODELS[model]
    except KeyError:
        raise KeyError(f"unknown model {model!r}; available: {', '.join(sorted(MODELS))}") from None


def get_gpu(gpu: str | GPUSpec) -> GPUSpec:
    """Resolve a registry name (or pass a GPUSpec through); unknown names list the known ones."""
    if isinstance(gpu, GPUSpec):
        return gpu
    try:
        return GPUS[gpu]
    except KeyError:
        raise KeyError(f"unknown gpu {gpu!r}; available: {', '.join(sorted(GPUS))}") from None


def check_tp(model: ModelSpec, tp: int) -> int:
    """Validate a tensor-parallel degree: one of TP_CHOICES that divides the attention heads."""
    ok = [t for t in TP_CHOICES if model.heads % t == 0]
    if isinstance(tp, bool) or not isinstance(tp, int | float) or tp not in ok or int(tp) != tp:
        raise ValueError(f"tp={tp!r} not supported for {model.name}; available: {ok}")
    return int(tp)


@runtime_checkable
class CostModel(Protocol):
    """What the simulator needs from a latency model (seconds, one instance of ``tp`` GPUs).

    ``iteration_time(prefill_tokens, prefill_attn, decode_seqs, decode_context)``:
      prefill_tokens = new prompt tokens in the iteration (chunks allowed);
      prefill_attn   = Σ_i n_i·(c_i + (n_i+1)/2) over chunks of n_i new tokens on c_i cached ones
                       (the causal query–key pairs);
      decode_seqs    = sequences producing one token each;
      decode_context = Σ context lengths of those sequences.
    """

    model: ModelSpec
    gpu: GPUSpec
    tp: int

    def iteration_time(self, prefill_tokens: int, prefill_attn: float, decode_seqs: int, decode_context: int) -> float:
        """Seconds for one forward pass of the batch described by the four totals."""
        ...

    def kv_capacity_tokens(self) -> int:
        """Tokens of KV cache that fit in HBM after weights and an activation reserve."""
        ...

    def kv_transfer_time(self, tokens: int) -> float:
        """Seconds to move the KV cache of ``tokens`` tokens to another instance."""
        ...

    def weight_transfer_time(self, layers: int) -> float:
        """Seconds to move ``layers`` transformer layers' weights to another instance."""
        ...


def prefill_attn_pairs(chunks: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> float:
    """Σ n·(c + (n+1)/2) for chunks given as (n new tokens, c cached tokens) — a helper for callers/tests."""
    return math.fsum(n * (c + (n + 1) / 2) for n, c in chunks)
