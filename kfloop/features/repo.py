"""The Feast objects of the project: entities, feature views, push sources and feature services.

`build_repo` makes every object for a given offline directory and window choice; `kfloop features apply`
calls it with the configured paths, and the Feast repo folder `features/` (for people who run the `feast`
CLI there) calls it with its own relative paths. Feature names come from `kfloop.features.names` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64, String

from kfloop.features import names

STATIC_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
"""Event timestamp of static context rows (OBD user and item features): known before any decision."""
NO_TTL = timedelta(0)
"""Aggregate tables carry a row whenever a value changes, including when a bucket leaves a window, so the
latest row before a time is always that time's value: no TTL is needed (0 means none in Feast)."""
_DTYPES = {names.INT64: Int64, names.FLOAT64: Float64, names.STRING: String}
_DESCRIPTIONS = {
    names.USER_CONTEXT: "Hashed OBD user features of the user's cohort (static).",
    names.ITEM_CONTEXT: "Item features from the OBD item_context.csv (static).",
    names.USER_IMPLICIT: "Impressions, clicks, smoothed CTR, dwell and scroll depth per window, per user.",
    names.USER_ITEM_IMPLICIT: "Impressions, clicks, smoothed CTR, dwell and scroll depth per window, per user x item.",
    names.USER_EXPLICIT: "Ratings (count, smoothed mean) and thumbs per user over the explicit window.",
    names.USER_ITEM_EXPLICIT: "Ratings (count, smoothed mean) and thumbs per user x item over the explicit window.",
}


@dataclass
class FeatureRepo:
    """Every Feast object of the project."""

    user: Entity
    item: Entity
    views: dict[str, FeatureView] = field(default_factory=dict)
    push_sources: dict[str, PushSource] = field(default_factory=dict)
    services: dict[str, FeatureService] = field(default_factory=dict)

    def objects(self) -> list:
        return [self.user, self.item, *self.push_sources.values(), *self.views.values(), *self.services.values()]


def offline_table(offline_dir: str | Path, view: str) -> str:
    return str(Path(offline_dir) / f"{view}.parquet")


def build_repo(offline_dir: str | Path, features: names.FeatureSet = names.DEFAULT_FEATURES) -> FeatureRepo:
    user = Entity(
        name=names.USER,
        join_keys=[names.USER_ID],
        value_type=ValueType.STRING,
        description="A pseudonymous user id (OBD: a cohort of its four hashed user features).",
    )
    item = Entity(name=names.ITEM, join_keys=[names.ITEM_ID], value_type=ValueType.STRING, description="An item id.")
    repo = FeatureRepo(user=user, item=item)
    entities = {
        names.USER_CONTEXT: [user],
        names.ITEM_CONTEXT: [item],
        names.USER_IMPLICIT: [user],
        names.USER_EXPLICIT: [user],
        names.USER_ITEM_IMPLICIT: [user, item],
        names.USER_ITEM_EXPLICIT: [user, item],
    }
    for view in names.ALL_VIEWS:
        batch = FileSource(
            name=f"{view}_offline",
            path=offline_table(offline_dir, view),
            timestamp_field=names.EVENT_TIMESTAMP,
            description=f"Offline rows of {view}.",
        )
        source = batch
        if view in names.AGGREGATE_VIEWS:
            source = PushSource(name=names.push_source(view), batch_source=batch)
            repo.push_sources[view] = source
        repo.views[view] = FeatureView(
            name=view,
            entities=entities[view],
            ttl=NO_TTL,
            schema=[Field(name=n, dtype=_DTYPES[features.kind(n)]) for n in features.view_features(view)],
            source=source,
            online=True,
            description=_DESCRIPTIONS[view],
        )
    # User x item views first: Feast's file offline store de-duplicates entity rows on the join keys seen
    # so far, so the first view joined must carry both keys (else rows of one user at one time but
    # different items would collapse into one).
    ordered = [repo.views[v] for v in (*names.USER_ITEM_VIEWS, *names.USER_VIEWS, names.ITEM_CONTEXT)]
    for service, what in ((names.TRAINING_SERVICE, "training sets"), (names.SERVING_SERVICE, "online ranking")):
        repo.services[service] = FeatureService(name=service, features=ordered, description=f"Features for {what}.")
    return repo
