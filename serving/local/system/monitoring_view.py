"""What `kfloop status` shows of the monitoring loop, asked live: the alerts Prometheus has firing or pending
(`/api/v1/alerts`), and the controller's kill switch and last actions (`/v1/status`, with its bearer token). A part
that does not answer is reported so, with the reason, never an error of `kfloop status` itself."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kfloop.errors import KfloopError
from serving.local.system.report import where

TIMEOUT_S = 2.0
RECENT_ACTIONS = 5
SHOWN_ELSEWHERE = ("alertname", "severity", "action")
"""Alert labels shown in their own columns (the rest is printed as the alert's labels)."""


def _get_json(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as response:
        return json.load(response)


def _unanswered(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"answered {exc.code}"
    return f"not answering ({getattr(exc, 'reason', None) or exc})"


def prometheus_alerts(url: str) -> dict[str, Any]:
    """Prometheus's active alerts (firing first), or why they could not be read."""
    try:
        answer = _get_json(f"{url}/api/v1/alerts")
        listed = answer["data"]["alerts"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {"url": url, "error": _unanswered(exc)}
    alerts = [
        {
            "name": alert["labels"].get("alertname", "?"),
            "state": alert.get("state", "?"),
            "severity": alert["labels"].get("severity", ""),
            "action": alert["labels"].get("action", ""),
            "labels": {k: v for k, v in sorted(alert["labels"].items()) if k not in SHOWN_ELSEWHERE},
            "since": alert.get("activeAt", ""),
            "value": alert.get("value", ""),
            "summary": alert.get("annotations", {}).get("summary", ""),
        }
        for alert in listed
    ]
    alerts.sort(key=lambda a: (a["state"] != "firing", a["name"], str(a["labels"])))
    return {"url": url, "alerts": alerts}


def controller_actions(url: str, config_file: str | None) -> dict[str, Any]:
    """The controller's switch, open actions and last actions, read with the token its config names."""
    from kfloop.config import load_config
    from monitoring.controller.config import ControllerConfig, read_token

    try:
        token = read_token(load_config(ControllerConfig, Path(config_file) if config_file else None).token_file)
    except (KfloopError, OSError) as exc:
        return {"url": url, "error": f"its token cannot be read: {getattr(exc, 'message', exc)}"}
    try:
        answer = _get_json(f"{url}/v1/status", token)
        return {
            "url": url,
            "paused": answer["paused"],
            "open": answer["open"],
            "recent": answer["recent"][:RECENT_ACTIONS],
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {"url": url, "error": _unanswered(exc)}


def monitoring_status(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The loop's parts that run (`parts` as `kfloop status` sees them); None when the system has none."""
    by_kind = {p["kind"]: p for p in parts if p.get("kind") in ("prometheus", "alertmanager", "controller")}
    if not by_kind:
        return None
    status: dict[str, Any] = {kind: {"url": where(part), "alive": part["alive"]} for kind, part in by_kind.items()}
    prometheus = by_kind.get("prometheus")
    if prometheus is not None and prometheus["alive"]:
        status["prometheus"] |= prometheus_alerts(where(prometheus))
    controller = by_kind.get("controller")
    if controller is not None and controller["alive"]:
        status["controller"] |= controller_actions(where(controller), controller.get("config"))
    return status
