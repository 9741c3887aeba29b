"""Explanations in words: feature names a person reads, and the sentence that says why an item was shown.

The sentence states what the decision recorded (shown by score, or by exploration) and gives an anchor rule as
the reason only when the rule's precision meets the configured target; otherwise it says that no rule reached
the target and names the best one found, with its precision.
"""

from __future__ import annotations

import math
import re

from kfloop.audit.record import GREEDY
from kfloop.features import names
from serving.explainer.slate import RECOMPUTED, ShownItem

_STATS = {
    "impressions": "views",
    "clicks": "clicks",
    "ctr": "click rate",
    "dwell_s": "dwell seconds",
    "scroll_depth": "scroll depth",
    "ratings": "ratings",
    "rating_mean": "mean rating",
    "thumbs_up": "thumbs up",
    "thumbs_down": "thumbs down",
}
_AGGREGATE = re.compile(r"^(ui|u)_(.+)_(\d+[smhdw])$")
_INFERRED = " (the decision did not record how this slot was filled: inferred from the recomputed scores)"


def readable(name: str) -> str:
    """A feature name in words: ui_clicks_7d -> "your clicks on this item in the last 7d"."""
    if name == names.ITEM_ID:
        return "item id"
    match = _AGGREGATE.match(name)
    if match and match.group(2) in _STATS:
        prefix, stat, window = match.groups()
        where = " on this item" if prefix == names.USER_ITEM_PREFIX else ""
        return f"your {_STATS[stat]}{where} in the last {window}"
    for kind in ("item_feature_", "user_feature_"):
        if name.startswith(kind):
            return f"{kind[:-1].replace('_', ' ')} {name[len(kind) :]}"
    return name


def readable_condition(condition: str, feature_names: list[str]) -> str:
    for name in sorted(feature_names, key=len, reverse=True):
        if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", condition):
            return re.sub(rf"(?<![\w]){re.escape(name)}(?![\w])", readable(name), condition, count=1)
    return condition


def percent(share: float) -> str:
    """A share as a percentage, rounded down (94.96% reads 94.9%, never the 95% it did not reach)."""
    return f"{math.floor(round(share * 1000, 6)) / 10:g}%"  # round first: 0.95 * 1000 may be 949.99...


def shown_sentence(item: ShownItem, k: int, n: int, conditions: list[str], precision: float, target: float) -> str:
    """Why the item was shown, as the decision recorded it; a rule is the reason only at `target` precision.
    `conditions` are readable already."""
    meets = precision >= target
    place = f"rank {item.rank} of {n} by score"
    if item.draw == GREEDY:
        head = "shown" if meets else f"shown by score ({place}, in the top {k})"
    elif item.in_top_k:
        head = f"shown by exploration; by score alone it would be too ({place})"
    else:
        head = "shown by exploration: by score alone it would not be" + ("" if meets else f" ({place})")
    rule = " AND ".join(conditions)
    if meets:
        rule = rule or ("almost any of the candidates would be" if item.in_top_k else "few of the candidates would be")
        sentence = f"{head}{' ' if item.draw == GREEDY else ', '}because {rule}"
    else:
        where = "in" if item.in_top_k else "out of"
        sentence = (
            f"{head}; no rule reached the {percent(target)} precision target: the best found "
            f"({rule or 'no condition'}) keeps it {where} the top {k} in only {percent(precision)} of sampled cases"
        )
    return sentence + (_INFERRED if item.source == RECOMPUTED else "")
