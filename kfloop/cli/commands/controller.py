"""`kfloop pause | resume`: the controller's kill switch, through its HTTP API (with its bearer token).

Arguments (wired in kfloop/cli/app.py): --config FILE (the controller's YAML: its address and token file),
--url URL, --operator NAME (default: the OS user), --reason TEXT.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from kfloop.errors import KfloopError


def pause(args: argparse.Namespace) -> int:
    return _switch(args, "pause")


def resume(args: argparse.Namespace) -> int:
    return _switch(args, "resume")


def approve(args: argparse.Namespace) -> int:
    """`kfloop approve EXPERIMENT`: the manual gate before 100%."""
    return _switch(args, "approve", f"experiments/{args.experiment}/approve")


def _switch(args: argparse.Namespace, which: str, route: str | None = None) -> int:
    from kfloop.config import load_config
    from monitoring.controller.config import DEFAULT_CONFIG, ControllerConfig, read_token

    try:
        config_file = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
        config = load_config(ControllerConfig, config_file)
    except KfloopError as exc:
        print(f"kfloop {which}: {exc.message}", file=sys.stderr)
        return 2
    try:
        token = read_token(config.token_file)
    except OSError as exc:
        print(f"kfloop {which}: the controller's token file {config.token_file}: {exc.strerror}", file=sys.stderr)
        return 2
    url = (args.url or config.url).rstrip("/") + f"/v1/{route or which}"
    body = {"operator": args.operator or getpass.getuser(), "reason": args.reason or ""}
    try:
        answer = _post(url, body, token)
    except urllib.error.HTTPError as exc:
        print(f"kfloop {which}: the controller answered {exc.code}: {_message(exc)}", file=sys.stderr)
        return 2
    except (urllib.error.URLError, OSError) as exc:
        print(f"kfloop {which}: the controller at {url} is unreachable: {exc}", file=sys.stderr)
        return 2
    done = {
        "pause": "controller paused: alerts are recorded, nothing is done",
        "resume": "controller resumed: acting on alerts",
        "approve": f"experiment {getattr(args, 'experiment', '')} approved for 100%",
    }[which]
    print(f"{done} ({answer['actor']}, {answer['finished_at']}; {answer['reason']}; action {answer['id']})")
    return 0


def _post(url: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read() or b"{}").get("message", ""))
    except ValueError:
        return ""
