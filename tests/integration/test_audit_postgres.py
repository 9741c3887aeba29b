"""The audit store on a real PostgreSQL 15 server: 10,000 decisions written, exported and verified;
triggers refuse edits; a superuser who disables them (a malicious DBA) is caught by verify."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfloop.audit import (
    FORMATS,
    AuditStoreConfig,
    explain_decision,
    make_store,
    verify_file,
    verify_store,
    write_export,
)
from kfloop.audit.contexts import rows_with_contexts
from kfloop.audit.explain import stored_decision
from kfloop.audit.store import RowQuery, SqlStore
from kfloop.errors import NotReady
from tests.integration.pg_server import PostgresServer, postgres_server
from tests.unit.test_audit_explain import FeatureEchoExplainer
from tests.unit.test_audit_item_contexts import FULL_INPUTS, context, referring
from tests.unit.test_audit_support import decision, decisions

pg8000 = pytest.importorskip("pg8000.native", reason="the pg8000 driver is not installed in this environment")

N = 10_000


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server() as s:
        yield s


@pytest.fixture(scope="module")
def admin(server):
    connection = pg8000.Connection(user=server.user, host=server.host, port=server.port, database="postgres")
    yield connection
    connection.close()


@pytest.fixture
def database(admin, server, request) -> str:
    """A fresh database per test; returns its URL."""
    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "")[:50]
    admin.run(f'DROP DATABASE IF EXISTS "{name}"')
    admin.run(f'CREATE DATABASE "{name}"')
    return server.url(name)


def sql(server: PostgresServer, url: str, statement: str, user: str | None = None) -> list:
    connection = pg8000.Connection(
        user=user or server.user, host=server.host, port=server.port, database=url.rsplit("/", 1)[1]
    )
    try:
        return connection.run(statement)
    finally:
        connection.close()


def opened(url: str) -> SqlStore:
    store = make_store(AuditStoreConfig(url=url))
    store.open()
    return store


@pytest.fixture(scope="module")
def filled(admin, server) -> str:
    """One database holding 10,000 decisions (batches of 500); tests that edit it use a copy."""
    admin.run('CREATE DATABASE "pristine"')
    store = opened(server.url("pristine"))
    records = decisions(N)
    for start in range(0, N, 500):
        assert {a.status for a in store.append(records[start : start + 500])} == {"accepted"}
    store.close()
    return server.url("pristine")


@pytest.fixture
def copy(filled, admin, server, request) -> str:
    name = "c_" + request.node.name.lower()[:50]
    admin.run(f'DROP DATABASE IF EXISTS "{name}"')
    admin.run(f'CREATE DATABASE "{name}" TEMPLATE "pristine"')
    return server.url(name)


def test_ten_thousand_decisions_are_written_exported_and_verified(filled, tmp_path: Path):
    store = opened(filled)
    try:
        report = verify_store(store)
        assert report.ok and report.records == N, report.summary()
        for fmt in FORMATS:
            out = tmp_path / f"all.{fmt}"
            write_export(store.rows(), out, fmt)
            assert verify_file(out).ok
        assert store.append(decisions(3))[0].status == "duplicate"
    finally:
        store.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_records SET variant = 'x' WHERE seq = 1",
        "DELETE FROM audit_records WHERE seq = 1",
        "TRUNCATE audit_records",
        "UPDATE audit_head SET seq = 1",
        "DELETE FROM audit_head",
    ],
)
def test_triggers_refuse_edits_even_from_a_superuser(copy, server, statement):
    with pytest.raises(pg8000.DatabaseError, match=r"append-only|only moves forward"):
        sql(server, copy, statement)


def test_a_malicious_dba_who_disables_the_triggers_is_caught(copy, server):
    sql(server, copy, "ALTER TABLE audit_records DISABLE TRIGGER USER")
    sql(
        server,
        copy,
        "UPDATE audit_records SET record = replace(record, '\"epsilon\":0.1', '\"epsilon\":0.2') WHERE seq = 6543",
    )
    store = opened(copy)
    try:
        report = verify_store(store)
    finally:
        store.close()
    assert (report.problem.seq, report.problem.request_id) == (6543, "req-006542")


def test_a_deleted_row_is_a_gap(copy, server):
    sql(server, copy, "ALTER TABLE audit_records DISABLE TRIGGER USER")
    sql(server, copy, "DELETE FROM audit_records WHERE seq = 2")
    store = opened(copy)
    try:
        report = verify_store(store)
    finally:
        store.close()
    assert report.problem.seq == 3 and "gap: seq 2 missing" in report.problem.reason


def test_concurrent_writers_on_separate_connections_keep_one_chain(database):
    opened(database).close()  # schema first, as a deployment's first replica would

    def write(worker: int) -> None:
        store = opened(database)
        try:
            for start in range(0, 500, 25):
                store.append(decisions(25, start=worker * 10_000 + start))
        finally:
            store.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = opened(database)
    try:
        report = verify_store(store)
    finally:
        store.close()
    assert report.ok and report.records == 2000, report.summary()


def test_replicas_starting_together_create_the_schema_once(database):
    errors: list[Exception] = []

    def start() -> None:
        try:
            opened(database).close()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_least_privilege_role_can_append_but_not_disable_the_triggers(database, server):
    opened(database).close()
    for statement in (
        "CREATE ROLE sink_role LOGIN",
        "GRANT SELECT, INSERT ON audit_records TO sink_role",
        "GRANT SELECT, UPDATE ON audit_head TO sink_role",
    ):
        sql(server, database, statement)
    store = opened(database.replace(f"{server.user}@", "sink_role@"))
    try:
        assert [a.status for a in store.append(decisions(3))] == ["accepted"] * 3
        assert verify_store(store).ok
    finally:
        store.close()
    with pytest.raises(pg8000.DatabaseError, match="must be owner"):
        sql(server, database, "ALTER TABLE audit_records DISABLE TRIGGER USER", user="sink_role")


def test_a_lost_connection_is_not_ready_then_reconnects(database, server):
    store = opened(database)
    try:
        store.append([decision(0)])
        sql(
            server,
            database,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'kfloop-audit'",
        )
        with pytest.raises(NotReady):
            store.append([decision(1)])
        assert store.append([decision(1)])[0].status == "accepted"
        assert verify_store(store).ok
    finally:
        store.close()


def test_on_demand_explanations_are_kept_in_postgres(database):
    store = opened(database)
    try:
        store.append(decisions(5))
        explanation, appended = explain_decision(store, "req-000002", FeatureEchoExplainer())
        assert appended.seq == 6
        rows = list(store.rows(RowQuery(request_id="req-000002")))
        assert [r.kind for r in rows] == ["decision", "explanation"]
        assert explanation.decision_hash == rows[0].hash
        assert verify_store(store).ok
    finally:
        store.close()


def test_item_contexts_are_kept_once_and_resolved_in_postgres(database, tmp_path: Path):
    store = opened(database)
    try:
        first = store.append([context(0), referring(1), referring(2)])
        assert [a.status for a in first] == ["accepted"] * 3
        (again,) = store.append([context(60)])  # another replica's copy, first recorded later
        assert again.status == "duplicate" and again.seq == 1
        decision_, _ = stored_decision(store, "req-000002")
        assert decision_.inputs == FULL_INPUTS
        out = tmp_path / "u.jsonl"
        write_export(rows_with_contexts(store, RowQuery(user_id=decision(2).user_id)), out, "jsonl")
        assert [json.loads(line)["kind"] for line in out.read_text().splitlines()] == ["item_context", "decision"]
        assert verify_file(out, allow_gaps=True).ok and verify_store(store).ok
    finally:
        store.close()
