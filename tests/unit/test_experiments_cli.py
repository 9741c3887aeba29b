"""`kfloop experiments list | show ID [--report DIR]` on an experiment store filled by a real stage walk: the
controller, in-process on real state, walks a better candidate through shadow (its off-policy gate on simulated
evidence with known values) -> canary 10% -> 50% -> 100%, and a worse one to its rollback."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from kfloop.audit.store.sqlite import SqliteStore
from kfloop.cli.app import main
from kfloop.cli.experiment_report import wilson
from kfloop.registry import ModelRegistry
from tests.support.controller import register
from tests.unit.test_controller_experiment import running, start_experiment
from tests.unit.test_controller_shadow_gate import SOURCES, Evidence, gated
from tests.unit.test_experiments_shadow import BETTER

pytestmark = pytest.mark.serving  # the report's plots: matplotlib, in the serving environment

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """A store with a promoted and a rolled-back experiment; (db path, [promoted id, rolled back id])."""
    tmp_path = tmp_path_factory.mktemp("walk")
    registry = ModelRegistry(tmp_path / "registry")
    older, newer = (register(registry, tmp_path / "models", n) for n in range(2))
    audit_store = SqliteStore(tmp_path / "audit.db")
    audit_store.open()
    ids = []
    # the older is the candidate and is promoted; then the newer (stable before) is tried again, and is worse
    for candidate_ctr, version in ((0.14, older), (0.03, newer)):
        harness = running(tmp_path, audit_store, candidate_ctr, stages=gated(min_matched=300), **SOURCES)
        harness.controller.kinds["experiment"].read_shadow = Evidence(BETTER, per_read=1000)
        try:
            action_id = start_experiment(harness, version)
            harness.settle()
            ids.append(harness.controller.store.action(action_id).details["experiment"])
        finally:
            harness.controller.close()
    audit_store.close()
    return harness.config.experiments_db, ids


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_list_names_both_experiments_newest_first(walked, capsys):
    db, (promoted, rolled_back) = walked
    assert main(["experiments", "list", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [[rolled_back, "rolled_back"], [promoted, "promoted"]]
    assert main(["experiments", "list", "--db", str(db), "--json"]) == 0
    assert [e["id"] for e in json.loads(capsys.readouterr().out)] == [rolled_back, promoted]


def test_show_prints_each_stage_its_gate_and_its_preregistration(walked, capsys):
    db, (promoted, _) = walked
    assert main(["experiments", "show", promoted, "--db", str(db)]) == 0
    out = capsys.readouterr().out
    print(out)
    assert f"{promoted}: " in out and ", promoted" in out
    shadow, canary_10, canary_50 = [line for line in out.splitlines() if re.match(r"\s+(shadow|canary)", line)]
    assert "off-policy candidate" in shadow and "passed" in shadow and "sha256" not in shadow
    for line in (canary_10, canary_50):
        assert "non_inferior -> passed" in line and re.search(r"preregistration sha256 [0-9a-f]{64}", line)


def test_the_report_references_plots_that_exist_and_shows_the_decision_and_hashes(walked, tmp_path, capsys):
    db, (promoted, rolled_back) = walked
    for experiment in (promoted, rolled_back):
        out_dir = tmp_path / experiment
        assert main(["experiments", "show", experiment, "--db", str(db), "--report", str(out_dir)]) == 0
        assert f"report: {out_dir / 'index.html'}" in capsys.readouterr().out
        html = (out_dir / "index.html").read_text()
        parser = Images()
        parser.feed(html)
        assert sorted(parser.sources) == ["ctr.png", "split.png", "statistic.png"]
        for source in parser.sources:
            png = (out_dir / source).read_bytes()
            assert png.startswith(PNG) and len(png) > 5000, source  # a drawn plot, not an empty canvas
        data = json.loads((out_dir / "report.json").read_text())
        assert data["decision"]["status"] in html and data["decision"]["at"] in html
        for stage in data["stages"][1:]:
            assert stage["digest"] in html and stage["series"]
        assert [s["percent"] for s in data["split"]][-1] == (100 if experiment == promoted else 0)
    print(f"report of {promoted}: {tmp_path / promoted / 'index.html'}")


def test_an_unknown_experiment_or_store_is_a_clear_error(walked, tmp_path, capsys):
    db, _ = walked
    assert main(["experiments", "show", "exp-nope", "--db", str(db)]) == 2
    assert "no experiment 'exp-nope'" in capsys.readouterr().err
    assert main(["experiments", "list", "--db", str(tmp_path / "none.db")]) == 2
    assert "no experiment store at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_wilson_interval_matches_its_published_value():
    """Wilson (1927) for 10 of 100 at 95%: [0.0552, 0.1744] (Newcombe 1998, Table I)."""
    low, high = wilson(0.1, 100)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    assert wilson(None, 0) == (None, None)


def test_a_report_draws_evaluations_before_min_samples_whose_numbers_are_undefined(walked, tmp_path):
    """Before min_samples the boundary is infinite and an arm without impressions has no CTR (stored as None)."""
    from kfloop.cli.experiment_report import experiment_data, write_report
    from kfloop.experiments.store import ExperimentStore

    db, (promoted, _) = walked
    with ExperimentStore(db) as store:
        data = experiment_data(store, promoted)
    early = data["stages"][1]["series"][0]
    early.update(boundary=None, candidate_ctr=None, candidate_ctr_low=None, candidate_ctr_high=None)
    index = write_report(data, tmp_path / "early")
    assert index.exists() and (tmp_path / "early" / "statistic.png").read_bytes().startswith(PNG)
