"""The images `make images` builds are the ones the manifests and the compiled pipeline name: same names and
tags, read from the one place (manifests/base/kustomization.yaml `images:`). Building them for real is
`make test-images` (minutes per image); here the build orchestration runs against an engine that records."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfloop.cli.commands import images as build_commands
from kfloop.cli.containers import Engine, find_engine
from kfloop.deploy.images import IMAGES_FILE, PROJECT_IMAGES, declared_images, pipeline_image, project_images
from kfloop.errors import ConfigError
from tests.manifests import CRD_DIR, OVERLAYS, REPO, pod_specs, render

MAKEFILE = (REPO / "Makefile").read_text()


@dataclass(frozen=True)
class RecordingEngine(Engine):
    """Builds nothing: records what `kfloop images build` asks of an engine (no registry, no base yet)."""

    built: list[dict[str, Any]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def build(self, containerfile, context, tag, args, contexts) -> None:
        self.built.append({"containerfile": containerfile, "tag": tag, "args": args, "contexts": contexts})

    def exists(self, reference: str) -> bool:
        return any(b["tag"] == reference for b in self.built)

    def pull(self, reference: str) -> bool:
        return False

    def size(self, reference: str) -> str:
        return "1 GB"

    def image_id(self, reference: str) -> str | None:
        ids = [str(index) for index, b in enumerate(self.built) if b["tag"] == reference]
        return ids[-1] if ids else None

    def remove(self, image_id: str) -> None:
        self.removed.append(image_id)

    def config(self, reference: str) -> dict:
        """The label the Containerfile sets from SOURCE_DIGEST, as the last build of `reference` set it."""
        digests = [b["args"]["SOURCE_DIGEST"] for b in self.built if b["tag"] == reference]
        return {"Labels": {build_commands.SOURCE_LABEL: digests[-1]}} if digests else {}


@pytest.fixture
def recorded_build(monkeypatch, capsys) -> list[dict[str, Any]]:
    engine = RecordingEngine("buildah")
    monkeypatch.setattr(build_commands, "find_engine", lambda: engine)
    monkeypatch.setenv("KFLOOP_BASE_IMAGE", "localhost/kfloop-base:test")
    assert build_commands.build(argparse.Namespace(only=None)) == 0
    assert "size 1 GB" in capsys.readouterr().out
    return engine.built


def _named_by_manifests() -> set[str]:
    named = set()
    for overlay in OVERLAYS:
        for spec in pod_specs(render(REPO / "manifests" / "overlays" / overlay)).values():
            named |= {c["image"] for c in [*spec.get("initContainers", []), *spec["containers"]]}
    return named


def _named_by_compiled_pipeline() -> set[str]:
    compiled = yaml.safe_load((REPO / "pipelines" / "compiled" / "training.yaml").read_text())
    executors = compiled["deploymentSpec"]["executors"].values()
    return {executor["container"]["image"] for executor in executors}


@pytest.mark.skipif(not CRD_DIR.is_dir(), reason="needs ../shared/crds beside the clone")
def test_every_image_the_manifests_and_the_pipeline_name_is_built_by_make_images_or_third_party(recorded_build):
    assert "images: uv" in MAKEFILE and "$(SERVING)/kfloop images build" in MAKEFILE
    built = {b["tag"] for b in recorded_build}
    third_party = {i.reference for i in declared_images().values() if i.group is None}
    assert third_party == {"docker.io/library/redis:7.0.15"}, "a new image is either built here or named third-party"
    named = _named_by_manifests() | _named_by_compiled_pipeline()
    assert named - third_party == built
    assert _named_by_compiled_pipeline() == {pipeline_image()}


def test_each_image_installs_its_own_uv_group_from_the_one_containerfile(recorded_build):
    assert [(b["tag"], b["args"]["GROUP"]) for b in recorded_build] == [
        (image.reference, PROJECT_IMAGES[image.name]) for image in project_images()
    ]
    assert {b["containerfile"] for b in recorded_build} == {REPO / "images" / "Containerfile"}
    # Wheels come from the host's uv cache, installed by the pinned uv, on the base chosen once.
    assert all({"uv-bin", "uv-cache", "host-certs"} <= b["contexts"].keys() for b in recorded_build)
    assert {b["args"]["BASE_IMAGE"] for b in recorded_build} == {"localhost/kfloop-base:test"}
    containerfile = (REPO / "images" / "Containerfile").read_text()
    assert "uv sync --frozen --no-default-groups --group ${GROUP}" in containerfile
    assert 'ENTRYPOINT ["kfloop"]' in containerfile and "USER ${UID}" in containerfile


def test_an_image_built_from_the_same_sources_is_not_rebuilt():
    engine = RecordingEngine("buildah")
    image = project_images()[0]
    assert build_commands.build_image(engine, image, "base:1") is not None
    assert build_commands.build_image(engine, image, "base:1") is None
    assert build_commands.build_image(engine, image, "base:2") is not None
    assert len(engine.built) == 2 and engine.removed == ["0"], "the image the tag named before is removed"
    assert f"LABEL {build_commands.SOURCE_LABEL}=${{SOURCE_DIGEST}}" in (REPO / "images" / "Containerfile").read_text()


def test_a_malformed_images_entry_is_named(tmp_path: Path):
    kustomization = yaml.safe_load(IMAGES_FILE.read_text())
    del kustomization["images"][1]["newTag"]
    path = tmp_path / "kustomization.yaml"
    path.write_text(yaml.safe_dump(kustomization))
    with pytest.raises(ConfigError, match=r"images\[1\] lacks newTag"):
        declared_images(path)
    path.write_text(yaml.safe_dump({"images": [{"name": "redis", "newName": "redis", "newTag": "7"}]}))
    with pytest.raises(ConfigError, match="no entry for kfloop-pipeline, kfloop-serving"):
        declared_images(path)


def test_an_unknown_engine_or_image_is_refused(monkeypatch):
    monkeypatch.setenv("KFLOOP_IMAGE_ENGINE", "kaniko")
    with pytest.raises(ConfigError, match="KFLOOP_IMAGE_ENGINE: 'kaniko' is not one of docker, podman, buildah"):
        find_engine()
    with pytest.raises(ConfigError, match="--only: kfloop-web is not a project image"):
        build_commands.build(argparse.Namespace(only=["kfloop-web"]))
