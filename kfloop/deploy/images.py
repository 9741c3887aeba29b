"""The container images kfloop deploys, named and tagged in one place: `images:` of manifests/base/kustomization.yaml.

kustomize rewrites every manifest's image from that list; the training pipeline's components take the
kfloop-pipeline entry from it (`PipelineConfig.base_image` unset); `make images` builds the project's entries
from it. The other entries are third-party images pulled as they are (Redis).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from kfloop.errors import ConfigError

IMAGES_FILE = Path(__file__).resolve().parents[2] / "manifests" / "base" / "kustomization.yaml"

# The images this project builds: kustomize name -> the uv.lock dependency group installed in it.
PROJECT_IMAGES: dict[str, str] = {"kfloop-serving": "serving", "kfloop-pipeline": "pipeline"}


@dataclass(frozen=True)
class Image:
    name: str
    """The name manifests use (`image: kfloop-serving`), rewritten by kustomize."""
    reference: str
    """What a cluster pulls: `newName:newTag`."""
    group: str | None
    """The uv.lock group the image installs; None for a third-party image."""


def declared_images(path: Path = IMAGES_FILE) -> dict[str, Image]:
    """{kustomize name: Image} for every entry of `images:`. Errors name the entry and the missing key."""
    if not path.is_file():
        raise ConfigError(f"{path} not found: image names and tags are read from a source checkout's manifests")
    entries = (yaml.safe_load(path.read_text()) or {}).get("images") or []
    images = {}
    for index, entry in enumerate(entries):
        missing = [key for key in ("name", "newName", "newTag") if key not in entry]
        if missing:
            raise ConfigError(f"{path}: images[{index}] lacks {', '.join(missing)}")
        name = entry["name"]
        images[name] = Image(name, f"{entry['newName']}:{entry['newTag']}", PROJECT_IMAGES.get(name))
    absent = PROJECT_IMAGES.keys() - images.keys()
    if absent:
        raise ConfigError(f"{path}: images: has no entry for {', '.join(sorted(absent))}")
    return images


def project_images(path: Path = IMAGES_FILE) -> list[Image]:
    """The images `make images` builds, in PROJECT_IMAGES' order."""
    images = declared_images(path)
    return [images[name] for name in PROJECT_IMAGES]


def pipeline_image(path: Path = IMAGES_FILE) -> str:
    """The image the training pipeline's components run in."""
    return declared_images(path)["kfloop-pipeline"].reference
