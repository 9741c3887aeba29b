"""Fetch the Open Bandit Dataset sample that ships inside the `obp==0.5.7` sdist, pinned by sha256.

The sdist is downloaded with pip itself (uv venvs have no pip, so through `uvx pip`), hash-checked by pip
before it builds the package's metadata and again here, kept under `data_dir/obd/`, and only the `all`
campaign's `random` and `bts` logs are extracted:

    data_dir/obd/obp-0.5.7.tar.gz
    data_dir/obd/{random,bts}/all.csv            one row = one item shown at one position
    data_dir/obd/{random,bts}/item_context.csv   80 items; each log hashes item features its own way
    data_dir/obd/LICENSE, data_dir/obd/PROVENANCE.md
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from kfloop.errors import DataIntegrityError, KfloopError, NotFound

OBP_VERSION = "0.5.7"
SDIST_NAME = f"obp-{OBP_VERSION}.tar.gz"
SDIST_SHA256 = "3060d67fedfcfadf1e7a6f2608987f74412b5eb74d2c567edeb147595c68f2a0"
LOGS = ("random", "bts")
CAMPAIGN = "all"

# (log, file name in data_dir/obd/{log}/) -> sha256. Every one was checked against the verified sdist.
CSV_SHA256 = {
    ("random", "all.csv"): "7168295b6e0a9eabcf3392320a5dd434e542b68e705d5cd9491499af589812f1",
    ("random", "item_context.csv"): "eba04cc23d5f130a93ff174c5392986882b94c3839433cb8143870eaa6221358",
    ("bts", "all.csv"): "0ad874e4dbf6902f0845dd478ad8dde5ef6903583d3ffaace78411bdad064106",
    ("bts", "item_context.csv"): "5d4359ba1cfa3ae88f0f1bae66bd633859fe6323817183632ee57b83539d9153",
}
LICENSE_SHA256 = "6bc32ef299d465f98043edc6e487a6e72a69600f3a2144f4e69be8f1b36be9f7"
_SDIST_ROOT = f"obp-{OBP_VERSION}"

# Every file taken from the sdist: path under data_dir/obd/ -> (member in the sdist, sha256).
EXTRACTED: dict[str, tuple[str, str]] = {
    f"{log}/{name}": (f"{_SDIST_ROOT}/obp/dataset/obd/{log}/{CAMPAIGN}/{name}", sha)
    for (log, name), sha in CSV_SHA256.items()
}
EXTRACTED["LICENSE"] = (f"{_SDIST_ROOT}/LICENSE", LICENSE_SHA256)

PROVENANCE = f"""# Open Bandit Dataset (small sample)

Source: the Open Bandit Dataset by ZOZO, Inc. / ZOZO Technologies, Inc. (ZOZOTOWN fashion e-commerce,
24-30 Nov 2019), as the 10,000-row-per-log sample shipped inside the sdist of `obp=={OBP_VERSION}`
(Open Bandit Pipeline, https://github.com/st-tech/zr-obp), sha256 {SDIST_SHA256}.
Files: `{{random,bts}}/all.csv` and `{{random,bts}}/item_context.csv` (campaign "all"), copied unchanged from
`obp/dataset/obd/{{random,bts}}/all/` in that sdist.

License: Apache License 2.0, as the obp package is distributed (its source files carry
"Copyright (c) Yuta Saito, Yusuke Narita, and ZOZO Technologies, Inc."); the license text from the sdist is
in `LICENSE` beside this file. The full-size dataset is published separately by ZOZO under its own terms.

Cite: Yuta Saito, Shunsuke Aihara, Megumi Matsutani, Yusuke Narita. "Open Bandit Dataset and Pipeline:
Towards Realistic and Reproducible Off-Policy Evaluation." arXiv:2008.07146.

Fetched by `kfloop data fetch` (kfloop/data/obd.py), which checks every file's sha256.
"""

Progress = Callable[[str], None]


class FetchError(KfloopError):
    """The dataset could not be downloaded (no pip to run, or pip failed)."""

    http_status = 502


def print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def obd_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "obd"


def obd_log_csv(data_dir: Path, log: str) -> Path:
    """The impression log of one logging policy ("random" or "bts")."""
    return obd_dir(data_dir) / log / "all.csv"


def obd_item_context_csv(data_dir: Path, log: str) -> Path:
    """The item features that go with one log (their hashes differ between logs)."""
    return obd_dir(data_dir) / log / "item_context.csv"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_hash(path: Path | str, expected: str, actual: str) -> None:
    """Raise DataIntegrityError naming the file and both hashes unless they match."""
    if actual != expected:
        raise DataIntegrityError(
            f"{path}: sha256 mismatch: expected {expected}, got {actual}. The file was changed or corrupted; "
            "delete it and run `kfloop data fetch` again.",
            details={"file": str(path), "expected": expected, "actual": actual},
        )


def verify_obd(data_dir: Path, logs: tuple[str, ...] = LOGS) -> None:
    """Check that the extracted CSVs of `logs` exist and match their pinned hashes."""
    for (log, name), expected in CSV_SHA256.items():
        if log not in logs:
            continue
        path = obd_dir(data_dir) / log / name
        if not path.is_file():
            raise NotFound(f"{path} is missing; run `kfloop data fetch` first")
        check_hash(path, expected, sha256_file(path))


def fetch_obd(data_dir: Path, *, progress: Progress = print_progress) -> Path:
    """Make sure the OBD sample is under `data_dir/obd/` with the pinned hashes; return that directory.

    Files already there with the right hashes are left alone (no network). A file there with the wrong
    hash is an error, never silently replaced. Missing files come from the kept sdist, downloaded only if
    it is not there yet.
    """
    root = obd_dir(data_dir)
    missing = _missing_files(root)
    if missing:
        sdist = root / SDIST_NAME
        if sdist.is_file():
            check_hash(sdist, SDIST_SHA256, sha256_file(sdist))
            progress(f"obd: using the kept sdist {sdist}")
        else:
            _download_sdist(root, progress)
        _extract(sdist, root, missing, progress)
    else:
        progress(f"obd: all {len(EXTRACTED)} files present with pinned hashes in {root}")
    _write_notes(root)
    return root


def _missing_files(root: Path) -> list[str]:
    missing = []
    for relative, (_, expected) in EXTRACTED.items():
        path = root / relative
        if path.is_file():
            check_hash(path, expected, sha256_file(path))
        else:
            missing.append(relative)
    return missing


def _pip_command() -> list[str]:
    uvx = shutil.which("uvx")
    if uvx:
        return [uvx, "pip"]
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    raise FetchError("cannot download obp: neither `uvx` is on PATH nor pip importable (install uv)")


def _download_sdist(root: Path, progress: Progress) -> None:
    root.mkdir(parents=True, exist_ok=True)
    progress(f"obd: downloading the obp=={OBP_VERSION} sdist from PyPI (pip download) ...")
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        # A hash in a requirements file makes pip check the archive before it runs the sdist's build code.
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"obp=={OBP_VERSION} --hash=sha256:{SDIST_SHA256}\n")
        command = [
            *_pip_command(),
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--ignore-requires-python",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
            "-d",
            tmp,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        downloaded = Path(tmp) / SDIST_NAME
        if result.returncode != 0 or not downloaded.is_file():
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-12:])
            raise FetchError(f"pip download of obp=={OBP_VERSION} failed (exit {result.returncode}):\n{tail}")
        check_hash(downloaded, SDIST_SHA256, sha256_file(downloaded))
        os.replace(downloaded, root / SDIST_NAME)
    progress(f"obd: saved {root / SDIST_NAME} (sha256 verified)")


def _extract(sdist: Path, root: Path, wanted: list[str], progress: Progress) -> None:
    with tarfile.open(sdist, "r:gz") as tar:
        for relative in wanted:
            member, expected = EXTRACTED[relative]
            data = _member_bytes(tar, member)
            check_hash(f"{sdist}!{member}", expected, hashlib.sha256(data).hexdigest())
            _write_atomically(root / relative, data)
            progress(f"obd: extracted {root / relative}")


def _member_bytes(tar: tarfile.TarFile, member: str) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise DataIntegrityError(f"{member} in the obp sdist is not a regular file")
    return handle.read()


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp")
    temp.write_bytes(data)
    os.replace(temp, target)


def _write_notes(root: Path) -> None:
    note = root / "PROVENANCE.md"
    if not note.is_file() or note.read_text() != PROVENANCE:
        _write_atomically(note, PROVENANCE.encode())
