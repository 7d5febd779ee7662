"""Prompts of a given token count for the load client.

Two forms (``mode``):

- ``"ids"`` (default, exact): the prompt is a list of token ids, which OpenAI-compatible servers such as
  vLLM and this package's engine accept in ``/v1/completions``; the server then sees exactly
  ``prompt_tokens`` tokens (vLLM may prepend nothing to an id list). Ids are drawn uniformly from
  ``id_range`` = [lo, hi) — the default [1000, 4000) lies inside every common vocabulary (GPT-2,
  Llama, T5, the engine's 4,096 ids) and avoids the low ids where special tokens live.
- ``"text"`` (approximate, for servers that only take strings): words drawn from a fixed list of common
  lowercase English words joined by single spaces. In byte-level BPE vocabularies of the GPT-2/Llama
  kind each " word" is one token, so n words ≈ n tokens, give or take the first word and any BOS token
  the server adds; with other tokenizers the count can differ (the engine's byte tokenizer counts
  bytes) — read ``usage.prompt_tokens`` (the ``server_prompt_tokens`` column) for the true count.

Prefix sharing: when the trace has ``hash_ids`` (Mooncake), block j of a prompt is generated from the
block's hash id alone, so requests that share hash ids share those prompt blocks token for token and a
server's prefix cache sees the trace's sharing. Otherwise every prompt is drawn from its own stream
(seeded by ``seed`` and the request index), so no two prompts share a prefix by construction.
"""

from __future__ import annotations

import numpy as np

from ..traces import Trace

MODES = ("ids", "text")
DEFAULT_ID_RANGE = (1000, 4000)

WORDS = tuple(
    dict.fromkeys(
        """the of and to in is was for on that with as by at from his her an be this are which have or had
    not but one were all their they has been more who there when would its about two other into time can
    only new some could these may first any then like many than over most also such so made after where
    did through well back much before how our good out very year way just work even life each under use
    day world state great own still last part those people long same place high between right both small
    little found down old house area city water school number war group family since never name hand week
    line end point game book music power light order white black green river field paper story money
    music order south north east west table plant stone train river night morning letter market garden
    window village island mountain""".split()
    )
)  # distinct words, order kept


def _unit_stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & (2**63 - 1), *(int(k) & (2**63 - 1) for k in key)])


def prompt_units(trace: Trace, seed: int = 0, n_units: int = 3000) -> list[np.ndarray]:
    """Per request, ``prompt_tokens`` integers in [0, n_units): the abstract prompt (module docstring)."""
    blocks: dict[int, np.ndarray] = {}
    out = []
    B = int(trace.block_tokens)
    for i, n in enumerate(trace.prompt_tokens.tolist()):
        parts: list[np.ndarray] = []
        if trace.hash_ids is not None:
            for h in trace.hash_ids[i]:
                if h not in blocks:
                    blocks[h] = _unit_stream(seed, 1, h).integers(0, n_units, B)
                parts.append(blocks[h])
        have = sum(len(p) for p in parts)
        if have < n:
            parts.append(_unit_stream(seed, 0, i).integers(0, n_units, n - have))
        out.append(np.concatenate(parts)[:n] if parts else np.zeros(0, dtype=np.int64))
    return out


def build_prompts(
    trace: Trace, mode: str = "ids", seed: int = 0, id_range: tuple[int, int] = DEFAULT_ID_RANGE
) -> list[list[int]] | list[str]:
    """One prompt per request of ``trace`` in the form ``mode`` ("ids" → list of ids, "text" → string)."""
    if mode not in MODES:
        raise ValueError(f"prompt mode must be one of {MODES}, got {mode!r}")
    lo, hi = (int(x) for x in id_range)
    if not 0 <= lo < hi:
        raise ValueError(f"id_range must satisfy 0 <= lo < hi, got {id_range}")
    if mode == "ids":
        return [(lo + u).tolist() for u in prompt_units(trace, seed, n_units=hi - lo)]
    return [" ".join(WORDS[k] for k in u.tolist()) for u in prompt_units(trace, seed, n_units=len(WORDS))]
