"""Benchmark: training throughput (tokens/s) and MFU of the seesaw_train transformer.

    .venv/bin/python benchmarks/seesaw_train_throughput.py --config tiny --micro-batch 16 --threads 1
    python benchmarks/seesaw_train_throughput.py --config 150M --micro-batch 16 \\
        --device cuda --dtype bf16 --compile --out benchmarks/results/seesaw_train_throughput_150M.json

One timed step = forward + backward of one micro-batch of random token windows (seq_len + 1 each,
so data loading is not timed), ce + z-loss, gradient clipping to norm 1.0, an AdamW step
(β = (0.9, 0.95), ε = 1e-8, weight decay 0: the Seesaw setup, DESIGN §2) and ``zero_grad``. The
first ``--warmup`` steps (allocator, autotuning, ``torch.compile``) are excluded; the timed region
is bracketed by ``torch.cuda.synchronize()`` on a GPU. Reported: tokens/s over wall time, the same
over the process's CPU time (on a shared CPU machine the wall rate depends on other jobs; with one
thread the CPU-time rate is the one the model itself sustains), and MFU = tokens/s ·
``flops_per_token()`` / peak FLOP/s.

Peak FLOP/s: ``--peak-flops`` when given; on CUDA otherwise by device name — 792e12 (H200) and
800e12 (H100), the dense bf16 matrix-product rates measured on such machines (8192³ products on
random data), not the datasheet's 989e12, so an MFU here is against what the chip delivers to a
large GEMM; on the CPU the rate of a 1024³ fp32 matrix product measured here with the same thread
count (again achieved, not datasheet). On CUDA the optimizer is AdamW(fused=True), with bf16
autocast for ``--dtype bf16``; TF32 matmuls are allowed for ``--dtype fp32``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages" / "seesaw_train" / "src"))
from seesaw_train.model import CONFIGS, Transformer, get_config  # noqa: E402

PEAK_BF16 = {"H200": 792e12, "H100": 800e12}  # measured 8192³ bf16 GEMM rates (see module docstring)


def cuda_peak(name: str) -> float | None:
    for key, value in PEAK_BF16.items():
        if key in name:
            return value
    return None


def cpu_matmul_peak(threads: int, n: int = 1024, repeats: int = 5) -> float:
    """Achieved fp32 GEMM rate (FLOP/s) of an n³ product on this CPU with ``threads`` threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    overrides = {"seq_len": args.seq_len} if args.seq_len else {}
    cfg = get_config(args.config, **overrides)
    model = Transformer(cfg, seed=0).to(device)
    flops_per_token = model.flops_per_token()
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0, fused=fused, foreach=not fused
    )
    step_model = torch.compile(model) if args.compile else model

    gen = torch.Generator(device="cpu").manual_seed(0)
    batch = torch.randint(0, cfg.vocab_size, (args.micro_batch, cfg.seq_len + 1), generator=gen).to(device)
    x, y = batch[:, :-1], batch[:, 1:]

    def step() -> tuple[float, float]:
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32):
            _, ce, z = step_model(x, y)
            loss = ce + z
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return ce, z

    t_compile = time.perf_counter()
    for _ in range(args.warmup):
        ce, z = step()
    sync(device)
    warmup_s = time.perf_counter() - t_compile
    after_warmup_ce = float(ce.detach())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(args.steps):
        ce, z = step()
    sync(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    last_ce, last_z = float(ce.detach()), float(z.detach())

    tokens = args.steps * args.micro_batch * cfg.seq_len
    if args.peak_flops:
        peak, peak_source = args.peak_flops, "--peak-flops"
    elif device.type == "cuda":
        peak = cuda_peak(torch.cuda.get_device_name(device))
        peak_source = "bf16 GEMM rate by device name" if peak else "unknown device: pass --peak-flops"
    else:
        peak, peak_source = cpu_matmul_peak(args.threads), f"measured fp32 1024^3 GEMM, {args.threads} thread(s)"
    tps = tokens / wall
    result = {
        "config": args.config,
        "model": cfg.to_dict(),
        "params_total": model.num_params(non_embedding=False),
        "params_non_embedding": model.num_params(non_embedding=True),
        "flops_per_token": flops_per_token,
        "micro_batch": args.micro_batch,
        "tokens_per_step": args.micro_batch * cfg.seq_len,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "dtype": args.dtype,
        "compile": args.compile,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "warmup_steps": args.warmup,
        "warmup_seconds": warmup_s,
        "timed_steps": args.steps,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "seconds_per_step": wall / args.steps,
        "tokens_per_s": tps,
        "tokens_per_cpu_s": tokens / cpu if device.type == "cpu" else None,
        "model_flops_per_s": tps * flops_per_token,
        "peak_flops": peak,
        "peak_flops_source": peak_source,
        "mfu": tps * flops_per_token / peak if peak else None,
        "mfu_cpu_time": tokens / cpu * flops_per_token / peak if (peak and device.type == "cpu") else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "loss_after_warmup": after_warmup_ce,
        "loss_last": last_ce,
        "z_loss_last": last_z,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if not (torch.isfinite(torch.tensor(last_ce)) and last_ce < after_warmup_ce + 1.0):
        raise RuntimeError(f"loss went from {after_warmup_ce} to {last_ce}: the timed steps did not train")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    parser.add_argument("--micro-batch", type=int, default=16, help="sequences per step")
    parser.add_argument("--seq-len", type=int, default=None, help="override the config's context length")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 = autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU device)")
    parser.add_argument("--peak-flops", type=float, default=None, help="peak FLOP/s for MFU")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    result = run(args)
    mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "n/a"
    extra = f", {result['tokens_per_cpu_s']:,.0f} tokens/CPU-s" if result["tokens_per_cpu_s"] else ""
    print(
        f"{args.config} mb={args.micro_batch} {args.device} {args.dtype}{' compiled' if args.compile else ''}: "
        f"{result['tokens_per_s']:,.0f} tokens/s{extra}, {result['seconds_per_step'] * 1e3:.1f} ms/step, "
        f"MFU {mfu} of {result['peak_flops'] or 0:.3g} FLOP/s ({result['peak_flops_source']}); "
        f"loss {result['loss_after_warmup']:.3f} → {result['loss_last']:.3f}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
