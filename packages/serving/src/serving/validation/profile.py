"""Profile the CPU engine's scheduler steps and calibrate the simulator's cost models from them.

    python -m serving.validation.profile --model-config tiny --threads 1 --out DIR [--size local] [--mode http]

What the simulator needs
    The simulator prices one *scheduler iteration* (``CostModel.iteration_time``). The engine's iteration
    is ``EngineCore.step`` (serving/engine/core.py): prefill each admitted request one after the other,
    then one batched decode step over every running sequence.

Two ways to measure it (``--mode``)
    http       (default) start the real server (``python -m serving.engine``, the profile's settings), send
               each measurement group as concurrent streaming requests, and read the engine's own counters
               from ``/metrics`` before and after the group (``fulcrum_engine_prefill_seconds_total``,
               ``…_prefills_total``, ``…_decode_seconds_total``, ``…_decode_steps_total``,
               ``…_decode_tokens_total``). These time the prefill (``run_prefill``) and the decode step
               (``EngineCore._decode``) *inside the serving process*, where the engine thread shares the
               GIL with the HTTP front end streaming tokens and the CPU with the client — the conditions of
               the validation run. This is what the simulator has to reproduce, so it is the default.
    inprocess  drive an ``EngineCore`` directly (no HTTP) with a callback in place of the HTTP sink, and
               stamp every emitted token with ``time.perf_counter`` and ``time.thread_time``; in one step
               the emissions come in order (each prefill's first token right after that prefill, then the
               decode step's tokens together), so

                   prefill k   = stamp(first token of k) − stamp(previous emission or step start)
                   decode step = stamp(first decode token) − stamp(last prefill emission or step start)

               This is the engine's intrinsic cost (and gives CPU time too, ``basis="cpu"``). On the 2-core
               machine the in-server counters matched it when the machine was quiet (load 1.8) and were
               1.5–2.5× larger at load 3.5–7 (see serving_validation.md).
    client     any OpenAI-compatible server (vLLM), from the client's clock alone (``_measure_client``):
               ``--base-url`` of a running server or ``--server-command 'vllm serve M --port {port} …'``
               (started, waited for, stopped); the table is named by registry names (``--model-name``,
               ``--hardware``, ``--tp``) so the simulator's ``make_cost_model("table", …, path=…)`` reads it.

Per-group totals (the common schema of all modes, ``groups.csv``)
    A group is b requests sent together, each with ``tokens`` output tokens. For the group we record
    prefills n, their summed time, decode steps S, decode tokens ΣB (= Σ over steps of the batch),
    ΣC = Σ over decoded tokens of the context they attend (the token with index s of a prompt of P tokens
    attends P + s positions, so ΣC = Σ_i Σ_{s=1}^{T−1} (P_i + s) whatever the batching), and the summed
    decode time. Over HTTP the b requests may be admitted over one or two steps (they arrive a few ms
    apart); the totals stay exact, only S (hence the mean batch ΣB/S) reflects it.
    ``decode_padded`` = Σ_{s} b·(max_i P_i + s): the padded length × batch the engine's masked attention
    actually computes (exact in-process, assuming joint admission over HTTP) — a diagnostic, because the
    cost-model protocol passes only Σ context.

Time bases (a profile has a table and a polynomial per basis; ``wall`` is the one the validation uses)
    wall    inprocess: the stamps. http: prefill = counters + the per-request overhead r, decode = the
            steady step period the clients see (``_measure_http``). client: from the client clock only
            (``_measure_client``).
    engine  (http) the engine's counters alone: its compute as it times itself.
    cpu     (inprocess) thread CPU time.

Grid (``SIZES``; reps interleaved and the whole plan shuffled, seeded, so drifts of the background load
spread evenly over settings and held-out groups)
    prompt sweep  batch 1, prompt P in ``prompts``;
    batch sweep   b in ``batches`` (≤ max batch) prompts of ``ref_prompt`` tokens;
    grid          b in ``grid_batches`` prompts of ``grid_prompt`` tokens: large batches at a long context,
                  which the Splitwise design (batch sweep at one prompt size) has no place for — used by the
                  polynomial fit only (the engine's attention cost grows with batch × context, and only such
                  points pin that interaction down);
    held-out      ``holdout`` groups never used by a fit: b uniform in 1..max_batch, each prompt length
                  lognormal(median ref_prompt, sigma 0.8) clipped to the prompt range (mixed lengths in one
                  batch, as in serving), ``holdout_steps`` + 1 output tokens.

Outputs in DIR
    perf_model.csv          the SplitwiseSim table schema (``model,hardware,prompt_size,batch_size,
                            token_size,peak_power,average_power,prompt_time,token_time,e2e_time,
                            tensor_parallel``; ms, wall basis; one row per sweep group, so repeated rows per
                            setting; power columns empty: not measured). prompt_time = the b prefills' sum
                            (the engine's prefill phase of that step); token_time = mean decode step;
                            e2e_time = prompt_time + Σ decode steps. model = ``engine-<config>``, hardware =
                            ``cpu-<threads>t``. ``TableCostModel.from_splitwise_csv(path, model_spec_of(DIR),
                            hardware_spec(DIR), 1)`` reads it and reproduces its averaged rows exactly.
    perf_model_<basis>.csv  the same table in the other bases (perf_model_engine.csv over http,
                            perf_model_cpu.csv in-process).
    groups.csv              the per-group totals above (+ CPU time in-process, client-clock columns otherwise);
    steps.csv               (inprocess only) every single prefill and decode step.
    polynomial.json         DistServe-form coefficients (``PolynomialCostModel``; per basis) fitted by relative,
                            non-negative least squares on the sweep and grid groups. Samples: prefill
                            (N = P, A = P(P+1)/2, time per prompt); decode (ΣB/S, ΣC/S, decode time / S),
                            exact for the affine decode form: Σ_steps (a + b·C_s + c·B_s) = a·S + b·ΣC + c·ΣB.
    profile.json            specs, settings, fit statistics, held-out errors, the chosen model, noise floor,
                            timings (wall, CPU, load average).

Held-out error (decides between the Splitwise table and the polynomial; wall clock)
    prefill: per held-out group, e = Σ_i model(N = P_i, A = P_i(P_i+1)/2) / measured prefill sum − 1;
    decode : per held-out group, e = S · model(B = ΣB/S, C = ΣC/S) / measured decode sum − 1 (exact for the
             polynomial; for the table, whose decode price is not affine, the group's mean step).
    Reported: median |e|, mean e (bias), 90th percentile |e|; the chosen model minimises the mean of the
    prefill and decode median |e|. The table prices a decode step as Tt(batch)·G(mean context), separable,
    while the engine's attention cost grows with batch × context; the polynomial a + b·Σcontext + c·batch
    has that interaction but prices a batch of k prompts with one constant term where the engine pays one
    per prompt. The held-out score says which matters more for this engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..costmodel import GPUSpec, ModelSpec, PolynomialCostModel, RooflineCostModel, TableCostModel
from ..costmodel.specs import GIB, get_gpu, get_model

__all__ = [
    "MODES",
    "SIZES",
    "ProfileSize",
    "evaluate_holdout",
    "hardware_spec",
    "load_cost_model",
    "main",
    "model_spec",
    "model_spec_of",
    "read_profile",
    "run_profile",
]

PERF_CSV = "perf_model.csv"
GROUPS_CSV = "groups.csv"
STEPS_CSV = "steps.csv"
POLY_JSON = "polynomial.json"
PROFILE_JSON = "profile.json"
SPLITWISE_COLUMNS = (
    "model",
    "hardware",
    "prompt_size",
    "batch_size",
    "token_size",
    "peak_power",
    "average_power",
    "prompt_time",
    "token_time",
    "e2e_time",
    "tensor_parallel",
)
KINDS = ("table", "polynomial")
MODES = ("http", "inprocess", "client")
TIME_COLUMNS = {
    "wall": ("prefill_wall_s", "decode_wall_s"),
    "engine": ("prefill_s", "decode_s"),
    "cpu": ("prefill_cpu_s", "decode_cpu_s"),
}
MODE_BASES = {"http": ("wall", "engine"), "inprocess": ("wall", "cpu"), "client": ("wall",)}


def table_file(basis: str) -> str:
    """perf_model.csv for the wall basis, perf_model_<basis>.csv for the others."""
    return PERF_CSV if basis == "wall" else f"perf_model_{basis}.csv"


@dataclass(frozen=True)
class ProfileSize:
    """Grid of one profile size (module docstring)."""

    prompts: tuple[int, ...]
    batches: tuple[int, ...]
    ref_prompt: int
    tokens: int
    reps: int
    holdout: int
    holdout_steps: int
    holdout_sigma: float = 0.8
    grid_prompt: int = 0
    grid_batches: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.ref_prompt not in self.prompts:
            raise ValueError(f"ref_prompt {self.ref_prompt} must be one of prompts {self.prompts}")
        if self.tokens < 2 or self.holdout_steps < 1 or self.reps < 1 or self.holdout < 0:
            raise ValueError("tokens >= 2, holdout_steps >= 1, reps >= 1 and holdout >= 0 are needed")
        if min(self.prompts) < 1 or any(b < 2 for b in (*self.batches, *self.grid_batches)):
            raise ValueError("prompts must be >= 1 and batch sizes of the batch sweep and grid >= 2")
        if self.grid_batches and not min(self.prompts) <= self.grid_prompt <= max(self.prompts):
            raise ValueError(f"grid_prompt {self.grid_prompt} must lie in the prompt range {self.prompts}")


SIZES: dict[str, ProfileSize] = {
    # seconds: every output exercised (tests)
    "ci": ProfileSize(
        prompts=(16, 64, 256),
        batches=(2, 4),
        ref_prompt=64,
        tokens=6,
        reps=1,
        holdout=3,
        holdout_steps=3,
        grid_prompt=256,
        grid_batches=(4,),
    ),
    # < 60 s on one loaded core, server start-up included
    "local": ProfileSize(
        prompts=(16, 64, 128, 256, 512, 1024),
        batches=(2, 4, 8, 16),
        ref_prompt=128,
        tokens=16,
        reps=2,
        holdout=12,
        holdout_steps=8,
        grid_prompt=512,
        grid_batches=(4, 16),
    ),
    # a few minutes: longer prompts, larger batches, more repetitions and held-out groups
    "paper": ProfileSize(
        prompts=(16, 32, 64, 128, 256, 512, 1024, 2048),
        batches=(2, 4, 8, 16, 32),
        ref_prompt=128,
        tokens=64,
        reps=5,
        holdout=100,
        holdout_steps=16,
        grid_prompt=512,
        grid_batches=(4, 8, 16, 32),
    ),
}


# ------------------------------------------------------------------------------------------ specs


def model_spec(engine_config: Any, name: str) -> ModelSpec:
    """The engine's decoder as a cost-model ModelSpec: float32, multi-head attention, GELU MLP, untied head."""
    return ModelSpec(
        name=name,
        layers=int(engine_config.n_layer),
        hidden=int(engine_config.d_model),
        heads=int(engine_config.n_head),
        kv_heads=int(engine_config.n_head),
        ffn=int(engine_config.d_mlp),
        vocab=int(engine_config.vocab_size),
        dtype_bytes=4,
        gated_mlp=False,
        tied_embeddings=False,
        bias=False,
    )


def cpu_hardware(threads: int) -> GPUSpec:
    """A stand-in GPUSpec named ``cpu-<threads>t``. Only its name matters for timing (the table and the
    polynomial carry the measured times); the peaks are nominal placeholders that feed only the roofline's
    KV-capacity/transfer answers, which the validation overrides (capacity = the engine's slots ×
    max_model_len; colocated mode moves no KV)."""
    return GPUSpec(
        name=f"cpu-{int(threads)}t",
        flops=5e10 * threads,  # placeholder: tens of GFLOP/s per core (fp32 SIMD)
        hbm_bw=2e10,  # placeholder: ~20 GB/s DRAM
        mem_bytes=8 * GIB,  # placeholder
        link_bw=1e9,  # placeholder: a local pipe
    )


def _spec_from_dict(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def read_profile(profile_dir: str | Path) -> dict[str, Any]:
    """profile.json of a profile folder (FileNotFoundError naming the file when absent)."""
    path = Path(profile_dir) / PROFILE_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m serving.validation.profile --out {profile_dir}`")
    return json.loads(path.read_text())


def model_spec_of(profile_dir: str | Path) -> ModelSpec:
    """The cost-model ModelSpec recorded in a profile folder."""
    return _spec_from_dict(ModelSpec, read_profile(profile_dir)["model"])


def hardware_spec(profile_dir: str | Path) -> GPUSpec:
    """The stand-in GPUSpec recorded in a profile folder."""
    return _spec_from_dict(GPUSpec, read_profile(profile_dir)["hardware"])


def load_cost_model(profile_dir: str | Path, kind: str = "chosen", basis: str = "wall") -> Any:
    """The calibrated cost model of a profile folder: ``kind`` chosen | table | polynomial, ``basis`` wall | cpu."""
    prof = read_profile(profile_dir)
    if kind == "chosen":
        kind = prof["chosen"]
    if kind not in KINDS:
        raise ValueError(f"cost model kind must be chosen, {' or '.join(KINDS)}; got {kind!r}")
    if basis not in prof["polynomial"]:
        raise ValueError(
            f"basis {basis!r} not in this profile (has {sorted(prof['polynomial'])}; cpu needs --mode inprocess)"
        )
    m = _spec_from_dict(ModelSpec, prof["model"])
    g = _spec_from_dict(GPUSpec, prof["hardware"])
    tp = int(prof.get("tp", 1))
    if kind == "table":
        return TableCostModel.from_splitwise_csv(Path(profile_dir) / table_file(basis), m, g, tp)
    poly = prof["polynomial"][basis]
    return PolynomialCostModel(poly["prefill"], poly["decode"], memory=RooflineCostModel(m, g, tp))


# ------------------------------------------------------------------------------------------ the plan


def _plan(size: ProfileSize, max_batch: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Sweep groups (reps) and held-out groups, shuffled."""
    plan = []
    batches = [b for b in size.batches if b <= max_batch]
    settings = [("sweep", p, 1) for p in size.prompts] + [("sweep", size.ref_prompt, b) for b in batches]
    settings += [("grid", size.grid_prompt, b) for b in size.grid_batches if b <= max_batch]
    for rep in range(size.reps):
        for kind, p, b in settings:
            plan.append({"set": kind, "rep": rep, "lengths": [p] * b, "tokens": size.tokens})
    lo, hi = min(size.prompts), max(size.prompts)
    for h in range(size.holdout):
        b = int(rng.integers(1, max_batch + 1))
        lens = np.rint(size.ref_prompt * np.exp(size.holdout_sigma * rng.standard_normal(b)))
        plan.append(
            {
                "set": "holdout",
                "rep": h,
                "lengths": np.clip(lens, lo, hi).astype(int).tolist(),
                "tokens": size.holdout_steps + 1,
            }
        )
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


def _group_record(g: int, item: dict[str, Any]) -> dict[str, Any]:
    lens, t = item["lengths"], int(item["tokens"])
    s = np.arange(1, t)
    return {
        "set": item["set"],
        "group": g,
        "rep": item["rep"],
        "batch": len(lens),
        "prompt": int(round(float(np.mean(lens)))),
        "lengths": " ".join(map(str, lens)),
        "tokens": t,
        "decode_context": int(sum(int(np.sum(p + s)) for p in lens)),
        "decode_padded": int(len(lens) * np.sum(max(lens) + s)),
    }


# ------------------------------------------------------------------------------------------ in-process


class _Stamps:
    """The engine's emit callback: (wall, thread CPU, request id, token index) per token."""

    def __init__(self) -> None:
        self.events: list[tuple[float, float, str, int]] = []

    def __call__(self, ev: Any) -> None:
        if ev.error:
            raise RuntimeError(ev.error)
        self.events.append((time.perf_counter(), time.thread_time(), ev.req_id, int(ev.index)))


def run_group(core: Any, stamps: _Stamps, prompts: list[list[int]], tokens: int, tag: str) -> tuple[list, list]:
    """Run one group of requests (added together) to completion in ``core``.

    Returns (prefills [(P, wall_s, cpu_s)], decode steps [(B, C, lmax, wall_s, cpu_s)]) with
    C = Σ_i (P_i + s) and lmax = max_i P_i + s for the step producing token index s.
    """
    from ..engine.protocol import EngineRequest, SamplingParams

    if len(prompts) > core.max_batch:
        raise ValueError(f"group of {len(prompts)} exceeds max_batch {core.max_batch}")
    params = SamplingParams(max_tokens=int(tokens), temperature=0.0, ignore_eos=True)
    length = {}
    for i, ids in enumerate(prompts):
        rid = f"{tag}-{i}"
        length[rid] = len(ids)
        core.add(EngineRequest(rid, list(ids), params))
    pre: list[tuple[int, float, float]] = []
    dec: list[tuple[int, int, int, float, float]] = []
    while core.has_work():
        n0 = len(stamps.events)
        t, c = time.perf_counter(), time.thread_time()
        core.step()
        evs = stamps.events[n0:]
        for wt, ct, rid, idx in evs:
            if idx == 0:
                pre.append((length[rid], wt - t, ct - c))
                t, c = wt, ct
        decs = [e for e in evs if e[3] > 0]
        if decs:
            wt, ct, _, s = decs[0]
            ps = [length[rid] for _, _, rid, _ in decs]
            dec.append((len(decs), sum(p + s for p in ps), max(ps) + s, wt - t, ct - c))
    return pre, dec


def _measure_inprocess(plan: list[dict[str, Any]], eng: dict[str, Any], warm: tuple[int, int], rng, progress: bool):
    import torch
    from tqdm.auto import tqdm

    from ..engine.config import ModelSpec as EngineSpec
    from ..engine.config import load_model_config
    from ..engine.core import EngineCore
    from ..engine.model import build_model

    torch.set_num_threads(int(eng["threads"]))
    cfg = load_model_config(eng["model_config"])
    spec = EngineSpec(cfg, max_len=int(eng["max_model_len"]), checkpoint=eng["checkpoint"], seed=int(eng["seed"]))
    spec = spec.resolved()
    stamps = _Stamps()
    core = EngineCore(build_model(spec), max_batch=int(eng["max_batch"]), emit=stamps)

    def ids(n: int) -> list[int]:
        return rng.integers(1000, min(4000, spec.config.vocab_size), n).tolist()

    # warm-up: grow the KV cache to the longest sequence, touch the batched code paths once
    run_group(core, stamps, [ids(warm[0])], warm[1], "warm-long")
    run_group(core, stamps, [ids(warm[0] // 8 + 1) for _ in range(core.max_batch)], 3, "warm-batch")
    groups, steps = [], []
    for g, item in enumerate(tqdm(plan, desc="profile", unit="group", disable=not progress)):
        stamps.events.clear()
        pre, dec = run_group(core, stamps, [ids(n) for n in item["lengths"]], item["tokens"], f"g{g}")
        rec = _group_record(g, item)
        rec |= {
            "prefills": len(pre),
            "prefill_s": sum(x[1] for x in pre),
            "prefill_cpu_s": sum(x[2] for x in pre),
            "decode_steps": len(dec),
            "decode_tokens": sum(x[0] for x in dec),
            "decode_s": sum(x[3] for x in dec),
            "decode_cpu_s": sum(x[4] for x in dec),
            "client_span_s": math.nan,
            "client_ttft_s": math.nan,
        }
        # in-process the stamps already span whole steps and there is no front end
        rec["decode_full_s"] = rec["decode_wall_s"] = rec["decode_s"]
        rec["prefill_wall_s"] = rec["prefill_s"]
        rec["decode_padded"] = sum(x[0] * x[2] for x in dec)  # exact in-process
        groups.append(rec)
        for p, wt, ct in pre:
            steps.append(
                {
                    "group": g,
                    "kind": "prefill",
                    "batch": 1,
                    "prompt": p,
                    "context": 0,
                    "lmax": p,
                    "time_s": wt,
                    "cpu_s": ct,
                }
            )
        for b, c, lmax, wt, ct in dec:
            steps.append(
                {
                    "group": g,
                    "kind": "decode",
                    "batch": b,
                    "prompt": 0,
                    "context": c,
                    "lmax": lmax,
                    "time_s": wt,
                    "cpu_s": ct,
                }
            )
    return pd.DataFrame(groups), pd.DataFrame(steps), spec.config, {}


# ------------------------------------------------------------------------------------------ over HTTP


async def _stream_group(
    base_url: str, prompts: list[list[int]], tokens: int, timeout_s: float, model: str | None = None
) -> list[tuple[float, list[float]]]:
    """Send the prompts concurrently as streaming completions; per request (send time, token arrival times)
    on the ``time.perf_counter`` clock."""
    import httpx

    async def one(client: httpx.AsyncClient, ids: list[int]) -> tuple[float, list[float]]:
        body = {"prompt": ids, "max_tokens": tokens, "temperature": 0.0, "ignore_eos": True, "stream": True}
        if model is not None:
            body["model"] = model
        stamps: list[float] = []
        sent = time.perf_counter()
        async with client.stream("POST", base_url + "/v1/completions", json=body) as resp:
            if resp.status_code != 200:
                raise RuntimeError(f"engine answered {resp.status_code}: {(await resp.aread())[:300]!r}")
            async for line in resp.aiter_lines():
                if line.startswith("data:") and '"choices":[{' in line.replace(" ", ""):
                    stamps.append(time.perf_counter())
        return sent, stamps

    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), trust_env=False) as client:
        return list(await asyncio.gather(*(one(client, p) for p in prompts)))


def steady_step(stamps: list[list[float]]) -> float:
    """The decode step period the clients see once every request of a group runs and none has finished.

    Window: from the latest second token (by then the last-admitted request has had its prefill step) to
    the earliest last token. All running sequences get one token per step (the engine emits a step's tokens
    together), so for each request the period is (its token nearest the window end − its token nearest
    the window start) / (index difference); the median over requests damps delivery jitter. NaN when the
    window holds fewer than two steps."""
    if not stamps or min(len(t) for t in stamps) < 3:
        return math.nan
    start = max(t[1] for t in stamps)
    end = min(t[-1] for t in stamps)
    periods = []
    for t in stamps:
        arr = np.asarray(t)
        j0, j1 = int(np.argmin(np.abs(arr - start))), int(np.argmin(np.abs(arr - end)))
        if j1 - j0 >= 2:
            periods.append((arr[j1] - arr[j0]) / (j1 - j0))
    return float(np.median(periods)) if periods else math.nan


def _measure_http(
    plan: list[dict[str, Any]], eng: dict[str, Any], warm: tuple[int, int], rng, progress: bool, log: Path
):
    """Groups over HTTP. Besides the engine's counters, the client's clock gives, per group,

        client_ttft_s = first token of any request − first send
        client_span_s = last token of all requests − first send

    and then (after all groups) the front-end latency d_fe = median over the batch-1 sweep groups of
    (client TTFT − the engine's prefill time): parsing, hand-over to the engine thread, its wake-up and
    token delivery — per request, outside any engine step. The whole-step decode time the clients see is

        decode_full_s = client_span_s − d_fe − prefill_s

    (from the first send the engine is never idle until the group's last token). It holds the decode
    steps *with* everything the engine's own counters leave out: per step, the scheduler loop and the GIL
    hand-overs to the HTTP thread that frames and sends every token; per request, its HTTP handling while
    the engine works. The two are separated with the steady step period the clients see
    (``steady_step``): ``decode_wall_s`` = steady period × S, and the rest, per request,

        r = median over sweep/grid groups with b ≥ 2 of (decode_full_s − decode_wall_s) / b

    is charged to each request's prefill: ``prefill_wall_s`` = prefill_s + r · prefills. The ``wall``
    basis uses these two columns; ``engine`` is the counters alone."""
    from tqdm.auto import tqdm

    from ..engine.config import load_model_config
    from .run import engine_delta, scrape, start_engine, stop_engine, wait_healthy

    cfg = load_model_config(eng["model_config"])
    proc, url = start_engine(eng, log)
    info: dict[str, Any] = {}
    groups = []

    def ids(n: int) -> list[int]:
        return rng.integers(1000, min(4000, cfg.vocab_size), n).tolist()

    try:
        info["startup_s"] = wait_healthy(proc, url, 180.0, log)
        asyncio.run(_stream_group(url, [ids(warm[0])], warm[1], 600.0))
        asyncio.run(_stream_group(url, [ids(warm[0] // 8 + 1) for _ in range(int(eng["max_batch"]))], 3, 600.0))
        for g, item in enumerate(tqdm(plan, desc="profile", unit="group", disable=not progress)):
            before = scrape(url)
            got = asyncio.run(_stream_group(url, [ids(n) for n in item["lengths"]], item["tokens"], 600.0))
            d = engine_delta(before, scrape(url))
            counts = [len(t) for _, t in got]
            if any(n != item["tokens"] for n in counts) or int(d["prefills_total"]) != len(item["lengths"]):
                raise RuntimeError(f"group {g}: expected {item['tokens']} tokens each, got {counts}; counters {d}")
            first_send = min(sent for sent, _ in got)
            rec = _group_record(g, item)
            rec |= {
                "prefills": int(d["prefills_total"]),
                "prefill_s": d["prefill_seconds_total"],
                "prefill_cpu_s": math.nan,
                "decode_steps": int(d["decode_steps_total"]),
                "decode_tokens": int(d["decode_tokens_total"]),
                "decode_s": d["decode_seconds_total"],
                "decode_cpu_s": math.nan,
                "client_span_s": max(t[-1] for _, t in got) - first_send,
                "client_ttft_s": min(t[0] for _, t in got) - first_send,
                "client_step_s": steady_step([t for _, t in got]),
            }
            groups.append(rec)
    finally:
        info["server"] = stop_engine(proc)
    frame = pd.DataFrame(groups)
    lone = frame[(frame["set"] == "sweep") & (frame["batch"] == 1)]
    fe = (lone["client_ttft_s"] - lone["prefill_s"]).to_numpy(dtype=float)
    info["frontend_s"] = float(np.median(fe)) if fe.size else 0.0
    info["frontend_s_iqr"] = [float(x) for x in np.percentile(fe, [25, 75])] if fe.size else []
    frame["decode_full_s"] = frame["client_span_s"] - info["frontend_s"] - frame["prefill_s"]
    steady = frame["client_step_s"] * frame["decode_steps"]
    frame["decode_wall_s"] = steady.where(np.isfinite(steady), frame["decode_full_s"])
    resid = (frame["decode_full_s"] - frame["decode_wall_s"]) / frame["batch"]
    multi = frame["set"].isin(("sweep", "grid")) & (frame["batch"] >= 2)
    r = float(np.median(resid[multi])) if multi.any() else 0.0
    info["request_overhead_s"] = max(r, 0.0)
    frame["prefill_wall_s"] = frame["prefill_s"] + info["request_overhead_s"] * frame["prefills"]
    return frame, None, cfg, info


def _measure_client(
    plan: list[dict[str, Any]],
    eng: dict[str, Any],
    warm: tuple[int, int],
    rng,
    progress: bool,
    log: Path,
    startup_timeout_s: float,
):
    """Groups against any OpenAI-compatible server (vLLM), from the client's clock alone (no engine counters).

    Per group: first send → the last first token of the group = the prefill phase of its b prompts plus
    the front-end latency d_fe; the steady decode period (``steady_step``) × (tokens − 1) = the decode
    steps (all b requests are assumed admitted together, as a server with a free batch does). d_fe is
    estimated from the batch-1 groups of the shortest prompt: TTFT − one steady step (a forward pass over
    a few prompt tokens costs about one decode step); it is the least certain number of this mode, and
    only the short prompts' prefill depends much on it."""
    from tqdm.auto import tqdm

    from ..bench.command import first_model
    from .run import start_server_command, stop_engine, wait_healthy

    info: dict[str, Any] = {}
    proc = None
    url = eng.get("base_url")
    if eng.get("server_command"):
        proc, url = start_server_command(eng["server_command"], log)
    groups = []

    def ids(n: int) -> list[int]:
        return rng.integers(1000, 4000, n).tolist()

    try:
        if proc is not None:
            info["startup_s"] = wait_healthy(proc, url, startup_timeout_s, log)
        model = first_model(url)
        info["served_model"] = model
        asyncio.run(_stream_group(url, [ids(warm[0])], warm[1], 600.0, model))
        asyncio.run(_stream_group(url, [ids(warm[0] // 8 + 1) for _ in range(int(eng["max_batch"]))], 3, 600.0, model))
        for g, item in enumerate(tqdm(plan, desc="profile", unit="group", disable=not progress)):
            got = asyncio.run(_stream_group(url, [ids(n) for n in item["lengths"]], item["tokens"], 600.0, model))
            counts = [len(t) for _, t in got]
            if any(n != item["tokens"] for n in counts):
                raise RuntimeError(f"group {g}: expected {item['tokens']} tokens each, got {counts}")
            first_send = min(sent for sent, _ in got)
            b, t = len(item["lengths"]), int(item["tokens"])
            rec = _group_record(g, item)
            rec |= {
                "prefills": b,
                "prefill_s": math.nan,
                "prefill_cpu_s": math.nan,
                "decode_steps": t - 1,
                "decode_tokens": b * (t - 1),
                "decode_s": math.nan,
                "decode_cpu_s": math.nan,
                "client_span_s": max(x[-1] for _, x in got) - first_send,
                "client_ttft_s": min(x[0] for _, x in got) - first_send,
                "client_all_first_s": max(x[0] for _, x in got) - first_send,
                "client_step_s": steady_step([x for _, x in got]),
            }
            groups.append(rec)
    finally:
        if proc is not None:
            info["server"] = stop_engine(proc)
    frame = pd.DataFrame(groups)
    lone = frame[(frame["set"] == "sweep") & (frame["batch"] == 1)]
    lone = lone[lone["prompt"] == lone["prompt"].min()]
    fe = (lone["client_ttft_s"] - lone["client_step_s"]).to_numpy(dtype=float)
    info["frontend_s"] = max(float(np.nanmedian(fe)), 0.0) if fe.size else 0.0
    frame["prefill_wall_s"] = (frame["client_all_first_s"] - info["frontend_s"]).clip(lower=1e-6)
    frame["decode_wall_s"] = frame["client_step_s"] * frame["decode_steps"]
    frame["decode_full_s"] = frame["client_span_s"] - info["frontend_s"] - frame["prefill_wall_s"]
    frame["decode_wall_s"] = frame["decode_wall_s"].where(np.isfinite(frame["decode_wall_s"]), frame["decode_full_s"])
    return frame, None, None, info


# ------------------------------------------------------------------------------------------ tables and fits


def splitwise_rows(groups: pd.DataFrame, model: str, hardware: str, basis: str = "wall", tp: int = 1) -> pd.DataFrame:
    """One Splitwise row per sweep group (times in ms)."""
    pcol, dcol = TIME_COLUMNS[basis]
    sweep = groups[groups["set"] == "sweep"].sort_values("group")
    prompt_ms = sweep[pcol].to_numpy(dtype=float) * 1e3
    decode_ms = sweep[dcol].to_numpy(dtype=float) * 1e3
    return pd.DataFrame(
        {
            "model": model,
            "hardware": hardware,
            "prompt_size": sweep["prompt"].to_numpy(dtype=int),
            "batch_size": sweep["batch"].to_numpy(dtype=int),
            "token_size": sweep["tokens"].to_numpy(dtype=int),
            "peak_power": math.nan,
            "average_power": math.nan,
            "prompt_time": prompt_ms,
            "token_time": decode_ms / sweep["decode_steps"].to_numpy(dtype=float),
            "e2e_time": prompt_ms + decode_ms,
            "tensor_parallel": int(tp),
        },
        columns=list(SPLITWISE_COLUMNS),
    )


def _decode_means(groups: pd.DataFrame, dcol: str, context: str = "decode_context") -> np.ndarray:
    s = groups["decode_steps"].to_numpy(dtype=float)
    return np.column_stack(
        [
            groups["decode_tokens"].to_numpy(dtype=float) / s,
            groups[context].to_numpy(dtype=float) / s,
            groups[dcol].to_numpy(dtype=float) / s,
        ]
    )


def fit_polynomial(groups: pd.DataFrame, basis: str, memory: Any) -> PolynomialCostModel:
    """DistServe-form fit on the sweep and grid groups (per-prompt prefill means, per-group mean steps)."""
    pcol, dcol = TIME_COLUMNS[basis]
    sweep = groups[groups["set"].isin(("sweep", "grid"))]
    p = sweep["prompt"].to_numpy(dtype=float)
    pre = np.column_stack(
        [p, p * (p + 1) / 2.0, sweep[pcol].to_numpy(dtype=float) / sweep["prefills"].to_numpy(dtype=float)]
    )
    return PolynomialCostModel.fit(pre, _decode_means(sweep, dcol), memory=memory)


def _err_stats(e: np.ndarray) -> dict[str, float]:
    e = np.asarray(e, dtype=float)
    if e.size == 0:
        return {"n": 0, "median_abs": math.nan, "mean": math.nan, "p90_abs": math.nan}
    a = np.abs(e)
    return {
        "n": int(e.size),
        "median_abs": float(np.median(a)),
        "mean": float(e.mean()),
        "p90_abs": float(np.percentile(a, 90)),
    }


def evaluate_holdout(model: Any, groups: pd.DataFrame, basis: str = "wall") -> dict[str, Any]:
    """Held-out relative errors of ``model`` (module docstring), plus the padded-context diagnostic."""
    pcol, dcol = TIME_COLUMNS[basis]
    ho = groups[groups["set"] == "holdout"]
    e_p, e_d, e_pad = [], [], []
    for row in ho.itertuples():
        lens = [int(x) for x in str(row.lengths).split()]
        pred = sum(model.iteration_time(n, n * (n + 1) / 2.0, 0, 0) for n in lens)
        e_p.append(pred / float(getattr(row, pcol)) - 1.0)
    for ctx, errs in (("decode_context", e_d), ("decode_padded", e_pad)):
        for (b, c, t), s in zip(_decode_means(ho, dcol, ctx), ho["decode_steps"].to_numpy(dtype=float), strict=True):
            errs.append(model.iteration_time(0, 0.0, b, c) / t - 1.0 if s > 0 else math.nan)
    sp, sd = _err_stats(np.asarray(e_p)), _err_stats(np.asarray(e_d))
    return {
        "prefill": sp,
        "decode": sd,
        "score": float(np.nanmean([sp["median_abs"], sd["median_abs"]])),
        # diagnostic only (the simulator cannot pass it): the decode priced at the padded context
        # batch × (longest sequence) that the engine's masked attention computes, instead of Σ context
        "decode_padded_context": _err_stats(np.asarray(e_pad)),
    }


def noise_floor(groups: pd.DataFrame, basis: str = "wall") -> dict[str, float]:
    """Median over sweep settings of the coefficient of variation across repetitions (prefill sum, mean step)."""
    pcol, dcol = TIME_COLUMNS[basis]
    sweep = groups[groups["set"] == "sweep"].assign(step=lambda f: f[dcol] / f["decode_steps"])
    if sweep["rep"].nunique() < 2:
        return {"prefill_cv": math.nan, "decode_cv": math.nan}
    cv = sweep.groupby(["prompt", "batch"])[[pcol, "step"]].agg(lambda x: float(np.std(x) / np.mean(x)))
    return {"prefill_cv": float(cv[pcol].median()), "decode_cv": float(cv["step"].median())}


def run_profile(
    out: str | Path,
    *,
    model_config: str = "tiny",
    threads: int = 1,
    size: str | ProfileSize = "local",
    mode: str = "http",
    max_batch: int = 16,
    max_model_len: int = 8192,
    seed: int = 0,
    checkpoint: str | None = None,
    progress: bool = True,
    base_url: str | None = None,
    server_command: str | None = None,
    model_name: str | None = None,
    hardware: str | None = None,
    tp: int = 1,
    startup_timeout_s: float = 180.0,
) -> dict[str, Any]:
    """Measure, write the outputs of the module docstring into ``out``, return profile.json's content.

    ``mode="client"`` profiles another server (``base_url`` or ``server_command``); its table and
    polynomial are named by the registry ``model_name`` / ``hardware`` at ``tp`` (e.g. llama3-8b,
    h100-80gb, 1), so that ``make_cost_model("table", model_name, hardware, tp, path=...)`` reads them."""
    if threads < 1 or max_batch < 1:
        raise ValueError("threads and max_batch must be >= 1")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
        size_name, grid = size, SIZES[size]
    else:
        size_name, grid = "custom", size
    if max(grid.prompts) + max(grid.tokens, grid.holdout_steps + 1) > max_model_len:
        raise ValueError(
            f"prompts up to {max(grid.prompts)} plus the output tokens exceed max_model_len {max_model_len}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if mode == "client":
        if (base_url is None) == (server_command is None):
            raise ValueError("mode client needs --base-url or --server-command (one of them)")
        if model_name is None or hardware is None:
            raise ValueError("mode client needs --model-name and --hardware (registry names for the table)")
        m_client, g_client = get_model(model_name), get_gpu(hardware)
        eng = {
            "base_url": base_url,
            "server_command": server_command,
            "max_batch": int(max_batch),
            "max_model_len": int(max_model_len),
        }
    else:
        eng = {
            "model_config": str(model_config),
            "threads": int(threads),
            "max_batch": int(max_batch),
            "max_model_len": int(max_model_len),
            "seed": int(seed),
            "checkpoint": checkpoint,
        }
    rng = np.random.default_rng(seed)
    plan = _plan(grid, max_batch, rng)
    warm = (max(grid.prompts), grid.tokens)
    load0, w0, c0 = os.getloadavg(), time.perf_counter(), time.process_time()
    if mode == "http":
        groups, steps, cfg, server = _measure_http(plan, eng, warm, rng, progress, out / "server.log")
    elif mode == "client":
        groups, steps, cfg, server = _measure_client(
            plan, eng, warm, rng, progress, out / "server.log", startup_timeout_s
        )
    else:
        groups, steps, cfg, server = _measure_inprocess(plan, eng, warm, rng, progress)
    wall, cpu, load1 = time.perf_counter() - w0, time.process_time() - c0, os.getloadavg()
    if mode == "client":
        m, g = m_client, g_client
    else:
        stem = Path(model_config).stem if str(model_config).endswith(".json") else str(model_config)
        m, g, tp = model_spec(cfg, f"engine-{stem}"), cpu_hardware(threads), 1
    bases = MODE_BASES[mode]
    groups.to_csv(out / GROUPS_CSV, index=False)
    if steps is not None:
        steps.to_csv(out / STEPS_CSV, index=False)
    stale = [table_file(b) for m_, bs in MODE_BASES.items() for b in bs if m_ != mode and b not in bases]
    for name in stale + ([STEPS_CSV] if mode == "http" else []):  # left by a profile in the other mode
        (out / name).unlink(missing_ok=True)
    memory = RooflineCostModel(m, g, tp)
    poly, holdout, noise = {}, {}, {}
    for basis in bases:
        csv = out / table_file(basis)
        splitwise_rows(groups, m.name, g.name, basis, tp).to_csv(csv, index=False)
        pm = fit_polynomial(groups, basis, memory)
        poly[basis] = {"prefill": list(pm.prefill), "decode": list(pm.decode), "fit_stats": pm.fit_stats}
        table = TableCostModel.from_splitwise_csv(csv, m, g, tp)
        holdout[basis] = {
            "table": evaluate_holdout(table, groups, basis),
            "polynomial": evaluate_holdout(pm, groups, basis),
        }
        noise[basis] = noise_floor(groups, basis)
    form = "prefill = a + b*N + c*(2A - N); decode = a + b*C + c*B (seconds; DistServe, arXiv 2401.09670)"
    (out / POLY_JSON).write_text(
        json.dumps(poly | {"form": form, "model": m.name, "hardware": g.name}, indent=2) + "\n"
    )
    scores = {k: holdout["wall"][k]["score"] for k in KINDS}
    chosen = min(KINDS, key=lambda k: (scores[k] if math.isfinite(scores[k]) else math.inf, k))
    files = {"groups": GROUPS_CSV, "polynomial": POLY_JSON} | {f"table_{b}": table_file(b) for b in bases}
    if mode == "inprocess":
        files["steps"] = STEPS_CSV
    summary = {
        "mode": mode,
        "model": asdict(m),
        "hardware": asdict(g),
        "tp": int(tp),
        "engine": eng
        | ({"engine_config": cfg.to_dict()} if cfg is not None else {"served_model": server.get("served_model")}),
        "size": {"name": size_name, **asdict(grid)},
        "files": files,
        "polynomial": poly,
        "holdout": holdout,
        "chosen": chosen,
        "chosen_by": "lowest mean of prefill and decode median |relative error| on held-out groups, wall clock",
        "noise": noise,
        "frontend_s": float(server.get("frontend_s", 0.0)),
        "request_overhead_s": float(server.get("request_overhead_s", 0.0)),
        "frontend_note": (
            "median over batch-1 groups of client TTFT − engine prefill (per-request latency outside engine steps)"
            if mode == "http"
            else "client TTFT of the shortest batch-1 prompt − one steady decode step"
            if mode == "client"
            else "not measured in-process (no HTTP front end): 0"
        ),
        "groups": {k: int((groups["set"] == k).sum()) for k in ("sweep", "grid", "holdout")},
        "timing": {
            "wall_s": wall,
            "profiler_cpu_s": cpu,
            "server": {k: v for k, v in server.items() if not k.startswith("frontend")},
            "loadavg_start": list(load0),
            "loadavg_end": list(load1),
            "cpu_count": os.cpu_count(),
        },
    }
    (out / PROFILE_JSON).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


# ------------------------------------------------------------------------------------------ command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m serving.validation.profile",
        description="Profile the CPU engine's prefill and decode steps; write a Splitwise table and a polynomial.",
    )
    p.add_argument("--model-config", default="tiny", help="engine model shape: a name (tiny) or a JSON file")
    p.add_argument("--checkpoint", default=None, help="engine checkpoint (weights do not change timings)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the engine's --threads)")
    p.add_argument("--max-batch", type=int, default=16, help="the engine's --max-batch (largest decode batch)")
    p.add_argument("--max-model-len", type=int, default=8192, help="the engine's --max-model-len")
    p.add_argument("--size", choices=sorted(SIZES), default="local", help="grid size (ci: seconds, local: < 1 min)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="http",
        help="the CPU engine timed inside its server (http) or bare (inprocess); another server, client clock only",
    )
    p.add_argument("--base-url", default=None, help="client mode: a running server")
    p.add_argument(
        "--server-command", default=None, help="client mode: start this server, e.g. 'vllm serve M --port {port}'"
    )
    p.add_argument("--model-name", default=None, help="client mode: the served model's registry name (llama3-8b, ...)")
    p.add_argument("--hardware", default=None, help="client mode: the GPU's registry name (h100-80gb, ...)")
    p.add_argument("--tp", type=int, default=1, help="client mode: the server's tensor-parallel degree")
    p.add_argument("--startup-timeout-s", type=float, default=180.0, help="client mode: wait this long for /health")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("threads", "max_batch", "max_model_len"):
        if getattr(args, name) < 1:
            print(
                f"profile: error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}", file=sys.stderr
            )
            return 2
    try:
        summary = run_profile(
            args.out,
            model_config=args.model_config,
            threads=args.threads,
            size=args.size,
            mode=args.mode,
            max_batch=args.max_batch,
            max_model_len=args.max_model_len,
            seed=args.seed,
            checkpoint=args.checkpoint,
            progress=not args.no_progress,
            base_url=args.base_url,
            server_command=args.server_command,
            model_name=args.model_name,
            hardware=args.hardware,
            tp=args.tp,
            startup_timeout_s=args.startup_timeout_s,
        )
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"profile: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"profile: failed: {exc}", file=sys.stderr)
        return 1
    for basis, per_kind in summary["holdout"].items():
        for kind, h in per_kind.items():
            print(
                f"{basis:4s} {kind:10s} held-out median |err|: prefill {h['prefill']['median_abs']:.1%}, "
                f"decode {h['decode']['median_abs']:.1%} "
                f"(bias {h['prefill']['mean']:+.1%} / {h['decode']['mean']:+.1%}; "
                f"padded-context decode {h['decode_padded_context']['median_abs']:.1%})"
            )
    t = summary["timing"]
    print(
        f"chosen: {summary['chosen']}; {summary['mode']} profile in {t['wall_s']:.1f} s wall "
        f"(load average {t['loadavg_start'][0]:.1f} → {t['loadavg_end'][0]:.1f}); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
