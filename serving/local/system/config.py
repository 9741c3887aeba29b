"""The local system of `kfloop up` (manifests/local/system.yaml): its parts, how each is started, when it counts as
ready, and what it depends on. Adding a part (Prometheus, Alertmanager, the controller) is adding an entry."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator, model_validator

from kfloop.config import StrictModel, load_config
from kfloop.errors import ConfigError

DEFAULT_CONFIG = Path("manifests/local/system.yaml")
STATE_DIR_TOKEN = "{state_dir}"
"""Replaced in a part's `config_overrides` values by the system's state directory."""
KFLOOP = "kfloop"


class PartConfig(StrictModel):
    """One process of the local system."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    """Its name: its log is `{state_dir}/logs/{name}.log`, its pid file `{state_dir}/system/pids/{name}.json`."""
    command: list[str] = Field(min_length=1)
    """Program and arguments. A first word `kfloop` runs this installation's kfloop with the supervisor's own
    Python (`python -m kfloop ...`, which moves to the environment the subcommand needs); any other program is
    looked up on PATH."""
    config_file: Path | None = None
    """The part's own YAML config. The part is given a copy with `config_overrides` applied, as `--config FILE`
    (`{state_dir}/system/config/{name}.yaml`). None: the overrides alone are its config; none of either: no
    `--config`."""
    config_overrides: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Dotted keys set in the part's config, e.g. `event_log.wal_dir: "{state_dir}/wal"`. `{state_dir}` in a value
    is replaced by the state directory, so one `--state-dir` moves every part's state. The part checks the keys
    when it loads its config (a wrong one fails its start with the key named in its log)."""
    run: Literal["service", "once"] = "service"
    """`service`: kept running, restarted (with backoff) whenever it dies. `once`: a setup step (e.g. `kfloop
    features apply`) that must exit 0 before the parts after it start."""
    after: list[str] = Field(default_factory=list)
    """Parts that must be ready (a service) or done (a once step) before this one starts."""
    creates: str | None = None
    """A once step's product (`{state_dir}` allowed): while it exists the step counts as done and is skipped, as
    make does with a target (delete it to run the step again)."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """The port it serves on: printed, and checked before its first start, so a port another process holds is a
    clear error rather than a readiness timeout."""
    ready_urls: list[str] = Field(default_factory=list)
    """HTTP URLs that must all answer 200 before the part counts as ready (none: ready once its process runs)."""
    health_url: str | None = None
    """Probed every few seconds while the part is ready: after `HEALTH_FAILURES` failed probes in a row it is
    restarted as if it had died (a process that hangs, or stopped following the log, is as good as dead)."""
    metrics_url: str | None = None
    """Its Prometheus metrics (what a Prometheus part scrapes; the collector's give `kfloop status` its counts)."""
    kind: Literal["collector", "serving"] | None = None
    """What the system knows of it beyond its process. `collector`: `kfloop status` shows its event counts (from
    `metrics_url`). `serving`: its config is a serving config (`kfloop serve`): it starts once a model is
    deployable, reported as waiting until then, and `kfloop status` shows its served versions and split."""
    optional: bool = False
    """Skipped, and reported so, when its command does not exist here (a kfloop subcommand this version lacks, a
    program not on PATH); a required part's missing command is an error."""
    start_timeout_s: float = Field(default=120.0, gt=0)
    """How long it may take to be ready (a once step: to finish)."""
    stop_timeout_s: float = Field(default=30.0, gt=0)
    """How long it may take to exit after SIGTERM before its whole process group is killed."""

    @field_validator("ready_urls", "metrics_url", "health_url")
    @classmethod
    def _http(cls, value: list[str] | str | None) -> list[str] | str | None:
        for url in [value] if isinstance(value, str) else value or []:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _check(self) -> PartConfig:
        if self.run == "once" and (self.ready_urls or self.port or self.health_url):
            raise ValueError("a once step serves nothing: no port, ready_urls or health_url")
        if self.run == "service" and self.creates:
            raise ValueError("creates is for once steps (a service is never done)")
        if self.kind == "collector" and self.metrics_url is None:
            raise ValueError("the collector needs metrics_url (kfloop status reads its event counts there)")
        if self.name in self.after:
            raise ValueError(f"{self.name} cannot start after itself")
        return self


class SystemConfig(StrictModel):
    """Everything `kfloop up` runs, under one supervisor and one state directory."""

    state_dir: Path = Path(".kfloop")
    """Where everything lives: the parts' state (through their `{state_dir}` overrides), their logs in `logs/`,
    pid files, status and effective configs in `system/`."""
    parts: list[PartConfig] = Field(min_length=1)
    """The parts, started in dependency order (`after`; parts whose dependencies are met start side by side) and
    stopped in reverse."""
    poll_interval_s: float = Field(default=0.25, gt=0, le=5)
    """How often the supervisor checks its parts' processes, readiness and gates."""
    restart_backoff_s: float = Field(default=1.0, ge=0)
    """Wait before restarting a part that died; doubles per consecutive failure, up to `restart_backoff_max_s`."""
    restart_backoff_max_s: float = Field(default=30.0, ge=0)
    """Longest wait between restarts of a part that keeps dying."""

    @model_validator(mode="after")
    def _check(self) -> SystemConfig:
        names = [p.name for p in self.parts]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"parts: names must be unique, repeated: {', '.join(repeated)}")
        for part in self.parts:
            unknown = [a for a in part.after if a not in names]
            if unknown:
                raise ValueError(f"parts.{part.name}.after: no part named {', '.join(unknown)}")
        for kind in ("collector", "serving"):
            if sum(p.kind == kind for p in self.parts) > 1:
                raise ValueError(f"parts: at most one part of kind {kind}")
        dependency_order(self.parts)  # raises on a cycle
        return self

    def ordered(self) -> list[PartConfig]:
        return dependency_order(self.parts)

    def of_kind(self, kind: str) -> PartConfig | None:
        return next((p for p in self.parts if p.kind == kind), None)


def dependency_order(parts: list[PartConfig]) -> list[PartConfig]:
    """Each part after the parts it names in `after`, otherwise in file order; a cycle is an error."""
    done: list[PartConfig] = []
    left = list(parts)
    while left:
        placed = {p.name for p in done}
        ready = [p for p in left if all(a in placed for a in p.after)]
        if not ready:
            cycle = ", ".join(p.name for p in left)
            raise ValueError(f"parts: the `after` dependencies of {cycle} form a cycle")
        done += ready
        left = [p for p in left if p not in ready]
    return done


@dataclass(frozen=True)
class SystemPaths:
    """Where the supervisor keeps its files under the state directory."""

    state_dir: Path

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def system(self) -> Path:
        return self.state_dir / "system"

    @property
    def pids(self) -> Path:
        return self.system / "pids"

    @property
    def configs(self) -> Path:
        return self.system / "config"

    @property
    def status(self) -> Path:
        return self.system / "status.json"

    @property
    def supervisor_pid(self) -> Path:
        return self.system / "supervisor.pid"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    def log(self, part: str) -> Path:
        return self.logs / f"{part}.log"

    def pid(self, part: str) -> Path:
        return self.pids / f"{part}.json"


def load_system_config(path: Path | str | None, state_dir: Path | str | None = None) -> SystemConfig:
    """The system config file (default manifests/local/system.yaml), with `--state-dir` over its state_dir."""
    if path is None:
        if not DEFAULT_CONFIG.exists():
            raise ConfigError(f"no system config: {DEFAULT_CONFIG} does not exist here (run from the repo root)")
        path = DEFAULT_CONFIG
    return load_config(SystemConfig, path, {"state_dir": str(state_dir) if state_dir is not None else None})


def command_exists(command: list[str], kfloop_has: Callable[[list[str]], bool]) -> bool:
    """`kfloop_has` tells whether this kfloop has a subcommand (the CLI knows; this module does not import it)."""
    if command[0] == KFLOOP:
        return kfloop_has(command[1:])
    return shutil.which(command[0]) is not None


def runnable(config: SystemConfig, kfloop_has: Callable[[list[str]], bool]) -> tuple[SystemConfig, list[str]]:
    """The config without the optional parts whose command is missing here, and why each was left out. A
    required part's missing command, or a part left after a skipped one, is an error."""
    skipped = {p.name: p for p in config.parts if not command_exists(p.command, kfloop_has)}
    for name, part in skipped.items():
        if not part.optional:
            raise ConfigError(f"parts.{name}.command: {' '.join(part.command)!r} does not exist here")
    kept = [p for p in config.parts if p.name not in skipped]
    for part in kept:
        needs = [a for a in part.after if a in skipped]
        if needs:
            raise ConfigError(f"parts.{part.name}.after: {', '.join(needs)} is optional and not here")
    for part in kept:
        effective_data(part, config.state_dir)  # an unreadable config file is an error now, before anything starts
    notes = [f"{name}: skipped (`{' '.join(p.command)}` does not exist here)" for name, p in skipped.items()]
    return config.model_copy(update={"parts": kept}), notes


def concrete(value: str, state_dir: Path) -> str:
    """`{state_dir}` replaced by the state directory."""
    return value.replace(STATE_DIR_TOKEN, str(state_dir))


def effective_data(part: PartConfig, state_dir: Path) -> dict | None:
    """The part's config with its overrides applied (state paths made concrete); None: it has none."""
    if part.config_file is None and not part.config_overrides:
        return None
    data: dict = {}
    if part.config_file is not None:
        try:
            data = yaml.safe_load(part.config_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"parts.{part.name}.config_file: cannot read {part.config_file}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"parts.{part.name}.config_file: {part.config_file} must hold a mapping")
    for dotted, value in part.config_overrides.items():
        *parents, leaf = dotted.split(".")
        section = data
        for key in parents:
            section = section.setdefault(key, {})
            if not isinstance(section, dict):
                raise ConfigError(f"parts.{part.name}.config_overrides: {dotted}: {key} is not a mapping")
        section[leaf] = concrete(value, state_dir) if isinstance(value, str) else value
    return data


def effective_config(part: PartConfig, paths: SystemPaths) -> Path | None:
    """Write the part's effective config (`{state_dir}/system/config/{name}.yaml`) for it to load; None: it has
    none."""
    data = effective_data(part, paths.state_dir)
    if data is None:
        return None
    path = paths.configs / f"{part.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
