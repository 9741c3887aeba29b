"""`kfloop features follow` as a process: picks up new events, serves metrics, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from kfloop.config import load_config
from kfloop.eventlog import EventLog
from kfloop.features.config import FeaturesConfig
from kfloop.features.synthetic import feedback_record
from kfloop.processes import free_port

pytestmark = pytest.mark.integration


def click_is_online(features) -> bool:
    return features.user["u_clicks_1h"] == 1 and features.items["ui_clicks_1h"].tolist() == [1]


def test_follow_process_updates_the_online_store_and_stops_on_sigterm(tmp_path: Path) -> None:
    from kfloop.features.reader import FeatureReader
    from kfloop.features.store import apply

    path = tmp_path / "features.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "event_log": {"wal_dir": str(tmp_path / "wal"), "log_uri": str(tmp_path / "log")},
                "store": {"repo_dir": str(tmp_path / "features"), "obd_data_dir": str(tmp_path / "no-data")},
            }
        )
    )
    config = load_config(FeaturesConfig, path)
    feature_store = apply(config)
    port = free_port()
    follow = ["features", "follow", "--config", str(path), "--metrics-port", str(port)]
    process = subprocess.Popen([sys.executable, "-m", "kfloop", *follow], cwd=tmp_path)
    try:
        with EventLog(config.event_log, writer_id="collector-0") as log:
            log.append([feedback_record("f1", "click", "u-f", "9", datetime.now(UTC))])
            reader = FeatureReader(feature_store, config)
            deadline = time.monotonic() + 120  # the process imports Feast first (several seconds)
            # The follower writes one feature view after another (the online store has no transaction
            # across views), so the user's and the user x item counts can turn up a moment apart.
            while not click_is_online(reader.read("u-f", ["9"])):
                assert process.poll() is None, "the follower exited"
                assert time.monotonic() < deadline, "the click never became visible online"
                time.sleep(0.05)
            reader.close()
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "kfloop_features_rows_written_total" in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
