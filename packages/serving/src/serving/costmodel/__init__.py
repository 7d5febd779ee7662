"""Per-iteration latency models for the serving simulator.

Three implementations of the :class:`~serving.costmodel.specs.CostModel` protocol:

* ``roofline``   — :class:`RooflineCostModel`, analytical from model shape and GPU peaks;
* ``polynomial`` — :class:`PolynomialCostModel`, DistServe's fitted form (coefficients given, or
  fitted to a roofline/table model's predictions);
* ``table``      — :class:`TableCostModel`, log–log interpolation of a Splitwise profile CSV.

``make_cost_model(kind, model, gpu, tp, **kw)`` builds one by name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .polynomial import PolynomialCostModel, default_grid
from .roofline import RooflineCostModel
from .specs import GPUS, MODELS, CostModel, GPUSpec, ModelSpec, check_tp, get_gpu, get_model, prefill_attn_pairs
from .table import TableCostModel, TableError

__all__ = [
    "GPUS",
    "KINDS",
    "MODELS",
    "CostModel",
    "GPUSpec",
    "ModelSpec",
    "PolynomialCostModel",
    "RooflineCostModel",
    "TableCostModel",
    "TableError",
    "default_splitwise_csv",
    "get_gpu",
    "get_model",
    "make_cost_model",
    "prefill_attn_pairs",
]

KINDS = ("roofline", "polynomial", "table")
SPLITWISE_CSV = Path("data/perf/splitwise_perf_model.csv")


def default_splitwise_csv() -> Path | None:
    """$FULCRUM_SHARED/data/perf/splitwise_perf_model.csv when that variable is set and the file exists."""
    shared = os.environ.get("FULCRUM_SHARED")
    if shared and (Path(shared) / SPLITWISE_CSV).is_file():
        return Path(shared) / SPLITWISE_CSV
    return None


def make_cost_model(kind: str, model: str | ModelSpec, gpu: str | GPUSpec, tp: int = 1, **kw: Any) -> CostModel:
    """Build a cost model by kind.

    roofline:   ``kw`` → RooflineCostModel (mfu, mbu, overhead_s, tp_comm, kv_link, …).
    polynomial: ``prefill=(a, b, c), decode=(a, b, c)`` given → those coefficients (other ``kw`` go
                to the roofline that serves KV queries); otherwise fitted with ``fit_to`` =
                "roofline" (default; remaining ``kw`` → RooflineCostModel; ``grid`` defaults to
                default_grid()) or "table" (``path`` and remaining ``kw`` → TableCostModel; ``grid``
                defaults to the table's own measured settings, TableCostModel.grid()).
    table:      ``path`` to a Splitwise CSV (default: $FULCRUM_SHARED/data/perf/…), ``monotone``,
                remaining ``kw`` → the delegate RooflineCostModel.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown cost model kind {kind!r}; available: {', '.join(KINDS)}")
    m, g = get_model(model), get_gpu(gpu)
    check_tp(m, tp)
    if kind == "roofline":
        return RooflineCostModel(m, g, tp, **kw)
    if kind == "table":
        return _make_table(m, g, tp, **kw)
    if "prefill" in kw or "decode" in kw:
        if "prefill" not in kw or "decode" not in kw:
            raise ValueError("polynomial cost model needs both prefill=(a, b, c) and decode=(a, b, c)")
        return PolynomialCostModel(kw.pop("prefill"), kw.pop("decode"), model=m, gpu=g, tp=tp, **kw)
    fit_to = kw.pop("fit_to", "roofline")
    grid = kw.pop("grid", None)
    if fit_to == "roofline":
        base: CostModel = RooflineCostModel(m, g, tp, **kw)
        grid = grid or default_grid()
    elif fit_to == "table":
        table = _make_table(m, g, tp, **kw)
        base, grid = table, grid or table.grid()
    else:
        raise ValueError(f"fit_to must be 'roofline' or 'table', got {fit_to!r}")
    return PolynomialCostModel.from_cost_model(base, grid)


def _make_table(m: ModelSpec, g: GPUSpec, tp: int, path: str | Path | None = None, **kw: Any) -> TableCostModel:
    if path is None:
        path = default_splitwise_csv()
        if path is None:
            raise ValueError(
                "table cost model needs path= to a Splitwise perf-model CSV "
                "(or FULCRUM_SHARED pointing at a folder with data/perf/splitwise_perf_model.csv)"
            )
    return TableCostModel.from_splitwise_csv(path, m, g, tp, **kw)
