"""The serving reader: one user's features and those of the candidate items, in well under 5 ms.

Feast's `get_online_features` costs ~20-40 ms for a user and 80 items here (Python overhead per feature
reference). This reader reads Feast's online storage layout directly:

- SQLite: one SELECT over the user's rows of the user views and the user x candidate rows of the
  user x item views (entity keys serialized as Feast does, version 2).
- Redis: one pipelined round trip, HGETALL of the user's hash and of each user x candidate hash.

Item context is static between materializations, so it is read once (through Feast's online-store API)
and kept in memory; `reload_items_if_materialized()` re-reads it after a new materialization. Anything
missing gets the cold-start defaults (`defaults.py`), never an error.
"""

from __future__ import annotations

import sqlite3
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kfloop.features import names
from kfloop.features.config import FeaturesConfig
from kfloop.features.defaults import cold_start_defaults

_STRING_TYPE = 2  # feast.protos ValueType.STRING
_DTYPES = {names.INT64: np.int64, names.FLOAT64: np.float64, names.STRING: object}
_CACHE_LIMIT = 200_000

# What a backend returns: the user's {feature: value}, and the user x item values found, as parallel lists
# (candidate index, column in the user x item feature order, value).
Fetched = tuple[dict[str, Any], tuple[list[int], list[int], list[Any]]]


def entity_key_bytes(entity: dict[str, str]) -> bytes:
    """Feast's serialize_entity_key (version 2) for string join keys, without building protos."""
    keys = sorted(entity)
    return b"".join([*(_key_name(k) for k in keys), *(_key_value(entity[k]) for k in keys)])


def _key_name(name: str) -> bytes:
    return struct.pack("<I", _STRING_TYPE) + name.encode()


def _key_value(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("<II", _STRING_TYPE, len(raw)) + raw


class _PairKeys:
    """Serialized (user, item) keys: names, then values in join-key order (item_id sorts before user_id),
    so a key is a cached per-item prefix plus the user's part."""

    def __init__(self) -> None:
        assert sorted([names.ITEM_ID, names.USER_ID]) == [names.ITEM_ID, names.USER_ID]
        self._names = _key_name(names.ITEM_ID) + _key_name(names.USER_ID)
        self._prefixes: dict[str, bytes] = {}

    def __call__(self, user_id: str, item_ids: list[str]) -> list[bytes]:
        user_part = _key_value(user_id)
        prefixes = self._prefixes
        if len(prefixes) > _CACHE_LIMIT:
            prefixes.clear()
        out = []
        for item in item_ids:
            prefix = prefixes.get(item)
            if prefix is None:
                prefix = prefixes[item] = self._names + _key_value(item)
            out.append(prefix + user_part)
        return out


class _Decoder(dict):
    """Serialized feast Value -> Python value: `decoder[raw]`, memoized (aggregate values repeat a lot,
    and a hit is one dict lookup)."""

    def __init__(self) -> None:
        super().__init__()
        from feast.protos.feast.types.Value_pb2 import Value

        self._parse = Value.FromString

    def __missing__(self, raw: bytes) -> Any:
        proto = self._parse(raw)
        kind = proto.WhichOneof("val")
        value = getattr(proto, kind) if kind else None
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        self[raw] = value
        return value


@dataclass(frozen=True)
class UserItemValues:
    """The candidates' user x item aggregates: the cold-start default for almost every candidate (a user has
    touched few of them), so kept as the defaults and the values the store had."""

    names: tuple[str, ...]
    defaults: np.ndarray
    """Per feature, in `names` order (float64)."""
    kinds: tuple[Any, ...]
    """Per feature, the numpy dtype it is served as."""
    n: int
    """Number of candidates."""
    hits: tuple[list[int], list[int], list[Any]]
    """(candidate index, feature column, value) of every value read."""

    def dense(self) -> dict[str, np.ndarray]:
        """{feature: one value per candidate}."""
        matrix = np.tile(self.defaults, (self.n, 1))
        found = [(r, c, v) for r, c, v in zip(*self.hits, strict=True) if v is not None]
        if found:
            rows, columns, values = zip(*found, strict=True)
            matrix[list(rows), list(columns)] = values
        return {name: matrix[:, j].astype(self.kinds[j]) for j, name in enumerate(self.names)}

    def mostly(self) -> dict[str, dict[str, Any]]:
        """{feature: {"value": default, "except": [[candidate index, value], ...]}}: the predictor's compact
        form (serving.common.protocol), a few values instead of one per candidate."""
        exceptions: list[list[list[Any]]] = [[] for _ in self.names]
        for row, column, value in zip(*self.hits, strict=True):
            if value is not None:
                exceptions[column].append([row, self._plain(column, value)])
        return {
            name: {"value": self._plain(j, self.defaults[j]), "except": exceptions[j]}
            for j, name in enumerate(self.names)
        }

    def _plain(self, column: int, value: Any) -> Any:
        return int(value) if self.kinds[column] is np.int64 else float(value)


@dataclass(frozen=True)
class OnlineFeatures:
    """Features of one ranking request, ready for the transformer."""

    user_id: str
    item_ids: list[str]
    user: dict[str, Any]
    """Every user feature (context and aggregates) -> one value."""
    item_context: dict[str, np.ndarray]
    """Every item context feature -> one value per candidate, in order."""
    user_items: UserItemValues
    """The user x item aggregates of the candidates."""
    user_known: bool
    """False: the store had no row of this user (all user features are cold-start defaults)."""
    items_known: np.ndarray
    """Per candidate: whether the store had its item context."""

    @property
    def items(self) -> dict[str, np.ndarray]:
        """Every item feature (item context, user x item aggregates) -> one value per candidate, in order."""
        return {**self.item_context, **self.user_items.dense()}


class FeatureReader:
    """Fast online reads of a user and candidate items, straight from Feast's online store."""

    def __init__(self, feature_store: Any, config: FeaturesConfig) -> None:
        self.feature_store = feature_store
        self.features = config.aggregation.feature_set()
        self.defaults = cold_start_defaults(config.aggregation)
        self._decode = _Decoder()
        self._pair_keys = _PairKeys()
        project = config.store.project
        self._backend = (
            _RedisBackend(config.store.redis, project, self.features, self._decode)
            if config.store.online_store == "redis"
            else _SqliteBackend(str(config.store.sqlite_file.resolve()), project, self.features, self._decode)
        )
        self._user_item_names = tuple(n for v in names.USER_ITEM_VIEWS for n in self.features.view_features(v))
        self._pair_columns = {n: j for j, n in enumerate(self._user_item_names)}
        self._pair_defaults = np.array([self.defaults[n] for n in self._user_item_names], dtype=np.float64)
        self._user_defaults = {n: self.defaults[n] for n in self.features.user_features}
        self._item_defaults = tuple(self.defaults[n] for n in names.ITEM_CONTEXT_FEATURES)
        self._kinds = {n: _DTYPES[self.features.kind(n)] for n in self.features.all_features}
        self._pair_kinds = tuple(self._kinds[n] for n in self._user_item_names)
        self._items: dict[str, tuple[Any, ...]] = {}
        self._items_end_time: Any = None
        self.reload_items()

    # -- item context, in memory --------------------------------------------------------------------
    def reload_items(self) -> int:
        """Read every catalogue item's context from the online store; returns how many were found."""
        import pyarrow.parquet as pq

        view = self.feature_store.get_feature_view(names.ITEM_CONTEXT)
        path = Path(view.batch_source.path)
        if not path.is_absolute():  # as written by the feast CLI: relative to the feature repo
            path = Path(self.feature_store.repo_path) / path
        item_ids = pq.read_table(path, columns=[names.ITEM_ID]).column(names.ITEM_ID).to_pylist()
        items: dict[str, tuple[Any, ...]] = {}
        if item_ids:
            from kfloop.features.online_write import entity_key_proto

            provider = self.feature_store._get_provider()
            keys = [entity_key_proto({names.ITEM_ID: i}) for i in item_ids]
            # A fresh list: Feast's Redis online_read appends to the list it is given.
            rows = provider.online_store.online_read(
                self.feature_store.config, view, keys, list(names.ITEM_CONTEXT_FEATURES)
            )
            for item_id, (_, values) in zip(item_ids, rows, strict=True):
                if values:
                    items[item_id] = tuple(
                        self._decode[values[n].SerializeToString()] if n in values else self.defaults[n]
                        for n in names.ITEM_CONTEXT_FEATURES
                    )
        self._items = items
        self._items_end_time = view.most_recent_end_time
        return len(items)

    def reload_items_if_materialized(self) -> bool:
        """Reload item context if it was materialized since the last load (reads the registry: not for
        the request path; call it from a timer)."""
        view = self.feature_store.registry.get_feature_view(
            names.ITEM_CONTEXT, self.feature_store.project, allow_cache=False
        )
        if view.most_recent_end_time != self._items_end_time:
            self.reload_items()
            return True
        return False

    # -- the hot path -------------------------------------------------------------------------------
    def read(self, user_id: str, item_ids: list[str], *, personal: bool = True) -> OnlineFeatures:
        """The user's and the candidates' features. `personal=False` (no consent to personalization): nothing
        of the user's is read; they get the cold-start defaults, as a user the store does not know."""
        user_values: dict[str, Any] = {}
        hits: tuple[list[int], list[int], list[Any]] = ([], [], [])
        if personal:
            user_key = entity_key_bytes({names.USER_ID: user_id})
            pair_keys = self._pair_keys(user_id, item_ids)
            user_values, hits = self._backend.fetch(user_key, pair_keys, self._pair_columns)
        user = dict(self._user_defaults)
        user.update(user_values)
        return OnlineFeatures(
            user_id=user_id,
            item_ids=list(item_ids),
            user=user,
            item_context=self._item_context(item_ids),
            user_items=UserItemValues(
                self._user_item_names, self._pair_defaults, self._pair_kinds, len(item_ids), hits
            ),
            user_known=bool(user_values),
            items_known=np.array([i in self._items for i in item_ids], dtype=bool),
        )

    def _item_context(self, item_ids: list[str]) -> dict[str, np.ndarray]:
        default_context = self._item_defaults
        contexts = [self._items.get(i, default_context) for i in item_ids]
        return {
            name: np.array([c[index] for c in contexts], dtype=self._kinds[name])
            for index, name in enumerate(names.ITEM_CONTEXT_FEATURES)
        }

    def close(self) -> None:
        self._backend.close()


class _SqliteBackend:
    """One SELECT over Feast's SQLite tables (`{project}_{view}`: entity_key, feature_name, value)."""

    def __init__(self, path: str, project: str, features: names.FeatureSet, decode: _Decoder) -> None:
        self.path, self.project, self.decode = path, project, decode
        self._local = threading.local()
        self._statements: dict[int, str] = {}
        self._user_tables = [f"{project}_{v}" for v in names.USER_VIEWS]
        self._pair_tables = [f"{project}_{v}" for v in names.USER_ITEM_VIEWS]

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        return conn

    def _statement(self, n_pairs: int) -> str:
        sql = self._statements.get(n_pairs)
        if sql is None:
            parts = [
                f"SELECT entity_key, feature_name, value FROM {t} WHERE entity_key = ?1" for t in self._user_tables
            ]
            if n_pairs:
                marks = ",".join(f"?{i + 2}" for i in range(n_pairs))
                parts += [
                    f"SELECT entity_key, feature_name, value FROM {t} WHERE entity_key IN ({marks})"
                    for t in self._pair_tables
                ]
            sql = self._statements[n_pairs] = " UNION ALL ".join(parts)
        return sql

    def fetch(self, user_key: bytes, pair_keys: list[bytes], columns: dict[str, int]) -> Fetched:
        rows = self._conn().execute(self._statement(len(pair_keys)), [user_key, *pair_keys]).fetchall()
        decode = self.decode
        user = {feature: decode[raw] for key, feature, raw in rows if key == user_key}
        pairs = [row for row in rows if row[0] != user_key]
        position = {key: i for i, key in enumerate(pair_keys)}
        hits = (
            [position[row[0]] for row in pairs],
            [columns[row[1]] for row in pairs],
            [decode[row[2]] for row in pairs],
        )
        return user, hits

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class _RedisBackend:
    """One pipelined round trip of HGETALLs over Feast's Redis layout (hash per entity key + project)."""

    def __init__(self, connection_string: str, project: str, features: names.FeatureSet, decode: _Decoder) -> None:
        from feast.infra.online_stores.helpers import _mmh3
        from feast.infra.online_stores.redis import RedisOnlineStore
        from redis import Redis

        nodes, params = RedisOnlineStore._parse_connection_string(connection_string)
        self.client = Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **params)
        self.suffix = project.encode()
        self.decode = decode
        self.user_fields = {_mmh3(f"{v}:{n}"): n for v in names.USER_VIEWS for n in features.view_features(v)}
        self.pair_fields = {_mmh3(f"{v}:{n}"): n for v in names.USER_ITEM_VIEWS for n in features.view_features(v)}

    def fetch(self, user_key: bytes, pair_keys: list[bytes], columns: dict[str, int]) -> Fetched:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(user_key + self.suffix)
        for key in pair_keys:
            pipe.hgetall(key + self.suffix)
        replies = pipe.execute()
        fields, decode = self.pair_fields, self.decode
        user = {self.user_fields[f]: decode[raw] for f, raw in replies[0].items() if f in self.user_fields}
        pairs = [
            (row, fields[f], raw) for row, reply in enumerate(replies[1:]) for f, raw in reply.items() if f in fields
        ]
        hits = ([p[0] for p in pairs], [columns[p[1]] for p in pairs], [decode[p[2]] for p in pairs])
        return user, hits

    def close(self) -> None:
        self.client.close()
