import csv
import json

import pytest

from fulcrum_core.claims import (
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    Claim,
    judge,
    ledger_rows,
    write_ledger,
)


@pytest.mark.parametrize(
    ("predicted", "measured", "tol", "kwargs", "verdict"),
    [
        (-0.5, -0.48, 0.05, {}, REPRODUCED),
        (-0.5, -0.44, 0.05, {}, NOT_REPRODUCED),
        (-0.5, -0.625, 0.125, {}, REPRODUCED),  # boundary is inclusive (exact binary fractions)
        (2.0, 2.03, 0.02, {"relative": True}, REPRODUCED),
        (2.0, 2.05, 0.02, {"relative": True}, NOT_REPRODUCED),
        (1.0, 1.9, 1.0, {"comparison": "at_most"}, REPRODUCED),
        (1.0, 2.1, 1.0, {"comparison": "at_most"}, NOT_REPRODUCED),
        (1.0, 0.95, 0.1, {"comparison": "at_least"}, REPRODUCED),
        (1.0, 0.5, 0.1, {"comparison": "at_least"}, NOT_REPRODUCED),
        (1.0, None, 0.1, {}, NOT_TESTABLE),
        (1.0, float("nan"), 0.1, {}, NOT_TESTABLE),
        (1.0, 1.0, 0.1, {"testable": False}, NOT_TESTABLE),
    ],
)
def test_judge(predicted, measured, tol, kwargs, verdict):
    assert judge(predicted, measured, tol, **kwargs) == verdict


def test_claim_record_has_ledger_fields_and_computed_verdict():
    rec = Claim("2506.15535", "slope", predicted=-0.5, measured=-0.7, tolerance=0.05).record()
    assert {"paper", "claim", "predicted", "measured", "tolerance", "verdict"} <= set(rec)
    assert rec["verdict"] == NOT_REPRODUCED
    assert Claim("p", "c", 1.0, None, 0.1, untestable_reason="too small").record()["verdict"] == NOT_TESTABLE


def test_claim_rejects_bad_fields():
    with pytest.raises(ValueError, match="comparison"):
        Claim("p", "c", 1.0, 1.0, 0.1, comparison="roughly")
    with pytest.raises(ValueError, match="tolerance"):
        Claim("p", "c", 1.0, 1.0, -0.1)


def _summary(tmp_path, name, claims):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"package": "pkg", "experiment": name, "claims": claims}))
    return path


def test_ledger_recomputes_verdicts_and_writes_md_and_csv(tmp_path):
    honest = Claim("2501.00001", "a slope", -0.5, -0.49, 0.05).record()
    tampered = Claim("2501.00002", "a ratio", 1.0, 3.0, 0.5).record()
    tampered["verdict"] = REPRODUCED  # typed in by hand: the ledger must not believe it
    paths = [_summary(tmp_path, "one", [honest]), _summary(tmp_path, "two", [tampered])]
    rows = ledger_rows(paths)
    assert [r["verdict"] for r in rows] == [REPRODUCED, NOT_REPRODUCED]
    write_ledger(rows, tmp_path / "claims.md", tmp_path / "claims.csv")
    with open(tmp_path / "claims.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["paper"] for r in table] == ["2501.00001", "2501.00002"]
    assert table[1]["verdict"] == NOT_REPRODUCED
    md = (tmp_path / "claims.md").read_text()
    assert "## 2501.00002" in md and "1 reproduced, 1 not reproduced" in md


def test_ledger_names_the_broken_summary(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"package": "p", "experiment": "e", "claims": [{"paper": "x"}]}))
    with pytest.raises(ValueError, match=r"bad.json: claims\[0\]: missing key 'claim'"):
        ledger_rows([bad])
    (tmp_path / "nojson.json").write_text("{")
    with pytest.raises(ValueError, match="nojson.json"):
        ledger_rows([tmp_path / "nojson.json"])
