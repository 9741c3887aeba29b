"""The demo's files: the system it runs (`kfloop up --config`), the pipeline, importer and feature configs, all
under its own state directory and on free loopback ports, so it never touches `.kfloop` or a running system."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from kfloop.cli.demo.settings import DemoConfig
from kfloop.processes import free_port

SYSTEM_TEMPLATE = Path("manifests/local/system.yaml")
CONTROLLER_TEMPLATE = Path("manifests/controller/controller.yaml")
SMALL_PROFILE = Path("pipelines/profiles/small.yaml")
SLICE_MIN_POSITIVES = 30
"""Clicks (and non-clicks) a slice needs before its AUC is compared with production's. An AUC from fewer clicks
has a standard error of 0.05-0.1, the size of the drop that blocks a candidate: with 10, a run blocked a candidate
on a slice where both versions scored below 0.5."""
TRAIN_EPOCHS = 10
"""Passes over the training split. The demo's window (a few thousand rows: ~15 gradient steps a pass) leaves the
model near its initialization after the small profile's 2: on one run's examples, retrained offline, the 2-pass
model kept ranking the category the users had tired of first (expected CTR 0.011 under the simulator's truth),
the 5-, 10- and 20-pass ones did not (0.049, 0.046, 0.044)."""
PORT = re.compile(r"\b(80[89]\d|9090|9093)\b")
"""The loopback ports manifests/local/system.yaml names (each is moved to a free one)."""


def nested(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} as {"a": {"b": 1}}."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class DemoFiles:
    """Paths of the demo's state and configs; `write` creates the configs."""

    def __init__(self, config: DemoConfig, repo: Path) -> None:
        self.config, self.repo = config, repo
        self.state = config.state_dir.resolve()
        self.configs = self.state / "configs"
        self.system = self.configs / "system.yaml"
        self.controller = self.configs / "controller.yaml"
        self.pipeline = self.configs / "pipeline.yaml"
        self.importer = self.configs / "import-obd.yaml"
        self.features = self.configs / "features.yaml"
        self.simulate_out = self.state / "simulate"
        self.rules = self.configs / "rules.yaml"
        self.prometheus = self.configs / "prometheus.yaml"
        self.registry = self.state / "registry"

    @property
    def where(self) -> list[str]:
        """The `kfloop up | down | status` arguments naming the demo system."""
        return ["--config", str(self.system), "--state-dir", str(self.state)]

    def write(self) -> None:
        self.configs.mkdir(parents=True, exist_ok=True)
        log = {"event_log.wal_dir": str(self.state / "wal"), "event_log.log_uri": str(self.state / "events")}
        store = {"store.repo_dir": str(self.state / "features"), "store.obd_data_dir": str(self.data_dir)}
        _dump(self.importer, nested({**log, "event_log.wal_dir": str(self.state / "wal-obd")}))
        _dump(self.features, nested({**log, **store}))
        _dump(self.pipeline, self.pipeline_data(log, store))
        _dump(self.system, self.system_data())

    @property
    def data_dir(self) -> Path:
        return (self.repo / self.config.data_dir).resolve()

    def pipeline_data(self, log: dict[str, str], store: dict[str, str]) -> dict[str, Any]:
        """The small profile on the demo's state. A few minutes of simulated traffic is thin evidence by the
        pipeline's own standards: a low-evidence candidate is blessed flagged (recorded on its card), since its
        experiment (shadow, then canary stages each gated by a sequential test on live clicks) is the real test;
        and a slice is compared by AUC only with SLICE_MIN_POSITIVES clicks (the small profile's 3 make the AUC of
        a position slice noise that blocks any candidate). A candidate the evidence says is worse is still blocked."""
        overrides = {f"features.{k}": v for k, v in {**log, **store}.items()} | {
            "registry.uri": str(self.registry),
            "pipeline_root": str(self.state / "pipeline-root"),
            "window.max_requests": self.config.pipeline_max_requests,
            "evaluate.blessing.on_low_evidence": "bless_flagged",
            "evaluate.min_slice_positives": SLICE_MIN_POSITIVES,
            "train.epochs": TRAIN_EPOCHS,
        }
        return merged(yaml.safe_load((self.repo / SMALL_PROFILE).read_text()) or {}, nested(overrides))

    def system_data(self) -> dict[str, Any]:
        """The default system, every port moved to a free one, with the demo's windows, retraining command and
        experiment (the controller's file, written beside it). The predictor exports no input drift: v1 learned
        from OBD's logged users, and the simulated ones differ from the first request (cohorts' extra users are
        cold-start ids, their histories are the simulator's), so FeatureDriftHigh would retrain before the shift
        the demo is about; the demo's loop acts on the reward (OnlineRewardDecay)."""
        ports: dict[str, str] = {}
        text = PORT.sub(
            lambda m: ports.setdefault(m.group(0), str(free_port())), (self.repo / SYSTEM_TEMPLATE).read_text()
        )
        data = yaml.safe_load(text)
        data["state_dir"] = str(self.state)
        _dump(self.controller, self.controller_data(ports))
        parts = {p["name"]: p for p in data["parts"]}
        for part in data["parts"]:
            part["start_timeout_s"] = self.config.start_timeout_s
        overrides = {
            "collector": {"event_log.segment_max_age_s": 1.0},  # sealed into Parquet (for the pipeline) at once
            "serving": {
                "predictor.drift.enabled": False,  # why: DemoFiles.system_data
                "stack.predictor_replicas": 1,
                "stack.start_timeout_s": self.config.start_timeout_s - 100,
            },
            "joiner": {
                "reference_impressions": self.config.reference_impressions,
                "reference_settle_s": self.config.reference_settle_s,
            },
            "controller": {
                "retrain.command": ["kfloop", "pipeline", "run", "--local", "--config", str(self.pipeline)],
                "retrain.cooldown_s": self.config.retrain_cooldown_s,
                "retrain.poll_interval_s": 2.0,
            },
        }
        for name, values in overrides.items():
            parts[name].setdefault("config_overrides", {}).update(values)
        parts["controller"]["config_file"] = str(self.controller)
        parts["prometheus"]["config_file"] = str(self.prometheus_data(parts["prometheus"]["config_file"]))
        return data

    def prometheus_data(self, template: str) -> Path:
        """The local Prometheus config evaluating the demo's rules: the local profile's, with the demo's canary
        latency threshold (the supervisor still fills the config's placeholders)."""
        from monitoring import rulegen

        threshold = {"canary_max_p99_seconds": f"{self.config.canary_max_p99_seconds:g}"}
        self.rules.write_text(rulegen.dump({"groups": rulegen.render_groups("local", threshold)}))
        data = yaml.safe_load((self.repo / template).read_text())
        _dump(self.prometheus, data | {"rule_files": [str(self.rules)]})
        return self.prometheus

    def controller_data(self, ports: dict[str, str]) -> dict[str, Any]:
        """The controller's file with the demo's experiment (a list of stages: no dotted override can hold it)."""
        base = yaml.safe_load((self.repo / CONTROLLER_TEMPLATE).read_text())
        return base | {"experiment": self.experiment(ports)}

    def experiment(self, ports: dict[str, str]) -> dict[str, Any]:
        """The controller's experiment, sized for the demo's traffic, reading the demo's joiner and router (their
        ports moved: the controller's own file names the default ones)."""
        c = self.config
        test = {
            "margin": c.test_margin,
            "alpha": 0.05,
            "min_samples": c.test_min_samples,
            "max_samples": c.test_max_samples,
            "on_max_sample": "rollback",
        }
        shadow = {"name": "shadow", "mode": "shadow", "duration_s": c.shadow_s, "min_mirrored": c.shadow_min_mirrored}
        canaries = [{"name": f"canary-{p}", "mode": "canary", "percent": p, "test": test} for p in c.canary_percents]
        return {
            "enabled": True,
            "approval_before_full": False,
            "counts_url": f"http://127.0.0.1:{ports['8092']}/metrics",
            "mirror_counts_url": f"http://127.0.0.1:{ports['8086']}/metrics",
            "poll_interval_s": 2.0,
            "stages": [shadow, *canaries],
        }


def _dump(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
