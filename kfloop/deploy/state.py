"""The canary state of the local stack: which version serves stable traffic, which is the canary and its share.

It lives in a local state directory (`.kfloop/serving/state.json`), seeded from the InferenceService in
`manifests/` (its predictor's model version and canaryTrafficPercent); tracked files are never edited at run
time. Changes take a file lock and replace the file atomically, so `kfloop deploy` and a running `kfloop
serve` (which watches it) never see half a state.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from kfloop.errors import ConfigError
from kfloop.registry import is_version_id

STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
STORAGE_URI_ENV = "STORAGE_URI"
VARIANT_ENV = "KFLOOP_VARIANT"
PREDICTOR_CONTAINER = "kserve-container"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class InferenceServiceRef(_Frozen):
    """The InferenceService the state mirrors (for `--cluster`)."""

    name: str
    """metadata.name."""
    namespace: str
    """Namespace it is applied in."""


class Placement(_Frozen):
    version: str
    """Model version."""
    since: str
    """When it took this role, RFC 3339 UTC."""


class CanaryPlacement(Placement):
    percent: int = Field(ge=0, le=100)
    """Share of requests sent to the canary: drawn per request, or per user during an experiment."""
    mode: Literal["canary", "shadow"] = "canary"
    """canary: serves `percent` of requests; shadow: serves none, the router mirrors every request to it (an
    experiment's first stage; locally only: on a cluster the shadow runs as a canary at 0%)."""
    experiment: str | None = None
    """The experiment the controller runs it in (its users keep their arm: kfloop.experiments.arms)."""


class HistoryEntry(_Frozen):
    at: str
    """When, RFC 3339 UTC."""
    action: Literal["seed", "deploy", "promote", "rollback", "stage"]
    """What happened."""
    version: str | None
    """The version it concerned."""
    percent: int | None = None
    """The canary share it set, where it set one."""
    by: str
    """Who (the operator's name, or `manifest` for the seed)."""
    note: str = ""
    """Anything worth keeping: forced versions, replaced canaries."""


class ServingState(_Frozen):
    """Desired serving state; `kfloop serve` reconciles its processes to it."""

    state_version: Literal["1"] = "1"
    """Layout of this file."""
    inference_service: InferenceServiceRef
    """Where `--cluster` changes go."""
    stable: Placement | None
    """The version serving the rest of the traffic."""
    canary: CanaryPlacement | None = None
    """The version being tried, if any."""
    previous_stable: str | None = None
    """The stable version before the last promotion (what a rollback without a canary returns to)."""
    history: list[HistoryEntry] = Field(default_factory=list)
    """Every change, oldest first."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- the manifest ---------------------------------------------------------------------------------------


class ManifestFacts(_Frozen):
    name: str
    namespace: str
    version: str | None
    canary_percent: int | None
    storage_uri: str | None


def read_manifest(path: Path, default_namespace: str = "kfloop") -> ManifestFacts:
    """The InferenceService's name, namespace, predictor model version (the last segment of its STORAGE_URI)
    and canaryTrafficPercent."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except FileNotFoundError:
        raise ConfigError(f"InferenceService manifest {path} does not exist") from None
    isvc = next((d for d in docs if d.get("kind") == "InferenceService"), None)
    if isvc is None:
        raise ConfigError(f"{path} holds no InferenceService")
    predictor = isvc.get("spec", {}).get("predictor", {})
    storage_uri = container_env(predictor, STORAGE_URI_ENV)
    last = storage_uri.rstrip("/").rsplit("/", 1)[-1] if storage_uri else None
    return ManifestFacts(
        name=isvc["metadata"]["name"],
        namespace=isvc["metadata"].get("namespace", default_namespace),
        version=last if last and is_version_id(last) else None,
        canary_percent=predictor.get("canaryTrafficPercent"),
        storage_uri=storage_uri,
    )


def container_env(predictor: dict[str, Any], name: str) -> str | None:
    for container in predictor.get("containers") or []:
        if container.get("name") == PREDICTOR_CONTAINER:
            for env in container.get("env") or []:
                if env.get("name") == name:
                    return env.get("value")
    return None


def seed_state(facts: ManifestFacts, stable_version: str | None) -> ServingState:
    """The first state: the manifest's version (or the latest deployable one), no canary."""
    at = now_iso()
    note = "" if facts.version == stable_version else f"manifest names {facts.version or 'no version'}"
    return ServingState(
        inference_service=InferenceServiceRef(name=facts.name, namespace=facts.namespace),
        stable=Placement(version=stable_version, since=at) if stable_version else None,
        history=[HistoryEntry(at=at, action="seed", version=stable_version, by="manifest", note=note)],
    )


# -- the file -----------------------------------------------------------------------------------------------


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def read_state(state_dir: Path) -> ServingState | None:
    path = state_path(state_dir)
    if not path.exists():
        return None
    return ServingState.model_validate_json(path.read_text())


def write_state(state_dir: Path, state: ServingState) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_path(state_dir)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(temp, "w") as handle:
        handle.write(json.dumps(state.model_dump(mode="json"), indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


@contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Exclusive access for a read-modify-write of the state."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
