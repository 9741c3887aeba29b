"""The Open Bandit Dataset logs as arrays for off-policy evaluation and the simulator.

Reads `data_dir/obd/{log}/all.csv` (fetched by `kfloop.data.fetch_obd`): one row per item shown at one
position. Positions become 0-based here (the CSV's 1-3 are 0-2), and users become *cohorts*: the data has
no user id, only four hashed user features, so a cohort is one combination of them (as in
`kfloop.data.import_obd`). The 80 user-item affinity columns are left out: they are non-zero in under 5%
of rows and carry no click signal at this size (1 of 80 clicks is on an item with non-zero affinity).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kfloop.data.obd import obd_log_csv
from kfloop.errors import NotFound

USER_FEATURES = ("user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")
OBD_N_ITEMS = 80
OBD_N_POSITIONS = 3


@dataclass(frozen=True)
class ObdLog:
    """One logging policy's impressions, row-aligned arrays."""

    name: str
    item: np.ndarray  # int, 0..79
    position: np.ndarray  # int, 0-based
    click: np.ndarray  # float 0/1
    pscore: np.ndarray  # the logging policy's probability of this item at this position
    user_features: np.ndarray  # [rows, 4] strings (hashed categories)

    @property
    def n_rows(self) -> int:
        return len(self.item)

    @property
    def ctr(self) -> float:
        return float(self.click.mean())


def load_obd_log(data_dir: Path, log: str) -> ObdLog:
    """Read the `random` or `bts` log of the OBD sample under `data_dir` (works on pandas 1.5 and 2)."""
    path = obd_log_csv(Path(data_dir), log)
    if not path.is_file():
        raise NotFound(f"{path} is missing; run `kfloop data fetch` first")
    columns = ["item_id", "position", "click", "propensity_score", *USER_FEATURES]
    frame = pd.read_csv(path, usecols=columns, dtype={name: str for name in USER_FEATURES})
    return ObdLog(
        name=log,
        item=frame["item_id"].to_numpy(dtype=np.int64),
        position=frame["position"].to_numpy(dtype=np.int64) - 1,
        click=frame["click"].to_numpy(dtype=np.float64),
        pscore=frame["propensity_score"].to_numpy(dtype=np.float64),
        user_features=frame[list(USER_FEATURES)].to_numpy(dtype=object),
    )
