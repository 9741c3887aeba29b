"""The demo report's page in headless Chromium (Debian's package): it loads with its four plots and its numbers.

The report is built from a made-up recorded run (tests/support/demo_run.py); the real run's page is opened (and
screenshotted for the README) by tests/integration/test_demo.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kfloop.cli.demo.report import write_report
from tests.support.chromium import dom_after_load, screenshot
from tests.support.demo_run import record, table_of

pytestmark = [pytest.mark.integration, pytest.mark.serving]


def test_the_report_page_renders_with_its_plots(tmp_path: Path):
    index = write_report(record(tmp_path / "run"), tmp_path / "report", table_of)
    dom = dom_after_load(index)
    loaded = re.search(r'data-plots-loaded="(\d+)"', dom)
    assert loaded and int(loaded.group(1)) == 4, "the browser did not load the four plots"
    assert "OnlineRewardDecay" in dom and "time to detect the shift" in dom
    shot = screenshot(index, tmp_path / "page.png")
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
