"""The container engine `make images` finds here: docker (when its daemon answers), podman, else buildah.

Each engine builds with the same Containerfile flags (`--build-arg`, `--build-context`); they differ in how an
image is run and measured. buildah runs steps with chroot isolation and stores images with overlay where it can
mount it, else vfs: that is what works on a machine without a container runtime service.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from kfloop.errors import ConfigError

ENGINES = ("docker", "podman", "buildah")


class EngineError(ConfigError):
    """An engine command failed; the message names it."""


def _run(argv: list[str], *, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    output = subprocess.PIPE if quiet else None
    return subprocess.run(argv, stdout=output, stderr=output, text=True, check=False)


def _check(argv: list[str], *, quiet: bool = False) -> str:
    """Run; its stdout (quiet) or its output streamed to ours. A failure raises, with stderr when captured."""
    done = _run(argv, quiet=quiet)
    if done.returncode != 0:
        detail = (done.stderr or "").strip()[-2000:]
        raise EngineError(f"`{' '.join(argv[:4])} ...` failed with status {done.returncode}. {detail}".strip())
    return done.stdout or ""


@dataclass(frozen=True)
class Engine:
    name: str
    """docker, podman or buildah."""
    options: list[str] = field(default_factory=list)
    """Global options before the subcommand (buildah's storage driver)."""

    def command(self, *args: str) -> list[str]:
        return [self.name, *self.options, *args]

    def build(
        self, containerfile: Path, context: Path, tag: str, args: dict[str, str], contexts: dict[str, Path]
    ) -> None:
        build = ["bud", "--isolation", "chroot"] if self.name == "buildah" else ["build"]
        flags = [f"--build-arg={key}={value}" for key, value in args.items()]
        flags += [f"--build-context={key}={path}" for key, path in contexts.items()]
        _check(self.command(*build, "-f", str(containerfile), "-t", tag, *flags, str(context)))

    def exists(self, reference: str) -> bool:
        inspect = ["inspect", "--type", "image"] if self.name == "buildah" else ["image", "inspect"]
        return _run(self.command(*inspect, reference), quiet=True).returncode == 0

    def image_id(self, reference: str) -> str | None:
        inspect = ["inspect", "--type", "image", "--format", "{{.FromImageID}}"] if self.name == "buildah" else []
        inspect = inspect or ["image", "inspect", "--format", "{{.Id}}"]
        done = _run(self.command(*inspect, reference), quiet=True)
        return done.stdout.strip() if done.returncode == 0 else None

    def remove(self, image_id: str) -> None:
        """Remove an image by id, if nothing else uses it (a tag moved to a new build leaves the old one behind)."""
        _run(self.command("rmi", image_id), quiet=True)

    def pull(self, reference: str) -> bool:
        return _run(self.command("pull", reference), quiet=True).returncode == 0

    def size(self, reference: str) -> str:
        """The image's size as the engine reports it."""
        if self.name == "buildah":
            (image,) = json.loads(_check(self.command("images", "--json", reference), quiet=True))
            return str(image["size"])
        size = int(_check(self.command("image", "inspect", "--format", "{{.Size}}", reference), quiet=True))
        return f"{size / 1e9:.2f} GB"

    def config(self, reference: str) -> dict:
        """The image's OCI config (Entrypoint, User, ...)."""
        if self.name == "buildah":
            inspected = json.loads(_check(self.command("inspect", "--type", "image", reference), quiet=True))
            return inspected["OCIv1"]["config"]
        (inspected,) = json.loads(_check(self.command("image", "inspect", reference), quiet=True))
        return {key[0].upper() + key[1:]: value for key, value in inspected["Config"].items()}

    def run_all(self, reference: str, commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
        """Run each command in a container of the image as its own user; buildah makes one working container
        (under vfs, a full copy of the image) for them all."""
        if self.name != "buildah":
            return [
                _run(self.command("run", "--rm", "--entrypoint", argv[0], reference, *argv[1:]), quiet=True)
                for argv in commands
            ]
        container = _check(self.command("from", "--pull-never", reference), quiet=True).strip()
        try:
            return [
                _run(self.command("run", "--isolation", "chroot", container, "--", *argv), quiet=True)
                for argv in commands
            ]
        finally:
            _run(self.command("rm", container), quiet=True)


def _answers(name: str) -> bool:
    """Whether the engine can work here (a docker client without its daemon cannot)."""
    if shutil.which(name) is None:
        return False
    probe = [name, "--version"] if name == "buildah" else [name, "info"]
    return _run(probe, quiet=True).returncode == 0


def _storage_driver() -> str:
    """buildah's: $KFLOOP_STORAGE_DRIVER, else overlay if a container's root can be mounted with it here, else
    vfs (which copies every layer whole: several times the disk and time). docker and podman keep their own."""
    configured = os.environ.get("KFLOOP_STORAGE_DRIVER")
    if configured:
        return configured
    probe = ["buildah", "--storage-driver=overlay"]
    made = _run([*probe, "from", "scratch"], quiet=True)
    container = (made.stdout or "").strip()
    if made.returncode != 0 or not container:
        return "vfs"
    mounted = _run([*probe, "mount", container], quiet=True).returncode == 0
    _run([*probe, "rm", container], quiet=True)
    return "overlay" if mounted else "vfs"


def find_engine() -> Engine:
    """$KFLOOP_IMAGE_ENGINE if set, else the first of docker, podman, buildah that works here."""
    chosen = os.environ.get("KFLOOP_IMAGE_ENGINE")
    if chosen and chosen not in ENGINES:
        raise ConfigError(f"KFLOOP_IMAGE_ENGINE: {chosen!r} is not one of {', '.join(ENGINES)}")
    for name in [chosen] if chosen else ENGINES:
        if _answers(name):
            return Engine(name, [f"--storage-driver={_storage_driver()}"] if name == "buildah" else [])
    raise ConfigError(
        f"no container engine works here (tried {chosen or ', '.join(ENGINES)}): install docker, podman or buildah "
        "(`make setup` installs Debian's buildah)"
    )
