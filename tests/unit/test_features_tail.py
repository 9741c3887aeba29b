"""WalTailer: new complete lines of every writer's segments, through sealing, and missed segments."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from kfloop.eventlog import EventLog, EventLogConfig, sealed_files
from kfloop.eventlog.tail import WalTailer, sealed_segment_of
from kfloop.eventlog.wal import encode_line, to_micros
from kfloop.features.synthetic import feedback_record

TS = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def rec(event_id: str) -> dict:
    return feedback_record(event_id, "click", "u1", "3", TS)


def ids(records: list[dict]) -> list[str]:
    return [r["event_id"] for r in records]


def config(tmp_path: Path, **kw) -> EventLogConfig:
    return EventLogConfig(wal_dir=tmp_path / "wal", log_uri=str(tmp_path / "log"), **kw)


def test_reads_new_lines_of_every_writer_once(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with EventLog(cfg, writer_id="c0") as a, EventLog(cfg, writer_id="c1") as b, WalTailer(cfg) as tailer:
        assert tailer.poll() == []
        a.append([rec("a1"), rec("a2")])
        b.append([rec("b1")])
        first = tailer.poll()
        assert sorted(ids(first)) == ["a1", "a2", "b1"]
        assert first[0]["ts"] == to_micros(TS)  # write-ahead form: epoch microseconds
        assert tailer.poll() == []
        a.append([rec("a3")])
        assert ids(tailer.poll()) == ["a3"]


def test_an_incomplete_line_waits_and_a_corrupt_one_is_skipped(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    segment = cfg.wal_dir / "w" / "seg-0000000000001-000001.wal"
    segment.parent.mkdir(parents=True)
    line = encode_line(rec("x1"))
    with WalTailer(cfg) as tailer, open(segment, "ab") as handle:
        handle.write(line[:20])
        handle.flush()
        assert tailer.poll() == []
        handle.write(line[20:])
        handle.write(b"00000000 {}\n")  # checksum does not match
        handle.write(encode_line(rec("x2")))
        handle.flush()
        assert ids(tailer.poll()) == ["x1", "x2"]
        assert tailer.corrupt_lines == 1


def test_finishes_a_segment_sealed_after_it_was_opened(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    log = EventLog(cfg, writer_id="c0").open()
    with WalTailer(cfg) as tailer:
        log.append([rec("e1")])
        assert ids(tailer.poll()) == ["e1"]
        log.append([rec("e2")])
        log.close()  # seals: Parquet written, segment unlinked
        assert not list((cfg.wal_dir / "c0").glob("*.wal"))
        assert ids(tailer.poll()) == ["e2"]
        assert tailer._open == {}  # read to the end, handle released


def test_reads_the_parquet_of_a_segment_sealed_before_it_was_seen(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with WalTailer(cfg, sealed_scan_interval_s=0.0) as tailer:
        tailer.poll()
        with EventLog(cfg, writer_id="c0") as log:
            log.append([rec("p1"), rec("p2")])
        assert sorted(ids(tailer.poll())) == ["p1", "p2"]
        assert tailer.poll() == []  # each sealed file once


def test_sealed_files_the_caller_read_are_not_read_again(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with EventLog(cfg, writer_id="c0") as log:
        log.append([rec("s1")])
    with WalTailer(cfg, sealed_scan_interval_s=0.0) as tailer:
        tailer.mark_sealed_read(sealed_files(cfg.log_uri))
        assert tailer.poll() == []


def test_a_missing_wal_directory_is_not_an_error(tmp_path: Path) -> None:
    with WalTailer(config(tmp_path)) as tailer:
        assert tailer.poll() == []


def test_sealed_file_names_map_back_to_their_segment() -> None:
    path = "/x/events/date=2026-11-23/collector-0-seg-1763900000000-000003.parquet"
    assert sealed_segment_of(path) == ("collector-0", "seg-1763900000000-000003")
    assert sealed_segment_of("/x/other.parquet") is None


def test_segment_names_written_by_the_log_are_recognised(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with EventLog(cfg, writer_id="obd-import") as log:
        log.append([rec("n1")])
        stem = next((cfg.wal_dir / "obd-import").glob("*.wal")).stem
    [path] = sealed_files(cfg.log_uri)
    assert sealed_segment_of(path) == ("obd-import", stem)
    assert os.path.basename(path).startswith("obd-import-seg-")


def test_names_outside_the_scanned_dates_are_forgotten(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with WalTailer(cfg, sealed_scan_interval_s=0.0) as tailer:
        tailer.mark_sealed_read(["/x/events/date=2020-01-01/w-seg-1577836800000-000001.parquet"])
        tailer._seen_segments.add(("w", "seg-1577836800000-000001"))
        tailer.poll()
        assert tailer._seen_sealed == set() and tailer._seen_segments == set()
