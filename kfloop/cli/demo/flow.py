"""The demo's phases, in order; each has a time limit, none waits for a person. What the run saw is recorded under
`{report_dir}/run/` (the report is built from those files alone)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from kfloop.cli.demo import collect
from kfloop.cli.demo.run import DemoFailed, Kfloop, PhaseClock, interrupt
from kfloop.cli.demo.settings import DemoConfig
from kfloop.cli.demo.setup import DemoFiles
from kfloop.cli.demo.watch import Watcher, now_iso
from kfloop.registry import ModelRegistry

RUN_ID = "demo"
RETRAIN_ALERTS = ("OnlineRewardDecay", "FeatureDriftHigh")
LONG_S = 24 * 3600.0  # the simulator runs until the demo interrupts it


class Demo:
    def __init__(self, config: DemoConfig, repo: Path, out: TextIO = sys.stdout) -> None:
        self.config, self.repo, self.out = config, repo, out
        self.files = DemoFiles(config, repo)
        self.run_dir = config.report_dir.resolve() / "run"
        self.kfloop = Kfloop(repo, self.run_dir / "logs")
        self.clock = PhaseClock(out)
        self.events: dict[str, Any] = {"versions": {}}
        self.watcher: Watcher | None = None

    def note(self, key: str, value: Any) -> None:
        self.events[key] = value
        (self.run_dir / "events.json").write_text(json.dumps(self.events, indent=2))

    def run(self) -> Path:
        self.prepare()
        try:
            self.build_v1()
            self.start_system()
            simulator = self.start_traffic()
            try:
                self.loop_phases()
            finally:
                interrupt(simulator)
                self.watcher.stop()
            with self.clock.phase("collect the record"):
                collect.record(self)
        finally:
            self.kfloop("down", *self.files.where, timeout=600, check=False)
            self.save_phases()
        return self.run_dir

    def save_phases(self) -> None:
        (self.run_dir / "phases.json").write_text(json.dumps(self.clock.phases, indent=2))

    def prepare(self) -> None:
        if self.files.state.exists():  # a previous demo's system is stopped before its state goes
            self.kfloop("down", *self.files.where, timeout=600, check=False) if self.files.system.exists() else None
            shutil.rmtree(self.files.state)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.kfloop.logs.mkdir(parents=True)
        self.files.write()
        (self.run_dir / "config.json").write_text(self.config.model_dump_json(indent=2))
        self.note("started_at", now_iso())

    def build_v1(self) -> None:
        data = ["--data-dir", str(self.files.data_dir)]
        with self.clock.phase("import the OBD sample"):
            self.kfloop("data", "fetch", *data)
            self.kfloop("events", "import-obd", *data, "--config", str(self.files.importer))
        with self.clock.phase("build the features"):
            self.kfloop("features", "materialize", "--config", str(self.files.features))
        with self.clock.phase("train v1 through the pipeline") as phase:
            self.kfloop("pipeline", "run", "--local", "--config", str(self.files.pipeline), timeout=3600)
            v1 = ModelRegistry(self.files.registry).latest_deployable()
            if v1 is None:
                raise DemoFailed(f"the pipeline registered no deployable v1 (log: {self.kfloop.logs})")
            self.note("v1", v1)
            phase["notes"].append(f"v1 = {v1}")

    def start_system(self) -> None:
        from serving.local.system.config import SystemPaths
        from serving.local.system.control import live_status

        with self.clock.phase("deploy v1: kfloop up with the monitoring loop"):
            self.kfloop("up", *self.files.where, timeout=self.config.start_timeout_s + 300)
        paths = SystemPaths(self.files.state)
        self.watcher = Watcher(lambda: live_status(paths), self.run_dir, out=self.out)
        self.clock.on_enter = self.watcher.enter
        self.watcher.start()

    def start_traffic(self) -> Any:
        live = self.watcher.status()
        ports = {part["name"]: part["port"] for part in live["parts"]}
        args = self.simulate_args(ports)
        self.note("simulate_args", args)
        process = self.kfloop.start("simulate", *args)
        self.note("traffic_started_at", now_iso())
        self.watcher.rankings.follow(self.files.simulate_out / RUN_ID)
        return process

    def simulate_args(self, ports: dict[str, int]) -> list[str]:
        c = self.config
        return [
            *("--transformer-url", f"http://127.0.0.1:{ports['serving']}"),
            *("--collector-url", f"http://127.0.0.1:{ports['collector']}"),
            *("--rate", str(c.rate), "--duration", str(LONG_S), "--users", str(c.users), "--seed", str(c.seed)),
            *("--scenario", "shift", "--shift-at", str(c.steady_s), "--shift-share", str(c.shift_share)),
            *("--run-id", RUN_ID, "--out-dir", str(self.files.simulate_out), "--data-dir", str(self.files.data_dir)),
        ]

    def loop_phases(self) -> None:
        from kfloop.cli.demo import loop

        with self.clock.phase("simulated traffic, steady preferences"):
            time.sleep(self.config.steady_s)
        self.note("shift_at", now_iso())
        loop.closed_loop(self)
        loop.bad_version(self)
