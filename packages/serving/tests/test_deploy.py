"""Kubernetes manifests of serving.deploy: structure, cross-references, and the HPA numbers."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from serving.deploy import MANIFEST_DIR, find, hpa_parameters, load_manifests, validate


@pytest.fixture(scope="module")
def manifests():
    return load_manifests()


def test_manifest_files_parse(manifests):
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Service"]
    assert {p.name for p in MANIFEST_DIR.glob("*.yaml")} >= {"vllm-deployment.yaml", "vllm-hpa.yaml"}
    for m in manifests:
        assert m["apiVersion"] and m["metadata"]["name"]


def test_deployment_service_and_hpa_fit_together(manifests):
    dep = find(manifests, "Deployment")
    svc = find(manifests, "Service")
    hpa = find(manifests, "HorizontalPodAutoscaler")
    assert (dep["apiVersion"], svc["apiVersion"], hpa["apiVersion"]) == ("apps/v1", "v1", "autoscaling/v2")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"].startswith("vllm/vllm-openai:")
    (port,) = c["ports"]
    (sport,) = svc["spec"]["ports"]
    # the Service's targetPort names the container port (by name here), and the numbers agree
    assert sport["targetPort"] in (port["name"], port["containerPort"]) and sport["port"] == port["containerPort"]
    assert str(port["containerPort"]) == c["args"][c["args"].index("--port") + 1]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    probe = c["readinessProbe"]["httpGet"]
    assert probe["path"] == "/health" and probe["port"] in (port["name"], port["containerPort"])
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == "1"
    ref = hpa["spec"]["scaleTargetRef"]
    assert ref == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    # the adapter rules produce the metric the HPA reads, from vLLM's gauges
    rules = find(manifests, "ConfigMap")["data"]["config.yaml"]
    assert f'as: "{metric["pods"]["metric"]["name"]}"' in rules
    assert "vllm:num_requests_running" in rules and "vllm:num_requests_waiting" in rules
    assert validate(manifests) == []


def test_validate_catches_broken_references(manifests):
    broken = copy.deepcopy(manifests)
    find(broken, "Service")["spec"]["ports"][0]["targetPort"] = 9999
    find(broken, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] = "other"
    dep = find(broken, "Deployment")
    del dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = "metrics"
    problems = "\n".join(validate(broken))
    for fragment in ("targetPort 9999", "scaleTargetRef", "nvidia.com/gpu", "readinessProbe port 'metrics'"):
        assert fragment in problems


def test_hpa_parameters_mirror_the_manifest(manifests):
    p = hpa_parameters(manifests)
    spec = find(manifests, "HorizontalPodAutoscaler")["spec"]
    assert p["target"] == float(spec["metrics"][0]["pods"]["target"]["averageValue"])
    assert (p["min_replicas"], p["max_replicas"]) == (spec["minReplicas"], spec["maxReplicas"])
    assert p["stabilization_s"] == 300.0 and p["scale_up_stabilization_s"] == 0.0
    assert (p["tolerance"], p["sync_s"]) == (0.1, 15.0)  # controller defaults
    assert p["scale_up_period_s"] == p["sync_s"]  # the simulator applies scale-up limits per sync
    assert p["metric"] == "requests" and p["deployment"] == "vllm"
    changed = copy.deepcopy(manifests)
    find(changed, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] = 3
    assert hpa_parameters(changed)["max_replicas"] == 3  # read from the file, not hard-coded


def test_hpa_parameters_build_the_simulator_policy(manifests):
    hpa = pytest.importorskip("serving.policies.hpa", reason="the simulator's hpa policy is not present")
    fields = {f.name for f in dataclasses.fields(hpa.HPAConfig)}
    p = hpa_parameters(manifests)
    cfg = hpa.HPAConfig(**{k: v for k, v in p.items() if k in fields})
    assert (cfg.target, cfg.stabilization_s, cfg.max_replicas) == (16.0, 300.0, 8)
    assert cfg.metric == "requests"
