"""serving — Discrete-event simulator and real benchmark path for disaggregated LLM serving."""

__version__ = "0.1.0"
