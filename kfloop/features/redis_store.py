"""Feast's Redis online store, with timestamps kept to the microsecond.

Feast 0.47's `RedisOnlineStore` stores each row's event timestamp in whole seconds and skips a write whose
second is not later than the stored one, so a second update within the same second is lost (measured:
two updates 200 ms apart leave the first). The feature updater writes a user's aggregates many times a
second, so this store keeps seconds and nanoseconds, and skips only a write strictly older than the stored
row (materializing older offline rows never overwrites fresher streamed ones). Storage layout is Feast's,
so Feast's readers and `get_online_features` work unchanged.

Referenced from the repo config by import path: type: kfloop.features.redis_store.SubsecondRedisOnlineStore
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from feast import utils
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp


class SubsecondRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """Feast's Redis online store settings, for the sub-second store."""

    type: Literal["kfloop.features.redis_store.SubsecondRedisOnlineStore"] = (  # type: ignore[assignment]
        "kfloop.features.redis_store.SubsecondRedisOnlineStore"
    )


def _micros(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(utils.make_tzaware(value).astimezone(UTC).replace(tzinfo=None))
    return ts


class SubsecondRedisOnlineStore(RedisOnlineStore):
    """RedisOnlineStore whose row timestamps keep microseconds."""

    def online_write_batch(
        self,
        config: Any,
        table: Any,
        data: Sequence[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        client = self._get_client(config.online_store)
        ts_key = f"_ts:{table.name}"
        keys = [
            _redis_key(config.project, entity_key, config.entity_key_serialization_version)
            for entity_key, _, _, _ in data
        ]
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, ts_key)
            previous = pipe.execute()
            for key, stored, (_, values, timestamp, _) in zip(keys, previous, data, strict=True):
                ts = _timestamp(timestamp)
                if stored:
                    prev = Timestamp()
                    prev.ParseFromString(stored)
                    if _micros(ts) < _micros(prev):
                        continue  # an older row (e.g. materialized) never replaces a newer one
                mapping = {ts_key: ts.SerializeToString()}
                for name, value in values.items():
                    mapping[_mmh3(f"{table.name}:{name}")] = value.SerializeToString()
                pipe.hset(key, mapping=mapping)
                if config.online_store.key_ttl_seconds:
                    pipe.expire(name=key, time=config.online_store.key_ttl_seconds)
            pipe.execute()
        if progress:
            progress(len(data))

    def _get_features_for_entity(
        self, values: list[Any], feature_view: str, requested_features: list[str]
    ) -> tuple[datetime | None, dict[str, ValueProto] | None]:
        timestamp, features = super()._get_features_for_entity(values, feature_view, requested_features)
        if features is None:
            return None, None
        # requested_features ends with the timestamp field (Feast appends it); parse it with nanoseconds.
        stored = dict(zip(requested_features, values, strict=False)).get(f"_ts:{feature_view}")
        if stored:
            ts = Timestamp()
            ts.ParseFromString(bytes(stored))
            timestamp = datetime.fromtimestamp(_micros(ts) / 1e6, tz=UTC)
        return timestamp, features
