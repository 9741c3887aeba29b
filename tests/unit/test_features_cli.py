"""`kfloop features apply | materialize | show` handlers, on the embedded SQLite store in a tmp dir."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kfloop.cli.commands import features as commands
from kfloop.errors import InvalidInput
from kfloop.eventlog import EventLog, EventLogConfig
from kfloop.features.synthetic import feedback_record


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "features.yaml"
    config = {
        "event_log": {"wal_dir": str(tmp_path / "wal"), "log_uri": str(tmp_path / "log")},
        "store": {"repo_dir": str(tmp_path / "features"), "obd_data_dir": str(tmp_path / "no-data")},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_apply_materialize_and_show(config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    now = datetime.now(UTC)
    # The events are in another log than the config file names: `materialize --log-uri` (a cluster Job's) must win.
    log_uri = str(tmp_path / "cluster-log")
    log_config = EventLogConfig(wal_dir=tmp_path / "wal", log_uri=log_uri)
    with EventLog(log_config, writer_id="t") as log:
        log.append(
            [
                feedback_record("i1", "impression", "u-7", "3", now - timedelta(minutes=3)),
                feedback_record("c1", "click", "u-7", "3", now - timedelta(minutes=2)),
            ]
        )
    assert commands.apply(argparse.Namespace(config=str(config_path))) == 0
    assert "ranker_training" in capsys.readouterr().out
    assert commands.materialize(argparse.Namespace(config=str(config_path), end=None, log_uri=log_uri)) == 0
    assert "offline user_implicit: 3 rows" in capsys.readouterr().out  # empty baseline, impression, click
    assert commands.show(argparse.Namespace(config=str(config_path), user_id="u-7", items="3,4")) == 0
    out = capsys.readouterr().out
    assert "user u-7 (known)" in out
    assert [line.split() for line in out.splitlines() if line.strip().startswith("u_clicks_1h")] == [
        ["u_clicks_1h", "1"]
    ]
    assert "item 4 (no item context: defaults)" in out
    commands.show(argparse.Namespace(config=str(config_path), user_id="nobody", items=None))
    assert "user nobody (unknown: cold-start defaults)" in capsys.readouterr().out


def test_a_bad_end_time_is_an_input_error(config_path: Path) -> None:
    with pytest.raises(InvalidInput):
        commands.materialize(argparse.Namespace(config=str(config_path), end="yesterday"))


def test_apply_loads_the_static_context_online_as_the_offline_tables_hold_it(tmp_path: Path) -> None:
    """`kfloop up` serves after `kfloop features apply` alone: unless apply loads user and item context into the
    online store, serving ranks every item with the cold-start defaults while training and Evaluate join the real
    values offline (the online/offline skew found in the served loop)."""
    from kfloop.data.import_obd import user_id_of
    from kfloop.features import names
    from kfloop.features.config import FeaturesConfig
    from kfloop.features.reader import FeatureReader
    from kfloop.features.store import open_store
    from tests.support.features import write_obd_sample

    write_obd_sample(tmp_path / "data")
    path = tmp_path / "features.yaml"
    store = {"repo_dir": str(tmp_path / "features"), "obd_data_dir": str(tmp_path / "data")}
    path.write_text(yaml.safe_dump({"event_log": {"wal_dir": str(tmp_path / "wal")}, "store": store}))
    assert commands.apply(argparse.Namespace(config=str(path))) == 0
    config = FeaturesConfig.model_validate({"event_log": {"wal_dir": str(tmp_path / "wal")}, "store": store})
    offline = {
        view: pd.read_parquet(config.store.offline_dir / f"{view}.parquet")
        for view in (names.USER_CONTEXT, names.ITEM_CONTEXT)
    }
    user = user_id_of(("a1", "b", "c", "d"))
    reader = FeatureReader(open_store(config.store), config)
    try:
        read = reader.read(user, ["0", "5"])
    finally:
        reader.close()
    assert read.user_known and read.items_known.all()
    expected_user = offline[names.USER_CONTEXT].set_index(names.USER_ID).loc[user]
    assert {n: read.user[n] for n in names.USER_CONTEXT_FEATURES} == {
        n: expected_user[n] for n in names.USER_CONTEXT_FEATURES
    }
    expected_items = offline[names.ITEM_CONTEXT].set_index(names.ITEM_ID).loc[["0", "5"]]
    for name in names.ITEM_CONTEXT_FEATURES:
        assert list(read.items[name]) == list(expected_items[name]), name
