"""For the controller's tests: Alertmanager webhook payloads as Alertmanager 0.25 sends them, a controller
config in a tmp directory (serving state, registry, token, spool), and the training stand-in's command."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from kfloop.registry import Blessing, Candidate, ModelRegistry
from monitoring.controller.config import ControllerConfig

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "manifests" / "serving" / "inferenceservice.yaml"
STAND_IN = Path(__file__).with_name("training_stand_in.py")
TOKEN = "t0ken-for-tests"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def alert(
    name: str,
    action: str,
    *,
    fingerprint: str | None = None,
    starts_at: datetime = T0,
    status: str = "firing",
    **labels: str,
) -> dict[str, Any]:
    """One alert of a webhook payload (nanosecond start time, endsAt of a firing alert: year 1)."""
    return {
        "status": status,
        "labels": {"alertname": name, "action": action, "severity": "warning", **labels},
        "annotations": {"summary": f"{name} fired", "description": "test", "runbook_url": f"docs/runbooks/{name}.md"},
        "startsAt": starts_at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else (starts_at + timedelta(minutes=5)).isoformat(),
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
        "fingerprint": fingerprint or f"fp-{name.lower()}",
    }


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="test"}',
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "kfloop-controller",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }


def register(registry: ModelRegistry, folder: Path, n: int, *, blessed: bool = True) -> str:
    model = folder / f"saved-{n}"
    model.mkdir(parents=True, exist_ok=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    candidate = Candidate(
        data_version=f"d{n}",
        schema_version="s",
        code_version="c",
        parameters={"n": n},
        blessing=Blessing(blessed=blessed, reasons=["test"]),
        data={},
        metrics={},
        ope={},
    )
    return registry.register(candidate, model_dir=model, created_at=T0 + timedelta(minutes=n)).version


def stand_in_command(tmp_path: Path, mode: str = "bless") -> list[str]:
    return [sys.executable, str(STAND_IN), str(tmp_path / "registry"), str(tmp_path / "control"), mode]


def config_data(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A local-mode config: everything under tmp_path, the stand-in as the retrain command."""
    (tmp_path / "token").write_text(TOKEN + "\n")
    data: dict[str, Any] = {
        "state_dir": str(tmp_path / "controller"),
        "token_file": str(tmp_path / "token"),
        "reconcile_interval_s": 0.05,
        "serving": {
            "state_dir": str(tmp_path / "serving"),
            "manifest": str(MANIFEST),
            "registry_uri": str(tmp_path / "registry"),
        },
        "retrain": {"command": stand_in_command(tmp_path), "poll_interval_s": 0.05, "cooldown_s": 3600},
        "rollback": {"attempts": 2, "retry_s": 0.05},
        # a blessed result as a plain canary (tests of retraining); experiments are tested on their own
        "experiment": {"enabled": False},
        "audit": {"dir": str(tmp_path / "audit-spool"), "sink_url": "http://127.0.0.1:9", "idle_wait_s": 0.05},
    }
    for key, value in overrides.items():
        section, _, leaf = key.partition("__")
        if leaf:
            data.setdefault(section, {})[leaf] = value
        else:
            data[key] = value
    return data


def write_config(tmp_path: Path, **overrides: Any) -> tuple[Path, ControllerConfig]:
    data = config_data(tmp_path, **overrides)
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, ControllerConfig.model_validate(data)
