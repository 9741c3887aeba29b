"""Typed config loading: files, overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from kfloop.cli.commands.data import LogClientConfig
from kfloop.config import load_config
from kfloop.errors import ConfigError


def test_defaults_without_a_file():
    assert load_config(LogClientConfig, None).writer_id == "obd-import"


def test_overrides_merge_into_nested_sections_and_are_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("event_log:\n  segment_max_events: 10\n")
    config = load_config(LogClientConfig, path, {"event_log.log_uri": "s3://b/p", "writer_id": None})
    assert config.event_log.log_uri == "s3://b/p"
    assert config.event_log.segment_max_events == 10
    with pytest.raises(ConfigError, match="segment_max_events"):
        load_config(LogClientConfig, path, {"event_log.segment_max_events": 0})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("event_log:\n  wal_dirr: x\n", "event_log.wal_dirr: Extra inputs"),
        ("- a\n- b\n", "mapping at the top level"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(LogClientConfig, path)


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(LogClientConfig, "/nonexistent/kfloop.yaml")


def test_every_config_field_has_a_description():
    """The convention: a docstring per field, so `--help`-like docs and the JSON schema explain each key."""
    from kfloop.eventlog import EventLogConfig

    for model in (LogClientConfig, EventLogConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"


def test_tools_read_the_event_log_section_of_the_collectors_own_file():
    from kfloop.cli.commands.data import log_config_from
    from tests.conftest import REPO_ROOT

    config = log_config_from(str(REPO_ROOT / "manifests" / "collector" / "collector.yaml"))
    assert config.log_uri
