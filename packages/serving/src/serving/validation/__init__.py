"""Profile → calibrate → validate: does the simulator, calibrated on the real CPU engine, predict it?

Modules:

- ``profile``  — time the engine's scheduler steps (inside its server by default; bare in-process; or any
  OpenAI-compatible server such as vLLM from the client clock), write a SplitwiseSim-schema table
  (``perf_model.csv``), fit the DistServe-form polynomial (``polynomial.json``), score both on held-out
  groups (``profile.json``); ``python -m serving.validation.profile``.
- ``run``      — start the engine (or ``--server-command``, e.g. ``vllm serve``) as a subprocess, measure
  its saturation throughput with a burst, replay a Poisson trace at a fraction of it with the load client,
  stop the server; ``python -m serving.validation.run``.
- ``compare``  — simulate the very trace the engine served with the calibrated cost model and an
  engine-like scheduler configuration, compare the latency distributions.
- ``sim_validation`` — the fulcrum experiment (``python -m serving run sim_validation``) with claims.

Importing this package imports neither torch nor the HTTP stack.
"""

from __future__ import annotations

__all__: list[str] = []
