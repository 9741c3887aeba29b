"""The joiner: its counts per model version and variant equal an independent recount of the event log, with
late, duplicate and unattributed feedback in the mix, live and after a restart that rebuilds the state."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from kfloop.cli.app import build_parser
from kfloop.config import load_config
from kfloop.errors import ConfigError
from kfloop.eventlog import EventLog, EventLogConfig
from serving.joiner import flags
from serving.joiner.app import create_app
from serving.joiner.config import JoinerConfig
from serving.joiner.follow import LogJoiner, wall_clock_us
from serving.joiner.join import NO_REQUEST_ID, UNKNOWN_REQUEST, Counts, Joiner
from tests.manifests import REPO, render
from tests.support.joiner import counts_from_metrics, feedback, metric, recount, slate

WINDOW = timedelta(seconds=60)
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)  # the decisions' time
S = 1_000_000  # microseconds in a second


class Clock:
    """Wall-clock microseconds plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset_us = 0

    def __call__(self) -> int:
        return wall_clock_us() + self.offset_us


def joiner_config(tmp_path: Path) -> JoinerConfig:
    log = EventLogConfig(wal_dir=tmp_path / "wal", log_uri=str(tmp_path / "log"))
    return JoinerConfig(event_log=log, window_s=WINDOW.total_seconds(), remember_s=3600, sealed_scan_interval_s=0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def first_part() -> list[dict]:
    return [
        *slate("r1", ["a", "b", "c"], T0, model_version="v1", variant="stable"),
        feedback("c-1", "click", "b", at(10), request_id="r1"),
        feedback("d-1", "dwell", "b", at(20), request_id="r1", dwell_ms=5000),
        feedback("rt-1", "rating", "a", at(30), request_id="r1", rating=4),
        feedback("c-late", "click", "a", at(90), request_id="r1"),  # 90 s after the decision: late
        *slate("r2", ["x", "y"], at(1), model_version="v2", variant="canary"),
        feedback("c-2", "click", "x", at(5), request_id="r2"),
        feedback("c-zz", "click", "zz", at(6), request_id="r2"),  # not in the slate: the request's labels
        feedback("sv-2", "survey", None, at(7), request_id="r2", question_id="q1", answer="good"),
        feedback("imp-orphan", "impression", "q", T0),  # no request id, no model version
        *slate("r3", ["p"], T0, model_version=None, variant="canary"),
        feedback("c-4", "click", "m", at(5), request_id="r4"),  # before its impressions arrive
        feedback("c-unknown", "click", "a", at(5), request_id="r-unknown"),
        feedback("c-named", "click", "a", at(5), request_id="r-missing", model_version="v9", variant="canary"),
        feedback("c-none", "click", "a", at(5)),
    ]


def second_part() -> list[dict]:
    return [
        *slate("r4", ["m", "n"], at(2), model_version="v1", variant="stable"),
        feedback("cv-2", "conversion", "x", at(30), request_id="r2", value=3.5),
        feedback("th-1", "thumbs", "c", at(40), request_id="r1", thumb="up"),
        feedback("sc-late", "scroll", "b", at(200), request_id="r1", scroll_depth=0.5),
    ]


def copies() -> list[dict]:
    """Events of each part sent again, to another collector replica at the same time (a client's retry): each
    replica stores its copy, with its own arrival time. (A replica that opens later knows the sealed ids.)"""
    return [
        feedback("c-1", "click", "b", at(10), request_id="r1"),
        slate("r4", ["m"], at(2), model_version="v1", variant="stable")[0],
    ]


def write(config: JoinerConfig, records: list[dict], *, copies_too: list[dict] | None = None, live: LogJoiner) -> None:
    """Append with the real writers; the live joiner polls while the segments are open (write-ahead path)."""
    with (
        EventLog(config.event_log, writer_id="collector-0") as first,
        EventLog(config.event_log, writer_id="collector-1") as other,
    ):
        first.append(records)
        other.append(copies_too or [])
        assert live.step() == len(records) + len(copies_too or [])


def test_counts_equal_a_recount_live_and_after_a_restart(tmp_path: Path) -> None:
    config = joiner_config(tmp_path)
    clock = Clock()
    live = LogJoiner(config, clock=clock)
    assert live.start() == 0
    write(config, first_part(), copies_too=copies()[:1], live=live)

    before_restart = LogJoiner(config, clock=clock)
    assert before_restart.start() == len(first_part()) + 1  # from the sealed files
    assert before_restart.snapshot().counts == live.snapshot().counts
    assert before_restart.snapshot().pending == 3 == live.snapshot().pending  # c-4, c-unknown, c-named wait
    before_restart.close()

    write(config, second_part(), copies_too=copies()[1:], live=live)
    assert live.snapshot().pending == 2  # c-unknown and c-named wait; c-4 found its impressions
    clock.offset_us = 5 * 60 * S  # past the window: what still waits is unattributed
    live.step()
    restarted = LogJoiner(config, clock=clock)
    restarted.start()

    expected = recount(config.event_log.log_uri, WINDOW)
    assert live.snapshot().counts == expected
    assert restarted.snapshot().counts == expected
    assert restarted.snapshot().pending == 0
    # The mix is what the test claims it is.
    assert expected.attributed[("v1", "stable", "click")] == 2  # c-1, and c-4 that came before its impressions
    assert expected.attributed[("v2", "canary", "click")] == 2  # c-zz takes the request's labels
    assert expected.attributed[("v2", "canary", "survey")] == 1
    assert expected.dwell_ms[("v1", "stable")] == 5000
    assert expected.late == {("v1", "stable", "click"): 1, ("v1", "stable", "scroll"): 1}
    assert expected.unattributed == {
        ("unknown", "unknown", "click", UNKNOWN_REQUEST): 1,
        ("v9", "canary", "click", UNKNOWN_REQUEST): 1,
        ("unknown", "unknown", "click", NO_REQUEST_ID): 1,
    }
    assert expected.duplicates == {"click": 1, "impression": 1}
    assert expected.impressions == {
        ("v1", "stable"): 5,
        ("v2", "canary"): 2,
        ("unknown", "unknown"): 1,
        ("unknown", "canary"): 1,
    }
    live.close()
    restarted.close()
    clock.offset_us = (3600 + 60) * S
    assert LogJoiner(config, clock=clock).start() == 0  # what arrived more than remember_s ago is not replayed


# -- the pure join, record by record --------------------------------------------------------------------------
def row(event_id: str, kind: str, request_id: str | None, ts_s: float, arrived_s: float, **fields) -> dict:
    return {
        "event_id": event_id,
        "type": kind,
        "request_id": request_id,
        "item_id": fields.pop("item_id", "a"),
        "ts": int(ts_s * S),
        "received_at": int(arrived_s * S),
        **fields,
    }


def impression(request_id: str, ts_s: float, arrived_s: float, **fields) -> dict:
    return row(
        f"imp-{request_id}", "impression", request_id, ts_s, arrived_s, model_version="v1", variant="b", **fields
    )


def test_the_window_is_inclusive_and_late_feedback_is_dropped() -> None:
    joiner = Joiner(window_us=60 * S, remember_us=600 * S)
    joiner.ingest(impression("r", 100, 100))
    joiner.ingest(row("on-edge", "click", "r", 160, 161))
    joiner.ingest(row("just-after", "click", "r", 160.000001, 161))
    joiner.ingest(row("skewed", "click", "r", 99, 161))  # before the decision: a client's clock, accepted
    assert joiner.counts.attributed == {("v1", "b", "click"): 2}
    assert joiner.counts.late == {("v1", "b", "click"): 1}


def test_feedback_takes_the_labels_of_its_items_impression() -> None:
    joiner = Joiner(window_us=60 * S, remember_us=600 * S)
    joiner.ingest(impression("r", 100, 100, item_id="a"))
    joiner.ingest(row("imp-r-2", "impression", "r", 100, 100, item_id="c", model_version="v2", variant="c"))
    joiner.ingest(row("on-c", "click", "r", 101, 101, item_id="c"))
    joiner.ingest(row("on-z", "click", "r", 101, 101, item_id="z"))  # not shown: the request's first impression
    joiner.ingest(row("d", "dwell", "r", 101, 101, item_id="c", dwell_ms=700))
    assert joiner.counts.attributed == {("v2", "c", "click"): 1, ("v1", "b", "click"): 1, ("v2", "c", "dwell"): 1}
    assert joiner.counts.dwell_ms == {("v2", "c"): 700}


def test_an_unknown_request_waits_the_window_for_its_impressions() -> None:
    joiner = Joiner(window_us=60 * S, remember_us=600 * S)
    joiner.ingest(row("early", "click", "r", 101, 100))
    joiner.ingest(row("orphan", "click", "nobody", 101, 100))
    assert joiner.pending == 2 and joiner.counts == Counts()
    joiner.ingest(impression("r", 100, 159))  # the served impressions arrive 59 s after the click
    assert joiner.counts.attributed == {("v1", "b", "click"): 1}
    assert joiner.pending == 1
    joiner.advance(160 * S + 1)
    assert joiner.pending == 0
    assert joiner.counts.unattributed == {("unknown", "unknown", "click", UNKNOWN_REQUEST): 1}
    joiner.ingest(impression("nobody", 101, 170))  # too late for the click that waited: it stays unattributed
    assert joiner.counts.attributed == {("v1", "b", "click"): 1}


def test_a_forgotten_request_makes_its_feedback_unattributed_and_ids_age_out() -> None:
    joiner = Joiner(window_us=60 * S, remember_us=600 * S)
    joiner.ingest(impression("r", 100, 100))
    joiner.ingest(row("late", "click", "r", 500, 500))
    assert joiner.counts.late == {("v1", "b", "click"): 1} and joiner.requests == 1
    joiner.advance(701 * S)
    assert joiner.requests == 0
    joiner.ingest(row("later", "click", "r", 700, 701))
    joiner.advance(800 * S)
    assert joiner.counts.unattributed == {("unknown", "unknown", "click", UNKNOWN_REQUEST): 1}
    joiner.ingest(impression("r", 100, 800))  # its id was forgotten with it: counted again, not a duplicate
    assert joiner.counts.impressions == {("v1", "b"): 2} and not joiner.counts.duplicates


def test_the_clock_never_moves_back_and_the_window_must_fit_in_memory() -> None:
    joiner = Joiner(window_us=60 * S, remember_us=600 * S)
    joiner.advance(1000 * S)
    joiner.advance(10 * S)
    assert joiner.now_us == 1000 * S
    with pytest.raises(ValueError, match="remember_us"):
        Joiner(window_us=60 * S, remember_us=59 * S)


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "joiner.yaml"
    path.write_text("window_s: 600\nremember_s: 60\n")
    with pytest.raises(ConfigError, match=r"remember_s: .*at least window_s"):
        load_config(JoinerConfig, path)
    path.write_text("window_s: 0\n")
    with pytest.raises(ConfigError, match="window_s"):
        load_config(JoinerConfig, path)
    path.write_text("windw_s: 60\n")
    with pytest.raises(ConfigError, match="windw_s"):
        load_config(JoinerConfig, path)


def test_the_shipped_config_keeps_local_state_under_dot_kfloop() -> None:
    config = load_config(JoinerConfig, REPO / "manifests" / "joiner" / "joiner.yaml")
    assert (config.host, config.port) == ("127.0.0.1", 8092)
    assert config.event_log.wal_dir == Path(".kfloop/wal") and config.event_log.log_uri == ".kfloop/events"
    assert config == JoinerConfig()  # the file spells out the defaults


# -- the service ----------------------------------------------------------------------------------------------
def test_metrics_show_the_counts_and_a_zero_click_series(tmp_path: Path) -> None:
    config = joiner_config(tmp_path)
    with EventLog(config.event_log, writer_id="collector-0") as log:
        log.append([*first_part(), *second_part()])
    clock = Clock()
    clock.offset_us = 5 * 60 * S
    with TestClient(create_app(config, LogJoiner(config, clock=clock))) as client:
        assert client.get("/healthz").json() == {"status": "ok"}  # at once, while the log is replayed
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the joiner never became ready"
            time.sleep(0.02)
        text = client.get("/metrics").text
    assert counts_from_metrics(text) == recount(config.event_log.log_uri, WINDOW)
    assert metric(text, "kfloop_joiner_clicks_total", model_version="v1", variant="stable") == 2
    assert metric(text, "kfloop_joiner_impressions_total", model_version="unknown", variant="canary") == 1
    assert 'kfloop_joiner_clicks_total{model_version="unknown",variant="canary"} 0.0' in text
    assert metric(text, "kfloop_joiner_replayed_events") == len(first_part()) + len(second_part())


# -- on a cluster ---------------------------------------------------------------------------------------------
def test_the_cluster_joiner_reads_the_collectors_write_ahead_volume_with_its_shipped_config() -> None:
    """The Deployment's command is a `kfloop joiner` the CLI parses, and with the ConfigMap's file it makes a
    config whose write-ahead directory is the collectors' volume, mounted read-only, on the port it exposes."""
    rendered = render(REPO / "manifests" / "overlays" / "prod")
    (deployment,) = [d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] == "kfloop-joiner"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == ["kfloop"] and container["args"][0] == "joiner"
    args = build_parser().parse_args(container["args"])
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: (m, volumes[m["name"]]) for m in container["volumeMounts"]}
    config_map_name = mounts[str(Path(args.config).parent)][1]["configMap"]["name"]
    (config_map,) = [d for d in rendered if d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_map_name]
    data = yaml.safe_load(config_map["data"][Path(args.config).name])
    config = JoinerConfig.model_validate(data)
    assert config == load_config(JoinerConfig, REPO / "manifests" / "joiner" / "joiner.yaml")
    overridden = load_config(JoinerConfig, REPO / "manifests" / "joiner" / "joiner.yaml", flags.overrides(args))
    assert overridden.host == "0.0.0.0"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": overridden.port}
    mount, volume = mounts[str(overridden.event_log.wal_dir)]
    assert mount["readOnly"] and volume["persistentVolumeClaim"] == {"claimName": "kfloop-wal", "readOnly": True}
    (collector,) = [d for d in rendered if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "kfloop-collector"]
    assert f"--wal-dir={overridden.event_log.wal_dir}" in collector["spec"]["template"]["spec"]["containers"][0]["args"]
    assert overridden.event_log.log_uri == "$(KFLOOP_LOG_URI)"  # expanded by the kubelet from kfloop-params
    monitors = [d for d in rendered if d["kind"] == "ServiceMonitor" and d["metadata"]["name"] == "kfloop-joiner"]
    assert [m["spec"]["endpoints"][0]["path"] for m in monitors] == ["/metrics"]
