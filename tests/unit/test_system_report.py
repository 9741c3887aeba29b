"""What `kfloop status` prints: each part's process, restarts and readiness, the split, the event counts."""

from __future__ import annotations

from serving.local.system.report import status_lines


def part(name: str, **fields) -> dict:
    base = {"name": name, "run": "service", "state": "ready", "alive": True, "pid": 41, "restarts": 0, "ready": True}
    return {**base, "port": None, "ready_urls": [], "detail": "", "last_exit": "", **fields}


def live(**fields) -> dict:
    supervisor = {"running": True, "pid": 7, "phase": "up", "started_at": "2026-12-06T10:00:00Z"}
    return {"state_dir": ".kfloop", "supervisor": supervisor, "failure": None, **fields}


def test_status_shows_each_part_the_split_and_the_counts():
    lines = status_lines(
        live(
            parts=[
                part("collector", port=8090, restarts=1, last_exit="exited with -9"),
                part("features-apply", run="once", state="done", alive=False, pid=None, ready=False),
                part("serving", state="starting", ready=False, port=8080),
            ],
            serving={"stable": "v1", "stable_percent": 90, "canary": "v2", "canary_percent": 10},
            events={"accepted": 12.0, "duplicate": 1.0},
        )
    )
    assert lines[0].startswith("supervisor: running (pid 7, phase up")
    collector, last_exit, once, serving = lines[2:6]
    assert collector.split() == ["collector", "ready", "up", "41", "1", "yes", "http://127.0.0.1:8090"]
    assert last_exit.strip() == "last exit: exited with -9"
    assert once.split() == ["features-apply", "done", "-", "-", "0", "-"]
    assert serving.split()[:6] == ["serving", "starting", "up", "41", "0", "no"]
    assert lines[-2] == "serving: stable v1 90%, canary v2 10%"
    assert lines[-1] == "events (since the collector started): accepted 12, duplicate 1"


def test_status_without_a_model_or_a_collector_says_so():
    lines = status_lines(
        live(
            parts=[part("serving", state="waiting", alive=False, pid=None, ready=False, detail="no deployable model")],
            serving={"stable": None, "stable_percent": 0, "canary": None, "canary_percent": 0},
            events=None,
        )
    )
    assert any(line.strip() == "detail: no deployable model" for line in lines)
    assert lines[-2:] == ["serving: no model deployed", "events: the collector is not answering"]


def test_status_before_any_run():
    assert status_lines({"state_dir": "s", "supervisor": {"running": False}, "parts": []}) == [
        "kfloop: no local system has run on s (start it with `kfloop up`)"
    ]


MONITORING = {
    "prometheus": {
        "url": "http://127.0.0.1:9090",
        "alive": True,
        "alerts": [
            {
                "name": "CanaryErrorRateHigh",
                "state": "firing",
                "severity": "critical",
                "action": "rollback",
                "labels": {"model_version": "v2", "variant": "canary"},
                "since": "2026-12-06T10:00:03Z",
                "value": "1",
                "summary": "Canary v2 answers 100% of rankings with errors.",
            }
        ],
    },
    "alertmanager": {"url": "http://127.0.0.1:9093", "alive": True},
    "controller": {
        "url": "http://127.0.0.1:8099",
        "alive": True,
        "paused": None,
        "open": [],
        "recent": [
            {
                "kind": "rollback",
                "outcome": "rolled_back",
                "phase": "done",
                "created_at": "2026-12-06T10:00:09.000000Z",
                "alerts": [{"alertname": "CanaryErrorRateHigh"}],
                "reason": "canary v2 rolled back",
            }
        ],
    },
}


def test_status_shows_where_the_loop_answers_its_alerts_and_the_controllers_actions():
    lines = status_lines(live(parts=[part("prometheus", port=9090)], monitoring=MONITORING))
    at = lines.index(
        "monitoring: Prometheus http://127.0.0.1:9090, Alertmanager http://127.0.0.1:9093, controller "
        "http://127.0.0.1:8099"
    )
    assert lines[at + 1] == "alerts: 1 firing, 0 pending (see http://127.0.0.1:9090/alerts)"
    assert lines[at + 2].split() == [
        "firing", "CanaryErrorRateHigh", "critical", "action=rollback", "model_version=v2", "variant=canary"
    ]  # fmt: skip
    assert lines[at + 3].strip() == "since 2026-12-06T10:00:03Z: Canary v2 answers 100% of rankings with errors."
    assert lines[at + 4] == "controller: acting on alerts; 0 action(s) under way; last actions:"
    assert lines[at + 5].split()[:4] == [
        "2026-12-06T10:00:09.000000Z",
        "rollback",
        "rolled_back",
        "CanaryErrorRateHigh:",
    ]


def test_status_says_when_the_loop_does_not_answer_or_is_paused():
    paused = {"by": "ana", "at": "2026-12-06T10:00:00Z", "reason": "maintenance"}
    monitoring = {
        "prometheus": {"url": "http://127.0.0.1:9090", "alive": True, "error": "not answering (refused)"},
        "controller": {**MONITORING["controller"], "paused": paused, "recent": []},
    }
    lines = status_lines(live(parts=[part("prometheus")], monitoring=monitoring))
    assert "alerts: Prometheus not answering (refused)" in lines
    assert (
        "controller: PAUSED by ana at 2026-12-06T10:00:00Z (maintenance); 0 action(s) under way; last actions:" in lines
    )
    assert lines[-1] == "  none yet"
    stopped = {"controller": {"url": "http://127.0.0.1:8099", "alive": False}}
    assert status_lines(live(parts=[part("controller")], monitoring=stopped))[-1] == "controller: not running"
