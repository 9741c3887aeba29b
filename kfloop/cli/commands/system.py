"""`kfloop up | down | status`: the whole local system under one supervisor (serving/local/system/).

Arguments (wired in kfloop/cli/app.py):
    up:     --config FILE (default manifests/local/system.yaml), --state-dir DIR, --foreground
    down:   --config FILE, --state-dir DIR
    status: --config FILE, --state-dir DIR, --json (exit 3 when no supervisor runs)
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kfloop.errors import KfloopError


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def _paths(args: argparse.Namespace):
    """Where the system keeps its files: --state-dir, else the config's state_dir."""
    from serving.local.system.config import SystemPaths, load_system_config

    if args.state_dir:
        return SystemPaths(Path(args.state_dir))
    return SystemPaths(load_system_config(args.config).state_dir)


def up(args: argparse.Namespace) -> int:
    from kfloop.cli.app import command_for
    from serving.local.system.config import SystemPaths, load_system_config, runnable

    try:
        config, notes = runnable(load_system_config(args.config, args.state_dir), lambda w: command_for(w) is not None)
    except KfloopError as exc:
        print(f"kfloop up: {exc.message}", file=sys.stderr)
        return 2
    if args.foreground:
        return _supervise(config, notes)
    return _detach(args, SystemPaths(config.state_dir))


def _supervise(config, notes: list[str]) -> int:
    from serving.local.system.supervisor import AlreadyRunning, Supervisor

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return Supervisor(config, notes=notes, out=_say).run(stop)
    except AlreadyRunning as exc:
        print(f"kfloop up: {exc.message}", file=sys.stderr)
        return 1


def _detach(args: argparse.Namespace, paths) -> int:
    """Start the supervisor as a process of its own session, writing its log; pass the log on until it is up."""
    from serving.local.system import pids
    from serving.local.system.control import follow_until_up

    running = pids.read_record(paths.supervisor_pid)
    if running is not None and running.running():
        print(
            f"kfloop up: the local system already runs on {paths.state_dir} (supervisor pid {running.pid}): "
            "`kfloop status` shows it, `kfloop down` stops it",
            file=sys.stderr,
        )
        return 1
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.status.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "kfloop", "up", "--foreground", "--state-dir", str(paths.state_dir)]
    if args.config:
        argv += ["--config", args.config]
    with open(paths.supervisor_log, "ab") as log:
        offset = log.tell()
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        return follow_until_up(process, paths, offset)
    except KeyboardInterrupt:
        print(f"\nkfloop up: the system keeps starting in the background (pid {process.pid}); `kfloop down` stops it")
        return 130


def down(args: argparse.Namespace) -> int:
    from serving.local.system.control import down as stop_system

    paths = _paths(args)
    stopped = stop_system(paths, out=_say)
    print(f"kfloop down: {'stopped the local system on' if stopped else 'nothing was running on'} {paths.state_dir}")
    return 0


def status(args: argparse.Namespace) -> int:
    from serving.local.system.control import live_status
    from serving.local.system.report import status_lines

    live = live_status(_paths(args))
    if args.json:
        print(json.dumps(live, indent=2))
    else:
        print("\n".join(status_lines(live)))
    return 0 if live["supervisor"].get("running") else 3
