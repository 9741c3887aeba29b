"""The demo report from a recorded run's files alone (no servers): CTR bins, what the never-retrained v1 would have
earned (from the click tables), time to detect and to recover, alert spans, the bad canary's requests, the page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kfloop.cli.demo.counterfactual import v1_expected
from kfloop.cli.demo.report import build_report, load_run, write_report
from tests.support.demo_run import V1, V2, rankings, record, table_of

pytestmark = pytest.mark.serving  # the demo runs in the serving environment (matplotlib comes with alibi)


@pytest.fixture
def report(tmp_path: Path) -> dict[str, Any]:
    return build_report(load_run(record(tmp_path / "run")), table_of)


def test_v1_counterfactual_replays_its_own_slates_under_the_tables_of_the_moment():
    values = v1_expected(rankings(), V1, table_of)
    assert values[:40] == [0.2] * 40 and values[40:60] == [0.02] * 20  # what v1 served, its own ground truth
    assert values[60:] == pytest.approx([0.02] * 40)  # v1's slates (item 0) under the shifted table: what v2 replaced


def test_ctr_bins_give_the_loop_and_v1_side_by_side(report: dict[str, Any]):
    bins = report["ctr_bins"]
    assert [b["start_s"] for b in bins] == [float(10 * k) for k in range(10)]
    assert bins[0]["loop_expected_ctr"] == pytest.approx(0.2) and bins[0]["v1_expected_ctr"] == pytest.approx(0.2)
    assert bins[4]["loop_expected_ctr"] == pytest.approx(0.02)  # shifted, v1 still serving
    assert bins[7]["loop_expected_ctr"] == pytest.approx(0.2) and bins[7]["v1_expected_ctr"] == pytest.approx(0.02)
    assert bins[0]["loop_ctr"] == pytest.approx(0.2)  # clicks on every 5th ranking
    assert bins[6]["split"] == {V2: 1.0} and bins[5]["split"] == {V1: 1.0}


def test_efficacy_detect_and_recover_times(report: dict[str, Any]):
    e = report["efficacy"]
    assert e["time_to_detect_s"] == pytest.approx(12.0)  # retrain decided at 52 s, shift at 40 s
    assert e["time_to_recover_s"] == pytest.approx(30.0)  # the first bin after the promotion (60-70 s) ends at 70
    assert e["loop_ratio"] == pytest.approx(1.0) and e["v1_ratio"] == pytest.approx(0.1)


def test_the_issues_efficacy_checks_are_stated_with_their_numbers(report: dict[str, Any]):
    e = report["efficacy"]
    assert e["detected_on"] == ["OnlineRewardDecay"]
    verdicts = {c["check"]: (c["value"], c["passed"]) for c in e["checks"]}
    assert verdicts == {
        "the closed loop regains its pre-shift CTR": (pytest.approx(1.0), True),
        "the never-retrained v1 does not": (pytest.approx(0.1), True),
        "shift detected (s)": (pytest.approx(12.0), True),
        "recovered (s)": (pytest.approx(30.0), True),
    }


def test_a_check_the_run_did_not_reach_is_not_measured_and_a_missed_one_fails():
    from kfloop.cli.demo.report import acceptance

    checks = acceptance({"loop_ratio": 0.5, "v1_ratio": 0.9, "time_to_detect_s": 200.0, "time_to_recover_s": None})
    assert [c["passed"] for c in checks] == [False, False, False, None]


def test_alerts_actions_and_the_bad_canary(report: dict[str, Any]):
    (alert,) = report["alerts"]
    assert alert["name"] == "OnlineRewardDecay" and alert["spans"] == [[50.0, 60.0]]
    assert report["actions"][0]["at_s"] == 52.0 and report["actions"][0]["alerts"] == ["OnlineRewardDecay"]
    bad = report["bad_canary"]
    assert bad["requests"] == 8.0 and bad["seconds_to_rollback"] == 9.0
    assert bad["history"][0]["note"].startswith("forced")
    assert report["experiments"] == []


def test_the_report_folder_has_the_page_its_plots_and_the_json(tmp_path: Path):
    index = write_report(record(tmp_path / "run"), tmp_path / "out", table_of)
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["efficacy"]["time_to_detect_s"] == pytest.approx(12.0)
    text = index.read_text()
    for png in ("ctr.png", "split.png", "timeline.png", "ope.png"):
        assert (tmp_path / "out" / png).read_bytes()[:4] == b"\x89PNG" and f"src='{png}'" in text
    assert "ui_clicks_7d" in text and "OnlineRewardDecay" in text
    assert "efficacy checks" in text and "shift detected (s)" in text
