"""The system config of `kfloop up`: the default file agrees with the parts' own configs, bad entries are refused
naming the field, optional parts are skipped only when their command is missing, `{state_dir}` moves every state."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from kfloop.cli.app import command_for
from kfloop.config import load_config
from kfloop.errors import ConfigError
from kfloop.features.config import FeaturesConfig
from monitoring.controller.config import ControllerConfig
from serving.collector.config import CollectorConfig
from serving.joiner.config import JoinerConfig
from serving.local.stack.config import ServingConfig
from serving.local.system.config import (
    DEFAULT_CONFIG,
    PartConfig,
    SystemConfig,
    SystemPaths,
    command_line,
    effective_config,
    effective_data,
    load_system_config,
    runnable,
)
from serving.local.system.part import Part
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.serving
DEFAULT_STATE = Path(".kfloop")


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the config's paths are relative to the repo root, as `kfloop up` runs


def kfloop_has(words: list[str]) -> bool:
    return command_for(words) is not None


def part(name: str, **fields) -> dict:
    return {"name": name, "command": ["kfloop", "collector"], **fields}


def default_part(name: str) -> PartConfig:
    return next(p for p in load_system_config(None).parts if p.name == name)


def test_the_default_file_starts_the_feature_store_first_and_stops_the_collector_last():
    order = [p.name for p in load_system_config(None).ordered()]
    for later in ("follower", "serving"):
        assert order.index("features-apply") < order.index(later)
    assert order[0] == "collector"  # stopped last (reverse order): serving's predictors drain into it


def test_default_overrides_change_nothing_in_the_collector_config():
    collector = default_part("collector")
    effective = CollectorConfig.model_validate(effective_data(collector, DEFAULT_STATE))
    assert effective == load_config(CollectorConfig, collector.config_file)
    assert collector.port == load_config(CollectorConfig, collector.config_file).port
    assert urlsplit(collector.ready_urls[0]).port == collector.port


def test_default_overrides_change_nothing_in_the_joiner_config():
    joiner = default_part("joiner")
    effective = JoinerConfig.model_validate(effective_data(joiner, DEFAULT_STATE))
    assert effective == load_config(JoinerConfig, joiner.config_file)
    assert joiner.port == effective.port == urlsplit(joiner.ready_urls[0]).port
    assert kfloop_has(joiner.command[1:])  # this version has the joiner: it is started, not skipped


def test_default_overrides_change_nothing_in_the_serving_config():
    serving = default_part("serving")
    ports = load_system_config(None).ports()
    effective = ServingConfig.model_validate(effective_data(serving, DEFAULT_STATE, ports))
    assert effective == load_config(ServingConfig, serving.config_file)
    stack = load_config(ServingConfig, serving.config_file).stack
    assert serving.port == stack.transformer_port
    assert [urlsplit(u).port for u in serving.ready_urls] == [stack.transformer_port, stack.router_port]


def test_default_overrides_change_nothing_in_the_controller_config():
    controller = default_part("controller")
    ports = load_system_config(None).ports()
    effective = ControllerConfig.model_validate(effective_data(controller, DEFAULT_STATE, ports))
    assert effective == load_config(ControllerConfig, controller.config_file)
    assert controller.port == effective.port == urlsplit(controller.ready_urls[0]).port
    assert kfloop_has(controller.command[1:])


def test_default_overrides_of_the_features_parts_are_the_features_defaults():
    for name in ("features-apply", "follower"):
        assert FeaturesConfig.model_validate(effective_data(default_part(name), DEFAULT_STATE)) == FeaturesConfig()


def test_state_dir_moves_every_part_state(tmp_path):
    config = load_system_config(None, tmp_path / "elsewhere")
    paths = SystemPaths(config.state_dir)
    by_name = {p.name: p for p in config.parts}
    collector = load_config(CollectorConfig, effective_config(by_name["collector"], paths))
    serving = load_config(ServingConfig, effective_config(by_name["serving"], paths, config.ports()))
    follower = load_config(FeaturesConfig, effective_config(by_name["follower"], paths))
    joiner = load_config(JoinerConfig, effective_config(by_name["joiner"], paths))
    root = tmp_path / "elsewhere"
    assert collector.event_log.wal_dir == follower.event_log.wal_dir == joiner.event_log.wal_dir == root / "wal"
    assert collector.event_log.log_uri == follower.event_log.log_uri == joiner.event_log.log_uri == str(root / "events")
    assert follower.store.repo_dir == serving.transformer.features.store.repo_dir == root / "features"
    assert serving.stack.state_dir == root / "serving"
    assert serving.predictor.registry_uri == serving.explainer.registry_uri == str(root / "registry")
    assert serving.stack.audit_store_url == f"sqlite:///{root}/audit/audit.db"
    # served impressions go to this system's collector, wherever its port is
    assert serving.predictor.impressions.collector_url == f"http://127.0.0.1:{collector.port}"
    assert (paths.configs / "collector.yaml").is_file()
    controller = load_config(ControllerConfig, effective_config(by_name["controller"], paths, config.ports()))
    assert controller.state_dir == root / "controller" and controller.token_file == root / "controller" / "token"
    assert controller.serving.state_dir == serving.stack.state_dir
    assert controller.serving.registry_uri == serving.predictor.registry_uri
    # experiments count this system's joiner's impressions and its router's mirrored requests
    assert controller.experiment.counts_url == f"http://127.0.0.1:{joiner.port}/metrics"
    assert controller.experiment.mirror_counts_url == f"http://127.0.0.1:{serving.stack.router_port}/metrics"


def test_the_state_dir_is_absolute_once_loaded(tmp_path, monkeypatch):
    """Prometheus and Alertmanager resolve relative paths against their config file's folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "system.yaml").write_text(yaml.safe_dump({"parts": [part("a")]}))
    assert load_system_config("system.yaml").state_dir == tmp_path / ".kfloop"
    assert load_system_config("system.yaml", "here").state_dir == tmp_path / "here"


def test_placeholders_name_the_state_dir_the_working_directory_and_ports(tmp_path):
    template = tmp_path / "prometheus.yaml"
    template.write_text(yaml.safe_dump({"rules": ["{cwd}/rules.yaml"], "targets": {"am": "127.0.0.1:{port:am}"}}))
    entry = PartConfig(
        name="prom",
        command=["prometheus", "--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.path={state_dir}/tsdb"],
        config_file=template,
        config_flag="--config.file",
        config_overrides={"files": ["{state_dir}/targets/*.json"], "untouched": "{{ $labels.x }} {state_dir:x}"},
        port=9090,
    )
    ports = {"prom": 9090, "am": 9093}
    state = tmp_path / "state"
    filled = ["--web.listen-address=127.0.0.1:9090", f"--storage.tsdb.path={state}/tsdb"]
    assert command_line(entry, state, ports)[1:] == filled
    assert effective_data(entry, state, ports) == {
        "rules": [f"{REPO_ROOT}/rules.yaml"],
        "targets": {"am": "127.0.0.1:9093"},
        "files": [f"{state}/targets/*.json"],
        "untouched": "{{ $labels.x }} {state_dir:x}",
    }
    argv = Part(entry, SystemPaths(state), 1.0, 1.0, ports)
    argv.config_path = tmp_path / "effective.yaml"
    assert argv.argv()[-2:] == ["--config.file", str(tmp_path / "effective.yaml")]


@pytest.mark.parametrize(
    ("command", "reason"),
    [(["x", "{port:nobody}"], "nobody is not a part of the system"), (["x", "{port:b}"], "b has no port")],
)
def test_a_port_placeholder_naming_no_port_is_an_error_before_anything_starts(command, reason):
    config = SystemConfig(parts=[part("a", command=["sh", *command[1:]], port=1), part("b", command=["sh"])])
    with pytest.raises(ConfigError, match=r"parts\.a: \{port:\w+\}") as info:
        runnable(config, kfloop_has)
    assert reason in info.value.message


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        ([part("a"), part("a")], "repeated: a"),
        ([part("a", after=["b"])], "parts.a.after: no part named b"),
        ([part("a", after=["b"]), part("b", after=["a"])], "form a cycle"),
        ([part("a", after=["a"])], "cannot start after itself"),
        ([part("a", run="once", port=9)], "a once step serves nothing"),
        ([part("a", run="once", health_url="http://127.0.0.1:9/")], "a once step serves nothing"),
        ([part("a", creates="{state_dir}/x")], "creates is for once steps"),
        ([part("a", kind="collector")], "the collector needs metrics_url"),
        ([part("a", ready_urls=["localhost:9/readyz"])], "is not an http(s) URL"),
        ([part("a", colour="red")], "colour"),
        ([part("Bad Name")], "name"),
        ([part("a", kind="serving"), part("b", kind="serving")], "at most one part of kind serving"),
        ([part("a", kind="prometheus", port=1), part("b", kind="prometheus", port=2)], "at most one part of kind"),
        ([part("a", kind="controller")], "a part of kind controller needs its port"),
        ([part("a", config_flag="config")], "config_flag"),
    ],
)
def test_bad_entries_are_refused_naming_the_field(tmp_path, parts, field):
    path = tmp_path / "system.yaml"
    path.write_text(yaml.safe_dump({"parts": parts}))
    with pytest.raises(ConfigError, match="parts") as info:
        load_system_config(path)
    assert field in info.value.message


def test_an_optional_part_whose_kfloop_subcommand_is_missing_is_skipped_and_said_so():
    config = SystemConfig(parts=[part("a"), part("b", command=["kfloop", "no-such-command"], optional=True)])
    kept, notes = runnable(config, kfloop_has)
    assert [p.name for p in kept.parts] == ["a"]
    assert notes == ["b: skipped (`kfloop no-such-command` does not exist here)"]


def test_a_present_optional_part_is_kept():
    config = SystemConfig(parts=[part("a", optional=True), part("b", command=["sh", "-c", "true"], optional=True)])
    kept, notes = runnable(config, kfloop_has)
    assert [p.name for p in kept.parts] == ["a", "b"] and notes == []


def test_a_required_part_whose_command_is_missing_is_an_error():
    config = SystemConfig(parts=[part("a", command=["no-such-program-here"])])
    with pytest.raises(ConfigError, match=r"parts.a.command: 'no-such-program-here' does not exist here"):
        runnable(config, kfloop_has)


def test_a_part_after_a_skipped_one_is_an_error():
    config = SystemConfig(
        parts=[part("a", command=["kfloop", "nothing"], optional=True), part("b", after=["a"])],
    )
    with pytest.raises(ConfigError, match=r"parts\.b\.after: a is optional and not here"):
        runnable(config, kfloop_has)


def test_effective_config_applies_overrides_to_a_copy(tmp_path):
    original = tmp_path / "own.yaml"
    original.write_text("event_log:\n  wal_dir: /x\nport: 1\n")
    entry = PartConfig(
        name="p",
        command=["kfloop", "collector"],
        config_file=original,
        config_overrides={"event_log.log_uri": "{state_dir}/events", "port": 7, "cors.allow_origins": "*"},
    )
    written = effective_config(entry, SystemPaths(tmp_path / "state"))
    assert yaml.safe_load(written.read_text()) == {
        "event_log": {"wal_dir": "/x", "log_uri": f"{tmp_path}/state/events"},
        "port": 7,
        "cors": {"allow_origins": "*"},
    }
    assert original.read_text() == "event_log:\n  wal_dir: /x\nport: 1\n"
    assert effective_config(PartConfig(name="q", command=["true"]), SystemPaths(tmp_path)) is None


def test_effective_config_names_a_bad_file_or_override(tmp_path):
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"parts\.p\.config_file: .* must hold a mapping"):
        effective_config(PartConfig(name="p", command=["true"], config_file=listed), SystemPaths(tmp_path))
    missing = PartConfig(name="p", command=["true"], config_file=tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"parts\.p\.config_file: cannot read"):
        effective_config(missing, SystemPaths(tmp_path))
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("port: 1\n")
    through = PartConfig(name="p", command=["true"], config_file=scalar, config_overrides={"port.x": 1})
    with pytest.raises(ConfigError, match=r"config_overrides: port\.x: port is not a mapping"):
        effective_config(through, SystemPaths(tmp_path))


def test_no_default_file_outside_the_repo_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"{DEFAULT_CONFIG} does not exist here"):
        load_system_config(None)
