"""The local system of `kfloop up` (manifests/local/system.yaml): its parts, how each is started, when it counts as
ready, and what it depends on. Adding a part is adding an entry.

Placeholders, in a part's command arguments, `config_overrides` values and the string values of its `config_file`:
`{state_dir}` the system's state directory (absolute once `kfloop up` runs: Prometheus and Alertmanager resolve
relative paths against their config file's folder), `{cwd}` the directory `kfloop up` runs in (the repository
root), `{port}` the part's own port and `{port:NAME}` the port of part NAME (so moving a port moves every
reference to it).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator, model_validator

from kfloop.config import StrictModel, load_config
from kfloop.errors import ConfigError

DEFAULT_CONFIG = Path("manifests/local/system.yaml")
_PLACEHOLDER = re.compile(r"\{(state_dir|cwd|port)(?::([a-z][a-z0-9-]*))?\}")
"""`{state_dir}`, `{cwd}`, `{port}`, `{port:NAME}` (the module's docstring says what each is)."""
KFLOOP = "kfloop"
KINDS = ("collector", "serving", "prometheus", "alertmanager", "controller")
Ports = Mapping[str, int | None]
"""Each part's port by its name (None: it has none)."""
OverrideValue = str | int | float | bool | list[str]


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
    config_flag: str = Field(default="--config", pattern=r"^--?[A-Za-z0-9][A-Za-z0-9._-]*$")
    """The flag the effective config is passed with: `--config` (kfloop's parts), `--config.file` (Prometheus,
    Alertmanager)."""
    config_overrides: dict[str, OverrideValue] = Field(default_factory=dict)
    """Dotted keys set in the part's config, e.g. `event_log.wal_dir: "{state_dir}/wal"` (a value may be a list of
    strings, e.g. a command). `{state_dir}` in a value is replaced by the state directory, so one `--state-dir`
    moves every part's state. The part checks the keys when it loads its config (a wrong one fails its start with
    the key named in its log)."""
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
    kind: Literal["collector", "serving", "prometheus", "alertmanager", "controller"] | None = None
    """What the system knows of it beyond its process (at most one part of each kind). `collector`: `kfloop
    status` shows its event counts (from `metrics_url`). `serving`: its config is a serving config (`kfloop
    serve`): it starts once a model is deployable, reported as waiting until then, `kfloop status` shows its served
    versions and split, and Prometheus scrapes each process of the stack. `prometheus`: `kfloop status` shows its
    firing alerts. `controller`: its config is the controller's; `kfloop status` shows its last actions.
    `alertmanager`: its URL is shown beside them."""
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
        if self.kind in ("prometheus", "alertmanager", "controller") and self.port is None:
            raise ValueError(f"a part of kind {self.kind} needs its port (kfloop status asks it there)")
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
        for kind in KINDS:
            if sum(p.kind == kind for p in self.parts) > 1:
                raise ValueError(f"parts: at most one part of kind {kind}")
        dependency_order(self.parts)  # raises on a cycle
        return self

    def ordered(self) -> list[PartConfig]:
        return dependency_order(self.parts)

    def of_kind(self, kind: str) -> PartConfig | None:
        return next((p for p in self.parts if p.kind == kind), None)

    def ports(self) -> dict[str, int | None]:
        return {p.name: p.port for p in self.parts}


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
    def targets(self) -> Path:
        """Prometheus's file-based service discovery: a target file per job (monitoring/prometheus/)."""
        return self.system / "targets"

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
    """The system config file (default manifests/local/system.yaml), with `--state-dir` over its state_dir, which
    is made absolute (the parts' configs name paths under it wherever they are read from)."""
    if path is None:
        if not DEFAULT_CONFIG.exists():
            raise ConfigError(f"no system config: {DEFAULT_CONFIG} does not exist here (run from the repo root)")
        path = DEFAULT_CONFIG
    config = load_config(SystemConfig, path, {"state_dir": str(state_dir) if state_dir is not None else None})
    return config.model_copy(update={"state_dir": config.state_dir.absolute()})


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
            hint = "" if part.command[0] == KFLOOP else " (not on PATH; `make setup` installs the servers it runs)"
            raise ConfigError(f"parts.{name}.command: {' '.join(part.command)!r} does not exist here{hint}")
    kept = [p for p in config.parts if p.name not in skipped]
    for part in kept:
        needs = [a for a in part.after if a in skipped]
        if needs:
            raise ConfigError(f"parts.{part.name}.after: {', '.join(needs)} is optional and not here")
    ports = config.ports()
    for part in kept:  # an unreadable config file or a bad placeholder is an error now, before anything starts
        effective_data(part, config.state_dir, ports)
        command_line(part, config.state_dir, ports)
    notes = [f"{name}: skipped (`{' '.join(p.command)}` does not exist here)" for name, p in skipped.items()]
    return config.model_copy(update={"parts": kept}), notes


def concrete(value: str, state_dir: Path, ports: Ports | None = None, part: str = "") -> str:
    """`value` with its placeholders filled in (the module's docstring lists them); one naming an unknown part, or a
    part without a port, is an error."""

    def fill(match: re.Match[str]) -> str:
        token, name = match.groups()
        if token == "port":
            named = name or part
            port = (ports or {}).get(named)
            if port is None:
                why = "has no port" if named in (ports or {}) else "is not a part of the system"
                raise ConfigError(f"parts.{part}: {match.group(0)} in {value!r}: {named or 'the part'} {why}")
            return str(port)
        if name is not None:
            return match.group(0)
        return str(state_dir) if token == "state_dir" else str(Path.cwd())

    return _PLACEHOLDER.sub(fill, value)


def _filled(data: object, state_dir: Path, ports: Ports | None, part: str) -> object:
    """Every string in a config file's data, with its placeholders filled in."""
    if isinstance(data, str):
        return concrete(data, state_dir, ports, part)
    if isinstance(data, list):
        return [_filled(item, state_dir, ports, part) for item in data]
    if isinstance(data, dict):
        return {key: _filled(value, state_dir, ports, part) for key, value in data.items()}
    return data


def command_line(part: PartConfig, state_dir: Path, ports: Ports | None = None) -> list[str]:
    """The part's command with its placeholders filled in."""
    return [concrete(word, state_dir, ports, part.name) for word in part.command]


def effective_data(part: PartConfig, state_dir: Path, ports: Ports | None = None) -> dict | None:
    """The part's config with its overrides applied and its placeholders filled in; None: it has none."""
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
        section[leaf] = value
    filled = _filled(data, state_dir, ports, part.name)
    assert isinstance(filled, dict)
    return filled


def effective_config(part: PartConfig, paths: SystemPaths, ports: Ports | None = None) -> Path | None:
    """Write the part's effective config (`{state_dir}/system/config/{name}.yaml`) for it to load; None: it has
    none."""
    data = effective_data(part, paths.state_dir, ports)
    if data is None:
        return None
    path = paths.configs / f"{part.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
