"""The ground truth of a run: one JSON line per answered ranking in `{out_dir}/{run_id}/rankings.jsonl`.

Each line: `index` (the request's number in the schedule), `request_id`, `user_id`, `cohort_id` (the OBD cohort
whose click model the user follows), `shifted` (its preferences were re-drawn by the scenario), `ts` (the
scheduled time, UTC), `elapsed_s` (the same, seconds into the run), `latency_ms` (answer time minus scheduled
time), `model_version`, `variant`, and per slot, slot 1 first: `items`, `positions`, `propensities` (as served),
`expected_clicks` (the click model's probability of that item at that position for this user: the ground
truth) and `clicks` (0/1, what the simulator drew and sent to the collector). `unmodelled` counts slots whose
item or position the click model does not know (expected 0 there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

RANKINGS_FILE = "rankings.jsonl"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class RankingTruth:
    index: int
    request_id: str
    user_id: str
    cohort_id: str
    shifted: bool
    ts: str
    elapsed_s: float
    latency_ms: float
    model_version: str | None
    variant: str | None
    items: list[str]
    positions: list[int]
    propensities: list[float]
    expected_clicks: list[float]
    clicks: list[int]
    unmodelled: int = 0


class TruthWriter:
    """Appends ranking records to the run's JSONL file; `flush` makes what was written visible to readers."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / RANKINGS_FILE
        self._file: IO[bytes] = open(self.path, "ab")  # noqa: SIM115 (closed by close())

    def write(self, record: RankingTruth) -> None:
        self._file.write(orjson.dumps(record) + b"\n")  # orjson encodes dataclasses natively

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def write_run_file(run_dir: Path, content: dict[str, Any]) -> Path:
    """run.json: the run's settings, the world's reference CTRs and (at the end) its totals."""
    path = run_dir / RUN_FILE
    temp = path.with_name(f".{RUN_FILE}.tmp")
    temp.write_text(json.dumps(content, indent=2, default=str) + "\n")
    temp.replace(path)
    return path


def read_rankings(run_dir: Path) -> list[dict[str, Any]]:
    """Every ranking record of a run (for reports and tests)."""
    with open(Path(run_dir) / RANKINGS_FILE, "rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]
