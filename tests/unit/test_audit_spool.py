"""The predictor-side spool and shipper: durable appends, crash recovery, acknowledged-only progress."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest

from kfloop.audit import AuditRecorder, HttpSink, Shipper, Spool, SpoolConfig, store_delivery, verify_store
from kfloop.audit.record import record_json
from kfloop.audit.shipper import REJECTED_FILE, SKIPPED, DeliveryFailed, Receipt
from kfloop.audit.spool import OFFSET_FILE, SINK, SpoolLocked
from kfloop.audit.store.sqlite import SqliteStore
from kfloop.errors import KfloopError
from kfloop.processes import free_port
from tests.unit.test_audit_support import decision, decisions


@pytest.fixture
def spool(tmp_path: Path):
    with Spool(tmp_path / "spool") as s:
        yield s


@pytest.fixture
def store(tmp_path: Path):
    with SqliteStore(tmp_path / "audit.db") as s:
        yield s


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.spool"))


def test_records_read_back_in_order_and_a_commit_moves_past_them(spool):
    spool.append(decisions(5))
    batch = spool.read_batch(3)
    assert [r["request_id"] for r in batch.records] == ["req-000000", "req-000001", "req-000002"]
    assert spool.read_batch(3).records == batch.records  # nothing moves until a commit
    spool.commit(batch.end)
    rest = spool.read_batch(10)
    assert [r["request_id"] for r in rest.records] == ["req-000003", "req-000004"]
    spool.commit(rest.end)
    assert spool.read_batch(10) is None
    assert spool.pending_bytes() == 0


def test_a_spooled_record_reads_back_as_its_json_form(spool):
    plain = decision(1)
    wide = decision(2).model_copy(update={"inputs": {"user": {"big": 2**70, "f": 0.1}, "items": {"s": ["é", None]}}})
    spool.append([plain, wide])  # the second needs the general encoder (an integer beyond 64 bits)
    assert spool.read_batch(10).records == [record_json(plain), record_json(wide)]


def test_reopening_resumes_at_the_last_commit(tmp_path):
    directory = tmp_path / "spool"
    with Spool(directory) as spool:
        spool.append(decisions(10))
        spool.commit(spool.read_batch(4).end)
    with Spool(directory) as spool:
        assert [r["request_id"] for r in spool.read_batch(100).records] == [f"req-{i:06d}" for i in range(4, 10)]


def test_a_torn_tail_from_a_crash_is_dropped_on_open(tmp_path):
    directory = tmp_path / "spool"
    with Spool(directory) as spool:
        spool.append(decisions(3))
    (segment,) = segment_files(directory)
    whole = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(b'1234abcd {"request_id": "half-writ')  # the crash hit mid-line: never acknowledged
    with Spool(directory) as spool:
        assert segment.stat().st_size == whole
        assert len(spool.read_batch(10).records) == 3
        spool.append([decision(3)])
        assert len(spool.read_batch(10).records) == 4


def test_a_corrupt_line_is_set_aside_and_the_rest_still_ships(tmp_path):
    directory = tmp_path / "spool"
    with Spool(directory) as spool:
        spool.append(decisions(3))
    (segment,) = segment_files(directory)
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(lines[0] + lines[1].replace(b"req-000001", b"req-000666") + lines[2])
    with Spool(directory) as spool:
        batch = spool.read_batch(10)
        assert [r["request_id"] for r in batch.records] == ["req-000000", "req-000002"]
        assert spool.corrupt_lines == 1
    assert b"req-000666" in (directory / "corrupt.lines").read_bytes()


def test_one_process_owns_a_spool(spool):
    with pytest.raises(SpoolLocked):
        Spool(spool.dir).open()


def test_segments_roll_and_shipped_ones_are_deleted(tmp_path, store):
    with Spool(tmp_path / "spool", segment_max_bytes=4096) as spool:
        for i in range(0, 60, 3):
            spool.append(decisions(3, start=i))
        assert len(segment_files(spool.dir)) > 3
        shipper = Shipper(spool, store_delivery(store), batch_max_records=7)
        assert shipper.drain(timeout_s=30)
        assert len(segment_files(spool.dir)) == 1  # only the active one is left
        assert spool.pending_bytes() == 0
    assert store.count() == 60
    assert verify_store(store).ok


def test_a_resend_after_a_crash_before_the_commit_adds_nothing(tmp_path, store):
    directory = tmp_path / "spool"
    with Spool(directory) as spool:
        spool.append(decisions(50))
        assert Shipper(spool, store_delivery(store), batch_max_records=20).drain(timeout_s=30)
    # the crash window: the sink acknowledged, but the offset never reached the disk
    (directory / OFFSET_FILE).unlink()
    with Spool(directory) as spool:
        shipper = Shipper(spool, store_delivery(store), batch_max_records=20)
        assert shipper.drain(timeout_s=30)
    assert shipper.stats.shipped == 50 and shipper.stats.duplicates == 50
    assert store.count() == 50


def test_records_the_sink_refuses_are_set_aside_and_shipping_goes_on(tmp_path, store):
    store.append([decision(1)])
    with Spool(tmp_path / "spool") as spool:
        spool.append([decision(0), decision(1, model_version="m-other"), decision(2)])
        shipper = Shipper(spool, store_delivery(store))
        assert shipper.drain(timeout_s=30)
    rejected = [json.loads(line) for line in (spool.dir / REJECTED_FILE).read_text().splitlines()]
    assert [(r["status"], r["record"]["request_id"]) for r in rejected] == [("conflict", "req-000001")]
    assert shipper.stats.dead_lettered == 1
    assert store.count() == 3


def test_an_unreachable_sink_leaves_the_records_in_the_spool(spool):
    spool.append(decisions(3))
    shipper = Shipper(spool, HttpSink(f"http://127.0.0.1:{free_port()}", timeout_s=2))
    with pytest.raises(DeliveryFailed, match="unreachable"):
        shipper.ship_once()
    assert len(spool.read_batch(10).records) == 3


def test_the_recorder_ships_in_the_background(tmp_path, store):
    config = SpoolConfig(dir=tmp_path / "spool", idle_wait_s=0.05)
    with AuditRecorder(config, deliver=store_delivery(store)) as recorder:
        for record in decisions(25):
            recorder.record(record)
    assert store.count() == 25
    assert [json.loads(r.record) for r in store.rows()] == [record_json(d) for d in decisions(25)]


def test_spool_files_are_framed_json_lines(spool):
    spool.append([decision(0)])
    (segment,) = segment_files(spool.dir)
    crc, payload = segment.read_bytes().rstrip(b"\n").split(b" ", 1)
    assert len(crc) == 8 and json.loads(payload)["request_id"] == "req-000000"
    assert os.stat(segment).st_size == len(crc) + 1 + len(payload) + 1


def test_the_shipper_delivers_each_record_as_spooled(spool):
    spool.append(decisions(3))
    (segment,) = segment_files(spool.dir)
    spooled = [line.split(b" ", 1)[1].rstrip(b"\n") for line in segment.read_bytes().splitlines(keepends=True)]
    delivered: list[bytes] = []
    Shipper(spool, lambda payloads: delivered.extend(payloads) or [Receipt("accepted")] * len(payloads)).ship_once()
    assert delivered == spooled  # bytes as written: no decoding and encoding again in the predictor


def test_a_store_delivery_refuses_a_record_that_is_not_json(tmp_path, store):
    receipts = store_delivery(store)([b"[1, 2]", orjson.dumps(record_json(decision(0))), b"{not json"])
    assert [r.status for r in receipts] == ["rejected", "accepted", "rejected"]
    assert store.count() == 1


def test_each_cursor_reads_every_record_and_a_segment_stays_until_every_cursor_passed_it(tmp_path, store):
    directory = tmp_path / "spool"
    with Spool(directory, segment_max_bytes=4096, cursors=(SINK, "impressions")) as spool:
        for i in range(0, 60, 3):
            spool.append(decisions(3, start=i))
        segments = len(segment_files(directory))
        assert Shipper(spool, store_delivery(store), batch_max_records=7).drain(timeout_s=30)
        assert len(segment_files(directory)) == segments  # the impressions cursor has read none of them
        impressions = spool.cursor("impressions")
        assert impressions.pending_bytes() > 0 and spool.pending_bytes() == 0
        seen: list[str] = []
        batch = impressions.read_batch(25)
        seen += [r["request_id"] for r in batch.records]
        impressions.commit(batch.end)
        assert 1 < len(segment_files(directory)) < segments  # those both cursors passed are gone
    with Spool(directory, segment_max_bytes=4096, cursors=(SINK, "impressions")) as spool:  # each resumes
        assert spool.read_batch(10) is None
        rest = spool.cursor("impressions").read_batch(100)
        seen += [r["request_id"] for r in rest.records]
        spool.cursor("impressions").commit(rest.end)
        assert len(segment_files(directory)) == 1
    assert seen == [f"req-{i:06d}" for i in range(60)]
    assert (directory / OFFSET_FILE).exists() and (directory / "offset.impressions.json").exists()


def test_a_cursor_the_spool_was_not_made_with_is_refused(spool):
    with pytest.raises(KfloopError, match="no cursor 'impressions'"):
        spool.cursor("impressions")


def test_a_shipper_of_another_cursor_keeps_its_own_dead_letters(tmp_path, store):
    with Spool(tmp_path / "spool", cursors=(SINK, "other")) as spool:
        spool.append(decisions(2))
        refuse_first = lambda payloads: [Receipt("rejected", "no")] + [Receipt(SKIPPED)] * (len(payloads) - 1)  # noqa: E731
        shipper = Shipper(spool.cursor("other"), refuse_first, rejected_file="rejected-other.jsonl")
        assert shipper.drain(timeout_s=30)
        assert spool.read_batch(10) is not None  # the sink's cursor has not moved
    (rejected,) = [json.loads(line) for line in (spool.dir / "rejected-other.jsonl").read_text().splitlines()]
    assert rejected["record"]["request_id"] == "req-000000" and rejected["detail"] == "no"
    assert not (spool.dir / REJECTED_FILE).exists() and shipper.stats.dead_lettered == 1
