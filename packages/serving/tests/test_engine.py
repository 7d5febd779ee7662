"""The CPU serving engine: model + KV cache, scheduler, checkpoints, tokenizers, and the HTTP server.

Server tests start ``python -m serving.engine`` in subprocesses on free loopback ports (colocated and
disaggregated at once, to overlap their start-up) and talk to them with httpx.

Tolerances: cached (decode) logits against a full recompute agree to float32 rounding — about 1e-6
here, where logits are O(1) — so 1e-4 leaves a wide margin yet would catch any wrong position, mask
or slot (those change logits by O(1e-2) or more). Greedy tokens are compared exactly only where the
arithmetic is the same (same batch shape and thread count); where batch shapes differ, a token counts
as greedy when its logit is within 1e-4 of the row maximum (top-2 gaps of this random model are
≥ 1e-3 in a sample of positions, rounding differences ≈ 1e-6).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the engine needs torch")
httpx = pytest.importorskip("httpx", reason="the engine tests need httpx")
pytest.importorskip("fastapi", reason="the engine server needs fastapi")
pytest.importorskip("uvicorn", reason="the engine server needs uvicorn")

from serving.engine.config import ModelConfig, ModelSpec, load_model_config, named_configs  # noqa: E402
from serving.engine.core import EngineCore, EngineRequest, SamplingParams, generate  # noqa: E402
from serving.engine.model import Decoder, KVCache, build_model, load_state, read_checkpoint  # noqa: E402
from serving.engine.tokenizer import ByteTokenizer, HFTokenizer  # noqa: E402

ATOL = 1e-4
SMALL = ModelConfig(vocab_size=512, seq_len=64, n_layer=2, n_head=2, d_model=32, d_mlp=64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Intra-op threads = 1 for this module (as the engine runs); on a busy 2-core machine more threads
    made these small forwards several times slower. Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny() -> Decoder:
    return Decoder(load_model_config("tiny"), max_len=512, seed=0).eval()


def _prompt(n: int, seed: int, vocab: int = 4096) -> list[int]:
    return torch.randint(1, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


# --------------------------------------------------------------------------------------- model


def test_prefill_and_cached_decode_match_full_forward(tiny):
    """Sequences of different lengths decoded together from a padded slot cache, with one of them leaving
    mid-way (slot compaction): every step's logits equal the full forward of that sequence."""
    seqs = [_prompt(n, s) for s, n in enumerate((5, 23, 61))]
    cache = KVCache(tiny.cfg, slots=3, max_len=512, capacity=8)  # small capacity: growth is exercised
    for slot, s in enumerate(seqs):
        logits, k, v = tiny.prefill(torch.tensor(s))
        full = tiny(torch.tensor(s)[None])[0, -1]
        assert (logits - full).abs().max() < ATOL
        cache.put(slot, k, v)
        s.append(int(logits.argmax()))
    for step in range(8):
        if step == 3:  # the middle sequence leaves; the last one moves into its slot
            cache.move(2, 1, len(seqs[2]) - 1)
            seqs.pop(1)
        tokens = torch.tensor([s[-1] for s in seqs])
        positions = torch.tensor([len(s) - 1 for s in seqs])
        logits = tiny.decode(tokens, positions, cache)
        for b, s in enumerate(seqs):
            full = tiny(torch.tensor(s)[None])[0, -1]
            assert (logits[b] - full).abs().max() < ATOL, (step, b)
            s.append(int(logits[b].argmax()))
    assert cache.capacity >= 61 + 8


def test_full_forward_is_causal(tiny):
    """Changing a later token leaves the logits of earlier positions unchanged."""
    a = torch.tensor([_prompt(20, 1)])
    b = a.clone()
    b[0, 15] = (b[0, 15] + 7) % 4096
    la, lb = tiny(a)[0], tiny(b)[0]
    assert torch.equal(la[:15], lb[:15])
    assert (la[15:] - lb[15:]).abs().max() > 1e-3


def _is_greedy(model: Decoder, prompt: list[int], out: list[int]) -> bool:
    logits = model(torch.tensor(prompt + out[:-1])[None])[0, len(prompt) - 1 :]
    picked = logits.gather(1, torch.tensor(out)[:, None])[:, 0]
    return bool(((logits.max(dim=1).values - picked) <= ATOL).all())


def test_continuous_batching_gives_greedy_tokens(tiny):
    """Five requests through a core of max_batch 3 (admission while others run, finishes at different
    steps) produce greedy continuations of their prompts with exactly max_tokens tokens."""
    reqs = [
        EngineRequest(f"r{i}", _prompt(4 + 9 * i, 10 + i), SamplingParams(max_tokens=3 + 2 * i, temperature=0.0))
        for i in range(5)
    ]
    out = generate(tiny, reqs, max_batch=3)
    for r in reqs:
        assert len(out[r.req_id]) == r.params.max_tokens
        assert _is_greedy(tiny, r.prompt, out[r.req_id]), r.req_id
    # the same requests one at a time (batch of 1, same arithmetic per request) give the same tokens
    alone = {r.req_id: generate(tiny, [r], max_batch=1)[r.req_id] for r in reqs[:2]}
    assert all(alone[k] == out[k] for k in alone)


def test_core_batches_decode_steps(tiny):
    events = []
    core = EngineCore(tiny, max_batch=4, emit=events.append)
    for i in range(4):
        core.add(EngineRequest(f"r{i}", _prompt(8, i), SamplingParams(max_tokens=10, temperature=0.0)))
    while core.step():
        pass
    s = core.stats
    assert s.prefills_total == 4 and s.decode_tokens_total == 4 * 9
    assert s.decode_steps_total == 9  # all four decode together: one step per token position
    assert len(events) == 40 and sum(e.finish_reason == "length" for e in events) == 4


def test_seeded_sampling_is_reproducible(tiny):
    def run(seed: int) -> list[int]:
        r = EngineRequest("a", _prompt(10, 3), SamplingParams(max_tokens=12, temperature=1.0, seed=seed))
        return generate(tiny, [r])["a"]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_eos_stops_unless_ignored():
    model = Decoder(SMALL, max_len=64, seed=0).eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()  # all logits 0: argmax gives the first index, id 0 (the byte EOS)
    stop = EngineRequest("s", [5, 6, 7], SamplingParams(max_tokens=6, temperature=0.0), eos_id=0)
    keep = EngineRequest("k", [5, 6, 7], SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True), eos_id=0)
    out = generate(model, [stop, keep])
    assert out["s"] == [0] and out["k"] == [0] * 6


# --------------------------------------------------------------------------------------- checkpoints


def _lightning_ckpt(path: Path, model: torch.nn.Module, cfg: ModelConfig | None) -> Path:
    """The layout seesaw_train's Lightning checkpoints have: state_dict keys 'model.<param>', the model
    config under 'fulcrum', plus trainer state the loader must ignore."""
    ckpt = {
        "epoch": 0,
        "global_step": 12,
        "state_dict": {f"model.{k}": v.clone() for k, v in model.state_dict().items()},
        "optimizer_states": [],
        "fulcrum": {"wall_clock_s": 1.5, **({"model_config": cfg.to_dict()} if cfg else {})},
    }
    torch.save(ckpt, path)
    return path


def test_lightning_checkpoint_loads_with_its_config(tmp_path):
    src = Decoder(SMALL, max_len=64, seed=11)
    path = _lightning_ckpt(tmp_path / "last.ckpt", src, SMALL)
    spec = ModelSpec(load_model_config("tiny"), max_len=64, checkpoint=str(path)).resolved()
    assert spec.config == SMALL  # the checkpoint's recorded shape wins over --model-config
    model = build_model(spec)
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    x = torch.tensor([_prompt(12, 0, vocab=512)])
    assert torch.equal(model(x), src(x))


def test_checkpoint_shape_mismatch_is_reported(tmp_path):
    path = _lightning_ckpt(tmp_path / "x.ckpt", Decoder(SMALL, seed=0), None)
    state, cfg = read_checkpoint(path)
    assert cfg is None and "blocks.1.mlp.fc.weight" in state and not any(k.startswith("model.") for k in state)
    other = Decoder(ModelConfig(vocab_size=512, seq_len=64, n_layer=2, n_head=2, d_model=32, d_mlp=96))
    with pytest.raises(ValueError, match="shape mismatch.*mlp.fc.weight"):
        load_state(other, state)
    with pytest.raises(ValueError, match="missing"):
        load_state(Decoder(ModelConfig(vocab_size=512, seq_len=64, n_layer=3, n_head=2, d_model=32, d_mlp=64)), state)


def test_seesaw_train_model_loads_into_engine(tmp_path):
    """Cross-package: a real seesaw_train Transformer's weights, saved in its checkpoint layout, give the
    same logits in the engine; the engine's tiny shape and seeded init equal seesaw_train's."""
    st = pytest.importorskip("seesaw_train.model", reason="seesaw_train is not installed (serving installs alone)")
    cfg = st.CONFIGS["tiny"]
    assert named_configs()["tiny"].to_dict() == cfg.to_dict()
    ref = st.Transformer(cfg, seed=5).eval()
    path = _lightning_ckpt(tmp_path / "seesaw.ckpt", ref, ModelConfig.from_dict(cfg.to_dict()))
    model = build_model(ModelSpec(load_model_config("tiny"), max_len=256, checkpoint=str(path)).resolved())
    x = torch.tensor([_prompt(40, 2)])
    with torch.no_grad():
        want = ref(x)[0]
    assert (model(x) - want).abs().max() < 1e-5
    fresh = Decoder(load_model_config("tiny"), seed=5).state_dict()
    assert all(torch.equal(fresh[k], v) for k, v in ref.state_dict().items())


# --------------------------------------------------------------------------------------- tokenizers


def test_byte_tokenizer_round_trip_and_stream():
    tok = ByteTokenizer()
    text = "héllo wörld → ∑ 🙂"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode()) and min(ids) >= 1
    assert tok.decode(ids) == text
    stream = tok.detokenizer()
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) == text
    assert pieces[ids.index(tok.offset + "é".encode()[0])] == ""  # first byte of a 2-byte char: held back
    assert tok.decode([2000]) == "<2000>" and tok.decode([0]) == ""


def test_hf_tokenizer_json(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    tk = tokenizers.Tokenizer(tokenizers.models.BPE())
    tk.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(["the cat sat on the mat"] * 20 + ["naïve café"] * 5, trainer=trainer)
    tk.save(str(tmp_path / "tokenizer.json"))
    tok = HFTokenizer(tmp_path / "tokenizer.json")
    assert tok.eos_id == 0 and tok.vocab_size <= 300
    text = "the naïve cat"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    stream = tok.detokenizer()
    assert "".join(stream.push(i) for i in ids) == text


# --------------------------------------------------------------------------------------- HTTP server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "serving.engine", "--port", str(port), "--threads", "1", *args]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}"


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def _wait_stopped(proc: subprocess.Popen) -> None:
    """Wait for a terminated server; kill it if it hangs."""
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """{"colocated": url, "disaggregated": url}, both tiny random models with the same seed."""
    d = tmp_path_factory.mktemp("servers")
    common = ["--max-batch", "4", "--max-model-len", "512", "--seed", "0"]
    started = {}
    try:
        for mode in ("colocated", "disaggregated"):
            started[mode] = (*_start([*common, "--mode", mode], d / f"{mode}.log"), d / f"{mode}.log")
        for proc, url, log in started.values():
            _wait_healthy(proc, url, log)
        yield {mode: url for mode, (_, url, _) in started.items()}
    finally:
        for proc, _, _ in started.values():
            proc.terminate()  # both at once, then wait for each
        for proc, _, _ in started.values():
            _wait_stopped(proc)


def _complete(url: str, **body) -> dict:
    r = httpx.post(url + "/v1/completions", json=body, timeout=60, trust_env=False)
    assert r.status_code == 200, r.text
    return r.json()


def _metrics(url: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(url + "/metrics", timeout=10, trust_env=False).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name.replace('{model_name="fulcrum-tiny"}', "").replace('model_name="fulcrum-tiny",', "")] = float(
                value
            )
    return out


def test_server_endpoints(servers):
    url = servers["colocated"]
    assert httpx.get(url + "/health", trust_env=False).json() == {"status": "ok"}
    models = httpx.get(url + "/v1/models", trust_env=False).json()
    assert models["data"][0]["id"] == "fulcrum-tiny" and models["data"][0]["max_model_len"] == 512
    text = httpx.get(url + "/metrics", trust_env=False).text
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "fulcrum_engine_generation_tokens_per_second",
    ):
        assert f"# TYPE {name} gauge" in text
        assert f'{name}{{model_name="fulcrum-tiny"}} ' in text


def test_completion_greedy_stream_and_plain_agree(servers):
    url = servers["colocated"]
    prompt = _prompt(30, 4)
    a = _complete(url, prompt=prompt, max_tokens=9, temperature=0, ignore_eos=True)
    b = _complete(url, model="fulcrum-tiny", prompt=[prompt], max_tokens=9, temperature=0, ignore_eos=True)
    ids = a["choices"][0]["token_ids"]
    assert len(ids) == 9 and ids == b["choices"][0]["token_ids"]
    assert a["usage"] == {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}
    assert a["choices"][0]["finish_reason"] == "length"
    body = {"prompt": prompt, "max_tokens": 9, "temperature": 0, "ignore_eos": True, "stream": True}
    body["stream_options"] = {"include_usage": True}
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60, trust_env=False) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    streamed = [c["choices"][0]["token_ids"][0] for c in chunks if c["choices"]]
    assert streamed == ids
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [None] * 8 + ["length"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 9
    # a text prompt is the byte ids + 1
    t = _complete(url, prompt="abc", max_tokens=4, temperature=0)
    u = _complete(url, prompt=[98, 99, 100], max_tokens=4, temperature=0)
    assert t["choices"][0]["token_ids"] == u["choices"][0]["token_ids"] and t["usage"]["prompt_tokens"] == 3


def test_bad_requests(servers):
    url = servers["colocated"]

    def post(body, **kw):
        return httpx.post(url + "/v1/completions", timeout=30, trust_env=False, **({"json": body} | kw))

    assert post({"prompt": [1] * 500, "max_tokens": 20}).status_code == 400  # 520 > max-model-len 512
    assert post({"prompt": [], "max_tokens": 2}).status_code == 400
    assert post({"prompt": [5000], "max_tokens": 2}).status_code == 400  # outside the 4096 ids
    assert post({"prompt": "x", "max_tokens": 0}).status_code == 400
    assert post({"prompt": "x", "n": 2}).status_code == 400
    r = post({"prompt": "x", "model": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    r = httpx.post(url + "/v1/completions", content=b"{not json", timeout=30, trust_env=False)
    assert r.status_code == 400


def test_disaggregated_equals_colocated(servers):
    """Same greedy tokens (and seeded samples) from the prefill→decode hand-over as from one process;
    the KV bytes shipped equal prompt tokens × 2·n_layer·d_model·4."""
    before = _metrics(servers["disaggregated"])
    cases = [
        {"prompt": _prompt(n, 20 + n), "max_tokens": 12, "temperature": 0, "ignore_eos": True} for n in (3, 40, 150)
    ]
    cases.append({"prompt": _prompt(17, 99), "max_tokens": 10, "temperature": 0.8, "seed": 1234, "ignore_eos": True})
    for body in cases:
        a = _complete(servers["colocated"], **body)["choices"][0]["token_ids"]
        b = _complete(servers["disaggregated"], **body)["choices"][0]["token_ids"]
        assert a == b and len(a) == body["max_tokens"]
    after = _metrics(servers["disaggregated"])
    prompt_tokens = sum(len(c["prompt"]) for c in cases)
    kv = load_model_config("tiny").kv_bytes_per_token
    assert after["fulcrum_engine_kv_transfer_bytes_total"] - before["fulcrum_engine_kv_transfer_bytes_total"] == (
        prompt_tokens * kv
    )
    assert after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"] == 46


def test_concurrent_requests_are_batched_and_disconnects_freed(servers):
    url = servers["colocated"]
    before = _metrics(url)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=60, trust_env=False) as client:

            async def one(i: int) -> int:
                body = {"prompt": _prompt(20, i), "max_tokens": 24, "temperature": 0, "ignore_eos": True}
                r = await client.post(url + "/v1/completions", json=body)
                return len(r.json()["choices"][0]["token_ids"])

            return await asyncio.gather(*(one(i) for i in range(4)))

    assert asyncio.run(burst()) == [24] * 4
    after = _metrics(url)
    steps = after["fulcrum_engine_decode_steps_total"] - before["fulcrum_engine_decode_steps_total"]
    tokens = after["fulcrum_engine_decode_tokens_total"] - before["fulcrum_engine_decode_tokens_total"]
    assert tokens == 4 * 23
    # one request at a time would take 92 steps; four sharing steps take ~23 (+ a few while they arrive)
    assert tokens / steps > 1.5, (tokens, steps)
    # a client that leaves mid-stream frees its slot: running goes back to 0
    body = {"prompt": _prompt(10, 5), "max_tokens": 400, "temperature": 0, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60, trust_env=False) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 4:
                break
    deadline = time.monotonic() + 10
    while _metrics(url)["fulcrum_engine_running"] != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    m = _metrics(url)
    assert m["fulcrum_engine_running"] == 0 and m["fulcrum_engine_waiting"] == 0
    assert m["vllm:num_requests_running"] == 0 and m["vllm:num_requests_waiting"] == 0
    # the engine stopped decoding it long before its 400 tokens
    assert m["fulcrum_engine_decode_tokens_total"] - after["fulcrum_engine_decode_tokens_total"] < 300


def test_serve_rejects_bad_arguments(tmp_path):
    from serving.engine import main

    assert main(["--model-config", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "cfg.json").write_text(json.dumps({"n_layer": 2, "bogus": 1}))
    assert main(["--model-config", str(tmp_path / "cfg.json")]) == 2
    assert main(["--checkpoint", str(tmp_path / "none.ckpt")]) == 2
