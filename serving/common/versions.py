"""Which model version a process serves, and where its files are: from the registry, or a folder on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kfloop.errors import InvalidInput, NotFound
from kfloop.model_contract import BASELINE_FILE, EXPLAINER_DIR, MODEL_DIR
from kfloop.registry import CARD, ModelCard, ModelRegistry


@dataclass(frozen=True)
class ResolvedVersion:
    version: str
    model_path: Path
    explainer_path: Path | None
    card: ModelCard
    baseline_path: Path | None = None
    """The training baseline's histograms (baseline.json), if the version has them."""


def unknown_version(registry: ModelRegistry, version: str) -> NotFound:
    deployable = registry.deployable()
    offered = ", ".join(deployable[-5:]) if deployable else "none (train one, or force one with `kfloop models force`)"
    return NotFound(f"model version {version!r} is not in the registry at {registry.uri}; deployable: {offered}")


def pick_version(registry: ModelRegistry, version: str | None, *, require_deployable: bool = True) -> str:
    """The named version (checked), or the latest deployable one."""
    if version is None:
        latest = registry.latest_deployable()
        if latest is None:
            raise NotFound(
                f"no deployable model version in the registry at {registry.uri}: run the training pipeline, "
                "or force a version with `kfloop models force VERSION`"
            )
        return latest
    if version not in registry.versions():
        raise unknown_version(registry, version)
    if require_deployable and not registry.status(version).deployable:
        raise InvalidInput(
            f"model version {version} is {registry.status(version).state.value}, not deployable; "
            "deploy it with --force (recorded in the registry) if you mean it"
        )
    return version


def from_registry(registry_uri: str, version: str | None, cache_dir: Path) -> ResolvedVersion:
    registry = ModelRegistry(registry_uri)
    chosen = pick_version(registry, version)
    card = registry.card(chosen)
    model_path = registry.local_copy(chosen, MODEL_DIR, cache_dir)
    explainer = registry.local_copy(chosen, EXPLAINER_DIR, cache_dir) if EXPLAINER_DIR in card.artifacts else None
    baseline = registry.local_copy(chosen, BASELINE_FILE, cache_dir) if BASELINE_FILE in card.artifacts else None
    return ResolvedVersion(chosen, model_path, explainer, card, baseline)


def from_folder(folder: Path) -> ResolvedVersion:
    """A version folder copied out of the registry (the storage initializer's /mnt/models)."""
    card_path = folder / CARD
    if not card_path.is_file():
        raise NotFound(f"{folder} holds no {CARD}: point the storage URI at a registry version folder")
    card = ModelCard.model_validate_json(card_path.read_text())
    explainer = folder / EXPLAINER_DIR
    baseline = folder / BASELINE_FILE
    return ResolvedVersion(
        card.version,
        folder / MODEL_DIR,
        explainer if explainer.is_dir() else None,
        card,
        baseline if baseline.is_file() else None,
    )


def resolve(registry_uri: str, version: str | None, model_dir: Path | None, cache_dir: Path) -> ResolvedVersion:
    if model_dir is not None:
        return from_folder(model_dir)
    return from_registry(registry_uri, version, cache_dir)
