"""Feedback events -> labelled examples: one implicit example per impression, one explicit per judgement.

- Implicit example: every impression (the served copy where the predictor logged it: the event log keeps that
  one, with the exact propensity, `model_version` and `variant` it was served with). label = 1 if the user
  clicked that item in that request, else 0. Feedback naming its request (`request_id`) counts for that
  request's impression of its item when its `ts` is at most `attribution` after the request's decision (its
  earliest impression; earlier is accepted: client clocks differ), as the joiner counts it online; later it is
  late, and naming a request or item the window does not hold it is unattributed: both are counted, neither
  labels anything. Feedback without a request id counts for the user's latest impression of that item at most
  `attribution` earlier. dwell_ms = the longest dwell attributed the same way (null if none): it is kept for
  validation and statistics, never a model input (it happens after the click).
- Explicit example: every rating or thumb on an item. label = 1 for 4-5 stars or thumbs up, 0 for 1-2 stars
  or thumbs down; a 3-star rating says neither and makes no example. It takes position, propensity and
  request from the impression it is attributed to (as a click is); without one they are null (the loss then
  uses no inverse-propensity factor for it). Survey answers are not judgements of an item: no example.
- `signal` says which kind; the trainer weighs implicit : explicit examples 3 : 1 by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    "model_version",
    "variant",
    "source",
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
    "model_version",
    "variant",
    "source",
    "dwell_ms",
    "rating",
    "thumb",
]
TEXT_COLUMNS = ("request_id", "user_id", "item_id", "policy", "model_version", "variant", "source", "signal")
SERVED_WITH = ("position", "policy", "propensity", "model_version", "variant", "source")
"""What an example takes from the impression it is about."""
FEEDBACK_TYPES = ("click", "dwell", "rating", "thumbs")


@dataclass
class Labelled:
    """The examples, and what became of each kind of feedback: {type: {attributed, late, unattributed}}."""

    examples: pd.DataFrame
    feedback: dict[str, dict[str, int]] = field(default_factory=dict)


def label_examples(events: pd.DataFrame, *, attribution: timedelta) -> Labelled:
    """Examples (EXAMPLE_COLUMNS) from a frame of event-log rows, in time order."""
    impressions = _impressions(events)
    clicks = _attribute(events[events["type"] == "click"], impressions, attribution)
    dwells = _attribute(events[events["type"] == "dwell"], impressions, attribution)
    implicit = impressions.assign(signal="implicit", **{LABEL: 0})
    implicit.loc[clicks["impression"].dropna().astype(int).unique(), LABEL] = 1
    longest = dwells.dropna(subset=["impression"]).groupby("impression")["dwell_ms"].max()
    implicit["dwell_ms"] = pd.array(longest.reindex(implicit.index).to_numpy(), dtype="Int64")
    explicit, judged = _explicit(events, impressions, attribution)
    examples = pd.concat([implicit[list(EXAMPLE_COLUMNS)], explicit[list(EXAMPLE_COLUMNS)]], ignore_index=True)
    examples["position"] = examples["position"].astype("Int64")
    examples["dwell_ms"] = examples["dwell_ms"].astype("Int64")
    examples[LABEL] = examples[LABEL].astype("int64")
    # Typed even when all null (a window without served traffic has no variant): the columns keep their type.
    examples[list(TEXT_COLUMNS)] = examples[list(TEXT_COLUMNS)].astype("string")
    ordered = examples.sort_values(["ts_us", "request_id", "signal", "item_id"], kind="stable").reset_index(drop=True)
    outcomes = pd.concat([clicks, dwells, judged])
    return Labelled(ordered, _count_outcomes(outcomes))


def _count_outcomes(feedback: pd.DataFrame) -> dict[str, dict[str, int]]:
    counts = feedback.groupby(["type", "outcome"]).size() if not feedback.empty else pd.Series(dtype=int)
    return {
        kind: {outcome: int(counts.get((kind, outcome), 0)) for outcome in ("attributed", "late", "unattributed")}
        for kind in FEEDBACK_TYPES
    }


def _impressions(events: pd.DataFrame) -> pd.DataFrame:
    shown = events[events["type"] == "impression"].copy()
    # An impression without a request id is a one-item request of its own.
    missing = shown["request_id"].isna()
    shown.loc[missing, "request_id"] = "imp:" + shown.loc[missing, "event_id"]
    shown["ts_us"] = _micros(shown["ts"])
    shown["decided_us"] = shown.groupby("request_id")["ts_us"].transform("min")  # the request's decision
    return shown.reset_index(drop=True)


def _micros(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts, utc=True).astype("int64") // 1000


def _attribute(feedback: pd.DataFrame, impressions: pd.DataFrame, attribution: timedelta) -> pd.DataFrame:
    """`feedback` with the index of the impression each row counts for (NaN: none) and its `outcome`."""
    feedback = feedback.copy()
    feedback["impression"] = np.nan
    feedback["outcome"] = "unattributed"
    if feedback.empty or impressions.empty:
        return feedback
    named = feedback["request_id"].notna()
    by_request = impressions.reset_index().drop_duplicates(["request_id", "item_id"])
    keyed = (
        feedback[named]
        .reset_index()
        .merge(
            by_request[["request_id", "item_id", "index", "decided_us"]].rename(
                columns={"index": "impression_of_request"}
            ),
            on=["request_id", "item_id"],
            how="left",
        )
        .set_index("index")
        .reindex(feedback.index)
    )
    matched = keyed["impression_of_request"]
    late = matched.notna() & (_micros(feedback["ts"]) > keyed["decided_us"] + _window_us(attribution))
    feedback["impression"] = matched.where(~late)
    if (~named).any():
        feedback["impression"] = feedback["impression"].fillna(
            _latest_before(feedback[~named], impressions, attribution)
        )
    feedback.loc[late, "outcome"] = "late"
    feedback.loc[feedback["impression"].notna(), "outcome"] = "attributed"
    return feedback


def _window_us(attribution: timedelta) -> int:
    return int(attribution.total_seconds() * 1_000_000)


def _latest_before(feedback: pd.DataFrame, impressions: pd.DataFrame, attribution: timedelta) -> pd.Series:
    left = feedback.assign(ts_us=_micros(feedback["ts"]), row=feedback.index).sort_values("ts_us")
    right = impressions.reset_index()[["index", "user_id", "item_id", "ts_us"]].sort_values("ts_us")
    merged = pd.merge_asof(
        left[["row", "user_id", "item_id", "ts_us"]],
        right,
        on="ts_us",
        by=["user_id", "item_id"],
        direction="backward",
        tolerance=_window_us(attribution),
    )
    return merged.set_index("row")["index"].reindex(feedback.index)


def _explicit(
    events: pd.DataFrame, impressions: pd.DataFrame, attribution: timedelta
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(explicit examples, the judgements with their outcome)."""
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
            **{column: shown[column].to_numpy() for column in SERVED_WITH},
            "signal": "explicit",
            LABEL: judged[LABEL].to_numpy(),
            "dwell_ms": pd.array([pd.NA] * len(judged), dtype="Int64"),
        }
    )
    # A judgement outside any ranked request is a request of its own.
    alone = out["request_id"].isna()
    out.loc[alone, "request_id"] = ("exp:" + judged["event_id"]).to_numpy()[alone.to_numpy()]
    return out, judged
