"""A small real serving engine on the CPU: an OpenAI-compatible HTTP server over a PyTorch decoder.

Modules: ``config`` (model shape and build recipe, no torch), ``protocol`` (request/token messages),
``model`` (decoder with seesaw_train's parameter layout, slot KV cache, checkpoint loading),
``tokenizer`` (byte-level fallback, ``tokenizer.json``), ``core`` (requests, sampling, the
continuous-batching scheduler, colocated engine thread), ``disagg`` (prefill and decode worker
processes with KV hand-over), ``server`` (FastAPI app, ``serve`` command).

``main(argv)`` runs ``serve``; torch, FastAPI and uvicorn are imported only when it is called.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """``serve --model-config {tiny|PATH.json} [--checkpoint PATH] [--port P] ...`` (see ``server.build_parser``)."""
    from .server import main as _main

    return _main(argv)


__all__ = ["main"]
