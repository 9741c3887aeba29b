"""The experiments' record (SQLite): each experiment, its stages with their preregistrations, the test's
statistic over time, and every decision. The controller writes it; reports and `kfloop experiments` read it.

    with ExperimentStore(path) as store:            # path: {controller state_dir}/experiments.db
        for experiment in store.list_experiments():  # newest first
            store.get(experiment.id).stages          # Stage: name, mode, percent, preregistration, digest, ...
            store.series(experiment.id, stage=1)     # Observation: counts per arm, statistic, boundary, decision

A stage's preregistration is written before the stage starts and can never change afterwards (the database
refuses: a trigger aborts any update of it, and any deletion of a stage); its sha256 is the digest the audit trail
names. Writes are idempotent, so the controller may repeat a step after a crash.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kfloop.errors import Conflict, NotFound, NotReady
from kfloop.experiments.prereg import Preregistration
from kfloop.experiments.sequential import Decision

RUNNING = "running"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY, model_version TEXT NOT NULL, control_version TEXT NOT NULL, action_id TEXT,
    created_at TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', finished_at TEXT,
    approved_by TEXT, approved_at TEXT
);
CREATE TABLE IF NOT EXISTS stages (
    experiment_id TEXT NOT NULL REFERENCES experiments (id), idx INTEGER NOT NULL, name TEXT NOT NULL,
    mode TEXT NOT NULL, percent INTEGER NOT NULL, preregistration TEXT, digest TEXT, gate TEXT NOT NULL,
    baseline TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, decision TEXT, outcome TEXT,
    PRIMARY KEY (experiment_id, idx)
);
CREATE TRIGGER IF NOT EXISTS stages_preregistration_immutable
    BEFORE UPDATE OF experiment_id, idx, preregistration, digest, gate, baseline, started_at ON stages
    BEGIN SELECT RAISE(ABORT, 'a stage''s preregistration is immutable'); END;
CREATE TRIGGER IF NOT EXISTS stages_kept BEFORE DELETE ON stages
    BEGIN SELECT RAISE(ABORT, 'stages are never deleted'); END;
CREATE TABLE IF NOT EXISTS observations (
    experiment_id TEXT NOT NULL, idx INTEGER NOT NULL, at TEXT NOT NULL, decision TEXT NOT NULL,
    numbers TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS observations_of_stage ON observations (experiment_id, idx);
"""


@dataclass(frozen=True)
class Stage:
    """One stage as it was registered, and how it ended (None while it runs)."""

    index: int
    name: str
    mode: str
    """shadow, canary, or full."""
    percent: int
    """The candidate's share of users (0 in shadow: mirrored, never served)."""
    preregistration: Preregistration | None
    """The sequential test fixed before the stage started; None for a stage without one (shadow)."""
    digest: str | None
    gate: dict[str, Any]
    """The stage's configured gate (its share, test parameters or duration), as the controller read it."""
    baseline: dict[str, Any]
    """The per-arm counters when the stage started: its counts are the counters minus these."""
    started_at: str
    ended_at: str | None
    decision: str | None
    outcome: str | None


@dataclass(frozen=True)
class Experiment:
    id: str
    model_version: str
    """The candidate."""
    control_version: str
    """Production (stable) when the experiment started."""
    action_id: str | None
    created_at: str
    status: str
    """running, promoted, rolled_back, or ended (stopped by something else)."""
    reason: str
    finished_at: str | None
    approved_by: str | None
    approved_at: str | None
    stages: list[Stage] = field(default_factory=list)


@dataclass(frozen=True)
class Observation:
    """One evaluation of a stage's gate: when, the decision, and its numbers (a test's `Decision.to_dict()`; a
    shadow's off-policy comparison has `"kind": "off_policy"`)."""

    at: str
    decision: str
    numbers: dict[str, Any]


class ExperimentStore:
    """The experiments database; one connection behind a lock (the controller's threads share it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    def open(self) -> ExperimentStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        self._db = db
        return self

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> ExperimentStore:
        return self.open()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._db is None:
                raise NotReady(f"the experiment store {self.path} is not open")
            return self._db.execute(sql, params).fetchall()

    # -- writing (the controller) ---------------------------------------------------------------------
    def create(self, experiment_id: str, model_version: str, control_version: str, action_id: str, at: str) -> None:
        """A new experiment, running; a repeat with the same id changes nothing."""
        self._sql(
            "INSERT OR IGNORE INTO experiments (id, model_version, control_version, action_id, created_at, status) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (experiment_id, model_version, control_version, action_id, at, RUNNING),
        )

    def start_stage(self, experiment_id: str, stage: Stage) -> Stage:
        """Register a stage before it starts. A stage already registered is returned as it was (the first
        registration stands: a repeat after a crash cannot change its preregistration)."""
        known = self.stage(experiment_id, stage.index)
        if known is not None:
            return known
        prereg = stage.preregistration
        self._sql(
            "INSERT INTO stages (experiment_id, idx, name, mode, percent, preregistration, digest, gate, baseline, "
            "started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                experiment_id,
                stage.index,
                stage.name,
                stage.mode,
                stage.percent,
                prereg.model_dump_json() if prereg is not None else None,
                prereg.digest() if prereg is not None else None,
                json.dumps(stage.gate, sort_keys=True),
                json.dumps(stage.baseline, sort_keys=True),
                stage.started_at,
            ),
        )
        return self.stage(experiment_id, stage.index) or stage

    def observe(self, experiment_id: str, index: int, at: str, decision: Decision) -> None:
        """Append one evaluation of the stage's test (the series the report plots)."""
        self.observe_numbers(experiment_id, index, at, decision.decision, decision.to_dict())

    def observe_numbers(self, experiment_id: str, index: int, at: str, decision: str, numbers: dict[str, Any]) -> None:
        """Append one evaluation of a stage's gate: a test's `Decision.to_dict()`, or a shadow's off-policy
        comparison (`{"kind": "off_policy", **ShadowComparison.to_dict()}`)."""
        text = json.dumps(numbers, sort_keys=True)
        self._sql("INSERT INTO observations VALUES (?, ?, ?, ?, ?)", (experiment_id, index, at, decision, text))

    def end_stage(self, experiment_id: str, index: int, at: str, decision: str, outcome: str) -> None:
        """How the stage ended (the first end stands)."""
        self._sql(
            "UPDATE stages SET ended_at = ?, decision = ?, outcome = ? WHERE experiment_id = ? AND idx = ? "
            "AND ended_at IS NULL",
            (at, decision, outcome, experiment_id, index),
        )

    def finish(self, experiment_id: str, status: str, reason: str, at: str) -> None:
        self._sql(
            "UPDATE experiments SET status = ?, reason = ?, finished_at = ? WHERE id = ? AND finished_at IS NULL",
            (status, reason, at, experiment_id),
        )

    def approve(self, experiment_id: str, by: str, at: str) -> Experiment:
        """The manual gate before 100%: who approved, and when (the first approval stands)."""
        experiment = self.get(experiment_id)
        if experiment.status != RUNNING:
            raise Conflict(f"experiment {experiment_id} is {experiment.status}: nothing to approve")
        self._sql(
            "UPDATE experiments SET approved_by = ?, approved_at = ? WHERE id = ? AND approved_by IS NULL",
            (by, at, experiment_id),
        )
        return self.get(experiment_id)

    # -- reading (reports, the CLI, the controller's metrics) ------------------------------------------
    def list_experiments(self, limit: int = 100) -> list[Experiment]:
        """The newest first, without their stages."""
        rows = self._sql(
            f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments ORDER BY created_at DESC, id LIMIT ?", (limit,)
        )
        return [Experiment(*row) for row in rows]

    def get(self, experiment_id: str) -> Experiment:
        rows = self._sql(f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE id = ?", (experiment_id,))
        if not rows:
            raise NotFound(f"no experiment {experiment_id!r} in {self.path}")
        return Experiment(*rows[0], stages=self.stages(experiment_id))

    def stages(self, experiment_id: str) -> list[Stage]:
        rows = self._sql(f"SELECT {_STAGE_COLUMNS} FROM stages WHERE experiment_id = ? ORDER BY idx", (experiment_id,))
        return [_stage(row) for row in rows]

    def stage(self, experiment_id: str, index: int) -> Stage | None:
        sql = f"SELECT {_STAGE_COLUMNS} FROM stages WHERE experiment_id = ? AND idx = ?"
        rows = self._sql(sql, (experiment_id, index))
        return _stage(rows[0]) if rows else None

    def series(self, experiment_id: str, stage: int) -> list[Observation]:
        """Every evaluation of a stage's test, oldest first."""
        sql = "SELECT at, decision, numbers FROM observations WHERE experiment_id = ? AND idx = ? ORDER BY rowid"
        return [Observation(at, d, json.loads(n)) for at, d, n in self._sql(sql, (experiment_id, stage))]

    def last_observation(self, experiment_id: str, stage: int) -> Observation | None:
        sql = (
            "SELECT at, decision, numbers FROM observations WHERE experiment_id = ? AND idx = ? "
            "ORDER BY rowid DESC LIMIT 1"
        )
        rows = self._sql(sql, (experiment_id, stage))
        return Observation(rows[0][0], rows[0][1], json.loads(rows[0][2])) if rows else None

    def decisions(self, experiment_id: str) -> list[tuple[Stage, Observation | None]]:
        """Each stage with the evaluation it ended on (its last one; None if it had no test)."""
        return [(s, self.last_observation(experiment_id, s.index)) for s in self.stages(experiment_id)]


_EXPERIMENT_COLUMNS = (
    "id, model_version, control_version, action_id, created_at, status, reason, finished_at, approved_by, approved_at"
)
_STAGE_COLUMNS = (
    "idx, name, mode, percent, preregistration, digest, gate, baseline, started_at, ended_at, decision, outcome"
)


def _stage(row: tuple[Any, ...]) -> Stage:
    index, name, mode, percent, prereg, digest, gate, baseline, started, ended, decision, outcome = row
    return Stage(
        index=index,
        name=name,
        mode=mode,
        percent=percent,
        preregistration=Preregistration.model_validate_json(prereg) if prereg else None,
        digest=digest,
        gate=json.loads(gate),
        baseline=json.loads(baseline),
        started_at=started,
        ended_at=ended,
        decision=decision,
        outcome=outcome,
    )
