"""The local serving stack (`kfloop serve`) as integration tests run it: started on a testbed
with a config, every part ready before the tests, stopped after."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from kfloop.processes import stop_process
from tests.support import testbed

MODEL = "kfloop-ranker"


@dataclass
class Stack:
    root: Path
    config: Path
    bed: testbed.Testbed
    process: subprocess.Popen
    endpoints: dict[str, Any]

    @property
    def url(self) -> str:
        return self.endpoints["transformer"]

    def refresh(self) -> dict[str, Any]:
        self.endpoints = json.loads((self.root / "state" / "endpoints.json").read_text())
        return self.endpoints

    def routes(self) -> dict[str, Any]:
        return httpx.get(f"{self.endpoints['router']}/v1/routes").json()

    def rank(self, client: httpx.Client, user: str, **extra: Any) -> dict[str, Any]:
        response = client.post(
            f"{self.url}/v1/models/{MODEL}:predict", json={"instances": [{"user_id": user, **extra}]}
        )
        assert response.status_code == 200, response.text
        return response.json()["predictions"][0]


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f}s")


@contextmanager
def running_stack(bed: testbed.Testbed, config: dict, *, start_timeout_s: float) -> Iterator[Stack]:
    """The stack with this config (state under `{bed.root}/state`), once its router routes a stable predictor and
    its transformer is ready; its log is `{bed.root}/stack.log`."""
    root = bed.root
    path = root / "serving.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(root / "stack.log", "wb")  # noqa: SIM115 (closed at the end)
    process = subprocess.Popen(
        [sys.executable, "-m", "kfloop", "serve", "--config", str(path)], stdout=log, stderr=subprocess.STDOUT
    )
    running = Stack(root, path, bed, process, {})
    try:
        wait_for(
            lambda: (root / "state" / "endpoints.json").exists() and running.refresh(),
            start_timeout_s,
            "the stack's endpoints",
        )
        wait_for(
            lambda: httpx.get(f"{running.endpoints['router']}/readyz").status_code == 200,
            start_timeout_s,
            "a routed stable predictor",
        )
        wait_for(
            lambda: httpx.get(f"{running.url}/v2/models/{MODEL}/ready").status_code == 200,
            start_timeout_s,
            "the transformer",
        )
    except Exception:
        process.terminate()
        log.close()
        raise AssertionError((root / "stack.log").read_text()[-5000:]) from None
    try:
        yield running
    finally:
        stop_process(process, 90)
        log.close()
