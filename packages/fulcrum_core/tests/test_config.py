from dataclasses import dataclass, field

import pytest

from fulcrum_core.config import ConfigError, from_mapping, load_mapping, to_mapping


@dataclass(frozen=True)
class Inner:
    runs: int = 10
    levels: tuple[float, ...] = (0.5, 0.9)


@dataclass(frozen=True)
class Outer:
    dim: int
    rate: float = 0.1
    name: str = "x"
    flag: bool = False
    limit: int | None = None
    extra: dict[str, float] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)


def test_builds_nested_config_with_defaults_and_coercion():
    cfg = from_mapping(Outer, {"dim": 3, "rate": 1, "inner": {"levels": [0.1]}})
    assert cfg == Outer(dim=3, rate=1.0, inner=Inner(levels=(0.1,)))
    assert isinstance(cfg.rate, float)
    assert to_mapping(cfg)["inner"] == {"runs": 10, "levels": [0.1]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dim": 3, "raet": 0.1}, "unknown key 'exp.raet'"),
        ({"dim": 3, "inner": {"runz": 1}}, "unknown key 'exp.inner.runz'"),
        ({}, "missing required key 'exp.dim'"),
        ({"dim": "3"}, "exp.dim: expected an integer"),
        ({"dim": 2.5}, "exp.dim: expected an integer"),
        ({"dim": True}, "exp.dim: expected an integer"),
        ({"dim": 3, "flag": 1}, "exp.flag: expected true/false"),
        ({"dim": 3, "inner": {"levels": [0.1, "a"]}}, r"exp.inner.levels\[1\]: expected a number"),
        ({"dim": 3, "limit": "many"}, "exp.limit: expected an integer"),
        ({"dim": 3, "inner": 5}, "exp.inner: expected a mapping"),
        ({"dim": 3, "extra": [1]}, "exp.extra: expected a mapping"),
    ],
)
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(Outer, data, where="exp")


def test_load_mapping_sources(tmp_path):
    assert load_mapping('{"a": 1}') == {"a": 1}
    path = tmp_path / "c.yaml"
    path.write_text("a: 2\n")
    assert load_mapping(str(path)) == {"a": 2}
    assert load_mapping(None) == {}
    with pytest.raises(ConfigError, match="not found"):
        load_mapping(str(tmp_path / "missing.yaml"))
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_mapping(str(path))
    with pytest.raises(ConfigError, match="JSON"):
        load_mapping("{nope")


def test_yaml_reads_exponent_floats_as_numbers(tmp_path):
    # PyYAML's YAML 1.1 resolver leaves "1e-8" a string; a config file with eps: 1e-8 must still load
    path = tmp_path / "c.yaml"
    path.write_text("eps: 1e-08\nlr: 3.0e-3\nsteps: 1_000\nname: x1e5\nbig: -2E+5\n")
    assert load_mapping(str(path)) == {"eps": 1e-8, "lr": 3e-3, "steps": 1000, "name": "x1e5", "big": -2e5}
