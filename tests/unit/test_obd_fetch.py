"""Fetching the Open Bandit Dataset sample: pinned hashes, idempotence, tamper detection."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from kfloop.data import fetch_obd, verify_obd
from kfloop.data.obd import SDIST_NAME
from kfloop.errors import DataIntegrityError, NotFound

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
CSVS = ("random/all.csv", "random/item_context.csv", "bts/all.csv", "bts/item_context.csv")


@pytest.fixture(scope="session")
def obd_root() -> Path:
    """The project's data dir, fetched once (downloads only the first time ever)."""
    return fetch_obd(DATA_DIR)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_extracted(obd_root: Path, target_data_dir: Path) -> Path:
    """Copy the extracted files (not the sdist) into another data dir."""
    target = target_data_dir / "obd"
    for relative in (*CSVS, "LICENSE"):
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(obd_root / relative, target / relative)
    return target


def test_fetch_puts_the_pinned_files_and_a_provenance_note_in_place(obd_root: Path) -> None:
    assert obd_root == DATA_DIR / "obd"
    assert sha256(obd_root / "random/all.csv") == ("7168295b6e0a9eabcf3392320a5dd434e542b68e705d5cd9491499af589812f1")
    assert sha256(obd_root / "bts/all.csv") == "0ad874e4dbf6902f0845dd478ad8dde5ef6903583d3ffaace78411bdad064106"
    assert sha256(obd_root / SDIST_NAME) == "3060d67fedfcfadf1e7a6f2608987f74412b5eb74d2c567edeb147595c68f2a0"
    assert "Apache License" in (obd_root / "LICENSE").read_text()
    provenance = (obd_root / "PROVENANCE.md").read_text()
    assert "Apache License 2.0" in provenance
    assert "ZOZO" in provenance
    assert "obp==0.5.7" in provenance
    verify_obd(DATA_DIR)


def test_fetching_again_touches_nothing(obd_root: Path) -> None:
    before = {relative: (obd_root / relative).stat().st_mtime_ns for relative in CSVS}
    messages: list[str] = []
    assert fetch_obd(DATA_DIR, progress=messages.append) == obd_root
    assert not any("download" in m or "extracted" in m for m in messages), messages
    assert {relative: (obd_root / relative).stat().st_mtime_ns for relative in CSVS} == before


def test_missing_files_come_from_the_kept_sdist_without_downloading(obd_root: Path, tmp_path: Path) -> None:
    (tmp_path / "obd").mkdir()
    shutil.copyfile(obd_root / SDIST_NAME, tmp_path / "obd" / SDIST_NAME)
    messages: list[str] = []
    fetch_obd(tmp_path, progress=messages.append)
    assert not any("download" in m for m in messages), messages
    for relative in CSVS:
        assert (tmp_path / "obd" / relative).read_bytes() == (obd_root / relative).read_bytes()


@pytest.mark.parametrize("relative", CSVS)
def test_a_tampered_csv_fails_the_hash_check(obd_root: Path, tmp_path: Path, relative: str) -> None:
    target = copy_extracted(obd_root, tmp_path)
    tampered = target / relative
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    expected, actual = sha256(obd_root / relative), sha256(tampered)

    for check in (fetch_obd, verify_obd):
        with pytest.raises(DataIntegrityError) as caught:
            check(tmp_path)
        message = str(caught.value)
        assert str(tampered) in message
        assert expected in message
        assert actual in message
    assert tampered.read_bytes() == bytes(data), "a tampered file must not be silently replaced"


def test_a_corrupted_kept_sdist_fails_the_hash_check(obd_root: Path, tmp_path: Path) -> None:
    (tmp_path / "obd").mkdir()
    sdist = tmp_path / "obd" / SDIST_NAME
    sdist.write_bytes((obd_root / SDIST_NAME).read_bytes()[:-1])
    with pytest.raises(DataIntegrityError, match=SDIST_NAME) as caught:
        fetch_obd(tmp_path)
    assert caught.value.details["expected"] == sha256(obd_root / SDIST_NAME)
    assert caught.value.details["actual"] == sha256(sdist)
    assert not (tmp_path / "obd" / "random" / "all.csv").exists()


def test_verify_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="kfloop data fetch"):
        verify_obd(tmp_path)
