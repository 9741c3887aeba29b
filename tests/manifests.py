"""Offline manifest checks: render with kustomize, validate core kinds with kubernetes-validate (strict)
and custom kinds against the real CRDs' openAPIV3Schema (closed objects, as the API server's strict
field validation behaves)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO.parent / "shared" / "crds"
K8S_VERSION = "1.32.0"
OVERLAYS = {"dev": "kfloop-dev", "prod": "kfloop"}  # manifests/overlays/NAME -> the namespace it deploys to


class _Loader(yaml.SafeLoader):
    """A bare `=` is YAML 1.1's value tag (the CRDs' enums, kustomize's output of an AlertmanagerConfig's
    `matchType: "="`): read it as the plain string it is."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def render(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed to render manifests"
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.load_all(out, Loader=_Loader) if doc]


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the version's openAPIV3Schema, from every CRD file in shared/crds."""
    schemas = {}
    for path in CRD_DIR.glob("*.yaml"):
        for doc in yaml.load_all(path.read_text(), Loader=_Loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schema = _closed(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def _closed(schema: Any) -> Any:
    """Reject unknown fields where the schema lists properties; move Go's inline (?i) flags to the front."""
    if isinstance(schema, dict):
        for key, value in list(schema.items()):
            schema[key] = _closed(value)
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        if isinstance(schema.get("pattern"), str) and "(?i)" in schema["pattern"][1:]:
            schema["pattern"] = "(?i)" + schema["pattern"].replace("(?i)", "")
    elif isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


def validate(doc: dict[str, Any]) -> None:
    """Raise if a rendered object would not be accepted by the API server."""
    key = (doc["apiVersion"], doc["kind"])
    schemas = crd_schemas()
    if key in schemas:
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
        jsonschema.Draft7Validator(schemas[key]).validate(body)
        _validate_metadata(doc["metadata"])
        return
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _validate_metadata(metadata: dict[str, Any]) -> None:
    assert _DNS1123.match(metadata["name"]), f"bad name {metadata['name']}"
    allowed = {"name", "namespace", "labels", "annotations"}
    assert set(metadata) <= allowed, f"unexpected metadata keys {set(metadata) - allowed}"


def one(rendered: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [d for d in rendered if d["kind"] == kind and d["metadata"]["name"] == name]
    return obj


def pod_specs(rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod spec that will run: workloads', Jobs' and CronJobs' templates, and the InferenceService's roles."""
    specs = {}
    for doc in rendered:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            specs[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            specs[doc["metadata"]["name"]] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif doc["kind"] == "InferenceService":
            for role in ("predictor", "transformer", "explainer"):
                specs[f"{doc['metadata']['name']}/{role}"] = doc["spec"][role]
    return specs


def mounts(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> the volume mounted there."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
