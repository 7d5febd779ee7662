"""The claims ledger: a paper's claim, our measured number, and a verdict computed from them.

Each experiment's ``summary.json`` carries a list of claim records. A record holds the paper
(arXiv id), the claim in words, the predicted value, the measured value, a tolerance and the
comparison that decides the verdict. The verdict is always computed here from those numbers,
never typed in by an experiment:

- ``within``   — reproduced iff |measured − predicted| ≤ tolerance (``relative``: divided by
  |predicted|);
- ``at_most``  — reproduced iff measured ≤ predicted + tolerance;
- ``at_least`` — reproduced iff measured ≥ predicted − tolerance.

A claim whose measurement is missing or not finite, or whose experiment says the scale is too
small to test it (``untestable_reason``), gets "not testable at this scale".
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_TESTABLE = "not testable at this scale"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE)
COMPARISONS = ("within", "at_most", "at_least")
LEDGER_COLUMNS = (
    "package",
    "experiment",
    "paper",
    "claim",
    "predicted",
    "measured",
    "tolerance",
    "accept_if",
    "verdict",
    "note",
)


@dataclass(frozen=True)
class Claim:
    paper: str
    claim: str
    predicted: float
    measured: float | None
    tolerance: float
    comparison: str = "within"
    relative: bool = False
    untestable_reason: str | None = None

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"comparison must be one of {COMPARISONS}, got {self.comparison!r}")
        if not (self.tolerance >= 0):
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance!r}")
        if not math.isfinite(self.predicted):
            raise ValueError(f"predicted must be finite, got {self.predicted!r}")

    @property
    def verdict(self) -> str:
        return judge(
            self.predicted,
            self.measured,
            self.tolerance,
            comparison=self.comparison,
            relative=self.relative,
            testable=self.untestable_reason is None,
        )

    def record(self) -> dict[str, Any]:
        """The JSON record stored in ``summary.json`` (verdict included, computed)."""
        rec = asdict(self)
        rec["measured"] = _finite_or_none(self.measured)
        rec["verdict"] = self.verdict
        return rec


def judge(
    predicted: float,
    measured: float | None,
    tolerance: float,
    *,
    comparison: str = "within",
    relative: bool = False,
    testable: bool = True,
) -> str:
    """Verdict for one claim; see the module docstring for the rules."""
    if not testable or measured is None or not math.isfinite(measured):
        return NOT_TESTABLE
    scale = abs(predicted) if relative else 1.0
    if relative and scale == 0:
        raise ValueError("a relative tolerance needs a non-zero prediction")
    if comparison == "within":
        ok = abs(measured - predicted) <= tolerance * scale
    elif comparison == "at_most":
        ok = measured <= predicted + tolerance * scale
    elif comparison == "at_least":
        ok = measured >= predicted - tolerance * scale
    else:
        raise ValueError(f"unknown comparison {comparison!r}")
    return REPRODUCED if ok else NOT_REPRODUCED


def rejudge(record: Mapping[str, Any], where: str = "claim") -> str:
    """Recompute the verdict of a stored record, so a hand-edited verdict is never trusted."""
    missing = [k for k in ("paper", "claim", "predicted", "measured", "tolerance") if k not in record]
    if missing:
        raise ValueError(f"{where}: missing key {missing[0]!r}")
    return judge(
        float(record["predicted"]),
        None if record["measured"] is None else float(record["measured"]),
        float(record["tolerance"]),
        comparison=record.get("comparison", "within"),
        relative=bool(record.get("relative", False)),
        testable=record.get("untestable_reason") is None,
    )


def ledger_rows(summary_paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Collect the claim rows of every summary, verdicts recomputed; sorted for stable output."""
    rows = []
    for path in summary_paths:
        path = Path(path)
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read summary: {exc}") from exc
        for key in ("package", "experiment", "claims"):
            if key not in summary:
                raise ValueError(f"{path}: summary has no key {key!r}")
        for i, rec in enumerate(summary["claims"]):
            verdict = rejudge(rec, where=f"{path}: claims[{i}]")
            rows.append(
                {
                    "package": summary["package"],
                    "experiment": summary["experiment"],
                    "paper": rec["paper"],
                    "claim": rec["claim"],
                    "predicted": rec["predicted"],
                    "measured": rec["measured"],
                    "tolerance": rec["tolerance"],
                    "accept_if": _comparison_text(rec),
                    "verdict": verdict,
                    "note": rec.get("untestable_reason") or "",
                }
            )
    rows.sort(key=lambda r: (r["paper"], r["package"], r["experiment"]))
    return rows


def write_ledger(rows: list[dict[str, Any]], md_path: str | Path, csv_path: str | Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LEDGER_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    Path(csv_path).write_text(buf.getvalue())
    Path(md_path).write_text(render_markdown(rows))


def render_markdown(rows: list[dict[str, Any]]) -> str:
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    lines = [
        "# fulcrum claims ledger",
        "",
        "Each row: a paper's claim, the value the theory predicts, the value fulcrum measured, and",
        "a verdict computed from them (never typed in). Generated by the `claims` rule.",
        "",
        f"**{len(rows)} claims** — {counts[REPRODUCED]} reproduced, "
        f"{counts[NOT_REPRODUCED]} not reproduced, {counts[NOT_TESTABLE]} not testable at this scale.",
        "",
    ]
    for paper in sorted({r["paper"] for r in rows}):
        lines += [f"## {paper}", "", "| experiment | claim | predicted p | measured m | accepted if | verdict |"]
        lines.append("|---|---|---|---|---|---|")
        for r in rows:
            if r["paper"] != paper:
                continue
            claim = r["claim"] + (f" ({r['note']})" if r["note"] else "")
            cells = [
                f"{r['package']}/{r['experiment']}",
                claim,
                _fmt(r["predicted"]),
                _fmt(r["measured"]),
                r["accept_if"],
                r["verdict"],
            ]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _comparison_text(rec: Mapping[str, Any]) -> str:
    """The acceptance rule in words, e.g. ``|m − p| ≤ 0.05`` or ``m ≤ 2``."""
    tol, pred = float(rec["tolerance"]), float(rec["predicted"])
    comparison = rec.get("comparison", "within")
    if comparison == "within":
        return f"|m/p − 1| ≤ {tol:.3g}" if rec.get("relative") else f"|m − p| ≤ {tol:.3g}"
    if rec.get("relative"):
        tol *= abs(pred)
    if comparison == "at_most":
        return f"m ≤ {pred + tol:.4g}"
    return f"m ≥ {pred - tol:.4g}"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
