"""Segment's own Python SDK, unchanged, delivers to a real collector process using the shipped mapping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from segment.analytics import Client

from kfloop.eventlog import read_events
from serving.common.process import ServiceProcess
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.serving, pytest.mark.integration]

SHIPPED = REPO_ROOT / "manifests" / "collector" / "collector.yaml"
CONSENTED = {"consent": {"categoryPreferences": {"Personalization": True}}}


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[ServiceProcess, dict]]:
    """The collector with the shipped config, its log moved into tmp_path."""
    config = yaml.safe_load(SHIPPED.read_text())
    config["event_log"] = {"wal_dir": str(tmp_path / "wal"), "log_uri": str(tmp_path / "log")}
    config["writer_id"] = "collector-sdk-test"
    config["serving_token_file"] = str(tmp_path / "serving-token")  # made there, not in the working directory
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(config))
    process = ServiceProcess("serving.collector", ["--config", str(path)], log_path=tmp_path / "collector.log")
    with process:
        yield process, config


def test_segment_sdk_track_events_land_in_the_log_with_mapped_types(collector):
    process, config = collector
    write_key = config["segment"]["write_keys"][0]
    errors: list[Exception] = []

    sync = Client(write_key, host=process.url, sync_mode=True)
    sync.track("shopper@example.com", "Product Viewed", {"product_id": "sku-1", "position": 1}, context=CONSENTED)
    sync.track("shopper@example.com", "Product Clicked", {"product_id": "sku-1", "position": 1}, context=CONSENTED)
    sync.identify("shopper@example.com", {"email": "shopper@example.com", "name": "Shopper"})

    batching = Client(write_key, host=process.url, gzip=True, on_error=lambda e, batch: errors.append(e))
    batching.track(
        anonymous_id="device-9",
        event="Product Reviewed",
        properties={"product_id": "sku-2", "rating": 4},
        context=CONSENTED,
    )
    batching.track(
        anonymous_id="device-9", event="Product Liked", properties={"product_id": "sku-2"}, context=CONSENTED
    )
    batching.track(anonymous_id="device-9", event="Product Clicked", properties={"product_id": "sku-3"})  # no consent
    batching.page(anonymous_id="device-9", name="Home", context=CONSENTED)
    batching.flush()
    batching.join()
    assert errors == []

    process.stop()  # SIGTERM: a clean shutdown seals the open write-ahead segment
    assert "event log closed and sealed" in process.output()
    table = read_events(config["event_log"]["log_uri"])
    rows = {r["type"]: r for r in table.to_pylist()}
    assert sorted((r["type"], r["item_id"]) for r in rows.values()) == [
        ("click", "sku-1"),
        ("impression", "sku-1"),
        ("rating", "sku-2"),
        ("thumbs", "sku-2"),
    ]
    assert table.num_rows == 4  # the unconsented click, the identify and the unmapped page are not stored
    assert rows["rating"]["rating"] == 4 and rows["thumbs"]["thumb"] == "up"
    assert {r["source"] for r in rows.values()} == {"segment"}
    assert rows["click"]["user_id"] == rows["impression"]["user_id"] != rows["rating"]["user_id"]
    assert not any("example.com" in r["user_id"] or "device" in r["user_id"] for r in rows.values())
