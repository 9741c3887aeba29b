"""Opening a page in headless Chromium (Debian's `chromium`): its DOM after load, and a screenshot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]


def browser() -> str:
    found = shutil.which("chromium")
    assert found, "chromium is missing: `make setup` installs Debian's package"
    return found


def dom_after_load(page: Path) -> str:
    """The page's DOM once loaded and its scripts have run."""
    done = subprocess.run(
        [browser(), *FLAGS, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def screenshot(page: Path, out: Path, width: int = 1100, height: int = 2600) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            browser(),
            *FLAGS,
            f"--window-size={width},{height}",
            f"--screenshot={out.resolve()}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and out.exists(), done.stderr[-2000:]
    return out
