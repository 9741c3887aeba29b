"""What `kfloop up` and `kfloop status` print, from the status the supervisor writes (plain text, no I/O but a
log's tail)."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

TAIL_LINES = 40


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        with open(path, errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip("\n")
    except FileNotFoundError:
        return f"({path} does not exist)"


def where(part: dict[str, Any]) -> str:
    """Where a part answers: its port's loopback URL, else its first readiness URL."""
    if part.get("port"):
        return f"http://127.0.0.1:{part['port']}"
    return (part.get("ready_urls") or [""])[0]


def summary_lines(status: dict[str, Any]) -> list[str]:
    """Once the system is up: each part's state, where it answers and its log."""
    supervisor = status["supervisor"]
    lines = [
        f"kfloop up: the local system is up (state in {status['state_dir']}; supervisor pid {supervisor['pid']}, "
        f"log {supervisor['log']})"
    ]
    width = max(len(p["name"]) for p in status["parts"])
    for part in status["parts"]:
        shown = part["detail"] if part["state"] == "waiting" else where(part)
        lines.append(f"  {part['name']:<{width}}  {part['state']:<8}  {shown}  (log: {part['log']})")
    lines.append("`kfloop status` shows its health; `kfloop down` stops it.")
    return lines


def status_lines(live: dict[str, Any]) -> list[str]:
    """`kfloop status`: the supervisor, each part, the served versions and split, the event counts."""
    supervisor = live["supervisor"]
    if not live["parts"]:
        return [f"kfloop: no local system has run on {live['state_dir']} (start it with `kfloop up`)"]
    state = "running" if supervisor["running"] else "not running"
    lines = [
        f"supervisor: {state} (pid {supervisor['pid']}, phase {supervisor['phase']}, "
        f"since {supervisor['started_at']}); state in {live['state_dir']}"
    ]
    if live.get("failure"):
        failure = live["failure"]
        lines.append(f"failed: {failure['part']}: {failure['reason']} (log: {failure['log']})")
    width = max(len(p["name"]) for p in live["parts"])
    lines.append(f"  {'part':<{width}}  {'state':<8}  {'process':<7}  {'pid':>7}  restarts  ready  where")
    for p in live["parts"]:
        ready = "-" if p["run"] == "once" else ("yes" if p["ready"] else "no")
        process = "up" if p["alive"] else ("-" if p["run"] == "once" else "down")
        pid = p["pid"] if p["pid"] is not None else "-"
        lines.append(
            f"  {p['name']:<{width}}  {p['state']:<8}  {process:<7}  {pid:>7}  {p['restarts']:>8}  {ready:<5}  "
            f"{where(p)}"
        )
        for label in ("detail", "last_exit"):
            if p.get(label):
                lines.append(f"  {'':<{width}}  {label.replace('_', ' ')}: {p[label]}")
    lines.append(serving_line(live.get("serving")))
    lines.append(events_line(live.get("events")))
    lines += monitoring_lines(live.get("monitoring"))
    return lines


def serving_line(served: dict[str, Any] | None) -> str:
    if served is None:
        return "serving: no serving state yet"
    if served["stable"] is None:
        return "serving: no model deployed"
    text = f"serving: stable {served['stable']} {served['stable_percent']}%"
    if served["canary"]:
        text += f", canary {served['canary']} {served['canary_percent']}%"
    return text


def events_line(events: dict[str, Any] | None) -> str:
    if events is None:
        return "events: the collector is not answering"
    counts = ", ".join(f"{status} {count:g}" for status, count in sorted(events.items()))
    return f"events (since the collector started): {counts or 'none yet'}"


def monitoring_lines(monitoring: dict[str, Any] | None) -> list[str]:
    """Where the monitoring loop answers, the alerts Prometheus has active, the controller's last actions."""
    if monitoring is None:
        return []
    names = {"prometheus": "Prometheus", "alertmanager": "Alertmanager", "controller": "controller"}
    shown = [f"{names[k]} {monitoring[k]['url']}" for k in names if k in monitoring]
    lines = [f"monitoring: {', '.join(shown)}"]
    if "prometheus" in monitoring:
        lines += alert_lines(monitoring["prometheus"])
    if "controller" in monitoring:
        lines += action_lines(monitoring["controller"])
    return lines


def alert_lines(prometheus: dict[str, Any]) -> list[str]:
    if not prometheus["alive"]:
        return ["alerts: Prometheus is not running"]
    if "error" in prometheus:
        return [f"alerts: Prometheus {prometheus['error']}"]
    alerts = prometheus["alerts"]
    firing = sum(a["state"] == "firing" for a in alerts)
    lines = [f"alerts: {firing} firing, {len(alerts) - firing} pending (see {prometheus['url']}/alerts)"]
    for a in alerts:
        labels = " ".join(f"{k}={v}" for k, v in a["labels"].items())
        lines.append(f"  {a['state']:<7}  {a['name']}  {a['severity']}  action={a['action'] or '-'}  {labels}")
        lines.append(f"           since {a['since']}: {a['summary']}")
    return lines


def action_lines(controller: dict[str, Any]) -> list[str]:
    if not controller["alive"]:
        return ["controller: not running"]
    if "error" in controller:
        return [f"controller: {controller['error']}"]
    paused = controller["paused"]
    state = f"PAUSED by {paused['by']} at {paused['at']} ({paused['reason']})" if paused else "acting on alerts"
    lines = [f"controller: {state}; {len(controller['open'])} action(s) under way; last actions:"]
    if not controller["recent"]:
        lines.append("  none yet")
    for action in controller["recent"]:
        alerts = ",".join(sorted({a.get("alertname", "?") for a in action.get("alerts", [])})) or "-"
        outcome = action.get("outcome") or action.get("phase")
        lines.append(f"  {action['created_at']}  {action['kind']:<8}  {outcome:<12}  {alerts}: {action['reason']}")
    return lines
