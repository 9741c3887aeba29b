"""The durable event log: acknowledgement, dedup, consent, sealing and crash recovery."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kfloop.errors import NotReady
from kfloop.eventlog import EventLog, EventLogConfig, read_events, sealed_files
from kfloop.eventlog.wal import encode_line, read_segment, segments_in
from tests.conftest import make_record


def test_acknowledged_events_are_readable_after_close(log_config):
    with EventLog(log_config, writer_id="w0") as log:
        statuses = log.append([make_record(f"e{i}") for i in range(250)])
    assert statuses == ["accepted"] * 250
    table = read_events(log_config.log_uri)
    assert sorted(table.column("event_id").to_pylist()) == sorted(f"e{i}" for i in range(250))
    assert table.schema.field("ts").type.tz == "UTC"


def test_duplicates_dropped_within_a_batch_and_across_restarts(log_config):
    with EventLog(log_config, writer_id="w0") as log:
        assert log.append([make_record("a"), make_record("a"), make_record("b")]) == [
            "accepted",
            "duplicate",
            "accepted",
        ]
    with EventLog(log_config, writer_id="w0") as log:
        assert log.append([make_record("a"), make_record("c")]) == ["duplicate", "accepted"]
    assert read_events(log_config.log_uri).num_rows == 3


def test_events_without_personalization_consent_are_never_stored(log_config):
    with EventLog(log_config, writer_id="w0") as log:
        assert log.append([make_record("yes"), make_record("no", consent=False)]) == [
            "accepted",
            "dropped_consent",
        ]
    assert read_events(log_config.log_uri).column("event_id").to_pylist() == ["yes"]


def test_reader_drops_duplicates_written_by_different_replicas(log_config):
    for writer in ("replica-a", "replica-b"):
        with EventLog(log_config, writer_id=writer) as log:
            log.append([make_record("shared"), make_record(f"only-{writer}")])
    assert len(sealed_files(log_config.log_uri)) == 2
    ids = read_events(log_config.log_uri).column("event_id").to_pylist()
    assert sorted(ids) == ["only-replica-a", "only-replica-b", "shared"]


def test_segment_sealed_by_age_while_open(tmp_path):
    config = EventLogConfig(wal_dir=tmp_path / "wal", log_uri=str(tmp_path / "log"), segment_max_age_s=0.2)
    with EventLog(config, writer_id="w0") as log:
        log.append([make_record("early")])
        deadline = time.monotonic() + 10
        while not sealed_files(config.log_uri) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert read_events(config.log_uri).column("event_id").to_pylist() == ["early"]


def test_segment_sealed_by_size(tmp_path):
    config = EventLogConfig(wal_dir=tmp_path / "wal", log_uri=str(tmp_path / "log"), segment_max_events=10)
    with EventLog(config, writer_id="w0") as log:
        for batch in range(5):
            log.append([make_record(f"e{batch}-{i}") for i in range(10)])
    assert len(sealed_files(config.log_uri)) == 5
    assert read_events(config.log_uri).num_rows == 50


def test_time_window_filters_on_event_time(log_config):
    from datetime import UTC, datetime

    with EventLog(log_config, writer_id="w0") as log:
        log.append([make_record("old", ts="2026-01-01T00:00:00Z"), make_record("new", ts="2026-06-01T00:00:00Z")])
    table = read_events(log_config.log_uri, since=datetime(2026, 3, 1, tzinfo=UTC))
    assert table.column("event_id").to_pylist() == ["new"]


def test_recovery_seals_a_torn_segment_and_keeps_every_intact_line(log_config):
    directory = log_config.wal_dir / "w0"
    directory.mkdir(parents=True)
    lines = [encode_line(make_record(f"e{i}")) for i in range(5)]
    torn = encode_line(make_record("torn"))[:-7]  # a crash mid-write: never acknowledged
    (directory / "seg-0000000000001-000001.wal").write_bytes(b"".join(lines) + torn)
    with EventLog(log_config, writer_id="w0"):
        pass
    assert list(segments_in(directory)) == []
    ids = sorted(read_events(log_config.log_uri).column("event_id").to_pylist())
    assert ids == [f"e{i}" for i in range(5)]


def test_corrupt_line_is_skipped_not_fatal(tmp_path):
    good = encode_line(make_record("good"))
    bad = bytearray(encode_line(make_record("bad")))
    bad[20] ^= 0xFF
    path = tmp_path / "seg.wal"
    path.write_bytes(good + bytes(bad) + good.replace(b"good", b"g00d"))
    records, corrupt = read_segment(path)
    assert [r["event_id"] for r in records] == ["good"]
    assert corrupt == 2  # the flipped byte, and the edited line whose checksum no longer matches


def test_log_location_may_be_a_filesystem_uri(tmp_path):
    config = EventLogConfig(wal_dir=tmp_path / "wal", log_uri=f"file://{tmp_path}/remote")
    with EventLog(config, writer_id="w0") as log:
        log.append([make_record("x")])
    assert read_events(config.log_uri).column("event_id").to_pylist() == ["x"]


def test_appending_to_a_closed_log_fails_loudly(log_config):
    log = EventLog(log_config, writer_id="w0").open()
    log.close()
    with pytest.raises(NotReady, match="not open"):
        log.append([make_record("late")])


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from kfloop.eventlog import EventLog, EventLogConfig
    from tests.conftest import make_record
    config = EventLogConfig(wal_dir=Path(sys.argv[1]), log_uri=sys.argv[2], segment_max_events=300)
    log = EventLog(config, writer_id="w0").open()
    for n in range(100000):
        batch = [make_record(f"e{n}-{i}") for i in range(1 + n % 7)]
        statuses = log.append(batch)
        for record, status in zip(batch, statuses):
            print(record["event_id"], status, flush=True)
    """
)


def test_sigkill_mid_write_loses_no_acknowledged_event(tmp_path):
    """A writer killed with SIGKILL mid-stream: every id it printed as acknowledged survives recovery."""
    wal, uri = tmp_path / "wal", str(tmp_path / "log")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(wal), uri],
        cwd=repo,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    acknowledged = []
    assert proc.stdout is not None
    for line in proc.stdout:
        acknowledged.append(line.split()[0].decode())
        if len(acknowledged) >= 3000:
            proc.kill()
            break
    proc.wait(timeout=30)
    rest = proc.stdout.read().split(b"\n")
    acknowledged += [line.split()[0].decode() for line in rest if line.strip()]
    assert proc.returncode == -9

    with EventLog(EventLogConfig(wal_dir=wal, log_uri=uri), writer_id="w0"):
        pass
    for path in sealed_files(uri):
        pq.read_table(path)  # every file readable on its own
    stored = set(read_events(uri).column("event_id").to_pylist())
    assert set(acknowledged) <= stored


def test_a_duplicate_of_an_event_still_in_flight_waits_for_its_commit(log_config, monkeypatch):
    """'duplicate' must never be answered for an event that is not yet durable."""
    import threading

    from kfloop.eventlog import wal

    release = threading.Event()
    original = wal.Segment.append

    def slow_append(self, lines):
        release.wait(timeout=30)
        original(self, lines)

    monkeypatch.setattr(wal.Segment, "append", slow_append)
    with EventLog(log_config, writer_id="w0") as log:
        first = log.submit([make_record("x")])
        second = log.submit([make_record("x")])
        time.sleep(0.2)
        assert not first.done() and not second.done()
        release.set()
        assert first.result(timeout=10) == ["accepted"]
        assert second.result(timeout=10) == ["duplicate"]


def test_a_failed_fsync_stops_the_log_instead_of_acknowledging_more(log_config, monkeypatch):
    import errno

    from kfloop.eventlog import wal

    def failing_append(self, lines):
        raise OSError(errno.EIO, "Input/output error")

    log = EventLog(log_config, writer_id="w0").open()
    monkeypatch.setattr(wal.Segment, "append", failing_append)
    with pytest.raises(OSError):
        log.append([make_record("lost")])
    with pytest.raises(NotReady, match="failed durable write"):
        log.append([make_record("next")])
    assert not log.ready
    log.close()
