"""diffusion — Collapse errors of ODE samplers for diffusion models: library, metrics, experiments."""

__version__ = "0.1.0"
