"""Roofline latency model of one serving instance (``tp`` GPUs under tensor parallelism).

One iteration (a forward pass over the batch) takes

    t = max(t_compute, t_memory) + t_comm + t_overhead          (0 for an empty batch)

with, for T = prefill_tokens + decode_seqs tokens in the batch,

    FLOPs     = 2·P_ne·T                                  every token meets every layer weight once
              + 2·V·h·L                                   LM head on L = decode_seqs + [prefill_tokens > 0]
                                                          rows (only the last prompt token needs logits)
              + 4·layers·h·(prefill_attn + decode_context) attention: QKᵀ and AV cost 2·h FLOPs per
                                                          query–key pair each, per layer
    t_compute = FLOPs / (tp · flops · mfu)

    bytes     = W                                         weights read once per iteration:
                                                          P_ne + LM head + final norm (the embedding
                                                          table is gathered row by row, not streamed)
              + r·kv·decode_context                       decode reads each sequence's whole KV cache
              + r·kv·prefill_attn / q_tile                prefill re-reads the cached keys once per
                                                          query tile of ``q_tile`` rows (FlashAttention
                                                          tiling); exact for tile-sized chunks, an
                                                          underestimate for chunks shorter than a tile
              + r·kv·T                                    the new tokens' K and V are written
              + T·layers·a                                activation traffic, a = 2·dtype·(6h + 2·kv_dim +
                                                          (3 if gated else 2)·ffn): each intermediate of
                                                          a layer written once and read once, no fusion
    t_memory  = bytes / (tp · hbm_bw · mbu)

    t_comm    = 2·layers·(α + 2·(tp−1)/tp · T·h·dtype / link_bw)     if tp > 1
                two ring all-reduces per layer (after attention and after the MLP, Megatron-style),
                each moving T·h activations; not overlapped with compute
    t_overhead = overhead_s                               per-iteration host work (scheduling, input
                                                          preparation, sampling, kernel launches)

where P_ne = layers·layer_params, h = hidden, V = vocab, kv = kv_bytes_per_token and
r = max(1, tp / kv_heads) is the KV replication when there are fewer KV heads than GPUs.

Defaults (assumptions, not measurements): mfu = 0.6 (large bf16 GEMMs on A100/H100 reach
roughly 60–75% of the datasheet peak), mbu = 0.8 (streaming reads reach roughly 80–90% of the
HBM peak), α = 10 µs per all-reduce (NCCL small-message latency inside one NVLink node is of
that order), overhead_s = 2 ms (host-side cost of a step in a Python serving engine is of the
order of milliseconds). Set overhead_s = 0 and tp_comm = False for a pure roofline.

``regime(...)`` says which of t_compute, t_memory is larger. For a decode batch of b sequences
with negligible context the two are equal near b* = (flops·mfu)/(hbm_bw·mbu) · dtype/2
(weights-only: 2·P·b/(F·mfu) = P·dtype/(BW·mbu)).

Memory and transfers:

    kv_capacity_tokens = ⌊(tp·mem_bytes·mem_util − weight_bytes − tp·reserve) / (r·kv)⌋
        mem_util = 0.9 as vLLM's default gpu_memory_utilization; reserve = per-GPU peak live
        activations of one layer for ``max_batch_tokens`` tokens:
        max_batch_tokens·dtype·(4h + (3 if gated else 2)·ffn/tp)
    kv_transfer_time(n)   = latency + n·kv / (tp·link_bw)      every GPU ships its own KV shard
    weight_transfer_time(l) = latency + l·layer_bytes / (tp·link_bw)
    the link is NVLink (``kv_link="nvlink"``, GPUSpec.link_bw), the inter-node NIC
    (``kv_link="network"``, GPUSpec.nic_bw, as in Splitwise) or a bandwidth in B/s.
"""

from __future__ import annotations

from typing import Literal

from .specs import GPUSpec, ModelSpec, check_tp, get_gpu, get_model

__all__ = ["RooflineCostModel"]


def _check_batch(prefill_tokens: float, prefill_attn: float, decode_seqs: float, decode_context: float) -> None:
    if prefill_tokens < 0 or prefill_attn < 0 or decode_seqs < 0 or decode_context < 0:
        raise ValueError(
            "iteration_time arguments must be >= 0, got "
            f"prefill_tokens={prefill_tokens}, prefill_attn={prefill_attn}, "
            f"decode_seqs={decode_seqs}, decode_context={decode_context}"
        )
    if prefill_tokens == 0 and prefill_attn > 0:
        raise ValueError(f"prefill_attn={prefill_attn} > 0 with prefill_tokens=0")
    if prefill_tokens > 0 and prefill_attn < prefill_tokens:
        # each new token attends at least to itself: n·(c + (n+1)/2) >= n
        raise ValueError(f"prefill_attn={prefill_attn} < prefill_tokens={prefill_tokens}; it counts query-key pairs")
    if decode_seqs == 0 and decode_context > 0:
        raise ValueError(f"decode_context={decode_context} > 0 with decode_seqs=0")


class RooflineCostModel:
    """Analytical per-iteration latency from model shape and GPU peaks (formulas in the module docstring)."""

    def __init__(
        self,
        model: str | ModelSpec,
        gpu: str | GPUSpec,
        tp: int = 1,
        mfu: float = 0.6,
        mbu: float = 0.8,
        overhead_s: float = 2e-3,
        tp_comm: bool = True,
        allreduce_latency_s: float = 10e-6,
        kv_link: Literal["nvlink", "network"] | float = "nvlink",
        link_latency_s: float = 10e-6,
        mem_util: float = 0.9,
        max_batch_tokens: int = 8192,
        q_tile: int = 128,
    ) -> None:
        self.model = get_model(model)
        self.gpu = get_gpu(gpu)
        self.tp = check_tp(self.model, tp)
        for name, value in (("mfu", mfu), ("mbu", mbu), ("mem_util", mem_util)):
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if overhead_s < 0 or allreduce_latency_s < 0 or link_latency_s < 0:
            raise ValueError("overhead_s, allreduce_latency_s and link_latency_s must be >= 0")
        if max_batch_tokens < 0 or q_tile < 1:
            raise ValueError("max_batch_tokens must be >= 0 and q_tile >= 1")
        self.mfu, self.mbu = float(mfu), float(mbu)
        self.overhead_s = float(overhead_s)
        self.tp_comm = bool(tp_comm)
        self.allreduce_latency_s = float(allreduce_latency_s)
        self.link_latency_s = float(link_latency_s)
        self.mem_util = float(mem_util)
        self.max_batch_tokens = int(max_batch_tokens)
        self.q_tile = int(q_tile)
        if kv_link == "nvlink":
            self.link_bw = self.gpu.link_bw
        elif kv_link == "network":
            if not self.gpu.nic_bw > 0:
                raise ValueError(f"gpu {self.gpu.name} has no nic_bw for kv_link='network'")
            self.link_bw = self.gpu.nic_bw
        elif isinstance(kv_link, int | float) and not isinstance(kv_link, bool) and kv_link > 0:
            self.link_bw = float(kv_link)
        else:
            raise ValueError(f"kv_link must be 'nvlink', 'network' or a bandwidth in B/s > 0, got {kv_link!r}")
        self.kv_link = kv_link

        m = self.model
        # constants of the formulas, precomputed once (iteration_time is called per simulated step)
        self._flops_per_token = 2.0 * m.params_nonembed
        self._flops_per_logit_row = 2.0 * m.lm_head_params
        self._flops_per_pair = 4.0 * m.layers * m.hidden
        self._weight_read = float(m.params - m.embed_params + (m.lm_head_params if m.tied_embeddings else 0))
        self._weight_read *= m.dtype_bytes
        self._kv_repl = max(1.0, self.tp / m.kv_heads)
        self._kv = m.kv_bytes_per_token * self._kv_repl
        self._act_per_token = (
            m.layers * 2.0 * m.dtype_bytes * (6 * m.hidden + 2 * m.kv_dim + (3 if m.gated_mlp else 2) * m.ffn)
        )
        self._compute_rate = self.tp * self.gpu.flops * self.mfu
        self._memory_rate = self.tp * self.gpu.hbm_bw * self.mbu
        if self.tp > 1 and self.tp_comm:
            self._comm_fixed = 2.0 * m.layers * self.allreduce_latency_s
            self._comm_per_token = (
                2.0 * m.layers * 2.0 * (self.tp - 1) / self.tp * m.hidden * m.dtype_bytes / self.gpu.link_bw
            )
        else:
            self._comm_fixed = self._comm_per_token = 0.0

    def __repr__(self) -> str:
        return (
            f"RooflineCostModel({self.model.name!r}, {self.gpu.name!r}, tp={self.tp}, mfu={self.mfu}, "
            f"mbu={self.mbu}, overhead_s={self.overhead_s})"
        )

    # --- the terms -----------------------------------------------------------------------------
    def flops(self, prefill_tokens: float, prefill_attn: float, decode_seqs: float, decode_context: float) -> float:
        """FLOPs of the iteration (module docstring, "FLOPs")."""
        tokens = prefill_tokens + decode_seqs
        logit_rows = decode_seqs + (1 if prefill_tokens > 0 else 0)
        return (
            self._flops_per_token * tokens
            + self._flops_per_logit_row * logit_rows
            + self._flops_per_pair * (prefill_attn + decode_context)
        )

    def bytes_moved(
        self, prefill_tokens: float, prefill_attn: float, decode_seqs: float, decode_context: float
    ) -> float:
        """HBM bytes of the iteration summed over the tp GPUs (module docstring, "bytes")."""
        tokens = prefill_tokens + decode_seqs
        if tokens == 0:
            return 0.0
        kv_read = self._kv * (decode_context + prefill_attn / self.q_tile)
        return self._weight_read + kv_read + self._kv * tokens + self._act_per_token * tokens

    def breakdown(
        self, prefill_tokens: float, prefill_attn: float, decode_seqs: float, decode_context: float
    ) -> dict[str, float]:
        """All terms: flops, bytes, compute_s, memory_s, comm_s, overhead_s, total_s."""
        _check_batch(prefill_tokens, prefill_attn, decode_seqs, decode_context)
        tokens = prefill_tokens + decode_seqs
        fl = self.flops(prefill_tokens, prefill_attn, decode_seqs, decode_context)
        by = self.bytes_moved(prefill_tokens, prefill_attn, decode_seqs, decode_context)
        compute_s = fl / self._compute_rate
        memory_s = by / self._memory_rate
        comm_s = (self._comm_fixed + self._comm_per_token * tokens) if tokens > 0 else 0.0
        overhead_s = self.overhead_s if tokens > 0 else 0.0
        return {
            "flops": fl,
            "bytes": by,
            "compute_s": compute_s,
            "memory_s": memory_s,
            "comm_s": comm_s,
            "overhead_s": overhead_s,
            "total_s": max(compute_s, memory_s) + comm_s + overhead_s,
        }

    # --- protocol ------------------------------------------------------------------------------
    def iteration_time(self, prefill_tokens: int, prefill_attn: float, decode_seqs: int, decode_context: int) -> float:
        """max(t_compute, t_memory) + t_comm + t_overhead in seconds; 0 for an empty batch."""
        _check_batch(prefill_tokens, prefill_attn, decode_seqs, decode_context)
        tokens = prefill_tokens + decode_seqs
        if tokens == 0:
            return 0.0
        compute_s = self.flops(prefill_tokens, prefill_attn, decode_seqs, decode_context) / self._compute_rate
        memory_s = self.bytes_moved(prefill_tokens, prefill_attn, decode_seqs, decode_context) / self._memory_rate
        return max(compute_s, memory_s) + self._comm_fixed + self._comm_per_token * tokens + self.overhead_s

    def regime(
        self, prefill_tokens: int, prefill_attn: float, decode_seqs: int, decode_context: int
    ) -> Literal["compute", "memory"]:
        """Return "compute" when t_compute >= t_memory, else "memory"."""
        b = self.breakdown(prefill_tokens, prefill_attn, decode_seqs, decode_context)
        return "compute" if b["compute_s"] >= b["memory_s"] else "memory"

    def activation_reserve_bytes(self) -> float:
        """Per-GPU reserve: max_batch_tokens·dtype·(4h + (3 if gated else 2)·ffn/tp)."""
        m = self.model
        return self.max_batch_tokens * m.dtype_bytes * (4 * m.hidden + (3 if m.gated_mlp else 2) * m.ffn / self.tp)

    def kv_capacity_tokens(self) -> int:
        """⌊(tp·mem·mem_util − weight_bytes − tp·reserve) / (r·kv_bytes_per_token)⌋; raises if weights do not fit."""
        usable = self.tp * self.gpu.mem_bytes * self.mem_util
        free = usable - self.model.weight_bytes - self.tp * self.activation_reserve_bytes()
        if free <= 0:
            raise ValueError(
                f"{self.model.name} ({self.model.weight_bytes / 1e9:.1f} GB of weights) leaves no room for KV "
                f"cache on tp={self.tp} x {self.gpu.name} ({usable / 1e9:.1f} GB usable at mem_util "
                f"{self.mem_util}); use a larger tp"
            )
        return int(free // self._kv)

    def kv_transfer_time(self, tokens: int) -> float:
        """latency + tokens·kv_bytes_per_token / (tp·link_bw); 0 for no tokens."""
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        if tokens == 0:
            return 0.0
        return self.link_latency_s + tokens * self.model.kv_bytes_per_token / (self.tp * self.link_bw)

    def weight_transfer_time(self, layers: int) -> float:
        """latency + layers·layer_bytes / (tp·link_bw); 0 for no layers."""
        if not 0 <= layers <= self.model.layers:
            raise ValueError(f"layers must be in [0, {self.model.layers}] for {self.model.name}, got {layers}")
        if layers == 0:
            return 0.0
        return self.link_latency_s + layers * self.model.layer_bytes / (self.tp * self.link_bw)
