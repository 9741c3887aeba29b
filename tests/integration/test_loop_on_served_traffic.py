"""The loop closes on a pipeline-trained model: the training pipeline makes v1 from the OBD sample, `kfloop up`
serves it, the simulator drives it for a short window, and the pipeline trains again on that window.

The second run's examples must be the served impressions, each with the propensity, version and variant it was
served with, and the simulator's clicks joined by request id, none without its decision; and the off-policy
estimate of the running policy's value from its own served logs must cover the simulator's ground truth.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from components import examples_io
from kfloop.eventlog import read_events
from kfloop.ope import ips, snips
from kfloop.registry import ModelRegistry
from kfloop.simulate import read_rankings
from pipelines.runner import run_local
from tests.support.pipeline import import_obd_sample, state_dir_config
from tests.support.system import kfloop, part_of, system_data, wait_for, write_system

pytestmark = [pytest.mark.pipeline, pytest.mark.integration, pytest.mark.timeout(3600)]

SIMULATOR_TIMEOUT_S = 120.0
PARTS = ["collector", "features-apply", "follower", "joiner", "serving"]  # the loop; no monitoring here
RATE, SECONDS, RUN_ID = 20, 60, "served-window"


@dataclass
class Loop:
    state: Path
    v1: str
    v2: dict[str, Any]
    rankings: list[dict[str, Any]]
    examples: pd.DataFrame
    span: dict[str, Any]
    served: pd.DataFrame


def kfloop_ok(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """`kfloop` from this (pipeline) environment (serving commands re-execute in the serving one), which must
    succeed."""
    result = kfloop(*args, timeout=timeout)
    assert result.returncode == 0, f"kfloop {args[0]}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def system_file(root: Path) -> Path:
    config = system_data(keep=PARTS, start_timeout_s=900)
    # events sealed into Parquet (where the pipeline reads them) within a second
    part_of(config, "collector")["config_overrides"]["event_log.segment_max_age_s"] = 1.0
    return write_system(root / "system.yaml", config)


def served_impressions(state: Path) -> pd.DataFrame:
    table = read_events(str(state / "events"), columns=None)
    frame = table.to_pandas()
    return frame[(frame["type"] == "impression") & (frame["source"] == "serving")]


def wait_for_impressions(state: Path, expected: int, timeout_s: float = 300) -> pd.DataFrame:
    """The predictors ship their spools to the collector in the background: wait until all are in the log."""

    def all_in() -> list[pd.DataFrame] | None:
        served = served_impressions(state)
        return [served] if len(served) >= expected else None

    return wait_for(all_in, f"{expected} served impressions in the event log", timeout_s, interval_s=2)[0]


def newest_examples(root: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The Examples artifact ExampleGen wrote last under the pipeline root."""
    span_file = max((root / "pipeline-root").rglob(examples_io.SPAN_FILE), key=lambda p: p.stat().st_mtime)
    splits = [examples_io.read_split(span_file.parent, name) for name in examples_io.SPLITS]
    return pd.concat(splits, ignore_index=True), examples_io.read_span(span_file.parent)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Loop:
    root = tmp_path_factory.mktemp("served-loop")
    state = root / "state"
    import_obd_sample(state / "events", state / "wal-obd")
    began = time.monotonic()
    v1 = run_local(
        state_dir_config(state, root / "pipeline-root", **{"evaluate.blessing.on_low_evidence": "bless_flagged"})
    ).pushed
    print(f"\nv1 trained by the pipeline on the OBD sample in {time.monotonic() - began:.0f} s: {v1['version']}")
    where = ["--config", str(system_file(root)), "--state-dir", str(state)]
    try:
        began = time.monotonic()
        kfloop_ok("up", *where, timeout=1200)
        print(f"kfloop up: healthy in {time.monotonic() - began:.0f} s")
        live = json.loads(kfloop_ok("status", "--json", *where, timeout=120).stdout)
        ports = {entry["name"]: entry["port"] for entry in live["parts"]}
        # a ranking the simulator stops waiting for is still served and logged, with no record of it here: on a busy
        # host (answers in seconds) it waits for every answer
        patient = root / "simulate.yaml"
        patient.write_text(json.dumps({"timeout_s": SIMULATOR_TIMEOUT_S}))
        kfloop_ok(
            *("simulate", "--config", str(patient), "--transformer-url", f"http://127.0.0.1:{ports['serving']}"),
            *("--collector-url", f"http://127.0.0.1:{ports['collector']}", "--rate", str(RATE)),
            *("--duration", str(SECONDS), "--seed", "17", "--run-id", RUN_ID, "--out-dir", str(root / "runs")),
            "--quiet",
            timeout=SECONDS + 600,
        )
        rankings = read_rankings(root / "runs" / RUN_ID)
        served = wait_for_impressions(state, sum(len(r["items"]) for r in rankings))
    finally:
        kfloop("down", *where, timeout=600)
    began = time.monotonic()
    v2 = run_local(state_dir_config(state, root / "pipeline-root")).pushed
    print(f"the pipeline trained again on {len(rankings)} served rankings in {time.monotonic() - began:.0f} s")
    examples, span = newest_examples(root)
    return Loop(state, v1["version"], v2, rankings, examples, span, served)


def implicit(loop: Loop) -> pd.DataFrame:
    return loop.examples[loop.examples["signal"] == "implicit"]


def test_the_examples_are_the_served_impressions_with_how_each_was_served(loop: Loop):
    shown = implicit(loop)
    assert len(shown) > 0 and set(shown["source"]) == {"serving"}
    assert set(shown["model_version"]) == {loop.v1} and set(shown["variant"]) == {"stable"}
    key = ["request_id", "item_id", "position"]
    logged = loop.served.set_index(key)[["propensity", "model_version", "variant"]]
    joined = shown.join(logged, on=key, rsuffix="_logged")
    assert joined["propensity_logged"].notna().all(), "an example without its served impression"
    assert np.allclose(joined["propensity"], joined["propensity_logged"])
    # the propensity the simulator was served with, slot by slot: none without its decision
    answered = {
        (r["request_id"], item, position): p
        for r in loop.rankings
        for item, position, p in zip(r["items"], r["positions"], r["propensities"], strict=True)
    }
    served_p = [answered.get((row.request_id, row.item_id, row.position)) for row in shown.itertuples()]
    assert None not in served_p
    assert np.allclose(shown["propensity"].to_numpy(dtype=float), np.array(served_p, dtype=float))
    assert loop.span["impressions_by_source"] == {"serving": len(shown)}


def test_clicks_are_joined_by_request_id(loop: Loop):
    shown = implicit(loop)
    requests = set(shown["request_id"])
    clicked = {
        (r["request_id"], item)
        for r in loop.rankings
        if r["request_id"] in requests
        for item, click in zip(r["items"], r["clicks"], strict=True)
        if click
    }
    labelled = set(map(tuple, shown.loc[shown["label"] == 1, ["request_id", "item_id"]].to_numpy()))
    assert clicked and labelled == clicked
    total = sum(sum(r["clicks"]) for r in loop.rankings)
    assert loop.span["feedback"]["click"] == {"attributed": total, "late": 0, "unattributed": 0}


def test_the_off_policy_value_of_the_running_policy_covers_the_ground_truth(loop: Loop):
    """Its value from its own served logs (each row's own logged propensity, the target the policy that served
    it) against the simulator's expected clicks per slot for the same requests; a 99.9% interval, so that the
    check fails by chance once in a thousand runs, not once in twenty."""
    shown = implicit(loop).reset_index(drop=True)
    truth = {r["request_id"]: r["expected_clicks"] for r in loop.rankings}
    expected = [p for request in dict.fromkeys(shown["request_id"]) for p in truth[request]]
    ground_truth = float(np.mean(expected))
    propensity = shown["propensity"].to_numpy(dtype=float)
    reward = shown["label"].to_numpy(dtype=float)
    for estimator in (ips, snips):
        estimate = estimator(
            reward, propensity, propensity, slate_id=shown["request_id"].to_numpy(), ci_level=0.999, seed=3
        )
        print(f"{estimator.__name__}: {estimate.value:.4f} [{estimate.ci_low:.4f}, {estimate.ci_high:.4f}]")
        assert estimate.ci_low <= ground_truth <= estimate.ci_high, (estimator.__name__, ground_truth)
    print(f"ground truth (expected clicks per slot): {ground_truth:.4f} over {len(shown)} slots")


def test_the_second_version_is_trained_and_judged_on_served_traffic(loop: Loop):
    card = ModelRegistry(loop.state / "registry").card(loop.v2["version"])
    assert card.ope["reference"] == f"production:{loop.v1}"
    assert card.data["impressions_by_source"] == {"serving": int((loop.examples["signal"] == "implicit").sum())}
    reference = card.ope["ips"]["reference"]
    print(f"Evaluate's estimate of v1 on the eval split: {reference}")
    # v1 on the rows it served: weighed by what it served (w = 1), and its policy recomputed on the offline
    # features reproduces those propensities (no training/serving skew: context online, the same catalog)
    assert reference["ess"] == pytest.approx(reference["n"]) and reference["max_weight"] == pytest.approx(1.0)
    check = card.ope["served_check"]
    print(f"v1 recomputed on the offline features vs what it served: {check}")
    assert check["version"] == loop.v1 and check["rows"] == reference["n"]
    assert check["disagreeing"] <= 0.05 * check["rows"], check
