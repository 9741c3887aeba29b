"""What Prometheus scrapes in the local system, through its file-based service discovery: the supervisor writes a
target file per job in `{state_dir}/system/targets/` (monitoring/prometheus/prometheus.local.yaml reads every
`*.json` there), Prometheus notices each change at once (inotify).

Jobs: `kfloop-{name}` for each part with a `metrics_url` (collector, follower, joiner, controller, Prometheus,
Alertmanager, ...), and for the serving part each process of the stack, from the endpoints file the stack keeps
current (`kfloop-transformer`, `kfloop-router`, `kfloop-explainer`, `kfloop-audit-sink`, and `kfloop-predictor` with
every replica of every served version, so a canary's predictors are scraped from their start to their stop).
A file is replaced atomically, and only when its targets changed. The targets carry no label a process exports
itself (`model_version`, `variant`): the series say which version answered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from serving.local.system.config import PartConfig

JOB_PREFIX = "kfloop-"
SERVING_SERVICES = {
    "transformer": f"{JOB_PREFIX}transformer",
    "router": f"{JOB_PREFIX}router",
    "explainer": f"{JOB_PREFIX}explainer",
    "audit_sink": f"{JOB_PREFIX}audit-sink",
}
"""The stack's services by their key in its endpoints file, and their jobs."""
PREDICTOR_JOB = f"{JOB_PREFIX}predictor"
METRICS_PATH = "/metrics"

TargetGroups = dict[str, list[dict[str, Any]]]
"""Target groups (Prometheus's file_sd format) by job name."""


def _group(job: str, urls: list[str], path: str = METRICS_PATH) -> list[dict[str, Any]]:
    addresses = sorted({urlsplit(url).netloc for url in urls})
    if not addresses:
        return []
    return [{"targets": addresses, "labels": {"job": job, "__metrics_path__": path}}]


def part_targets(parts: list[PartConfig]) -> TargetGroups:
    """A job per part that has metrics: while it is down Prometheus records `up == 0`, which is worth knowing."""
    groups = {}
    for part in parts:
        if part.metrics_url is not None:
            job = f"{JOB_PREFIX}{part.name}"
            groups[job] = _group(job, [part.metrics_url], urlsplit(part.metrics_url).path)
    return groups


def serving_targets(endpoints: dict[str, Any] | None) -> TargetGroups:
    """The stack's jobs from its endpoints file (None: the stack does not run: every job empty)."""
    endpoints = endpoints or {}
    groups = {}
    for key, job in SERVING_SERVICES.items():
        url = endpoints.get(key)
        groups[job] = _group(job, [url] if url else [])
    replicas = [replica["url"] for listed in (endpoints.get("predictors") or {}).values() for replica in listed]
    groups[PREDICTOR_JOB] = _group(PREDICTOR_JOB, replicas)
    return groups


def read_endpoints(path: Path, not_before: float) -> dict[str, Any] | None:
    """The stack's endpoints file if the running stack wrote it (modified at or after `not_before`, its start)."""
    try:
        if path.stat().st_mtime < not_before:
            return None  # left by a stack that ran before
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not there yet, or caught between the stack's write and rename
        return None


class TargetFiles:
    """The target files in one directory, owned by one supervisor."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._written: TargetGroups = {}

    def reset(self) -> None:
        """Remove what an earlier supervisor wrote (a part since removed from the config would linger)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob("*.json"):
            stale.unlink(missing_ok=True)
        self._written = {}

    def write(self, groups: TargetGroups) -> list[str]:
        """Write each job's file whose targets changed; the jobs written."""
        changed = [job for job, group in groups.items() if self._written.get(job) != group]
        for job in changed:
            path = self.directory / f"{job}.json"
            temp = path.with_name(f".{path.name}.tmp")  # Prometheus reads *.json only
            temp.write_text(json.dumps(groups[job], indent=1) + "\n")
            os.replace(temp, path)
            self._written[job] = groups[job]
        return changed
