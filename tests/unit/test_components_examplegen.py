"""ExampleGen's plain logic: labels from feedback, the time window, the split by time, the data version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from components.examplegen.config import WindowConfig
from components.examplegen.labels import EXAMPLE_COLUMNS, LABEL, label_examples
from components.examplegen.logic import (
    candidate_grid,
    data_version,
    join_features,
    resolve_window,
    split_by_time,
)
from kfloop.errors import InvalidInput

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def event(kind: str, n: int, *, user="u1", item="i1", request="r1", at=T0, **extra) -> dict:
    row = dict.fromkeys(
        ["position", "policy", "propensity", "model_version", "variant", "source", "dwell_ms", "rating", "thumb"],
    )
    row.update(event_id=f"{kind}-{n}", type=kind, user_id=user, item_id=item, request_id=request, ts=at)
    row.update(extra)
    return row


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def impression(n: int, **kw) -> dict:
    kw.setdefault("position", 1)
    kw.setdefault("policy", "random")
    kw.setdefault("propensity", 0.25)
    return event("impression", n, **kw)


def test_an_impression_is_positive_only_when_its_own_request_and_item_were_clicked():
    events = frame(
        impression(1, item="a", position=1),
        impression(2, item="b", position=2),
        impression(3, item="a", request="r2", at=T0 + HOUR),
        event("click", 4, item="a", at=T0 + timedelta(seconds=5)),
    )
    examples = label_examples(events, attribution=timedelta(minutes=30)).examples
    assert list(examples.columns) == list(EXAMPLE_COLUMNS)
    labels = {(r.request_id, r.item_id): r.label for r in examples.itertuples()}
    assert labels == {("r1", "a"): 1, ("r1", "b"): 0, ("r2", "a"): 0}
    assert set(examples["signal"]) == {"implicit"}


def test_feedback_without_a_request_counts_for_the_latest_impression_within_the_attribution_window():
    events = frame(
        impression(1, item="a", request=None, at=T0),
        impression(2, item="a", request=None, at=T0 + HOUR),
        event("click", 3, item="a", request=None, at=T0 + HOUR + timedelta(minutes=10)),
        event("dwell", 4, item="a", request=None, at=T0 + HOUR + timedelta(minutes=11), dwell_ms=4000),
        event("dwell", 5, item="a", request=None, at=T0 + HOUR + timedelta(minutes=12), dwell_ms=9000),
        event("click", 6, item="a", request=None, at=T0 + 5 * HOUR),  # too late for either impression
    )
    examples = label_examples(events, attribution=timedelta(minutes=30)).examples
    assert examples[LABEL].tolist() == [0, 1]
    assert examples["dwell_ms"].tolist()[1] == 9000 and pd.isna(examples["dwell_ms"].tolist()[0])
    assert examples["request_id"].tolist() == ["imp:impression-1", "imp:impression-2"]


def test_ratings_and_thumbs_become_explicit_examples_with_the_impressions_position():
    events = frame(
        impression(1, item="a", position=2, propensity=0.5),
        event("rating", 2, item="a", rating=5, at=T0 + timedelta(minutes=1)),
        event("rating", 3, item="b", request=None, rating=1, at=T0 + timedelta(minutes=2)),
        event("rating", 4, item="c", rating=3, at=T0 + timedelta(minutes=3)),  # neutral: no example
        event("thumbs", 5, item="a", thumb="down", at=T0 + timedelta(minutes=4)),
    )
    examples = label_examples(events, attribution=timedelta(minutes=30)).examples
    explicit = examples[examples["signal"] == "explicit"].reset_index(drop=True)
    assert explicit[["item_id", LABEL]].values.tolist() == [["a", 1], ["b", 0], ["a", 0]]
    assert explicit["position"].tolist()[0] == 2 and explicit["propensity"].tolist()[0] == 0.5
    assert pd.isna(explicit["position"].tolist()[1]) and explicit["request_id"].tolist()[1] == "exp:rating-3"


def served(n: int, request: str, item: str, position: int, **kw) -> dict:
    kw.setdefault("at", T0)
    return impression(
        n,
        request=request,
        item=item,
        position=position,
        policy="epsilon_greedy",
        model_version=kw.pop("version", "v2"),
        variant=kw.pop("variant", "canary"),
        source="serving",
        **kw,
    )


def test_served_impressions_keep_how_they_were_served_and_feedback_joins_by_request_within_the_window():
    window = timedelta(minutes=30)
    events = frame(
        served(1, "r1", "a", 1, propensity=0.9),
        served(2, "r1", "b", 2, propensity=0.05),
        served(3, "r2", "a", 1, propensity=0.8, at=T0 + HOUR, version="v1", variant="stable"),
        event("click", 4, item="a", request="r1", at=T0 + timedelta(minutes=29)),  # in time
        event("click", 5, item="a", request="r2", at=T0 + HOUR + timedelta(minutes=31)),  # late
        event("click", 6, item="a", request="r-unknown", at=T0 + timedelta(minutes=1)),  # unattributed
        event("click", 7, item="c", request="r1", at=T0 + timedelta(minutes=1)),  # item not in the slate
        event("dwell", 8, item="b", request="r1", at=T0 + timedelta(minutes=2), dwell_ms=3000),
        event("thumbs", 9, item="b", request="r1", thumb="up", at=T0 + timedelta(minutes=3)),
        event("rating", 10, item="a", request="r2", rating=5, at=T0 + 2 * HOUR),  # late: no example of r2
    )
    labelled = label_examples(events, attribution=window)
    implicit = labelled.examples[labelled.examples["signal"] == "implicit"]
    rows = {(r.request_id, r.item_id): r for r in implicit.itertuples()}
    assert {key: row.label for key, row in rows.items()} == {("r1", "a"): 1, ("r1", "b"): 0, ("r2", "a"): 0}
    assert [(r.propensity, r.model_version, r.variant, r.source) for r in rows.values()] == [
        (0.9, "v2", "canary", "serving"),
        (0.05, "v2", "canary", "serving"),
        (0.8, "v1", "stable", "serving"),
    ]
    assert rows[("r1", "b")].dwell_ms == 3000
    explicit = labelled.examples[labelled.examples["signal"] == "explicit"]
    served_with = ["propensity", "model_version", "variant"]
    assert explicit[["request_id", "item_id", *served_with, LABEL]].values.tolist()[0] == [
        "r1",
        "b",
        0.05,
        "v2",
        "canary",
        1,
    ]
    assert explicit[["request_id", "item_id"]].values.tolist()[1] == ["exp:rating-10", "a"]
    assert explicit[served_with].iloc[1].isna().all()
    assert labelled.feedback["click"] == {"attributed": 1, "late": 1, "unattributed": 2}
    assert labelled.feedback["dwell"] == {"attributed": 1, "late": 0, "unattributed": 0}
    assert labelled.feedback["thumbs"]["attributed"] == 1 and labelled.feedback["rating"]["late"] == 1


def examples_of(times: list[int]) -> pd.DataFrame:
    rows = []
    for n, minute in enumerate(times):
        for item in ("a", "b"):
            rows.append(
                {"request_id": f"r{n}", "ts_us": minute * 60_000_000 + (item == "b"), "item_id": item, LABEL: 0}
            )
    return pd.DataFrame(rows)


def test_the_split_is_by_time_and_keeps_requests_whole():
    examples = examples_of([5, 1, 9, 3, 7, 2, 8, 4, 6, 10])
    train, evaluation, cutoff = split_by_time(examples, eval_fraction=0.3, max_requests=None)
    assert train["ts_us"].max() < cutoff <= evaluation["ts_us"].min()
    assert set(evaluation["request_id"]) == {"r2", "r6", "r9"}
    assert not set(train["request_id"]) & set(evaluation["request_id"])
    assert len(train) + len(evaluation) == len(examples)


def test_max_requests_keeps_the_newest():
    train, evaluation, _ = split_by_time(examples_of(list(range(1, 11))), eval_fraction=0.5, max_requests=4)
    assert set(train["request_id"]) | set(evaluation["request_id"]) == {"r6", "r7", "r8", "r9"}
    with pytest.raises(InvalidInput):
        split_by_time(examples_of([1]), eval_fraction=0.5, max_requests=None)


def test_windows_end_at_the_newest_event_or_a_given_time_and_can_start_at_the_last_run():
    newest = T0 + 3 * HOUR
    rolling = resolve_window(WindowConfig(days=1), newest_event=newest, last_end=T0, now=T0)
    assert rolling.end == newest + timedelta(microseconds=1)
    assert rolling.start == rolling.end - timedelta(days=1)
    since = resolve_window(WindowConfig(mode="since_last_run"), newest_event=newest, last_end=T0, now=T0)
    assert since.start == T0
    fixed = resolve_window(WindowConfig(end="2026-11-01T00:00:00Z", days=2), newest_event=None, last_end=None, now=T0)
    assert fixed.end == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput):
        resolve_window(WindowConfig(), newest_event=None, last_end=None, now=T0)
    with pytest.raises(InvalidInput):
        resolve_window(WindowConfig(end="yesterday"), newest_event=newest, last_end=None, now=T0)


def test_the_data_version_follows_the_content_only():
    examples = examples_of([1, 2, 3])
    same = examples.sample(frac=1.0, random_state=1)[list(reversed(examples.columns))]
    assert data_version({"train": examples}) == data_version({"train": examples.copy()})
    assert data_version({"train": examples}) != data_version({"eval": examples})
    changed = examples.copy()
    changed.loc[0, LABEL] = 1
    assert data_version({"train": examples}) != data_version({"train": changed})
    assert data_version({"train": same.sort_values(["ts_us"]).reset_index(drop=True)[sorted(same.columns)]}) == (
        data_version({"train": examples[sorted(examples.columns)]})
    )


def test_features_are_looked_up_just_before_the_requests_decision():
    examples = pd.DataFrame(
        {
            "request_id": ["r1", "r1", "r2"],
            "user_id": ["u", "u", "v"],
            "item_id": ["a", "b", "a"],
            "ts_us": [1_000_000, 1_000_050, 2_000_000],
        }
    )
    seen = {}

    def join(entities: pd.DataFrame) -> pd.DataFrame:
        seen["ts"] = entities["event_timestamp"].tolist()
        return entities.assign(feature=[1.0, 2.0, 3.0])

    joined = join_features(examples, join)
    assert joined["feature"].tolist() == [1.0, 2.0, 3.0]
    expected = [pd.Timestamp(us, unit="us", tz="UTC") for us in (999_999, 999_999, 1_999_999)]
    assert seen["ts"] == expected


def test_the_candidate_grid_puts_every_catalog_item_in_every_eval_request():
    evaluation = pd.DataFrame(
        {
            "request_id": ["r2", "r1", "r1", "x"],
            "user_id": ["v", "u", "u", "w"],
            "ts_us": [20, 10, 11, 30],
            "signal": ["implicit", "implicit", "implicit", "explicit"],
        }
    )
    grid = candidate_grid(evaluation, ["a", "b", "c"])
    assert grid["request_id"].tolist() == ["r1"] * 3 + ["r2"] * 3
    assert grid["item_id"].tolist() == ["a", "b", "c"] * 2
    assert grid["ts_us"].tolist() == [10] * 3 + [20] * 3


def test_the_catalog_is_what_serving_ranks_then_any_shown_item_it_lacks(tmp_path):
    """Serving ranks every item of the item context table; a window whose slates showed only some of them must
    still be evaluated over all (exploration's 1/n; the items a policy would pick but nobody was shown)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.examplegen.logic import serving_catalog
    from kfloop.features.config import FeaturesConfig

    config = FeaturesConfig.model_validate({"store": {"repo_dir": str(tmp_path / "features")}})
    shown = pd.Series(["2", "0", "zz", "2"])
    assert serving_catalog(config, shown) == ["0", "2", "zz"]  # no item context table yet: what was shown
    config.store.offline_dir.mkdir(parents=True)
    pq.write_table(pa.table({"item_id": ["0", "1", "10", "2"]}), config.store.offline_dir / "item_context.parquet")
    assert serving_catalog(config, shown) == ["0", "1", "10", "2", "zz"]
