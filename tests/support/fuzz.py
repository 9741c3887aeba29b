"""schemathesis against a service's own OpenAPI document, in process, the same way for every service: each
operation gets its own Hypothesis run (schemathesis's pytest integration does not work with pytest 9 yet) with a
fixed seed and a bounded number of examples, positive (what the document allows) and negative (what it forbids)
cases, and every check schemathesis has (schemathesis.checks.CHECKS); a check left out says why, here or in the
calling test. Each run prints the checks it ran and how many cases it generated (`pytest -s` shows them)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks

SEED = 20261207

NOT_APPLICABLE = {
    # Each needs something these services do not have; they run, but can find nothing to check:
    "use_after_free": "needs a DELETE operation and links between operations (none here)",
    "ensure_resource_availability": "needs a create operation and links to a read of what it created",
    "object_level_authorization": "needs two users' credentials for one resource (no per-user resources here)",
}
"""Checks that run but cannot apply to these services (kept: a service that grows what they need gets them)."""


def documented_operations(schema: Any) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation `schema` documents: what a service's fuzz test must cover, no fewer."""
    return {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}


def ready_schema(app: Any, ready_path: str = "/readyz", timeout_s: float = 60.0) -> Any:
    """`app`'s own document, the app reached in process with its lifespan started (by the first request), once
    `ready_path` answers 200 (a store or log opened in the background). schemathesis's pytest plugin ends the
    lifespan after each test: the caller builds its app per test."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    deadline = time.monotonic() + timeout_s
    while schema[ready_path]["GET"].Case().call().status_code != 200:
        assert time.monotonic() < deadline, f"{ready_path} never answered 200"
        time.sleep(0.05)
    return schema


def _coverage(schema: Any, operation: Any, headers: dict[str, str], checks: list[Any], limit: int) -> int:
    """schemathesis's coverage phase for one operation (what its CLI runs first); returns the cases run."""
    config = schema.config.generation_for(operation=operation)
    generated = schema.iter_coverage_cases(operation, generation_modes=list(GenerationMode), generation_config=config)
    count = 0
    for case in itertools.islice(generated, limit):
        _with_headers(case, headers)
        case.call_and_validate(checks=checks)
        count += 1
    return count


def _with_headers(case: Any, headers: dict[str, str]) -> None:
    """`headers` in a coverage case, except one the case leaves out on purpose (a missing-header case): there the
    answer must be the refusal. A credential put in is the caller's, as schemathesis's own auth option marks it."""
    present = {name.lower(): name for name in case.headers or {}}
    for name, value in headers.items():
        if case.meta is not None and case.meta.generation.mode.is_negative and name.lower() not in present:
            continue
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != name.lower()} | {name: value}
        case._has_explicit_auth = True  # what schemathesis sets for credentials it was given


@dataclass
class FuzzReport:
    operation: str
    cases: int
    checks: list[str]

    def line(self) -> str:
        return f"schemathesis {self.operation}: {self.cases} generated cases, checks: {', '.join(self.checks)}"


def every_check(excluded: Iterable[str] = ()) -> list[Any]:
    """Every check schemathesis has, but those named in `excluded` (the caller states why)."""
    load_all_checks()
    excluded = set(excluded)
    return [check for check in CHECKS.get_all() if check.__name__ not in excluded]


def fuzz(
    schema: Any,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    max_examples: int = 25,
    excluded: Iterable[str] = (),
    max_coverage: int = 150,
    valid_but_refused: dict[int, str] | None = None,
) -> FuzzReport:
    """One operation's cases, every check on each answer; prints and returns the report: schemathesis's coverage
    cases (boundaries, each parameter and body property missing or of the wrong type, every method the document
    does not list; at most `max_coverage`), then `max_examples` positive and as many negative fuzzed cases.
    `headers` are part of every case (as generated: negative cases do not claim to have left them out).
    `valid_but_refused`: {status: why} a request the document allows may still get (a limit OpenAPI cannot
    state, such as a body's size in bytes); positive_data_acceptance takes them too."""
    operation = schema[path][method]
    if valid_but_refused:
        acceptance = schema.config.checks.positive_data_acceptance
        added = [str(status) for status in valid_but_refused if str(status) not in acceptance.expected_statuses]
        acceptance.expected_statuses = [*acceptance.expected_statuses, *added]
    checks = every_check(excluded)
    cases = 0
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @seed(SEED)
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy(generation_mode=mode, headers=headers))
        def run(case: Any) -> None:
            nonlocal cases
            cases += 1
            case.call_and_validate(checks=checks)

        try:
            run()
        except Unsatisfiable:
            # no negative case exists: nothing in the operation's description can be violated (no parameters,
            # no body, or only ones every value fits); its positive cases ran
            if mode is not GenerationMode.NEGATIVE:
                raise
    cases += _coverage(schema, operation, headers or {}, checks, max_coverage)
    report = FuzzReport(f"{method} {path}", cases, [check.__name__ for check in checks])
    print(report.line())
    return report
