"""`kfloop demo --fast` end to end (the real system, pipeline, simulator and monitoring loop), checked by its
report.json; its page is opened in headless Chromium, and the screenshot is the README's (docs/demo-report.png).

What `--fast` must show: v1 trained and served, traffic before and after the shift, the controller retraining
after the shift, the blessed candidate walking its experiment (shadow, canary stage) and promoted by the controller
(no person, no promotion by the demo), the forced bad version answered with errors and rolled back by the
controller, an audit sample with explanations, and issue 20's efficacy checks with their numbers: the never-retrained
v1 stays below 80% of its pre-shift CTR and the closed loop ends well above it (asserted: what the loop is for); the
80% regain and the times to detect and to recover are printed, not asserted (one run decides neither a margin of
a few percent nor speed on a shared host: `make demo` and `tests/bench/bench_demo.py` report them, the README
keeps them).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from monitoring.controller.config import ACTOR
from tests.support.chromium import dom_after_load, screenshot

pytestmark = [pytest.mark.integration, pytest.mark.serving, pytest.mark.demo]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "demo-report.png"
LOOP_OVER_V1 = 1.25
"""The closed loop's expected CTR at the end over the never-retrained v1's: measured 1.6-3.6 in six runs (fast and
default) that closed the loop, 1.17 in one whose candidate learned nothing. The 80% check itself is printed:
one default run in three regained 0.798 (README), too close to assert on one run."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("demo")
    argv = [sys.executable, "-m", "kfloop", "demo", "--fast", "--report-dir", str(root / "report")]
    done = subprocess.run(
        [*argv, "--state-dir", str(root / "state")], capture_output=True, text=True, cwd=REPO, timeout=5400
    )
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root / "report", json.loads((root / "report" / "report.json").read_text())


@pytest.mark.timeout(5500)
def test_the_fast_demo_closes_the_loop_and_reports_it(demo: tuple[Path, dict]):
    _, report = demo
    print(json.dumps({"phases": report["phases"], "efficacy": report["efficacy"]}, indent=1))
    names = [p["name"] for p in report["phases"]]
    assert names[0] == "import the OBD sample" and "train v1 through the pipeline" in names
    assert all(p["seconds"] >= 0 for p in report["phases"])
    assert report["versions"]["v1"] and report["ctr_bins"]
    assert report["marks"]["shift"] is not None
    assert any(b["start_s"] >= report["marks"]["shift"] for b in report["ctr_bins"]), "no traffic after the shift"
    assert report["efficacy"]["time_to_detect_s"] is not None, "the loop did not decide to retrain after the shift"
    candidate = report["versions"]["candidate"]
    assert candidate, "no retrained candidate was deployed"
    assert report["marks"]["promoted"] is not None, "the candidate was not promoted"
    staged = [h for h in report["serving_history"] if h["version"] == candidate]
    assert [h["action"] for h in staged][-1] == "promote" and {h["by"] for h in staged} == {ACTOR}, staged
    assert [h["percent"] for h in staged if h["action"] == "stage"] == [0, 50], staged  # shadow, canary-50
    e = report["efficacy"]
    assert e["pre_shift"]["loop_expected_ctr"] and e["after"]["loop_expected_ctr"] and e["after"]["v1_expected_ctr"]
    assert [c["check"] for c in e["checks"]] == [
        "the closed loop regains its pre-shift CTR",
        "the never-retrained v1 does not",
        "shift detected (s)",
        "recovered (s)",
    ]
    assert all(c["value"] is not None for c in e["checks"][:3]), e["checks"]
    print("efficacy checks:", json.dumps(e["checks"]))
    assert e["checks"][1]["passed"], e["checks"]  # the shift hurt: the never-retrained v1 stays below 80%
    # the retrained loop clearly beats never retraining, on the same users at the same times (ground truth)
    assert e["after"]["loop_expected_ctr"] >= LOOP_OVER_V1 * e["after"]["v1_expected_ctr"], e


@pytest.mark.timeout(5500)
def test_the_bad_version_is_forced_answered_with_errors_and_rolled_back(demo: tuple[Path, dict]):
    _, report = demo
    bad = report["bad_canary"]
    assert bad and bad["rolled_back_s"] is not None, bad
    assert sum(n for code, n in bad["requests_by_code"].items() if code.startswith("5")) > 0, bad
    assert any(h["action"] == "deploy" and "forced" in h["note"] for h in bad["history"]), bad["history"]
    rollbacks = [a for a in report["actions"] if a["kind"] == "rollback" and a["outcome"] == "rolled_back"]
    assert [a["model_version"] for a in rollbacks] == [bad["version"]]
    assert report["audit"]["records"] > 0


@pytest.mark.timeout(5500)
def test_the_report_page_renders_and_is_the_readme_screenshot(demo: tuple[Path, dict]):
    folder, _ = demo
    loaded = re.search(r'data-plots-loaded="(\d+)"', dom_after_load(folder / "index.html"))
    assert loaded and int(loaded.group(1)) == 4
    shot = screenshot(folder / "index.html", SCREENSHOT, height=1800)
    assert shot.stat().st_size > 20_000
