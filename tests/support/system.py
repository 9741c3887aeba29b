"""For tests and benchmarks of `kfloop up`: the default system file with its loopback ports moved to free ones (they
run beside other stacks), reduced to the parts they need; `kfloop` as a subprocess from the repository root; and
small readers of Prometheus's and the controller's HTTP APIs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from kfloop.processes import free_port
from serving.local.system.config import DEFAULT_CONFIG

REPO_ROOT = Path(__file__).resolve().parents[2]
KFLOOP = [sys.executable, "-m", "kfloop"]
DEFAULT_PORTS = (8090, 8093, 8092, 8080, 8086, 8087, 8095, 9090, 9093, 8099)
"""Every loopback port manifests/local/system.yaml names."""


def system_data(*, keep: list[str] | None = None, start_timeout_s: float = 900) -> dict[str, Any]:
    """The default system config with every port moved to a free one; only the parts in `keep` (None: all), each
    with a start timeout for a host that other test suites may be keeping busy."""
    text = (REPO_ROOT / DEFAULT_CONFIG).read_text()
    for port in DEFAULT_PORTS:
        text = re.sub(rf"\b{port}\b", str(free_port()), text)
    config = yaml.safe_load(text)
    if keep is not None:
        config["parts"] = [p for p in config["parts"] if p["name"] in keep]
        for entry in config["parts"]:  # an override naming a part left out goes with it
            overrides = entry.get("config_overrides") or {}
            for key, value in list(overrides.items()):
                named = re.findall(r"\{port:([\w-]+)\}", str(value))
                if any(name not in keep for name in named):
                    del overrides[key]
    for entry in config["parts"]:
        entry["start_timeout_s"] = start_timeout_s
        if entry["name"] == "serving":
            entry["config_overrides"]["stack.start_timeout_s"] = start_timeout_s - 100
    return config


def part_of(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in config["parts"] if p["name"] == name)


def write_system(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def kfloop(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*KFLOOP, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float, interval_s: float = 0.05) -> Any:
    """The predicate's first true value; fails naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        time.sleep(interval_s)
    return value


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def _data(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", params=params, timeout=5)
        answer.raise_for_status()
        return answer.json()["data"]

    def alerts(self, name: str | None = None, state: str = "firing") -> list[dict[str, Any]]:
        listed = self._data("/api/v1/alerts")["alerts"]
        return [a for a in listed if a["state"] == state and (name is None or a["labels"]["alertname"] == name)]

    def targets(self, job: str) -> list[dict[str, Any]]:
        return [t for t in self._data("/api/v1/targets")["activeTargets"] if t["labels"]["job"] == job]

    def value(self, expr: str) -> float | None:
        result = self._data("/api/v1/query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else None


class Controller:
    """The controller's API, with the token its config names."""

    def __init__(self, url: str, token_file: Path) -> None:
        self.url = url
        self.token_file = token_file

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token_file.read_text().strip()}"}
        answer = httpx.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def _get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params=params)

    def actions(self, kind: str | None = None) -> list[dict[str, Any]]:
        return self._get("/v1/actions", **({"kind": kind} if kind else {}))

    def action(self, action_id: str) -> dict[str, Any]:
        return self._get(f"/v1/actions/{action_id}")

    def start_experiment(self, candidate: str) -> dict[str, Any]:
        """POST /v1/experiments: the experiment's action (pending)."""
        return self._call("POST", "/v1/experiments", json={"candidate": candidate, "operator": "test"})

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        return self._get(f"/v1/experiments/{experiment_id}")

    def alert_notifications(self, state_db: Path) -> dict[str, int]:
        """How many notifications of each alert (by name) the controller received, from its own state."""
        import sqlite3

        with sqlite3.connect(f"file:{state_db}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT alertname, SUM(notifications) FROM alerts GROUP BY alertname").fetchall()
        return {name: int(count) for name, count in rows}


def live_status(where: list[str]) -> dict[str, Any]:
    return json.loads(kfloop("status", "--json", *where).stdout)
