"""run_experiment: staging, atomic publication, provenance, and nothing left behind on failure."""

import json
from dataclasses import dataclass

import pytest

from fulcrum_core import Claim, ConfigError, Experiment, RunResult
from fulcrum_core.cli import main, run_experiment


@dataclass(frozen=True)
class Cfg:
    value: float = 1.0
    fail: bool = False
    seed: int = 3


def _run(cfg, out):
    (out / "data.csv").write_text("x\n1\n")
    if cfg.fail:
        raise RuntimeError("boom")
    return RunResult(numbers={"value": cfg.value}, claims=[Claim("p", "c", 1.0, cfg.value, 0.1)])


def _plot(data, prefix):
    for ext in ("png", "pdf"):
        prefix.with_name(f"{prefix.name}.{ext}").write_text("figure")


EXP = Experiment("toy", "a toy", Cfg, _run, _plot, outputs=("data.csv",))


def test_success_publishes_all_files(tmp_path):
    summary = run_experiment("pkg", EXP, {"value": 1.05}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "provenance.json", "summary.json"]
    assert summary["claims"][0]["verdict"] == "reproduced"
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["config"] == {"value": 1.05, "fail": False, "seed": 3}
    assert prov["seed"] == 3
    assert prov["wall_time_s"] >= 0
    assert "fulcrum-core" in prov["packages"] and "commit" in prov["git"]
    assert prov["device"]["cpu_count"] >= 1


def test_failure_leaves_nothing_behind_not_even_old_results(tmp_path):
    run_experiment("pkg", EXP, {}, tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        run_experiment("pkg", EXP, {"fail": True}, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_key_fails_before_touching_outputs(tmp_path):
    run_experiment("pkg", EXP, {}, tmp_path)
    with pytest.raises(ConfigError, match="toy.valeu"):
        run_experiment("pkg", EXP, {"valeu": 2}, tmp_path)
    assert (tmp_path / "summary.json").exists()


def test_main_list_run_plot(tmp_path, capsys):
    assert main("pkg", [EXP], ["list"]) == 0
    assert "toy" in capsys.readouterr().out
    assert main("pkg", [EXP], ["run", "toy", "--config", '{"value": 3}', "--out", str(tmp_path)]) == 0
    assert "[not reproduced] c" in capsys.readouterr().out
    assert main("pkg", [EXP], ["plot", "toy", "--data", str(tmp_path), "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig.pdf").exists()
    assert main("pkg", [EXP], ["run", "toy", "--config", '{"x": 1}', "--out", str(tmp_path)]) == 2
    assert "toy.x" in capsys.readouterr().err
