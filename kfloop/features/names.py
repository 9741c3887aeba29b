"""The one list of feature names: Feast's definitions, the feature updater, tf.Transform, the trainer and the
transformer all take names from here. Standard library only, so every side can import it.

Naming: user-level aggregates start with `u_`, user x item aggregates with `ui_`; each windowed aggregate
ends with its window's label (`u_clicks_1h`). Names are unique across feature views, so Feast never has
to prefix them with the view name.
"""

from __future__ import annotations

from dataclasses import dataclass

PROJECT = "kfloop"

# Entities and their join keys.
USER = "user"
ITEM = "item"
USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TIMESTAMP = "event_timestamp"
"""Timestamp column of every offline feature table and of training entity rows."""

# Feature views.
USER_CONTEXT = "user_context"
ITEM_CONTEXT = "item_context"
USER_IMPLICIT = "user_implicit"
USER_ITEM_IMPLICIT = "user_item_implicit"
USER_EXPLICIT = "user_explicit"
USER_ITEM_EXPLICIT = "user_item_explicit"
AGGREGATE_VIEWS = (USER_IMPLICIT, USER_ITEM_IMPLICIT, USER_EXPLICIT, USER_ITEM_EXPLICIT)
USER_VIEWS = (USER_CONTEXT, USER_IMPLICIT, USER_EXPLICIT)
USER_ITEM_VIEWS = (USER_ITEM_IMPLICIT, USER_ITEM_EXPLICIT)
ALL_VIEWS = (USER_CONTEXT, ITEM_CONTEXT, *AGGREGATE_VIEWS)

# One FeatureService per consumer.
TRAINING_SERVICE = "ranker_training"
SERVING_SERVICE = "ranker_serving"


def push_source(view: str) -> str:
    """Name of the PushSource that streams updates into an aggregate view."""
    return f"{view}_push"


# Static context: the Open Bandit Dataset's hashed user features and its item context.
USER_CONTEXT_FEATURES = ("user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")
ITEM_NUMERIC_FEATURES = ("item_feature_0",)
ITEM_CATEGORICAL_FEATURES = ("item_feature_1", "item_feature_2", "item_feature_3")
ITEM_CONTEXT_FEATURES = ITEM_NUMERIC_FEATURES + ITEM_CATEGORICAL_FEATURES

# Windowed aggregates: stat names (before the window suffix).
IMPLICIT_STATS = ("impressions", "clicks", "ctr", "dwell_s", "scroll_depth")
"""Per window: impressions, clicks, smoothed CTR, mean dwell seconds per dwell event, mean scroll depth."""
EXPLICIT_STATS = ("ratings", "rating_mean", "thumbs_up", "thumbs_down")
"""Over the explicit window: number of ratings, smoothed mean rating, thumbs up and down."""
INTEGER_STATS = frozenset({"impressions", "clicks", "ratings", "thumbs_up", "thumbs_down"})

USER_PREFIX = "u"
USER_ITEM_PREFIX = "ui"

DEFAULT_WINDOWS: tuple[tuple[str, int], ...] = (("1h", 3_600), ("1d", 86_400), ("7d", 604_800))
"""(label, seconds) of each sliding window over event time."""
DEFAULT_EXPLICIT_WINDOW = "7d"

UNKNOWN_CATEGORY = "__unknown__"
"""Value of a categorical context feature for a user or item the store does not know (cold start)."""

# Value kinds of features (Feast types are chosen from these in the Feast repo definitions).
INT64, FLOAT64, STRING = "int64", "float64", "string"


def feature_name(prefix: str, stat: str, window: str) -> str:
    return f"{prefix}_{stat}_{window}"


@dataclass(frozen=True)
class FeatureSet:
    """Every feature name, by view, for one choice of windows."""

    windows: tuple[tuple[str, int], ...] = DEFAULT_WINDOWS
    explicit_window: str = DEFAULT_EXPLICIT_WINDOW

    def __post_init__(self) -> None:
        labels = [label for label, _ in self.windows]
        if self.explicit_window not in labels:
            raise ValueError(f"explicit window {self.explicit_window!r} is not one of the windows {labels}")

    def implicit(self, prefix: str) -> tuple[str, ...]:
        return tuple(feature_name(prefix, stat, label) for label, _ in self.windows for stat in IMPLICIT_STATS)

    def explicit(self, prefix: str) -> tuple[str, ...]:
        return tuple(feature_name(prefix, stat, self.explicit_window) for stat in EXPLICIT_STATS)

    def view_features(self, view: str) -> tuple[str, ...]:
        return {
            USER_CONTEXT: USER_CONTEXT_FEATURES,
            ITEM_CONTEXT: ITEM_CONTEXT_FEATURES,
            USER_IMPLICIT: self.implicit(USER_PREFIX),
            USER_ITEM_IMPLICIT: self.implicit(USER_ITEM_PREFIX),
            USER_EXPLICIT: self.explicit(USER_PREFIX),
            USER_ITEM_EXPLICIT: self.explicit(USER_ITEM_PREFIX),
        }[view]

    def kind(self, name: str) -> str:
        """INT64, FLOAT64 or STRING."""
        if name in USER_CONTEXT_FEATURES or name in ITEM_CATEGORICAL_FEATURES:
            return STRING
        if name in ITEM_NUMERIC_FEATURES:
            return FLOAT64
        stat = name.split("_", 1)[1].rsplit("_", 1)[0]
        return INT64 if stat in INTEGER_STATS else FLOAT64

    @property
    def user_features(self) -> tuple[str, ...]:
        """Features of the user alone (one value per request)."""
        return tuple(name for view in USER_VIEWS for name in self.view_features(view))

    @property
    def item_features(self) -> tuple[str, ...]:
        """Features of each candidate item (one value per candidate): item context, then user x item."""
        return ITEM_CONTEXT_FEATURES + tuple(n for view in USER_ITEM_VIEWS for n in self.view_features(view))

    @property
    def all_features(self) -> tuple[str, ...]:
        return self.user_features + self.item_features


DEFAULT_FEATURES = FeatureSet()
