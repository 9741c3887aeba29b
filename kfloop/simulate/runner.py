"""The open loop: rankings through the front door at fixed times, clicks to the collector, ground truth to disk.

Request i is due at start + i / rate and is handed to a worker thread then, whatever earlier requests are doing
(a slow stack does not slow the arrivals); at most `max_in_flight` rankings wait for an answer, and one due
beyond that is skipped and counted. Each answered slate is scored by the click model (the user's expected
clicks per slot), the clicks are drawn, the record is written, and the clicks go to the collector naming the
request id. Keep-alive connections, one per worker thread.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import orjson

from kfloop.simulate import plan
from kfloop.simulate.config import SimulateConfig
from kfloop.simulate.http import Answer, HttpClient, HttpError
from kfloop.simulate.progress import ProgressLine, Stats
from kfloop.simulate.scenarios import build_scenario
from kfloop.simulate.truth import RankingTruth, TruthWriter, write_run_file
from kfloop.simulate.world import ClickWorld, draw_population, slate_truth

FEEDBACK_ATTEMPTS = 3
SHOWN_ERRORS = 3


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


class Simulation:
    def __init__(self, config: SimulateConfig, world: ClickWorld, *, stream: TextIO = sys.stderr) -> None:
        self.config, self.world = config, world
        self.run_id = config.run_id or new_run_id()
        self.run_dir = config.out_dir / self.run_id
        self.population = draw_population(world, config.users, plan.stream(config.seed, plan.POPULATION))
        self.scenario = build_scenario(config, world, self.population, plan.stream(config.seed, plan.SCENARIO))
        self.stats = Stats(planned=config.planned_requests)
        self.progress = ProgressLine(stream, enabled=config.progress)
        self.send_consent = config.consent
        self.ranker = HttpClient(config.transformer_url, timeout_s=config.timeout_s)
        self.collector = HttpClient(config.collector_url, timeout_s=config.timeout_s)
        self._rank_path = f"/v1/models/{config.model_name}:predict"
        self._lock = threading.Lock()  # the stats, the writer, the warnings
        self._warned: set[str] = set()
        self._ranking = 0  # rankings handed to a worker and not yet answered
        self._done = threading.Event()

    def describe(self) -> dict[str, Any]:
        """The run's settings and the world's reference CTRs (printed at the start, kept in run.json)."""
        return {
            "run_id": self.run_id,
            "output": str(self.run_dir),
            "requests": self.config.planned_requests,
            "config": self.config.model_dump(mode="json"),
            "scenario": self.scenario.describe(),
            "world": {
                "cohorts": len(self.world.cohort_ids),
                "users": len(self.population),
                "logit_shift": self.config.logit_shift,
                "uniform_ctr": round(self.world.uniform_ctr(), 5),
                "best_ctr": round(self.world.best_ctr(), 5),
            },
        }

    def run(self) -> dict[str, Any]:
        """Run the schedule to its end (Ctrl-C ends it early); the summary, also written to run.json."""
        self.writer = TruthWriter(self.run_dir)
        description = self.describe()
        write_run_file(self.run_dir, {**description, "started_at": plan.iso(datetime.now(UTC))})
        started = time.perf_counter()
        ticker = threading.Thread(target=self._tick, args=(started,), name="simulate-progress", daemon=True)
        ticker.start()
        try:
            self._schedule(started, datetime.now(UTC))
        finally:
            elapsed = time.perf_counter() - started
            self._done.set()
            ticker.join()
            self.writer.close()
            self.ranker.close()
            self.collector.close()
        self.progress.finish(self.stats, elapsed)
        summary = self.stats.summary(elapsed)
        write_run_file(self.run_dir, {**description, "summary": summary, "scenario_outcome": self.scenario.outcome()})
        return summary

    def _schedule(self, started: float, wall: datetime) -> None:
        rate, limit = self.config.rate, self.config.max_in_flight
        # workers beyond the in-flight limit: a worker still sending clicks must not delay a due ranking
        with ThreadPoolExecutor(max_workers=2 * limit, thread_name_prefix="simulate") as workers:
            try:
                for index in range(self.config.planned_requests):
                    due = started + index / rate
                    if (delay := due - time.perf_counter()) > 0:
                        time.sleep(delay)
                    with self._lock:
                        if self._ranking >= limit:
                            self.stats.skipped += 1
                            continue
                        self._ranking += 1
                        self.stats.sent += 1
                    workers.submit(self._one, index, due, wall + timedelta(seconds=index / rate))
            except KeyboardInterrupt:
                self.progress.message("interrupted: waiting for the rankings in flight")

    def _tick(self, started: float) -> None:
        while not self._done.wait(1.0):
            with self._lock:
                self.writer.flush()
                self.progress.show(self.stats, time.perf_counter() - started)

    def _one(self, index: int, due: float, when: datetime) -> None:
        try:
            draw = plan.draw(self.config.seed, index, len(self.population))
            user_id = self.population.user_ids[draw.user]
            try:
                prediction = self._rank(user_id, plan.request_id(self.run_id, index))
            finally:
                with self._lock:
                    self._ranking -= 1
            if prediction is None:
                return
            record = self._record(index, draw, user_id, prediction, when, (time.perf_counter() - due) * 1000)
            if record is None:
                return
            with self._lock:
                self.writer.write(record)
                self.stats.add_ranking(record)
            if any(record.clicks):
                dwell = draw.dwell_ms(sum(record.clicks)) if self.config.dwell else None
                self._feedback(plan.feedback_events(record, dwell, datetime.now(UTC)))
        except Exception as exc:  # a worker's failure is counted and shown, never lost in the pool
            self._fail("simulator", type(exc).__name__, repr(exc))

    def _record(
        self, index: int, draw: plan.Draw, user_id: str, prediction: dict, when: datetime, latency_ms: float
    ) -> RankingTruth | None:
        """The ground truth of one answered slate (None, counted, if the answer has no usable slate)."""
        elapsed_s = index / self.config.rate
        try:
            slate = prediction["slate"]
            items = [str(slot["item_id"]) for slot in slate]
            positions = [int(slot["position"]) for slot in slate]
            propensities = [float(slot["propensity"]) for slot in slate]
        except (KeyError, TypeError, ValueError):
            self._fail("rank", "bad-answer", repr(prediction)[:200])
            return None
        self.scenario.observe(items, elapsed_s)
        truth = slate_truth(self.world, self.scenario.table(draw.user, elapsed_s), items, positions)
        if truth.unmodelled:
            self._warn_once("unmodelled", "items or positions the click model lacks get expected clicks 0 (counted)")
        return RankingTruth(
            index=index,
            request_id=prediction.get("request_id") or plan.request_id(self.run_id, index),
            user_id=user_id,
            cohort_id=self.world.cohort_ids[self.population.cohort[draw.user]],
            shifted=self.scenario.shifted(draw.user, elapsed_s),
            ts=plan.iso(when),
            elapsed_s=round(elapsed_s, 6),
            latency_ms=round(latency_ms, 3),
            model_version=prediction.get("model_version"),
            variant=prediction.get("variant"),
            items=items,
            positions=positions,
            propensities=propensities,
            expected_clicks=truth.expected,
            clicks=draw.clicks(truth.expected),
            unmodelled=truth.unmodelled,
        )

    def _rank(self, user_id: str, request_id: str) -> dict | None:
        """The prediction for one user, or None (the error counted). A front door that does not know the
        `consent` field yet (400 naming it) gets the request again without it, and none from then on."""
        with_consent = self.send_consent
        answer = self._post(self.ranker, "rank", self._rank_path, self._rank_body(user_id, request_id, with_consent))
        if answer is not None and answer.status == 400 and with_consent and b"consent" in answer.body:
            self.send_consent = False
            self._warn_once("consent", "the front door refused the `consent` field (400): sending rankings without it")
            answer = self._post(self.ranker, "rank", self._rank_path, self._rank_body(user_id, request_id, False))
        if answer is None:
            return None
        if answer.status != 200:
            self._fail("rank", answer.status, answer.body[:300].decode("utf-8", "replace"))
            return None
        try:
            return orjson.loads(answer.body)["predictions"][0]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            self._fail("rank", "bad-answer", answer.body[:200].decode("utf-8", "replace"))
            return None

    def _rank_body(self, user_id: str, request_id: str, with_consent: bool) -> bytes:
        instance: dict[str, Any] = {"user_id": user_id, "request_id": request_id}
        if with_consent:
            instance["consent"] = plan.CONSENT
        return orjson.dumps({"instances": [instance]})

    def _feedback(self, events: list[dict[str, Any]]) -> None:
        """POST the events; a 503 or a lost connection is retried (event ids make a resend harmless)."""
        body, answer = orjson.dumps(events), None
        for attempt in range(FEEDBACK_ATTEMPTS):
            if attempt:
                time.sleep(0.2 * 2 ** (attempt - 1))
            last = attempt == FEEDBACK_ATTEMPTS - 1
            answer = self._post(self.collector, "feedback", "/v1/events", body, count=last)
            if answer is not None and answer.status != 503:
                break
        if answer is None:
            return
        if answer.status != 200:
            self._fail("feedback", answer.status, answer.body[:300].decode("utf-8", "replace"))
            return
        counts = orjson.loads(answer.body)
        with self._lock:
            self.stats.feedback_stored += counts.get("accepted", 0) + counts.get("duplicate", 0)
        for kind in ("rejected", "dropped_consent"):
            if counts.get(kind):
                with self._lock:
                    self.stats.errors[f"feedback {kind}"] += counts[kind]
                said = answer.body[:300].decode("utf-8", "replace")
                self._warn_once(f"feedback-{kind}", f"the collector {kind.replace('_', ' ')} events: {said}")

    def _post(self, client: HttpClient, where: str, path: str, body: bytes, *, count: bool = True) -> Answer | None:
        try:
            return client.post_json(path, body)
        except HttpError as exc:
            if count:
                self._fail(where, exc.kind, exc.detail)
            return None

    def _fail(self, where: str, kind: str | int, detail: str) -> None:
        with self._lock:
            self.stats.error(where, kind)
            if sum(self.stats.errors.values()) <= SHOWN_ERRORS:
                self.progress.message(f"{where} error {kind}: {detail}")

    def _warn_once(self, key: str, text: str) -> None:
        with self._lock:
            if key not in self._warned:
                self._warned.add(key)
                self.progress.message(f"warning: {text}")
