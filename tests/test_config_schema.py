"""The workflow schema and the packages' config dataclasses describe the same keys."""

import dataclasses
import typing

import pytest
import yaml
from wfhelpers import REPO

from diffusion.experiments import EXPERIMENTS as DIFFUSION
from optim_theory.experiments import EXPERIMENTS as OPTIM_THEORY
from serving.experiments import EXPERIMENTS as SERVING

SINGLE_JOB_EXPERIMENTS = (*OPTIM_THEORY, *SERVING, *DIFFUSION)

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def resolve(node):
    return SCHEMA["$defs"][node["$ref"].split("/")[-1]] if "$ref" in node else node


def schema_keys(node):
    """Nested key sets of an object schema (None for leaves)."""
    node = resolve(node)
    return {
        k: schema_keys(v) if resolve(v).get("type") == "object" and "properties" in resolve(v) else None
        for k, v in node["properties"].items()
    }


def dataclass_keys(cls):
    """Nested key sets of a config dataclass; a field whose type is a dataclass is recursed into
    (lists/tuples of dataclasses stay leaves, as arrays do in schema_keys)."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: dataclass_keys(hints[f.name]) if dataclasses.is_dataclass(hints[f.name]) else None
        for f in dataclasses.fields(cls)
    }


@pytest.mark.parametrize("exp", SINGLE_JOB_EXPERIMENTS, ids=lambda e: e.name)
def test_schema_matches_dataclass(exp):
    experiments = SCHEMA["properties"]["experiments"]["properties"]
    assert exp.name in experiments, f"config.schema.yaml has no entry for {exp.name}"
    assert schema_keys(experiments[exp.name]) == dataclass_keys(exp.config_cls)


@pytest.mark.parametrize("scale", ["ci", "local", "paper"])
def test_every_scale_file_names_only_known_experiments(scale):
    data = yaml.safe_load((REPO / "config" / "scale" / f"{scale}.yaml").read_text())
    experiments = SCHEMA["properties"]["experiments"]["properties"]
    assert set(data) <= set(experiments)
