"""Entities of the serving simulator: requests, the prefix cache over KV blocks, and links.

All classes use ``__slots__`` and plain Python numbers: the simulator touches them in its hot loop,
where attribute access on a slotted object is the cheapest state Python offers.

Token bookkeeping of one request (the invariants every part of the simulator keeps):

* ``computed`` — tokens whose KV sits in the cache of the instance holding the request (prefix-cache
  hits included). Before a decode iteration ``computed = prompt + generated − 1``: the newest output
  token has been sampled but its KV is written by the next iteration.
* ``target`` — tokens a prefill must cover before the request decodes: ``prompt`` on first admission,
  ``prompt + generated`` after a preemption by recompute (the KV of everything is rebuilt and the
  prefill samples the next token).
* ``generated`` — output tokens produced so far; the prefill that reaches ``target`` produces one.
* ``blocks`` — private KV blocks of ``block_size`` tokens: ``ceil((computed − shared_tok)/block_size)``
  rounded up to cover the tokens being written, where ``shared_tok`` tokens live in prefix-cache
  blocks shared with other requests.
"""

from __future__ import annotations

# request states
WAITING = 0  # queued at an instance (or in transit before the first enqueue)
RUNNING = 1  # admitted: holds KV blocks, is scheduled every iteration
TRANSFER = 2  # prefill done on a prefill instance, KV cache on its way to a decode instance
DONE = 3
FAILED = 4

STATE_NAMES = {WAITING: "waiting", RUNNING: "running", TRANSFER: "transfer", DONE: "finished", FAILED: "failed"}


class Request:
    """One request of a trace and everything the simulator records about it (times in seconds)."""

    __slots__ = (
        "rid",
        "arrival",
        "prompt",
        "output",
        "hash_ids",
        "state",
        "target",
        "computed",
        "generated",
        "shared_tok",
        "n_shared",
        "blocks",
        "fresh",
        "recomputing",
        "last_token_s",
        "first_token_s",
        "finish_s",
        "sched_s",
        "prefill_start_s",
        "instance",
        "decode_instance",
        "preemptions",
        "cached_tokens",
        "prefill_computed",
        "recomputed",
        "kv_transfer_s",
        "migrate_to",
    )

    def __init__(self, rid: int, arrival: float, prompt: int, output: int, hash_ids: tuple[int, ...] | None = None):
        self.rid = rid
        self.arrival = arrival
        self.prompt = prompt
        self.output = output
        self.hash_ids = hash_ids or None
        self.state = WAITING
        self.target = prompt
        self.computed = 0
        self.generated = 0
        self.shared_tok = 0
        self.n_shared = 0
        self.blocks = 0
        self.fresh = False  # joined the running set with KV already present: next token's ITL is a gap
        self.recomputing = False  # prefilling again after a preemption (its output tokens kept)
        self.last_token_s = -1.0  # time of the newest output token, kept when the request leaves a batch
        self.first_token_s = -1.0
        self.finish_s = -1.0
        self.sched_s = -1.0  # first time it was admitted to a batch
        self.prefill_start_s = -1.0
        self.instance = -1  # instance that ran (or runs) its prefill
        self.decode_instance = -1  # instance that decoded it (== instance when colocated)
        self.preemptions = 0
        self.cached_tokens = 0  # prompt tokens served by the prefix cache at first admission
        self.prefill_computed = 0  # tokens computed in prefill chunks (recompute included)
        self.recomputed = 0  # of which after a preemption
        self.kv_transfer_s = 0.0  # latency added by KV-cache transfers (P/D hand-off, migration)
        self.migrate_to = None  # set by a policy: hand the request over after its in-flight iteration

    def __repr__(self) -> str:
        return (
            f"Request(rid={self.rid}, state={STATE_NAMES[self.state]}, prompt={self.prompt}, output={self.output}, "
            f"computed={self.computed}, generated={self.generated})"
        )


class PrefixCache:
    """Prefix cache keyed by the trace's prefix-block ids, with LRU eviction of unreferenced blocks.

    One entry stands for ``entry_blocks`` KV blocks (a trace block of ``block_tokens`` tokens). An
    entry referenced by a running request counts as used memory; an unreferenced entry stays
    resident (a later hit reuses it) but is evictable, least recently released first. A request's
    hit is the longest run of leading ids present, capped so that at least one prompt token is
    computed (the prefill must produce logits). Memory counters live in the owning instance; the
    methods return the block deltas so the instance can keep ``used`` exact.
    """

    __slots__ = ("refs", "lru", "lru_blocks", "entry_blocks", "block_tokens", "hit_tokens", "lookups", "evictions")

    # False: entries live in the owning instance's HBM (this class). True (a subclass, e.g. BanaServe's
    # global KV store): entries live outside every instance and may be shared by several; a hit is
    # copied into the admitting request's private blocks (``match`` reports every hit as unreferenced
    # so admission reserves them), ``release`` frees only the request's copy, and the copy's loading
    # time ``load_extra(tokens, compute_s)`` is added to the iteration that admits the request.
    remote = False

    def __init__(self, block_tokens: int, block_size: int):
        self.block_tokens = block_tokens
        self.entry_blocks = -(-block_tokens // block_size)
        self.refs: dict[int, int] = {}  # id -> number of running requests referencing it
        self.lru: dict[int, None] = {}  # unreferenced ids, oldest first (dicts keep insertion order)
        self.lru_blocks = 0
        self.hit_tokens = 0
        self.lookups = 0
        self.evictions = 0

    def match(self, ids: tuple[int, ...], max_ids: int) -> tuple[int, int]:
        """(hits, unreferenced hits): leading ids of ``ids[:max_ids]`` resident in the cache."""
        refs = self.refs
        h = 0
        unref = 0
        for hid in ids[:max_ids]:
            r = refs.get(hid)
            if r is None:
                break
            h += 1
            if r == 0:
                unref += 1
        return h, unref

    def acquire(self, ids: tuple[int, ...], h: int) -> None:
        """Reference the first ``h`` ids (all resident); unreferenced ones leave the LRU list."""
        refs = self.refs
        lru = self.lru
        for hid in ids[:h]:
            r = refs[hid]
            if r == 0:
                del lru[hid]
                self.lru_blocks -= self.entry_blocks
            refs[hid] = r + 1

    def release(self, ids: tuple[int, ...], h: int) -> None:
        """Drop one reference from each of the first ``h`` ids; the deepest block is released first so
        that prefix heads become the most recently used and are evicted last."""
        refs = self.refs
        lru = self.lru
        for hid in reversed(ids[:h]):
            r = refs[hid] - 1
            refs[hid] = r
            if r == 0:
                lru[hid] = None
                self.lru_blocks += self.entry_blocks

    def insert(self, ids: tuple[int, ...], h0: int, h1: int) -> tuple[int, int]:
        """Publish ids ``h0..h1-1`` computed by a request and reference them.

        Returns (duplicates, revived): ids already resident (the request's private copy is freed) and,
        of those, ones that were unreferenced (their blocks move from the LRU list back to used).
        """
        refs = self.refs
        lru = self.lru
        dup = 0
        revived = 0
        for hid in ids[h0:h1]:
            r = refs.get(hid)
            if r is None:
                refs[hid] = 1
                continue
            dup += 1
            if r == 0:
                del lru[hid]
                self.lru_blocks -= self.entry_blocks
                revived += 1
            refs[hid] = r + 1
        return dup, revived

    def evict(self, blocks: int) -> None:
        """Evict unreferenced entries, least recently used first, until ``blocks`` blocks are freed."""
        refs = self.refs
        lru = self.lru
        freed = 0
        while freed < blocks and lru:
            hid = next(iter(lru))
            del lru[hid]
            del refs[hid]
            freed += self.entry_blocks
            self.evictions += 1
        self.lru_blocks -= freed


class Link:
    """A FIFO transfer channel (one per sending instance): transfers queue behind each other.

    ``send(ready_s, duration_s)`` starts a transfer at ``max(ready_s, busy_until)`` and returns its end.
    The duration comes from the cost model's ``kv_transfer_time``/``weight_transfer_time``.
    """

    __slots__ = ("busy_until", "busy_s", "transfers")

    def __init__(self) -> None:
        self.busy_until = 0.0
        self.busy_s = 0.0
        self.transfers = 0

    def send(self, ready_s: float, duration_s: float) -> float:
        start = ready_s if ready_s > self.busy_until else self.busy_until
        end = start + duration_s
        self.busy_until = end
        self.busy_s += duration_s
        self.transfers += 1
        return end


def layerwise_extra(transfer_s: float, compute_s: float, layers: int) -> float:
    """Latency a layer-wise pipelined transfer adds after a prefill of ``compute_s`` seconds.

    With L equal layers, layer l's KV (transfer T_x/L) leaves once layer l is computed (at l·T_p/L)
    and the link sends layers in order, so the last byte lands at
    max_l [l·T_p/L + (L − l + 1)·T_x/L] = T_p + max(T_x/L, T_x − T_p·(L − 1)/L):
    the added latency is ``max(T_x/L, T_x − T_p·(L−1)/L)`` (= T_x without overlap when L = 1).
    """
    layers = max(int(layers), 1)
    return max(transfer_s / layers, transfer_s - compute_s * (layers - 1) / layers)
