"""Feedback events -> labelled examples: one implicit example per impression, one explicit per judgement.

- Implicit example: every impression. label = 1 if the user clicked that item in that request, else 0.
  A click names its request (`request_id`); a click without one counts for the user's latest impression of
  that item at most `attribution` earlier. dwell_ms = the longest dwell attributed the same way (null if
  none): it is kept for validation and statistics, never a model input (it happens after the click).
- Explicit example: every rating or thumb on an item. label = 1 for 4-5 stars or thumbs up, 0 for 1-2 stars
  or thumbs down; a 3-star rating says neither and makes no example. It takes position, propensity and
  request from the impression it is attributed to (as a click is); without one they are null (the loss then
  uses no inverse-propensity factor for it). Survey answers are not judgements of an item: no example.
- `signal` says which kind; the trainer weighs implicit : explicit examples 3 : 1 by default.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

LABEL = "label"
EXAMPLE_COLUMNS = (
    "request_id",
    "user_id",
    "item_id",
    "ts_us",
    "position",
    "policy",
    "propensity",
    "signal",
    LABEL,
    "dwell_ms",
)
EVENT_COLUMNS = [
    "event_id",
    "type",
    "user_id",
    "item_id",
    "request_id",
    "ts",
    "position",
    "policy",
    "propensity",
    "dwell_ms",
    "rating",
    "thumb",
]


def label_examples(events: pd.DataFrame, *, attribution: timedelta) -> pd.DataFrame:
    """Examples (EXAMPLE_COLUMNS) from a frame of event-log rows, in time order."""
    impressions = _impressions(events)
    clicks = _attribute(events[events["type"] == "click"], impressions, attribution)
    dwells = _attribute(events[events["type"] == "dwell"], impressions, attribution)
    implicit = impressions.assign(signal="implicit", **{LABEL: 0})
    implicit.loc[clicks["impression"].dropna().astype(int).unique(), LABEL] = 1
    longest = dwells.dropna(subset=["impression"]).groupby("impression")["dwell_ms"].max()
    implicit["dwell_ms"] = pd.array(longest.reindex(implicit.index).to_numpy(), dtype="Int64")
    explicit = _explicit(events, impressions, attribution)
    examples = pd.concat([implicit[list(EXAMPLE_COLUMNS)], explicit[list(EXAMPLE_COLUMNS)]], ignore_index=True)
    examples["position"] = examples["position"].astype("Int64")
    examples["dwell_ms"] = examples["dwell_ms"].astype("Int64")
    examples[LABEL] = examples[LABEL].astype("int64")
    return examples.sort_values(["ts_us", "request_id", "signal", "item_id"], kind="stable").reset_index(drop=True)


def _impressions(events: pd.DataFrame) -> pd.DataFrame:
    shown = events[events["type"] == "impression"].copy()
    # An impression without a request id is a one-item request of its own.
    missing = shown["request_id"].isna()
    shown.loc[missing, "request_id"] = "imp:" + shown.loc[missing, "event_id"]
    shown["ts_us"] = _micros(shown["ts"])
    return shown.reset_index(drop=True)


def _micros(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts, utc=True).astype("int64") // 1000


def _attribute(feedback: pd.DataFrame, impressions: pd.DataFrame, attribution: timedelta) -> pd.DataFrame:
    """`feedback` with the index of the impression each row counts for (NaN: none)."""
    feedback = feedback.copy()
    feedback["impression"] = np.nan
    if feedback.empty or impressions.empty:
        return feedback
    by_request = impressions.reset_index().drop_duplicates(["request_id", "item_id"])
    keyed = feedback.reset_index().merge(
        by_request[["request_id", "item_id", "index"]].rename(columns={"index": "impression_of_request"}),
        on=["request_id", "item_id"],
        how="left",
    )
    feedback["impression"] = keyed.set_index("index")["impression_of_request"].reindex(feedback.index)
    unmatched = feedback["impression"].isna()
    if unmatched.any():
        feedback.loc[unmatched, "impression"] = _latest_before(feedback[unmatched], impressions, attribution)
    return feedback


def _latest_before(feedback: pd.DataFrame, impressions: pd.DataFrame, attribution: timedelta) -> pd.Series:
    left = feedback.assign(ts_us=_micros(feedback["ts"]), row=feedback.index).sort_values("ts_us")
    right = impressions.reset_index()[["index", "user_id", "item_id", "ts_us"]].sort_values("ts_us")
    merged = pd.merge_asof(
        left[["row", "user_id", "item_id", "ts_us"]],
        right,
        on="ts_us",
        by=["user_id", "item_id"],
        direction="backward",
        tolerance=int(attribution.total_seconds() * 1_000_000),
    )
    return merged.set_index("row")["index"].reindex(feedback.index)


def _explicit(events: pd.DataFrame, impressions: pd.DataFrame, attribution: timedelta) -> pd.DataFrame:
    judged = events[events["type"].isin(["rating", "thumbs"]) & events["item_id"].notna()].copy()
    judged[LABEL] = np.select(
        [judged["rating"] >= 4, judged["rating"] <= 2, judged["thumb"] == "up", judged["thumb"] == "down"],
        [1, 0, 1, 0],
        default=-1,
    )
    judged = _attribute(judged[judged[LABEL] >= 0], impressions, attribution)
    shown = impressions.reindex(judged["impression"].to_numpy())
    out = pd.DataFrame(
        {
            "request_id": shown["request_id"].to_numpy(),
            "user_id": judged["user_id"].to_numpy(),
            "item_id": judged["item_id"].to_numpy(),
            "ts_us": _micros(judged["ts"]).to_numpy(),
            "position": shown["position"].to_numpy(),
            "policy": shown["policy"].to_numpy(),
            "propensity": shown["propensity"].to_numpy(),
            "signal": "explicit",
            LABEL: judged[LABEL].to_numpy(),
            "dwell_ms": pd.array([pd.NA] * len(judged), dtype="Int64"),
        }
    )
    # A judgement outside any ranked request is a request of its own.
    alone = out["request_id"].isna()
    out.loc[alone, "request_id"] = ("exp:" + judged["event_id"]).to_numpy()[alone.to_numpy()]
    return out
