"""The collector's config: the shipped file loads, and mistakes are named at load time."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfloop.config import load_config
from kfloop.errors import ConfigError
from serving.collector.config import CollectorConfig
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.serving

SHIPPED = REPO_ROOT / "manifests" / "collector" / "collector.yaml"
KEY = "a-pseudonymization-key-long-enough"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(text)
    return path


def test_the_shipped_config_loads_with_the_e_commerce_mapping():
    config = load_config(CollectorConfig, SHIPPED)
    track = config.segment.track
    assert track["Product Viewed"].type == "impression"
    assert track["Product Clicked"].type == "click"
    assert track["Product Reviewed"].type == "rating"
    assert track["Order Completed"].type == "conversion"
    assert config.segment.load_write_keys() == ["kfloop-dev-write-key"]
    assert config.segment.default_consent is False
    assert config.writer_id  # from the hostname


def test_a_mapping_field_the_event_type_lacks_is_named(tmp_path):
    path = write(
        tmp_path,
        f"segment:\n  write_keys: [k]\n  pseudonymization_key: {KEY}\n"
        "  track:\n    Product Viewed: {type: impression, constants: {rating: 5}}\n",
    )
    with pytest.raises(ConfigError, match="impression event has no field"):
        load_config(CollectorConfig, path)


@pytest.mark.parametrize(
    ("yaml_text", "says"),
    [
        ("segment:\n  write_keys: [k]\n", "pseudonymization_key"),
        ("segment:\n  write_keys: [k]\n  pseudonymization_key: short\n", "at least 16"),
        ("writer_id: ../escape\n", "writer_id"),
        ("max_body_bytes: 10\n", "max_body_bytes"),
        ("segment:\n  track:\n    X: {type: teleport}\n", "type"),
        ("colector: {}\n", "colector"),
    ],
)
def test_config_mistakes_are_named(tmp_path, yaml_text, says):
    with pytest.raises(ConfigError, match=says):
        load_config(CollectorConfig, write(tmp_path, yaml_text))


def test_mounted_secret_files_replace_the_inline_dev_secrets(tmp_path):
    (tmp_path / "keys").write_text("# rotated 2026-11\nkey-one\n\n  key-two  \n")
    (tmp_path / "pseudonym").write_text(KEY + "\n")
    path = write(
        tmp_path,
        f"segment:\n  write_keys: [dev-key]\n  pseudonymization_key: dev-pseudonymization-key\n"
        f"  write_keys_file: {tmp_path / 'keys'}\n  pseudonymization_key_file: {tmp_path / 'pseudonym'}\n",
    )
    segment = load_config(CollectorConfig, path).segment
    assert segment.load_write_keys() == ["key-one", "key-two"]
    assert segment.load_pseudonymization_key() == KEY.encode()
    assert "dev-key" not in repr(segment)  # secrets stay out of logs and reprs


def test_the_shipped_config_takes_secret_files_as_overrides(tmp_path):
    (tmp_path / "write-keys").write_text("live-key\n")
    (tmp_path / "pseudonymization-key").write_text(KEY)
    overrides = {
        "segment.write_keys_file": str(tmp_path / "write-keys"),
        "segment.pseudonymization_key_file": str(tmp_path / "pseudonymization-key"),
    }
    segment = load_config(CollectorConfig, SHIPPED, overrides).segment
    assert segment.load_write_keys() == ["live-key"]  # the dev key is no longer accepted
    assert segment.load_pseudonymization_key() == KEY.encode()


@pytest.mark.parametrize("content", ["short\n", None])
def test_a_bad_or_missing_secret_file_is_a_config_error(tmp_path, content):
    if content is not None:
        (tmp_path / "pseudonym").write_text(content)
    path = write(tmp_path, f"segment:\n  write_keys: [k]\n  pseudonymization_key_file: {tmp_path / 'pseudonym'}\n")
    segment = load_config(CollectorConfig, path).segment
    with pytest.raises(ConfigError, match="at least 16" if content else "cannot read secret file"):
        segment.load_pseudonymization_key()


def test_command_line_flags_as_the_statefulset_passes_them(tmp_path):
    """The manifest's args: writer id from the pod name, the WAL volume, the object store, the Secret."""
    from kfloop.cli.app import build_parser
    from serving.collector.app import config_from_args

    (tmp_path / "write-keys").write_text("cluster-write-key\n")
    (tmp_path / "pseudonymization-key").write_text("a-cluster-pseudonymization-key-0123\n")
    args = build_parser().parse_args(
        [
            "collector",
            f"--config={SHIPPED}",
            "--host=0.0.0.0",
            "--writer-id=kfloop-collector-1",
            "--wal-dir=/var/lib/kfloop/wal",
            "--log-uri=s3://bucket/kfloop",
            f"--segment-secrets-dir={tmp_path}",
        ]
    )
    config = config_from_args(args)
    assert (config.host, config.writer_id) == ("0.0.0.0", "kfloop-collector-1")
    assert str(config.event_log.wal_dir) == "/var/lib/kfloop/wal"
    assert config.event_log.log_uri == "s3://bucket/kfloop"
    assert config.segment.load_write_keys() == ["cluster-write-key"]  # the dev key is gone
