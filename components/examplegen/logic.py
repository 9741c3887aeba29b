"""ExampleGen: a time window of the event log, labelled, joined with point-in-time features, split by time.

Plain functions; `component.py` is the thin KFP wrapper.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from components import examples_io
from components.examplegen.config import ExampleGenTask, WindowConfig
from components.examplegen.labels import EVENT_COLUMNS, LABEL, label_examples
from kfloop.errors import InvalidInput
from kfloop.features import names
from kfloop.features.config import FeaturesConfig

FeatureJoin = Callable[[pd.DataFrame], pd.DataFrame]
"""Entity rows (user_id, item_id, event_timestamp) -> the same rows, in order, plus one column per feature."""

EVENT_TIMESTAMP = "event_timestamp"
DECISION_OFFSET_US = 1  # the features side's rule (kfloop.features.training.DECISION_OFFSET)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def resolve_window(
    config: WindowConfig, *, newest_event: datetime | None, last_end: datetime | None, now: datetime
) -> Window:
    """[start, end) of this run's events."""
    if config.end == "latest":
        if newest_event is None:
            raise InvalidInput("the event log holds no events: nothing to train on")
        end = newest_event + timedelta(microseconds=1)
    elif config.end == "now":
        end = now
    else:
        end = _parse_time(config.end)
    start = end - timedelta(days=config.days)
    if config.mode == "since_last_run" and last_end is not None:
        start = last_end
    if start >= end:
        raise InvalidInput(f"empty window: start {start.isoformat()} is not before end {end.isoformat()}")
    return Window(start, end)


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"window.end must be `latest`, `now` or an RFC 3339 time, got {text!r}") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"window.end needs a timezone, got {text!r}")
    return moment.astimezone(UTC)


def request_times(examples: pd.DataFrame) -> pd.Series:
    """When each request happened: its earliest example."""
    return examples.groupby("request_id")["ts_us"].min()


def split_by_time(
    examples: pd.DataFrame, *, eval_fraction: float, max_requests: int | None
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(train, eval, cutoff_us): requests from cutoff on are eval; a request's examples stay together."""
    times = request_times(examples).sort_values(kind="stable")
    if max_requests is not None:
        times = times.iloc[-max_requests:]
    if len(times) < 2:
        raise InvalidInput(f"the window holds {len(times)} request(s); a train and an eval split need at least 2")
    first_eval = min(len(times) - 1, max(1, round(len(times) * (1 - eval_fraction))))
    cutoff = int(times.iloc[first_eval])
    kept = examples[examples["request_id"].isin(times.index)]
    request_ts = kept["request_id"].map(times)
    return kept[request_ts < cutoff].reset_index(drop=True), kept[request_ts >= cutoff].reset_index(drop=True), cutoff


def data_version(splits: dict[str, pd.DataFrame]) -> str:
    """sha256 of the examples' content: split names, columns and rows in a canonical order."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        frame = splits[name]
        frame = frame[sorted(frame.columns)]
        digest.update(f"split={name}\n".encode())
        digest.update(frame.to_csv(index=False, na_rep="<null>").encode())
    return digest.hexdigest()


def join_features(examples: pd.DataFrame, join: FeatureJoin) -> pd.DataFrame:
    """Examples plus the features of (user, item) known 1 us before their request's decision (point in time)."""
    decided = examples["request_id"].map(request_times(examples)) - DECISION_OFFSET_US
    entities = pd.DataFrame(
        {
            "user_id": examples["user_id"].to_numpy(),
            "item_id": examples["item_id"].to_numpy(),
            EVENT_TIMESTAMP: pd.to_datetime(decided, unit="us", utc=True).to_numpy(),
        }
    )
    features = join(entities)
    if len(features) != len(examples):
        raise InvalidInput(f"the feature join returned {len(features)} rows for {len(examples)} examples")
    extra = [c for c in features.columns if c not in entities.columns and c not in examples.columns]
    return pd.concat([examples.reset_index(drop=True), features[extra].reset_index(drop=True)], axis=1)


def read_window(log_uri: str, window: Window) -> pd.DataFrame:
    from kfloop.eventlog import read_events

    table = read_events(log_uri, columns=EVENT_COLUMNS, since=window.start, until=window.end)
    return table.to_pandas()


def newest_event_time(log_uri: str) -> datetime | None:
    from kfloop.eventlog import read_events

    ts = read_events(log_uri, columns=["ts"], deduplicate=False).column("ts")
    if len(ts) == 0:
        return None
    import pyarrow.compute as pc

    return pc.max(ts).as_py().astimezone(UTC)


def last_window_end(registry_uri: str) -> datetime | None:
    """End of the newest registered version's data window (for `since_last_run`)."""
    from kfloop.registry import ModelRegistry

    registry = ModelRegistry(registry_uri)
    versions = registry.versions()
    if not versions:
        return None
    end = registry.card(versions[-1]).data.get("window_end")
    return _parse_time(end) if end else None


def choose_join(config: ExampleGenTask) -> FeatureJoin:
    from components.examplegen import features

    if config.examples.feature_join == "feast":
        return features.feast_join(config.features)
    return features.asof_join(config.features)


def generate(
    config: ExampleGenTask, out_dir: Path, *, now: datetime, join: FeatureJoin | None = None
) -> dict[str, Any]:
    """Write the Examples artifact for this run's window; returns its span description."""
    log_uri = config.features.event_log.log_uri
    window = resolve_window(
        config.window,
        newest_event=newest_event_time(log_uri),
        last_end=last_window_end(config.registry_uri) if config.window.mode == "since_last_run" else None,
        now=now,
    )
    if config.examples.refresh_features:
        from components.examplegen.features import refresh_offline_tables

        refresh_offline_tables(config.features, until=window.end)
    join = join or choose_join(config)
    events = read_window(log_uri, window)
    labelled = label_examples(events, attribution=timedelta(seconds=config.window.attribution_s))
    examples = labelled.examples
    train, evaluation, cutoff = split_by_time(
        examples, eval_fraction=config.window.eval_fraction, max_requests=config.window.max_requests
    )
    splits = {"train": join_features(train, join), "eval": join_features(evaluation, join)}
    catalog = serving_catalog(config.features, examples.loc[examples["signal"] == "implicit", "item_id"])
    candidates = join_features(candidate_grid(evaluation, catalog), join)
    span = describe(splits, window=window, cutoff_us=cutoff, events=len(events))
    span["catalog_size"] = len(catalog)
    span["feedback"] = labelled.feedback
    span["impressions_by_source"] = _count(examples.loc[examples["signal"] == "implicit", "source"])
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.items():
        examples_io.write_split(out_dir, name, frame)
    examples_io.write_candidates(out_dir, candidates)
    examples_io.write_span(out_dir, span)
    return span


def serving_catalog(features: FeaturesConfig, shown: pd.Series) -> list[str]:
    """The items serving ranks when a request names none (the item context table, in its order, as the
    transformer reads it), then any shown item the table lacks. Evaluate recomputes each policy over these: a
    catalog of the shown items alone would give exploration the wrong 1/n and hide items never shown."""
    import pyarrow.parquet as pq

    path = features.store.offline_dir / f"{names.ITEM_CONTEXT}.parquet"
    table = pq.read_table(path, columns=[names.ITEM_ID]).column(names.ITEM_ID).to_pylist() if path.exists() else []
    catalog = list(dict.fromkeys(str(item) for item in table))
    known = set(catalog)
    return catalog + sorted(str(item) for item in shown.unique() if str(item) not in known)


def candidate_grid(evaluation: pd.DataFrame, catalog: list[str]) -> pd.DataFrame:
    """Every catalog item in the context of every eval request with impressions (request-major, catalog order).

    The evaluator scores them to get each request's full ranking, hence its exploration policy's propensities.
    """
    shown = evaluation[evaluation["signal"] == "implicit"]
    requests = shown.groupby("request_id", sort=True).agg(user_id=("user_id", "first"), ts_us=("ts_us", "min"))
    n_items = len(catalog)
    return pd.DataFrame(
        {
            "request_id": requests.index.repeat(n_items),
            "user_id": requests["user_id"].to_numpy().repeat(n_items),
            "item_id": catalog * len(requests),
            "ts_us": requests["ts_us"].to_numpy().repeat(n_items),
        }
    )


def describe(splits: dict[str, pd.DataFrame], *, window: Window, cutoff_us: int, events: int) -> dict[str, Any]:
    return {
        "data_version": data_version(splits),
        "window_start": _iso(window.start),
        "window_end": _iso(window.end),
        "eval_from": _iso(datetime.fromtimestamp(cutoff_us / 1e6, tz=UTC)),
        "events_read": events,
        "splits": {
            name: {
                "examples": len(frame),
                "requests": int(frame["request_id"].nunique()),
                "positives": int(frame[LABEL].sum()),
                "explicit": int((frame["signal"] == "explicit").sum()),
            }
            for name, frame in splits.items()
        },
        "columns": list(next(iter(splits.values())).columns),
    }


def _count(values: pd.Series) -> dict[str, int]:
    return {str(key): int(n) for key, n in values.fillna("client").value_counts().sort_index().items()}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
