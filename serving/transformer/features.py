"""The transformer's features: the fast online reader (kfloop.features.reader) and the catalog of item ids.

The reader serves one user and the candidates in one store round trip, item context from memory, and fills
anything the store does not know with the cold-start defaults; the catalog is every item with context.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from kfloop.features import names
from kfloop.features.config import FeaturesConfig
from serving.common.protocol import Ranking

log = logging.getLogger(__name__)

COLD_STARTS = Counter(
    "kfloop_transformer_cold_start_total", "Rankings for a user (or candidate items) the store did not know.", ["kind"]
)


def catalog_item_ids(feature_store: Any) -> list[str]:
    """Every item id in the item context table (the default candidates), in table order."""
    import pyarrow.parquet as pq

    view = feature_store.get_feature_view(names.ITEM_CONTEXT)
    path = Path(view.batch_source.path)
    if not path.is_absolute():
        path = Path(feature_store.repo_path) / path
    if not path.exists():
        return []
    ids = pq.read_table(path, columns=[names.ITEM_ID]).column(names.ITEM_ID).to_pylist()
    return list(dict.fromkeys(str(i) for i in ids))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class OnlineFeatures:
    """Features for rankings, read from the online store."""

    def __init__(self, config: FeaturesConfig) -> None:
        from kfloop.features.reader import FeatureReader
        from kfloop.features.store import open_store

        self.feature_store = open_store(config.store)
        self.reader = FeatureReader(self.feature_store, config)
        self.catalog = catalog_item_ids(self.feature_store)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def featurize(self, ranking: Ranking, *, personal: bool = True) -> Ranking:
        """Fill the ranking's candidates (default: the catalog) and features; without `personal` (no consent to
        personalization) none of the user's features are read: the cold-start defaults stand in."""
        if ranking.candidates is None:
            ranking.candidates = list(self.catalog)
        read = self.reader.read(ranking.user_id, ranking.candidates, personal=personal)
        if not read.user_known and personal:
            COLD_STARTS.labels("user").inc()
        unknown_items = int((~read.items_known).sum())
        if unknown_items:
            COLD_STARTS.labels("item").inc(unknown_items)
        ranking.user_features = {name: _plain(value) for name, value in read.user.items()}
        ranking.item_features = {name: column.tolist() for name, column in read.item_context.items()}
        # mostly cold-start defaults: sent as the default and the values read, ~3x less to encode and parse
        ranking.item_features_mostly = read.user_items.mostly()
        return ranking

    def start_reloading(self, interval_s: float) -> None:
        """Re-read item context (and the catalog) after each new materialization, off the request path."""
        self._thread = threading.Thread(target=self._reload_loop, args=(interval_s,), name="item-reload", daemon=True)
        self._thread.start()

    def _reload_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                if self.reader.reload_items_if_materialized():
                    self.catalog = catalog_item_ids(self.feature_store)
                    log.info("item context reloaded: %d items in the catalog", len(self.catalog))
            except Exception:
                log.exception("reloading item context failed; keeping the previous one")

    def close(self) -> None:
        self._stop.set()
        self.reader.close()
