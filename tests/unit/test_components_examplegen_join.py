"""The fast point-in-time join equals Feast's get_historical_features on the same offline tables."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.examplegen.features import asof_join, feast_join, refresh_offline_tables
from kfloop.data import fetch_obd, import_obd
from kfloop.eventlog import EventLog, EventLogConfig, read_events
from kfloop.features import names
from kfloop.features.config import FeaturesConfig

pytestmark = pytest.mark.pipeline

DATA_DIR = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def features_config(tmp_path_factory: pytest.TempPathFactory) -> FeaturesConfig:
    fetch_obd(DATA_DIR)
    root = tmp_path_factory.mktemp("join")
    log_config = EventLogConfig(wal_dir=root / "wal", log_uri=str(root / "events"))
    with EventLog(log_config, writer_id="obd") as log:
        import_obd(DATA_DIR, log, logs=("random",), progress=lambda _: None)
    config = FeaturesConfig.model_validate(
        {
            "event_log": log_config.model_dump(),
            "store": {"repo_dir": str(root / "feast"), "obd_data_dir": str(DATA_DIR)},
        }
    )
    refresh_offline_tables(config, until=datetime(2019, 12, 1, tzinfo=UTC))
    return config


def entity_rows(config: FeaturesConfig) -> pd.DataFrame:
    shown = read_events(config.event_log.log_uri, columns=["type", "user_id", "item_id", "ts"]).to_pandas()
    shown = shown[shown["type"] == "impression"].sample(n=300, random_state=3)
    rows = pd.DataFrame(
        {
            names.USER_ID: shown["user_id"].to_numpy(),
            names.ITEM_ID: shown["item_id"].to_numpy(),
            names.EVENT_TIMESTAMP: pd.to_datetime(shown["ts"], utc=True) - pd.Timedelta(microseconds=1),
        }
    )
    cold = pd.DataFrame(
        {
            names.USER_ID: ["obd-u-unknown", rows[names.USER_ID].iloc[0]],
            names.ITEM_ID: ["5", "no-such-item"],
            names.EVENT_TIMESTAMP: [pd.Timestamp("2019-11-27T00:00:00Z")] * 2,
        }
    )
    return pd.concat([rows, cold], ignore_index=True)


def test_the_asof_join_equals_feasts_historical_features(features_config: FeaturesConfig):
    entities = entity_rows(features_config)
    fast = asof_join(features_config)(entities)
    reference = feast_join(features_config)(entities)
    features = list(features_config.aggregation.feature_set().all_features)
    assert len(fast) == len(reference) == len(entities)
    for name in features:
        left, right = fast[name].to_numpy(), reference[name].to_numpy()
        if left.dtype.kind in "fiu":
            np.testing.assert_allclose(left.astype(float), right.astype(float), rtol=1e-9, err_msg=name)
        else:
            assert left.tolist() == right.tolist(), name
    assert fast[names.USER_CONTEXT_FEATURES[0]].iloc[-2] == names.UNKNOWN_CATEGORY
    assert (fast["u_impressions_7d"] > 0).any(), "aggregates must be joined, not all defaults"
