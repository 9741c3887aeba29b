"""The SQLite audit store, exports and verify: 10,000 decisions written, pulled in every format and verified;
any single edit, in the store or in an export, is named by verify."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfloop.audit import (
    FORMATS,
    AuditStoreConfig,
    RowQuery,
    make_store,
    open_store,
    verify_file,
    verify_store,
    write_export,
)
from kfloop.audit.config import STORE_URL_ENV
from kfloop.audit.store.sqlite import SqliteStore
from kfloop.cli.commands import audit as audit_cli
from tests.unit.test_audit_support import T0, decision, decisions, tamper_sqlite

N = 10_000


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A store holding 10,000 decisions, appended in batches of 500 through the store API; copied per test."""
    path = tmp_path_factory.mktemp("audit") / "pristine.db"
    with SqliteStore(path) as store:
        records = decisions(N)
        for start in range(0, N, 500):
            statuses = {a.status for a in store.append(records[start : start + 500])}
            assert statuses == {"accepted"}
    return path


@pytest.fixture
def db(pristine: Path, tmp_path: Path) -> Path:
    path = tmp_path / "audit.db"
    shutil.copy(pristine, path)
    return path


def verify_db(path: Path):
    with SqliteStore(path) as store:
        return verify_store(store)


def export(path: Path, fmt: str, out: Path, query: RowQuery | None = None) -> Path:
    with SqliteStore(path) as store:
        write_export(store.rows(query), out, fmt)
    return out


# -- writing -----------------------------------------------------------------------------------------
def test_appends_get_consecutive_seqs_each_linked_to_the_last(tmp_path):
    with SqliteStore(tmp_path / "a.db") as store:
        first = store.append(decisions(3))
        second = store.append(decisions(2, start=3))
        rows = list(store.rows())
        head = store.head()
    assert [a.seq for a in first + second] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == "0" * 64
    assert all(rows[i].prev_hash == rows[i - 1].hash for i in range(1, 5))
    assert (head.seq, head.hash) == (5, rows[-1].hash)


def test_a_resend_is_a_duplicate_and_a_reused_id_with_other_content_a_conflict(tmp_path):
    with SqliteStore(tmp_path / "a.db") as store:
        store.append(decisions(3))
        again = store.append([decision(1), decision(2, model_version="m-other"), decision(3)])
        assert [(a.status, a.seq) for a in again] == [("duplicate", 2), ("conflict", 3), ("accepted", 4)]
        within = store.append([decision(9), decision(9)])
        assert [a.status for a in within] == ["accepted", "duplicate"]
        assert store.count() == 5
        assert verify_store(store).ok


def test_the_store_refuses_update_and_delete(db):
    connection = sqlite3.connect(db)
    for sql in ("UPDATE audit_records SET variant = 'x' WHERE seq = 1", "DELETE FROM audit_records WHERE seq = 1"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute(sql)
    with pytest.raises(sqlite3.IntegrityError, match="forward"):
        connection.execute("UPDATE audit_head SET seq = 1")
    connection.close()
    assert verify_db(db).ok


def test_concurrent_writers_keep_one_linear_chain(tmp_path):
    config = AuditStoreConfig(url=f"sqlite:///{tmp_path / 'a.db'}")
    make_store(config).open()  # create the schema once, as a deployment would

    def write(worker: int) -> None:
        with make_store(config) as store:
            for start in range(0, 400, 20):
                store.append(decisions(20, start=worker * 1000 + start))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open_store(config) as store:
        report = verify_store(store)
    assert report.ok, report.summary()
    assert report.records == 1600


def test_queries_filter_on_decision_time_model_user_and_kind(db):
    with SqliteStore(db) as store:
        since, until = T0 + timedelta(seconds=100), T0 + timedelta(seconds=200)
        window = list(store.rows(RowQuery(since=since, until=until)))
        assert [r.request_id for r in window] == [f"req-{i:06d}" for i in range(100, 200)]
        model = list(store.rows(RowQuery(model_version="m-2026-11-22", until=until)))
        assert len(model) == 100 and {r.model_version for r in model} == {"m-2026-11-22"}
        user = list(store.rows(RowQuery(user_id="u-5")))
        assert {r.user_id for r in user} == {"u-5"} and len(user) == len(range(5, N, 97))
        assert list(store.rows(RowQuery(kinds=("explanation",)))) == []
        paged = list(store.rows(RowQuery(), page_size=333))
        assert [r.seq for r in paged] == list(range(1, N + 1))


# -- the acceptance path -----------------------------------------------------------------------------
def test_ten_thousand_decisions_verify_in_the_store_and_in_every_export(db, tmp_path):
    report = verify_db(db)
    assert report.ok, report.summary()
    assert (report.records, report.first_seq, report.last_seq) == (N, 1, N)
    for fmt in FORMATS:
        out = export(db, fmt, tmp_path / f"all.{fmt}")
        file_report = verify_file(out)
        assert file_report.ok, file_report.summary()
        assert (file_report.records, file_report.last_hash) == (N, report.last_hash)


def test_every_exported_row_carries_its_chain_links(db, tmp_path):
    out = export(db, "jsonl", tmp_path / "all.jsonl", RowQuery(until=T0 + timedelta(seconds=2)))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in rows] == [1, 2]
    assert rows[0]["prev_hash"] == "0" * 64 and rows[1]["prev_hash"] == rows[0]["hash"]
    assert rows[1]["record"]["inputs"] == decision(1).model_dump(mode="json")["inputs"]
    table = pq.read_table(export(db, "parquet", tmp_path / "all.parquet"))
    assert {"seq", "prev_hash", "hash"} <= set(table.column_names)
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")


# -- tampering with the store ------------------------------------------------------------------------
def test_an_altered_record_is_named(db):
    tamper_sqlite(
        db, "UPDATE audit_records SET record = replace(record, '\"score\":1.0', '\"score\":0.99') WHERE seq = 4321"
    )
    report = verify_db(db)
    assert not report.ok
    assert (report.problem.seq, report.problem.request_id) == (4321, "req-004320")
    assert "hash does not match" in report.problem.reason
    assert report.records == 4320  # everything before it checked out


def test_an_altered_index_column_is_named(db):
    tamper_sqlite(db, "UPDATE audit_records SET model_version = 'm-fake' WHERE seq = 77")
    report = verify_db(db)
    assert report.problem.seq == 77
    assert "column model_version is 'm-fake'" in report.problem.reason


def test_an_altered_record_with_its_hash_recomputed_breaks_the_next_link(db):
    from kfloop.audit.chain import entry_bytes, link_hash

    with SqliteStore(db) as store:
        row = next(store.rows(RowQuery(after_seq=499, up_to_seq=500)))
    record = json.loads(row.record)
    record["variant"] = "stable" if record["variant"] == "canary" else "canary"
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    forged = link_hash(row.prev_hash, entry_bytes(500, row.received_at, record))
    tamper_sqlite(
        db,
        "UPDATE audit_records SET record = ?, variant = ?, hash = ? WHERE seq = 500",
        text,
        record["variant"],
        forged,
    )
    report = verify_db(db)
    assert report.problem.seq == 501
    assert "hash of seq 500" in report.problem.reason


def test_a_deleted_record_is_a_gap(db):
    tamper_sqlite(db, "DELETE FROM audit_records WHERE seq = 5000")
    report = verify_db(db)
    assert report.problem.seq == 5001
    assert "gap: seq 5000 missing" in report.problem.reason


def test_records_deleted_from_the_end_are_caught_by_the_head(db):
    tamper_sqlite(db, "DELETE FROM audit_records WHERE seq > 9990")
    report = verify_db(db)
    assert report.problem.seq == 9991
    assert "head says the chain ends at seq 10000" in report.problem.reason


def test_a_record_slipped_in_past_the_head_is_reported(db):
    tamper_sqlite(
        db,
        "INSERT INTO audit_records SELECT seq + 1, record_id || '-copy', kind, request_id, ts, model_version, "
        "variant, user_id, received_at, record, hash, hash FROM audit_records WHERE seq = ?",
        N,
    )
    report = verify_db(db)
    assert report.problem.seq == N + 1 and "beyond the chain head" in report.problem.reason


def test_a_deleted_head_is_reported(db):
    tamper_sqlite(db, "DROP TRIGGER audit_head_no_delete")
    tamper_sqlite(db, "DELETE FROM audit_head")
    assert "chain head was deleted" in verify_db(db).problem.reason


# -- tampering with exports --------------------------------------------------------------------------
def test_an_altered_jsonl_line_is_named(db, tmp_path):
    out = export(db, "jsonl", tmp_path / "all.jsonl")
    lines = out.read_text().splitlines(keepends=True)
    row = json.loads(lines[1233])
    row["record"]["candidates"][0]["score"] = 0.5
    lines[1233] = json.dumps(row) + "\n"
    out.write_text("".join(lines))
    report = verify_file(out)
    assert (report.problem.seq, report.problem.line, report.problem.request_id) == (1234, 1234, "req-001233")


def test_an_altered_csv_cell_is_named(db, tmp_path):
    out = export(db, "csv", tmp_path / "all.csv")
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    rows[8001][header.index("user_id")] = "u-somebody-else"  # the row of seq 8001
    with open(out, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    report = verify_file(out)
    assert (report.problem.seq, report.problem.line) == (8001, 8002)
    assert "column user_id" in report.problem.reason


def test_an_altered_parquet_value_is_named(db, tmp_path):
    out = export(db, "parquet", tmp_path / "all.parquet")
    table = pq.read_table(out)
    records = table.column("record").to_pylist()
    records[2999] = records[2999].replace('"epsilon":0.1', '"epsilon":0.0')
    index = table.schema.get_field_index("record")
    pq.write_table(table.set_column(index, "record", pa.array(records, pa.string())), out)
    report = verify_file(out)
    assert (report.problem.seq, report.problem.line) == (3000, 3000)


def test_a_line_deleted_from_an_export_is_a_gap_and_swapped_lines_are_out_of_order(db, tmp_path):
    out = export(db, "jsonl", tmp_path / "all.jsonl")
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:99] + lines[100:]))
    assert verify_file(out).problem.seq == 101
    swapped = [*lines[:10], lines[11], lines[10], *lines[12:]]
    out.write_text("".join(swapped))
    report = verify_file(out)
    assert report.problem.seq == 12  # seq 12 cannot follow seq 10
    assert report.problem.line == 11


def test_a_filtered_export_verifies_row_by_row_with_allow_gaps(db, tmp_path):
    out = export(db, "csv", tmp_path / "user.csv", RowQuery(user_id="u-5"))
    assert not verify_file(out).ok  # seq jumps are gaps unless the export is known to be filtered
    report = verify_file(out, allow_gaps=True)
    assert report.ok and report.records == len(range(5, N, 97)) and report.gaps == report.records - 1
    text = out.read_text().replace("u-5,", "u-6,", 1)
    out.write_text(text)
    assert verify_file(out, allow_gaps=True).problem.seq == 6


# -- the CLI handlers --------------------------------------------------------------------------------
def namespace(**values) -> argparse.Namespace:
    base = {
        "config": None,
        "store_url": None,
        "since": None,
        "until": None,
        "model_version": None,
        "user": None,
        "kind": None,
        "format": "jsonl",
        "output": None,
        "file": None,
        "allow_gaps": False,
    }
    return argparse.Namespace(**{**base, **values})


def test_cli_pull_then_verify(db, tmp_path, capsys):
    url = f"sqlite:///{db}"
    for fmt in FORMATS:
        out = tmp_path / f"pull.{fmt}"
        args = namespace(store_url=url, since="2026-11-23", until="2026-11-24T00:00:00Z", format=fmt, output=str(out))
        assert audit_cli.pull(args) == 0
        assert audit_cli.verify(namespace(file=str(out), format=None)) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["ok"] is True and report["records"] == N
    assert audit_cli.verify(namespace(store_url=url)) == 0
    assert json.loads(capsys.readouterr().out)["records"] == N


def test_cli_takes_the_store_url_from_the_environment_and_the_flag_wins(db, tmp_path, monkeypatch, capsys):
    """$KFLOOP_AUDIT_STORE_URL is where a URL with a password belongs (a command line shows in ps)."""
    monkeypatch.setenv(STORE_URL_ENV, f"sqlite:///{db}")
    assert audit_cli.verify(namespace(store_url=None)) == 0
    assert json.loads(capsys.readouterr().out)["records"] == N
    assert audit_cli.verify(namespace(store_url=f"sqlite:///{tmp_path / 'other.db'}")) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 0


def test_cli_verify_exits_1_naming_the_altered_record(db, capsys):
    tamper_sqlite(db, "UPDATE audit_records SET received_at = '2026-11-23T00:00:00.000000Z' WHERE seq = 10")
    assert audit_cli.verify(namespace(store_url=f"sqlite:///{db}")) == 1
    captured = capsys.readouterr()
    problem = json.loads(captured.out)["problem"]
    assert (problem["seq"], problem["request_id"]) == (10, "req-000009")
    assert "FAILED at seq 10, request_id req-000009" in captured.err


def test_cli_pull_to_stdout_says_how_to_verify_a_filtered_export(db, capsys):
    args = namespace(store_url=f"sqlite:///{db}", since="2026-11-23", until="2026-11-24", user="u-5")
    assert audit_cli.pull(args) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == len(range(5, N, 97))
    assert "--allow-gaps" in captured.err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"since": "yesterday"}, "--since 'yesterday'"),
        ({"until": "2026-11-24T00:00:00"}, "needs a timezone"),
        ({"format": "parquet"}, "needs an output file"),
        ({"format": "xml"}, "unknown export format"),
    ],
)
def test_cli_pull_rejects_bad_arguments_with_a_message(db, capsys, change, message):
    assert audit_cli.pull(namespace(store_url=f"sqlite:///{db}", **change)) == 2
    assert message in capsys.readouterr().err
