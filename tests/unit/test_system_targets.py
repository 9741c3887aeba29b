"""Prometheus's target files, written by the supervisor of `kfloop up`: a job per part with metrics, the serving
stack's processes from its endpoints file while it runs (each predictor replica, a canary's too, gone when they
go), a file rewritten only when its targets change, and nothing left from an earlier run."""

from __future__ import annotations

import json
import os
import time

import pytest

from serving.local.system.config import PartConfig, SystemConfig
from serving.local.system.part import State
from serving.local.system.supervisor import Supervisor
from serving.local.system.targets import TargetFiles, part_targets, read_endpoints, serving_targets

pytestmark = pytest.mark.serving


def endpoints(*predictors: tuple[str, int]) -> dict:
    replicas: dict[str, list] = {}
    for version, port in predictors:
        replicas.setdefault(version, []).append({"url": f"http://127.0.0.1:{port}", "ready": True, "pid": port})
    return {
        "transformer": "http://127.0.0.1:8080",
        "router": "http://127.0.0.1:8086",
        "explainer": None,
        "audit_sink": "http://127.0.0.1:8095",
        "predictors": replicas,
        "services": {},
    }


def targets(groups: list[dict]) -> list[str]:
    return [t for group in groups for t in group["targets"]]


def test_a_job_per_part_with_metrics():
    parts = [
        PartConfig(name="collector", command=["kfloop", "collector"], metrics_url="http://127.0.0.1:8090/metrics"),
        PartConfig(name="exporter", command=["x"], metrics_url="http://127.0.0.1:9100/custom/path"),
        PartConfig(name="features-apply", command=["kfloop", "features", "apply"], run="once"),
    ]
    groups = part_targets(parts)
    assert groups == {
        "kfloop-collector": [
            {"targets": ["127.0.0.1:8090"], "labels": {"job": "kfloop-collector", "__metrics_path__": "/metrics"}}
        ],
        "kfloop-exporter": [
            {"targets": ["127.0.0.1:9100"], "labels": {"job": "kfloop-exporter", "__metrics_path__": "/custom/path"}}
        ],
    }


def test_the_serving_stack_each_process_and_every_predictor_replica():
    groups = serving_targets(endpoints(("v1", 41001), ("v1", 41002), ("v2", 41003)))
    assert targets(groups["kfloop-predictor"]) == ["127.0.0.1:41001", "127.0.0.1:41002", "127.0.0.1:41003"]
    assert targets(groups["kfloop-transformer"]) == ["127.0.0.1:8080"]
    assert targets(groups["kfloop-router"]) == ["127.0.0.1:8086"]
    assert targets(groups["kfloop-audit-sink"]) == ["127.0.0.1:8095"]
    assert groups["kfloop-explainer"] == []  # not run
    for group in groups["kfloop-predictor"]:  # no label a predictor exports itself (it would be renamed)
        assert set(group["labels"]) == {"job", "__metrics_path__"}
    assert all(group == [] for group in serving_targets(None).values())


def test_an_endpoints_file_older_than_the_stack_is_not_read(tmp_path):
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps(endpoints(("v1", 1))))
    written = path.stat().st_mtime
    assert read_endpoints(path, not_before=written) == endpoints(("v1", 1))
    assert read_endpoints(path, not_before=written + 1) is None
    path.write_text('{"transformer": ')  # caught mid-write
    assert read_endpoints(path, not_before=0) is None
    assert read_endpoints(tmp_path / "none.json", not_before=0) is None


def test_files_are_rewritten_only_when_their_targets_change_and_stale_ones_go(tmp_path):
    directory = tmp_path / "targets"
    directory.mkdir()
    (directory / "kfloop-removed-part.json").write_text("[]")
    files = TargetFiles(directory)
    files.reset()
    assert list(directory.iterdir()) == []
    groups = serving_targets(endpoints(("v1", 1)))
    assert sorted(files.write(groups)) == sorted(groups)
    assert files.write(groups) == []
    changed = serving_targets(endpoints(("v1", 1), ("v2", 2)))
    assert files.write(changed) == ["kfloop-predictor"]
    assert json.loads((directory / "kfloop-predictor.json").read_text()) == changed["kfloop-predictor"]
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{job}.json" for job in groups)


def test_the_supervisor_follows_the_serving_stacks_replicas(tmp_path):
    """A canary's predictor is scraped from when the stack starts it until it stops it; a stack that is not
    running has no targets (Prometheus would scrape ports other processes may have taken)."""
    state = tmp_path / "serving-state"
    state.mkdir()
    serving = PartConfig(name="serving", kind="serving", command=["kfloop", "serve"])
    collector = PartConfig(name="collector", command=["x"], metrics_url="http://127.0.0.1:8090/metrics")
    supervisor = Supervisor(SystemConfig(state_dir=tmp_path / "system", parts=[collector, serving]), out=lambda _: None)
    supervisor.targets.reset()
    part = next(p for p in supervisor.parts if p.name == "serving")
    part.state, part.started_epoch = State.READY, time.time() - 60
    supervisor._serving_state_dir = str(state)

    def predictor_targets() -> list[str]:
        supervisor.refresh_targets()
        return targets(json.loads((supervisor.paths.targets / "kfloop-predictor.json").read_text()))

    (state / "endpoints.json").write_text(json.dumps(endpoints(("v1", 41001))))
    assert predictor_targets() == ["127.0.0.1:41001"]
    (state / "endpoints.json").write_text(json.dumps(endpoints(("v1", 41001), ("v2", 41002))))
    assert predictor_targets() == ["127.0.0.1:41001", "127.0.0.1:41002"]
    (state / "endpoints.json").write_text(json.dumps(endpoints(("v1", 41001))))
    assert predictor_targets() == ["127.0.0.1:41001"]
    part.state = State.BACKOFF
    assert predictor_targets() == []
    assert (supervisor.paths.targets / "kfloop-collector.json").exists()
    os.utime(state / "endpoints.json", (0, 0))  # left by a stack before this start
    part.state = State.STARTING
    assert predictor_targets() == []
