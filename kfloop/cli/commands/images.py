"""`kfloop images build|test` (`make images`, `make test-images`): the serving and pipeline images, built from
images/Containerfile with the names and tags of manifests/base/kustomization.yaml, then smoke-run.

The base is the ordinary Python image when a registry answers; where none does, a Debian root filesystem of the
host's suite made by mmdebstrap from Debian's packages, built once into `localhost/kfloop-base:SUITE` and shared
by both images. Wheels come from the host's uv cache (bind-mounted into the one RUN step).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from kfloop.cli.containers import Engine, EngineError, find_engine
from kfloop.cli.envs import venvs_dir
from kfloop.deploy.images import Image, project_images
from kfloop.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
CONTAINERFILE = REPO / "images" / "Containerfile"
BASE_CONTAINERFILE = REPO / "images" / "base" / "Containerfile"
BUILD_DIR = REPO / "build" / "images"
SOURCE_LABEL = "io.kfloop.source-digest"  # set from SOURCE_DIGEST: a rebuild is skipped when it matches
REGISTRY_BASE = "docker.io/library/python:3.11-slim-bookworm"
# What the Debian base holds beyond minbase: Python 3.11 (the lock's), TLS roots, /etc/services, time zones.
BASE_PACKAGES = ("python3", "ca-certificates", "netbase", "tzdata")
SLIM = [
    f"--dpkgopt=path-{rule}"
    for rule in ("exclude=/usr/share/man/*", "exclude=/usr/share/doc/*", "include=/usr/share/doc/*/copyright")
] + ["--dpkgopt=path-exclude=/usr/share/locale/*"]

COMMON_SMOKE = [["kfloop", "--help"]]
NOT_ROOT = "import os; assert os.getuid() != 0, 'the image runs as root'"
SMOKE: dict[str, list[list[str]]] = {
    "serving": [
        ["kfloop", "predictor", "--help"],
        ["python", "-m", "serving.transformer", "--help"],
        ["python", "-c", f"{NOT_ROOT}; import kserve, serving.predictor.server, serving.transformer.server"],
    ],
    "pipeline": [
        ["kfloop", "pipeline", "run", "--help"],
        [
            "python3",
            "-c",
            f"{NOT_ROOT}; import tensorflow_data_validation, tensorflow_transform, tensorflow_model_analysis, "
            "kfp.dsl.executor_main, components.transform.logic",
        ],
    ],
}


def _suite() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise ConfigError("/etc/os-release names no VERSION_CODENAME: set KFLOOP_BASE_IMAGE")


def debian_base(engine: Engine) -> str:
    """`localhost/kfloop-base:SUITE`, made from the host's Debian suite unless it exists already."""
    suite = _suite()
    tag = f"localhost/kfloop-base:{suite}"
    if engine.exists(tag):
        return tag
    if shutil.which("mmdebstrap") is None:
        raise ConfigError("no registry answers and mmdebstrap is missing: run `make setup` (it installs it)")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    rootfs = BUILD_DIR / "rootfs.tar"  # kept: delete build/images to take Debian's newer packages
    started = time.monotonic()
    if not rootfs.exists():
        include = ",".join(BASE_PACKAGES)
        argv = [
            "mmdebstrap",
            "--variant=minbase",
            "--format=tar",
            f"--include={include}",
            *SLIM,
            suite,
            f"{rootfs}.part",
        ]
        if subprocess.run(argv, check=False).returncode != 0:
            raise EngineError(f"mmdebstrap of {suite} failed")
        Path(f"{rootfs}.part").rename(rootfs)
    engine.build(BASE_CONTAINERFILE, BUILD_DIR, tag, {}, {})
    print(f"images: base {tag} (Debian {suite}) made in {time.monotonic() - started:.0f} s", flush=True)
    return tag


def base_image(engine: Engine) -> str:
    """$KFLOOP_BASE_IMAGE, else the registry's Python image if it can be pulled, else the Debian base."""
    configured = os.environ.get("KFLOOP_BASE_IMAGE")
    if configured:
        return configured
    if engine.exists(REGISTRY_BASE) or engine.pull(REGISTRY_BASE):
        return REGISTRY_BASE
    print(f"images: {REGISTRY_BASE} cannot be pulled (no registry answers): making the base from Debian packages")
    return debian_base(engine)


def _uv_contexts() -> tuple[dict[str, Path], dict[str, str]]:
    """Build contexts (uv, its cache, the host's CA bundle) and the build arg naming the bundle's file."""
    pinned = venvs_dir() / "tools" / "bin" / "uv"  # where `make uv` puts the pinned one
    uv = str(pinned) if pinned.exists() else shutil.which("uv")
    if uv is None:
        raise ConfigError(f"uv is neither at {pinned} nor on PATH: run `make uv` (or `make setup`)")
    cache = Path(subprocess.run([uv, "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip())
    cache.mkdir(parents=True, exist_ok=True)
    ca_file = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")).resolve()
    contexts = {"uv-bin": Path(uv).resolve().parent, "uv-cache": cache, "host-certs": ca_file.parent}
    return contexts, {"CA_FILE": ca_file.name}


def source_digest(base: str, group: str) -> str:
    """A digest of what goes into an image: the files git sees (tracked or not ignored), the base and the group."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    digest = hashlib.sha256(f"{base}\0{group}\0".encode())
    for name in sorted(n for n in listed if n):
        path = REPO / os.fsdecode(name)
        if path.is_file() and not path.is_symlink():
            digest.update(name + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build_image(engine: Engine, image: Image, base: str) -> float | None:
    """Build the image unless one built from the same sources is there; the seconds taken, or None if skipped."""
    digest = source_digest(base, str(image.group))
    if engine.exists(image.reference) and engine.config(image.reference).get("Labels", {}).get(SOURCE_LABEL) == digest:
        return None
    contexts, args = _uv_contexts()
    started = time.monotonic()
    previous = engine.image_id(image.reference)
    build_args = {"BASE_IMAGE": base, "GROUP": str(image.group), "SOURCE_DIGEST": digest, **args}
    engine.build(CONTAINERFILE, REPO, image.reference, build_args, contexts)
    if previous is not None and previous != engine.image_id(image.reference):
        engine.remove(previous)  # several GB each: do not let rebuilds pile up
    return time.monotonic() - started


def build(args: argparse.Namespace) -> int:
    """Build every project image (or those named) and print each one's build time and size."""
    chosen = _chosen(args)
    engine = find_engine()
    started = time.monotonic()
    base = base_image(engine)
    using = f"with `{' '.join(engine.command())}` on {base}"
    for image in chosen:
        print(f"images: building {image.reference} (uv group {image.group}) {using}", flush=True)
        seconds = build_image(engine, image, base)
        done = "up to date (same sources)" if seconds is None else f"built in {seconds:.0f} s"
        print(f"images: {image.reference} {done}, size {engine.size(image.reference)}", flush=True)
    print(f"images: done in {time.monotonic() - started:.0f} s")
    return 0


def _chosen(args: argparse.Namespace) -> list[Image]:
    images = project_images()
    wanted = getattr(args, "only", None) or [image.name for image in images]
    unknown = set(wanted) - {image.name for image in images}
    if unknown:
        raise ConfigError(f"--only: {', '.join(sorted(unknown))} is not a project image ({images[0].name}, ...)")
    return [image for image in images if image.name in wanted]


def smoke(engine: Engine, image: Image) -> list[str]:
    """Problems found running the image's smoke commands (none: it works)."""
    config = engine.config(image.reference)
    problems = []
    if config.get("Entrypoint") != ["kfloop"]:
        problems.append(f"entrypoint is {config.get('Entrypoint')}, not ['kfloop']")
    if str(config.get("User", "")).split(":")[0] in ("", "0", "root"):
        problems.append(f"user is {config.get('User')!r}, not a non-root user")
    commands = COMMON_SMOKE + SMOKE[str(image.group)]
    for argv, done in zip(commands, engine.run_all(image.reference, commands), strict=True):
        if done.returncode != 0:
            problems.append(f"`{' '.join(argv)}` exited {done.returncode}: {(done.stderr or done.stdout)[-1500:]}")
    return problems


def test(args: argparse.Namespace) -> int:
    """Smoke-run every built project image; exit 1 naming what failed."""
    chosen = _chosen(args)
    engine = find_engine()
    failed = False
    for image in chosen:
        if not engine.exists(image.reference):
            raise ConfigError(f"{image.reference} is not built here: run `make images` first")
        started = time.monotonic()
        problems = smoke(engine, image)
        verdict = "ok" if not problems else "FAILED"
        print(f"images: {image.reference} smoke {verdict} in {time.monotonic() - started:.0f} s", flush=True)
        for problem in problems:
            print(f"  - {problem}")
        failed = failed or bool(problems)
    return 1 if failed else 0
