"""Kubernetes manifests for serving with vLLM, and the HPA numbers the simulator mirrors.

Files in this folder (``kubectl apply -f`` the folder):

- ``vllm-deployment.yaml`` — Deployment ``vllm``: image ``vllm/vllm-openai``, one ``nvidia.com/gpu`` per
  pod, container port ``http`` = 8000, startup/readiness/liveness probes on ``/health``.
- ``vllm-service.yaml`` — ClusterIP Service ``vllm``, port 8000 → targetPort ``http``.
- ``vllm-hpa.yaml`` — ``autoscaling/v2`` HorizontalPodAutoscaler on the Pods metric
  ``vllm_requests_in_flight`` (running + waiting requests per pod), target average 16, 1–8 replicas,
  scale-up at most max(+100 %, +4 pods) per 15 s, scale-down stabilisation 300 s.
- ``prometheus-adapter-rules.yaml`` — ConfigMap with the prometheus-adapter rules that derive that
  metric (and ``vllm_num_requests_waiting``) from vLLM's ``/metrics`` gauges.

``load_manifests()`` parses them; ``hpa_parameters()`` reads the HPA back into the simulator's terms
(the keys of ``serving.policies.hpa.HPAConfig`` plus a few descriptive ones); ``validate()`` checks
the cross-references (selector ↔ labels, Service targetPort ↔ container port, HPA target ↔
Deployment, probes on a declared port, GPU limits).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

MANIFEST_DIR = Path(__file__).resolve().parent

# Kubernetes controller defaults the HPA manifest cannot carry (kube-controller-manager flags,
# kubernetes.io "Horizontal Pod Autoscaling" docs): --horizontal-pod-autoscaler-sync-period 15 s,
# --horizontal-pod-autoscaler-tolerance 0.1.
CONTROLLER_SYNC_S = 15.0
CONTROLLER_TOLERANCE = 0.1

# HPA metric name → the simulator's hpa metric ("requests" = running + queued per replica)
SIM_METRIC = {"vllm_requests_in_flight": "requests"}


def load_manifests(directory: str | Path | None = None) -> list[dict[str, Any]]:
    """Every YAML document of the ``*.yaml`` files in ``directory`` (default: this folder), by file name."""
    folder = Path(directory) if directory is not None else MANIFEST_DIR
    docs: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.yaml")):
        with path.open() as fh:
            for doc in yaml.safe_load_all(fh):
                if doc is None:
                    continue
                if not isinstance(doc, dict):
                    raise ValueError(f"{path}: a YAML document is not a mapping")
                docs.append(doc)
    return docs


def find(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one manifest of ``kind`` (and ``name``)."""
    hits = [m for m in manifests if m.get("kind") == kind and (name is None or m["metadata"]["name"] == name)]
    if len(hits) != 1:
        raise LookupError(f"expected one {kind}{' ' + name if name else ''}, found {len(hits)}")
    return hits[0]


def _quantity(value: Any) -> float:
    """A Kubernetes quantity without binary suffixes ("16", "500m", 16) as a float."""
    text = str(value)
    if text.endswith("m"):
        return float(text[:-1]) / 1000.0
    return float(text)


def hpa_parameters(manifests: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The HPA's numbers, read from ``vllm-hpa.yaml``.

    Keys shared with ``serving.policies.hpa.HPAConfig``: ``metric`` ("requests"), ``target`` (per-pod
    average), ``tolerance`` (controller default 0.1), ``sync_s`` (15 s), ``stabilization_s``
    (scale-down window), ``min_replicas``, ``max_replicas``, ``scale_up_pods`` and ``scale_up_percent``
    (the scale-up policies, each per ``scale_up_period_s``). Also: ``metric_name`` (the custom metric),
    ``scale_up_stabilization_s``, ``scale_up_period_s``, ``scale_down_percent``, ``scale_down_period_s``,
    ``deployment``.
    """
    manifests = load_manifests() if manifests is None else manifests
    hpa = find(manifests, "HorizontalPodAutoscaler")
    spec = hpa["spec"]
    (metric,) = spec["metrics"]
    if metric["type"] != "Pods" or metric["pods"]["target"]["type"] != "AverageValue":
        raise ValueError("hpa_parameters reads a single Pods metric with an AverageValue target")
    name = metric["pods"]["metric"]["name"]
    behavior = spec.get("behavior", {})
    up, down = behavior.get("scaleUp", {}), behavior.get("scaleDown", {})
    up_pol = {p["type"]: p for p in up.get("policies", [])}
    down_pol = {p["type"]: p for p in down.get("policies", [])}
    periods = {p["periodSeconds"] for p in up.get("policies", [])}
    if len(periods) > 1:
        raise ValueError(f"scale-up policies with different periods {sorted(periods)} have no simulator analogue")
    return {
        "metric": SIM_METRIC.get(name, name),
        "metric_name": name,
        "target": _quantity(metric["pods"]["target"]["averageValue"]),
        "tolerance": CONTROLLER_TOLERANCE,
        "sync_s": CONTROLLER_SYNC_S,
        "stabilization_s": float(down.get("stabilizationWindowSeconds", 300)),
        "scale_up_stabilization_s": float(up.get("stabilizationWindowSeconds", 0)),
        "min_replicas": int(spec.get("minReplicas", 1)),
        "max_replicas": int(spec["maxReplicas"]),
        "scale_up_pods": int(up_pol["Pods"]["value"]) if "Pods" in up_pol else 0,
        "scale_up_percent": float(up_pol["Percent"]["value"]) if "Percent" in up_pol else 0.0,
        "scale_up_period_s": float(periods.pop()) if periods else math.nan,
        "scale_down_percent": float(down_pol["Percent"]["value"]) if "Percent" in down_pol else math.nan,
        "scale_down_period_s": float(down_pol["Percent"]["periodSeconds"]) if "Percent" in down_pol else math.nan,
        "deployment": spec["scaleTargetRef"]["name"],
    }


def _containers(dep: dict[str, Any]) -> list[dict[str, Any]]:
    return dep["spec"]["template"]["spec"]["containers"]


def _port_matches(ref: Any, ports: list[dict[str, Any]]) -> bool:
    """A Service targetPort / probe port (a number or a port name) names one of ``ports``."""
    if isinstance(ref, int):
        return any(p.get("containerPort") == ref for p in ports)
    return any(p.get("name") == ref for p in ports)


def validate(manifests: list[dict[str, Any]] | None = None) -> list[str]:
    """Problems in the manifests' structure and cross-references (empty list = consistent)."""
    manifests = load_manifests() if manifests is None else manifests
    problems: list[str] = []
    required = {
        "Deployment": "apps/v1",
        "Service": "v1",
        "HorizontalPodAutoscaler": "autoscaling/v2",
    }
    for m in manifests:
        for key in ("apiVersion", "kind", "metadata"):
            if key not in m:
                problems.append(f"a manifest lacks {key}")
        if "name" not in m.get("metadata", {}):
            problems.append(f"{m.get('kind')} lacks metadata.name")
        if m.get("kind") in required and m.get("apiVersion") != required[m["kind"]]:
            problems.append(f"{m['kind']} has apiVersion {m.get('apiVersion')}, expected {required[m['kind']]}")
    try:
        dep = find(manifests, "Deployment")
        svc = find(manifests, "Service")
        hpa = find(manifests, "HorizontalPodAutoscaler")
    except LookupError as exc:
        return problems + [str(exc)]
    selector = dep["spec"]["selector"]["matchLabels"]
    labels = dep["spec"]["template"]["metadata"].get("labels", {})
    if any(labels.get(k) != v for k, v in selector.items()):
        problems.append("Deployment selector does not match its pod template labels")
    if any(labels.get(k) != v for k, v in svc["spec"].get("selector", {}).items()) or not svc["spec"].get("selector"):
        problems.append("Service selector does not select the Deployment's pods")
    ports = [p for c in _containers(dep) for p in c.get("ports", [])]
    for sp in svc["spec"]["ports"]:
        if not _port_matches(sp.get("targetPort", sp.get("port")), ports):
            problems.append(f"Service targetPort {sp.get('targetPort')!r} matches no container port")
    for c in _containers(dep):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = c.get(probe, {}).get("httpGet")
            if get is not None and not _port_matches(get.get("port"), c.get("ports", [])):
                problems.append(f"container {c['name']}: {probe} port {get.get('port')!r} is not declared")
        if "readinessProbe" not in c:
            problems.append(f"container {c['name']} has no readinessProbe")
        limits = c.get("resources", {}).get("limits", {})
        requests = c.get("resources", {}).get("requests", {})
        if "nvidia.com/gpu" not in limits:
            problems.append(f"container {c['name']} has no nvidia.com/gpu limit")
        elif "nvidia.com/gpu" in requests and str(requests["nvidia.com/gpu"]) != str(limits["nvidia.com/gpu"]):
            problems.append(f"container {c['name']}: GPU request differs from limit")
    ref = hpa["spec"]["scaleTargetRef"]
    if (ref.get("apiVersion"), ref.get("kind"), ref.get("name")) != ("apps/v1", "Deployment", dep["metadata"]["name"]):
        problems.append(f"HPA scaleTargetRef {ref} does not name the Deployment")
    lo, hi = hpa["spec"].get("minReplicas", 1), hpa["spec"].get("maxReplicas")
    if not (isinstance(hi, int) and 1 <= lo <= hi):
        problems.append(f"HPA needs 1 <= minReplicas <= maxReplicas, got {lo}, {hi}")
    return problems


__all__ = [
    "CONTROLLER_SYNC_S",
    "CONTROLLER_TOLERANCE",
    "MANIFEST_DIR",
    "find",
    "hpa_parameters",
    "load_manifests",
    "validate",
]
