"""`kfloop serve`: every serving role as a local process, kept in line with the canary state.

    client -> transformer (front door: V1/V2 ranking, :explain)
                 -> router (the per-request stable/canary split Knative does on a cluster)
                       -> predictors of the stable version | predictors of the canary version
           predictors -> audit sink (decisions through each predictor's durable spool)
                      -> explainer (background explanations of a sample)

The supervisor seeds `state.json` from the InferenceService manifest, starts `predictor_replicas` predictor
processes per version the state names, and writes the router's table only with predictors that answer ready.
It then watches the state file (changed by `kfloop deploy | promote | rollback`) and the processes: a new
canary is started and routed once ready; a version no longer named is unrouted, then stopped; a process that
dies is taken out of the routes and restarted (with backoff), so a crashing canary leaves stable serving.
After a promotion the previous stable version keeps its processes, unrouted, so a rollback is instant.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kfloop.audit.config import STORE_URL_ENV, redacted
from kfloop.deploy import load_or_seed, read_state
from kfloop.errors import NotFound
from kfloop.processes import free_port
from kfloop.registry import ModelRegistry
from serving.common.process import Background, ServiceProcess
from serving.local.router.routes import CanaryRoute, Route, Routes, write_routes
from serving.local.stack.config import ServingConfig

log = logging.getLogger(__name__)

EFFECTIVE_CONFIG = "serving.effective.yaml"
ROUTES_FILE = "routes.json"
ENDPOINTS_FILE = "endpoints.json"
_MAX_BACKOFF_S = 60.0


@dataclass
class Managed:
    """A child process, started in the background; `ready` once it answered its ready path."""

    name: str
    process: ServiceProcess
    ready_path: str
    timeout_s: float
    background: Background | None = None
    """A lower CPU priority (background work must not slow rankings on a small machine)."""
    ready: bool = False
    failed: str | None = None
    failures: int = 0
    next_start: float = 0.0
    thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        self.ready, self.failed = False, None

        def run() -> None:
            try:
                self.process.start(ready_path=self.ready_path, timeout_s=self.timeout_s, background=self.background)
                self.ready = True
                self.failures = 0
            except Exception as exc:
                self.failed = str(exc).splitlines()[0]
                log.error("%s did not start: %s (log: %s)", self.name, self.failed, self.process.log_path)

        self.thread = threading.Thread(target=run, name=f"start-{self.name}", daemon=True)
        self.thread.start()

    @property
    def starting(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def alive(self) -> bool:
        popen = self.process._process
        return popen is not None and popen.poll() is None

    def wait_ready(self) -> bool:
        if self.thread is not None:
            self.thread.join()
        return self.ready

    def stop(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            self.thread.join(self.timeout_s)
        self.process.stop(timeout_s=20)
        self.ready = False


def stop_together(processes: list[Managed]) -> None:
    """Stop them side by side: each predictor drains its spool on the way out, and one after the other
    the waits would add up."""
    threads = [threading.Thread(target=m.stop, name=f"stop-{m.name}") for m in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class Stack:
    """The local serving stack of one config."""

    def __init__(self, config: ServingConfig) -> None:
        self.config = config
        self.stack = config.stack
        self.state_dir = self.stack.state_dir
        self.logs = self.state_dir / "logs"
        self.host = self.stack.host
        self.ports = {
            "transformer": self.stack.transformer_port or free_port(),
            "router": self.stack.router_port or free_port(),
            "explainer": self.stack.explainer_port or free_port(),
            "audit_sink": self.stack.audit_sink_port or free_port(),
        }
        self.registry = ModelRegistry(config.predictor.registry_uri)
        self.services: dict[str, Managed] = {}
        self.predictors: dict[str, list[Managed]] = {}
        """The replicas of each version's predictor."""
        self._routes: Routes | None = None
        self._state_mtime: int | None = None

    # -- urls and the effective config ----------------------------------------------------------------------
    def url(self, role: str) -> str:
        return f"http://{self.host}:{self.ports[role]}"

    @property
    def sink_url(self) -> str:
        return self.url("audit_sink") if self.stack.run_audit_sink else self.config.predictor.audit.spool.sink_url

    def effective_config(self) -> ServingConfig:
        """The config with the stack's wiring: who talks to whom, on which port, and where state lives."""
        c = self.config
        explainer = self.url("explainer") if self.stack.run_explainer else None
        spool = c.predictor.audit.spool.model_copy(update={"sink_url": self.sink_url})
        audit = c.predictor.audit.model_copy(update={"spool": spool, "explainer_url": explainer})
        return c.model_copy(
            update={
                "predictor": c.predictor.model_copy(update={"audit": audit}),
                "transformer": c.transformer.model_copy(
                    update={"predictor_url": self.url("router"), "explainer_url": explainer}
                ),
                "stack": c.stack.model_copy(update={"audit_store_url": redacted(c.stack.audit_store_url)}),
                "router": c.router.model_copy(
                    update={
                        "routes_file": self.state_dir / ROUTES_FILE,
                        "host": self.host,
                        "port": self.ports["router"],
                    }
                ),
            }
        )

    def _write_effective_config(self) -> Path:
        path = self.state_dir / EFFECTIVE_CONFIG
        path.write_text(yaml.safe_dump(self.effective_config().model_dump(mode="json"), sort_keys=False))
        return path

    # -- processes ---------------------------------------------------------------------------------------------
    def _managed(
        self, name: str, command: list[str], port: int, ready_path: str, env: dict[str, str] | None = None
    ) -> Managed:
        """`python -m kfloop COMMAND...`: each role runs through the `kfloop` subcommand its container runs on a
        cluster (the manifests' one entry form), so the local stack and its tests exercise that entry too; the
        cost over `python -m serving.X` is the CLI's light import, next to the seconds a role takes to load."""
        log_path = self.logs / f"{name}.log"
        process = ServiceProcess("kfloop", command, log_path=log_path, host=self.host, port=port, env=env)
        return Managed(name, process, ready_path, self.stack.start_timeout_s)

    def audit_sink(self) -> Managed:
        """The audit sink, niced; its store URL (which may hold a password) in its environment, not in its
        command line."""
        env = {STORE_URL_ENV: self.stack.audit_store_url}
        sink = self._managed("audit-sink", ["audit", "sink"], self.ports["audit_sink"], "/readyz", env)
        sink.background = self.stack.background()
        return sink

    def _model_ready_path(self) -> str:
        return f"/v2/models/{self.config.predictor.model_name}/ready"

    def _predictor(self, version: str, replica: int) -> Managed:
        """Replica 0 spools under the configured root (`{root}/{version}`, as a single process always did, so
        an upgrade leaves nothing unshipped); replica i under `{root}/replica-{i}/{version}`: a spool has one
        writer, and a restarted replica resumes shipping what it spooled before. A seeded policy (tests) is
        seeded `seed + i` in replica i."""
        args = ["predictor", "--config", str(self.config_path), "--model-version", version]
        name = f"predictor-{version}"
        if replica > 0:
            predictor = self.config.predictor
            args += ["--spool-dir", str(predictor.audit.spool.dir / f"replica-{replica}")]
            if predictor.policy.seed is not None:  # replicas must not repeat each other's draws
                args += ["--seed", str(predictor.policy.seed + replica)]
            name += f"-r{replica}"
        return self._managed(name, args, free_port(), self._model_ready_path())

    def _replicas(self, version: str) -> list[Managed]:
        return [self._predictor(version, replica) for replica in range(self.stack.predictor_replicas)]

    def _services(self) -> dict[str, Managed]:
        """Every process but the predictors, each reading the effective config (`self.config_path`)."""
        cfg = ["--config", str(self.config_path)]
        services = {}
        if self.stack.run_audit_sink:
            services["audit_sink"] = self.audit_sink()
        if self.stack.run_explainer:
            services["explainer"] = self._managed(
                "explainer", ["explainer", *cfg], self.ports["explainer"], self._model_ready_path()
            )
            services["explainer"].background = self.stack.background()
        services["router"] = self._managed("router", ["router", *cfg], self.ports["router"], "/readyz")
        services["transformer"] = self._managed(
            "transformer", ["transformer", *cfg], self.ports["transformer"], self._model_ready_path()
        )
        return services

    def start(self) -> None:
        """Seed the state, start every process, route the ready predictors; returns once stable serves."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        state = load_or_seed(self.state_dir, self.stack.manifest, self.registry)
        if state.stable is None:
            raise NotFound(
                f"no deployable model version in {self.registry.uri}: train one, or `kfloop deploy VERSION --force`"
            )
        write_routes(self.state_dir / ROUTES_FILE, Routes())
        self.config_path = self._write_effective_config()
        self.services = self._services()
        for managed in self.services.values():
            managed.start()
        self.reconcile()
        for stable in self.predictors[state.stable.version]:
            if not stable.wait_ready():
                raise RuntimeError(f"the stable predictor did not start; see {stable.process.log_path}")
        self.reconcile()
        # the router is ready once a stable predictor is routed: wait for it after routing
        for name in ("audit_sink", "router", "transformer"):
            if name in self.services and not self.services[name].wait_ready():
                raise RuntimeError(f"{name} did not start; see {self.services[name].process.log_path}")
        self._write_endpoints()

    def reconcile(self) -> None:
        """One pass: predictors for the versions the state names, routes for the ready ones, restarts."""
        state = read_state(self.state_dir)
        if state is None or state.stable is None:
            return
        wanted = {state.stable.version} | ({state.canary.version} if state.canary else set())
        # the stable version before the last promotion keeps its process (unrouted), so a rollback is instant,
        # as KServe keeps the previous revision
        if state.previous_stable and not state.canary:
            wanted.add(state.previous_stable)
        now = time.monotonic()
        for version in wanted:
            replicas = self.predictors.get(version)
            if replicas is None:
                replicas = self.predictors[version] = self._replicas(version)
                for managed in replicas:
                    managed.start()
            for managed in replicas:
                if not managed.starting and not managed.alive and now >= managed.next_start:
                    self._restart(managed, now)
        for name, managed in self.services.items():
            if not managed.starting and not managed.alive and now >= managed.next_start:
                log.error("%s exited; restarting", name)
                self._restart(managed, now)
        self._route(state)
        for version in [v for v in self.predictors if v not in wanted]:
            log.info("stopping the predictors of %s (no longer in the state)", version)
            stop_together(self.predictors.pop(version))
        self._write_endpoints()

    def _restart(self, managed: Managed, now: float) -> None:
        managed.failures += 1
        managed.next_start = now + min(self.stack.restart_backoff_s * 2 ** (managed.failures - 1), _MAX_BACKOFF_S)
        log.error(
            "%s is down (exit %s); restarting",
            managed.name,
            managed.process._process.poll() if managed.process._process else None,
        )
        managed.process.stop(timeout_s=1)
        managed.start()

    def _usable(self, version: str) -> tuple[str, ...]:
        """URLs of the version's replicas that are ready and running."""
        return tuple(m.process.url for m in self.predictors.get(version, []) if m.ready and m.alive)

    def _route(self, state: Any) -> None:
        stable = self._usable(state.stable.version)
        stable_route = Route(urls=stable, version=state.stable.version) if stable else None
        if stable_route is None and self._routes is not None:
            stable_route = self._routes.stable  # e.g. a rollback target still starting: keep serving meanwhile
        canary_route = None
        if state.canary is not None:
            canary = self._usable(state.canary.version)
            if canary:
                placed = state.canary
                canary_route = CanaryRoute(
                    urls=canary,
                    version=placed.version,
                    percent=placed.percent,
                    mode=placed.mode,
                    experiment=placed.experiment,
                )
        routes = Routes(stable=stable_route, canary=canary_route)
        if routes != self._routes:
            write_routes(self.state_dir / ROUTES_FILE, routes)
            log.info("routes: %s", routes.model_dump())
            self._routes = routes

    def _write_endpoints(self) -> None:
        body = {
            "transformer": self.url("transformer"),
            "router": self.url("router"),
            "explainer": self.url("explainer") if self.stack.run_explainer else None,
            "audit_sink": self.sink_url,
            "predictors": {
                version: [
                    {"url": m.process.url, "ready": m.ready, "pid": m.process._process.pid}
                    for m in replicas
                    if m.process._process is not None
                ]
                for version, replicas in self.predictors.items()
            },
            "services": {
                name: {"url": m.process.url, "ready": m.ready, "pid": m.process._process.pid}
                for name, m in self.services.items()
                if m.process._process is not None
            },
        }
        path = self.state_dir / ENDPOINTS_FILE
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps(body, indent=2) + "\n")
        temp.replace(path)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.stack.poll_interval_s):
            try:
                self.reconcile()
            except Exception:
                log.exception("reconciling the stack failed; retrying")

    def stop(self) -> None:
        """Stop the front door first, the audit sink last (the predictors drain their spools into it)."""
        order = ["transformer", "router", "explainer"]
        for name in order:
            if name in self.services:
                self.services[name].stop()
        stop_together([managed for replicas in self.predictors.values() for managed in replicas])
        if "audit_sink" in self.services:
            self.services["audit_sink"].stop()
