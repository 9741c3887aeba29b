"""Item contexts: the candidates and item features many decisions share, recorded once and referred to by
digest. A decision that refers to one is complete in the store, in every export and in `audit explain`."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from kfloop.audit import Decision, RowQuery, explain_decision, verify_file, verify_store, write_export
from kfloop.audit.chain import entry_bytes, link_hash
from kfloop.audit.contexts import rows_with_contexts, stored_context
from kfloop.audit.explain import stored_decision
from kfloop.audit.record import ItemContext, context_digest, parse_record, with_context, without_context
from kfloop.audit.store.sqlite import SqliteStore
from kfloop.cli.commands import audit as audit_cli
from kfloop.errors import DataIntegrityError, NotFound
from tests.unit.test_audit_store import namespace
from tests.unit.test_audit_support import T0, decision, tamper_sqlite

CONTENT = {
    "candidates": [f"item-{i}" for i in range(80)],
    "items": {"category": [f"c{i % 7}" for i in range(80)], "brand": [f"b{i % 3}" for i in range(80)]},
}
FULL_INPUTS = {**CONTENT, "k": 3, "user": {"age_days": 4}, "items_mostly": {"clicks": {"value": 0, "except": []}}}


def context(ts_offset_s: int = 0) -> ItemContext:
    return ItemContext.of(CONTENT, T0 + timedelta(seconds=ts_offset_s))


def referring(i: int, **overrides: Any) -> Decision:
    """Decision i, its inputs naming the item context instead of holding it."""
    return decision(i, inputs=without_context(FULL_INPUTS, context().context_id), **overrides)


class Explained:
    name = "inputs-echo-test-double"

    def __call__(self, d: Decision) -> dict[str, Any]:
        return {"candidates": len(d.inputs["candidates"]), "categories": sorted(set(d.inputs["items"]["category"]))}


@pytest.fixture
def store(tmp_path):
    """Decisions 0..9, the context recorded before decision 3 (the first to refer to it), decisions 0..2 whole."""
    with SqliteStore(tmp_path / "audit.db") as s:
        s.append([decision(i) for i in range(3)])
        s.append([context(3), *(referring(i) for i in range(3, 10))])
        yield s


def test_a_contexts_id_is_the_digest_of_its_content():
    ctx = context()
    assert ctx.context_id == context_digest(CONTENT) and len(ctx.context_id) == 64
    assert with_context(without_context(FULL_INPUTS, ctx.context_id), ctx) == FULL_INPUTS
    with pytest.raises(ValidationError, match="context_id is not the sha256"):
        parse_record({"kind": "item_context", "context_id": "0" * 64, "ts": T0.isoformat(), "content": CONTENT})
    with pytest.raises(ValidationError, match="holds exactly candidates, items"):
        ItemContext.of({"candidates": []}, T0)


def test_inputs_are_put_back_only_with_the_context_they_name():
    other = ItemContext.of({**CONTENT, "candidates": ["x"]}, T0)
    with pytest.raises(ValueError, match="refer to item context"):
        with_context(without_context(FULL_INPUTS, context().context_id), other)


def test_a_context_recorded_again_at_another_time_is_a_duplicate(store):
    (again,) = store.append([context(60)])
    assert again.status == "duplicate" and again.seq == 4
    assert verify_store(store).ok


def test_the_stored_decision_has_the_inputs_the_model_was_given(store):
    d, decision_hash = stored_decision(store, "req-000005")
    assert d.inputs == FULL_INPUTS
    row = next(store.rows(RowQuery(request_id="req-000005")))
    assert decision_hash == row.hash and "items" not in json.loads(row.record)["inputs"]
    explanation, _ = explain_decision(store, "req-000005", Explained())
    assert explanation.explanation == {"candidates": 80, "categories": [f"c{i}" for i in range(7)]}


def test_a_decision_whose_context_is_missing_or_altered_is_not_explained(tmp_path):
    with SqliteStore(tmp_path / "audit.db") as s:
        s.append([referring(1)])
        with pytest.raises(NotFound, match=r"item context \w+ is not in the audit store"):
            explain_decision(s, "req-000001", Explained())
        s.append([context()])
    tamper_sqlite(
        tmp_path / "audit.db", "UPDATE audit_records SET record = replace(record, '\"c6\"', '\"c5\"') WHERE seq = 2"
    )
    with (
        SqliteStore(tmp_path / "audit.db") as s,
        pytest.raises(DataIntegrityError, match=r"item context \w+ \(seq 2\) does not match its hash"),
    ):
        stored_context(s, context().context_id)


def test_verify_names_a_decision_that_comes_before_its_context(tmp_path):
    with SqliteStore(tmp_path / "audit.db") as s:
        s.append([decision(0), referring(1), context()])
        report = verify_store(s)
    assert report.problem is not None and report.problem.seq == 2 and report.problem.request_id == "req-000001"
    assert "refers to item context" in report.problem.reason


def test_a_filtered_pull_carries_the_contexts_its_decisions_refer_to(store, tmp_path):
    user = decision(5).user_id
    rows = list(rows_with_contexts(store, RowQuery(user_id=user)))
    assert [(r.seq, r.kind) for r in rows] == [(4, "item_context"), (7, "decision")]
    since = list(rows_with_contexts(store, RowQuery(since=T0 + timedelta(seconds=7))))
    assert [r.seq for r in since] == [4, 9, 10, 11]  # the context came before `since`, and still comes along
    whole = list(rows_with_contexts(store, RowQuery()))
    assert [r.seq for r in whole] == list(range(1, 12))  # once, though selected and referred to
    only_decisions = list(rows_with_contexts(store, RowQuery(kinds=("decision",), since=T0)))
    assert [r.kind for r in only_decisions].count("item_context") == 1
    for fmt in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"user.{fmt}"
        write_export(rows_with_contexts(store, RowQuery(user_id=user)), out, fmt)
        assert verify_file(out, allow_gaps=True).ok, fmt


def test_an_export_without_the_context_names_the_decision_that_needs_it(store, tmp_path):
    out = tmp_path / "no-context.jsonl"
    write_export(store.rows(RowQuery(since=T0 + timedelta(seconds=7))), out, "jsonl")
    report = verify_file(out, allow_gaps=True)
    assert report.problem is not None and report.problem.request_id == "req-000007" and report.problem.line == 1
    assert "refers to item context" in report.problem.reason


def test_an_exported_context_altered_with_its_hash_recomputed_is_named(store, tmp_path):
    """The next row's link catches it only when the next row is in the export; the digest always does."""
    out = tmp_path / "user.jsonl"
    write_export(rows_with_contexts(store, RowQuery(user_id=decision(5).user_id)), out, "jsonl")
    lines = out.read_text().splitlines()
    row = json.loads(lines[0])
    row["record"]["content"]["items"]["category"][0] = "c6"
    row["hash"] = link_hash(row["prev_hash"], entry_bytes(row["seq"], row["received_at"], row["record"]))
    out.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    report = verify_file(out, allow_gaps=True)
    assert report.problem is not None and report.problem.line == 1
    assert report.problem.reason == "item context content does not match its context_id: the content was altered"


def test_cli_pull_for_one_user_verifies(store, tmp_path, capsys):
    out, url = tmp_path / "pull.jsonl", f"sqlite:///{store.path}"
    user = decision(5).user_id
    pull = namespace(store_url=url, since="2026-11-23", until="2026-11-24", user=user, output=str(out))
    assert audit_cli.pull(pull) == 0
    assert audit_cli.verify(namespace(file=str(out), allow_gaps=True)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["records"] == 2
