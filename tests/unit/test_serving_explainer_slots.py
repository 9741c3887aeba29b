"""Explanations agree with the decisions they explain: each slot is explained as the policy drew it (recorded in
the decision, never re-derived), its Integrated Gradients part and its anchor part say the same about the top k,
the k-th item at a tie is classified as the decision ordered it however it is scored, and a rule below the
precision target is never given as the reason."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
from kfloop.audit.record import Candidate, Decision, PolicyInfo, parse_record
from kfloop.audit.spool import decode_line
from kfloop.errors import KfloopError
from kfloop.ope.policies import greedy_ranks
from serving.explainer.anchors import CandidateTable, TopKClassifier, TowerScorer
from serving.explainer.config import AnchorConfig, ExplainerConfig
from serving.explainer.engine import ExplanationEngine
from serving.explainer.inputs import Slot
from serving.explainer.server import RankerExplainer
from serving.explainer.slate import RECOMPUTED, ShownItem, shown_slate
from serving.explainer.wording import shown_sentence
from serving.predictor.config import PolicyConfig
from serving.predictor.decisions import decision_explain_instance, decision_inputs
from tests.unit.test_serving_support import STRONG, contract_registry, features, recording_predictor

pytestmark = pytest.mark.serving

# cheaper anchor searches than the service's defaults: agreement does not depend on how hard a rule is sought
QUICK_ANCHORS = AnchorConfig(batch_size=50, coverage_samples=200)


@pytest.fixture(scope="module")
def engine() -> ExplanationEngine:
    uri, _, root = contract_registry()
    return ExplanationEngine(ExplainerConfig(registry_uri=uri, cache_dir=root / "cache", anchor=QUICK_ANCHORS))


def spooled_decisions(spool_dir) -> list[Decision]:
    lines = [
        line
        for segment in sorted(spool_dir.rglob("*.spool"))
        for line in segment.read_bytes().splitlines(keepends=True)
    ]
    return [parse_record(r) for r in map(decode_line, lines) if r is not None and r["kind"] == "decision"]


@pytest.fixture(scope="module")
def recorded_decisions(tmp_path_factory) -> list[Decision]:
    """A seeded set of decisions, as the predictor records them, under epsilon-greedy and softmax exploration."""
    policies = {
        "eps": PolicyConfig(exploration="epsilon_greedy", epsilon=0.5, seed=3),
        "softmax": PolicyConfig(exploration="softmax", temperature=0.3, seed=4),
    }
    decisions = []
    for name, policy in policies.items():
        spool_dir = tmp_path_factory.mktemp(f"spool-{name}")
        model = recording_predictor(spool_dir, policy, item_context_by_reference=False)
        rng = np.random.default_rng(11)
        try:
            for i in range(10):
                n, k = int(rng.integers(6, 22)), int(rng.integers(2, 4))  # softmax: exact up to k = 3
                candidates, user, items = features(
                    n, strong_item=int(rng.integers(n)), strong_value=int(rng.integers(1, 8))
                )
                instance = {"user_id": "u-1", "request_id": f"{name}-{i}", "candidates": candidates, "k": k}
                asyncio.run(
                    model.predict({"instances": [{**instance, "features": {"user": user, "items": items}}]}, {})
                )
        finally:
            model.stop()
        decisions += spooled_decisions(spool_dir)
    assert len(decisions) == 20
    return decisions


def test_every_shown_item_is_explained_as_its_decision_drew_it(engine, recorded_decisions):
    seen: Counter[tuple[str, bool]] = Counter()
    for decision in recorded_decisions:
        explanation = engine(decision)  # the audit path (`kfloop audit explain`); the service's is tested below
        slots = sorted(decision.candidates, key=lambda c: c.position)
        assert [i["item_id"] for i in explanation["items"]] == [s.item_id for s in slots]
        for slot, item in zip(slots, explanation["items"], strict=True):
            in_top_k = slot.rank <= len(slots)
            assert (item["draw"], item["rank_by_score"], item["slot_source"]) == (slot.draw, slot.rank, "decision")
            # the two parts agree, with each other and with the decision
            assert item["in_top_k_by_score"] == in_top_k
            assert item["anchor"]["explains"] == ("in_top_k" if in_top_k else "not_in_top_k")
            readable = item["anchor"]["readable"]
            if slot.draw == "greedy":
                assert in_top_k and readable.startswith(("shown because", "shown by score"))
            else:
                assert readable.startswith("shown by exploration")
            assert ("because" in readable) == item["anchor"]["meets_precision_target"]
            seen[slot.draw, in_top_k] += 1
    # every kind of slot occurred: greedy, exploration outside the top k, and exploration that drew a top-k item
    assert seen["greedy", True] and seen["exploration", False] and seen["exploration", True], seen


def test_the_service_explains_a_slot_as_recorded_and_refuses_a_slot_that_contradicts_itself(engine, recorded_decisions):
    decision = next(
        d
        for d in recorded_decisions
        if {c.draw for c in d.candidates} == {"greedy", "exploration"}
        and all(c.rank < len(d.inputs["candidates"]) for c in d.candidates)
    )
    last = len(decision.inputs["candidates"])
    model = RankerExplainer(ExplainerConfig(registry_uri=engine.config.registry_uri), engine)
    instance = decision_explain_instance(decision)  # what the predictor's background explainer sends
    (explanation,) = asyncio.run(model.explain({"instances": [instance]}))["explanations"]
    assert explanation == engine(decision)
    # a greedy draw takes the best remaining item: it cannot rank below its position
    forged = [dict(s) for s in instance["slate"]]
    forged[-1] |= {"draw": "greedy", "rank": last}
    # the app maps a KfloopError to a 400 with the one error body (serving.common.errors)
    with pytest.raises(KfloopError, match="a greedy draw takes the best remaining item"):
        asyncio.run(model.explain({"instances": [{**instance, "slate": forged}]}))
    # a recorded rank that the inputs and version do not reproduce is refused, not explained
    swapped = [dict(s) for s in instance["slate"]]
    greedy = next(i for i, s in enumerate(swapped) if s["draw"] == "greedy")  # in the top k
    swapped[greedy] |= {"rank": last, "draw": "exploration"}
    with pytest.raises(KfloopError, match="do not reproduce the decision"):
        asyncio.run(model.explain({"instances": [{**instance, "slate": swapped}]}))
    with pytest.raises(KfloopError, match=r"slate\[0\]\.draw must be one of greedy, exploration"):
        asyncio.run(model.explain({"instances": [{**instance, "slate": [{"item_id": "0", "draw": "lucky"}]}]}))


def test_an_older_record_without_draws_is_explained_from_recomputed_scores_and_says_so(engine, recorded_decisions):
    decision = recorded_decisions[0]
    older = decision.model_copy(
        update={"candidates": [c.model_copy(update={"rank": None, "draw": None}) for c in decision.candidates]}
    )
    recorded, recomputed = engine(decision), engine(older)
    for new, old in zip(recorded["items"], recomputed["items"], strict=True):
        assert old["slot_source"] == RECOMPUTED and new["slot_source"] == "decision"
        assert (old["draw"], old["rank_by_score"]) == (new["draw"], new["rank_by_score"])  # the same model, same facts
        assert old["anchor"]["readable"].endswith(
            "(the decision did not record how this slot was filled: inferred from the recomputed scores)"
        )


# -- the k-th item at a tie ---------------------------------------------------------------------------------


def tied_at_the_edge(ranker) -> tuple[list[str], dict, dict]:
    """Candidates where two items are the same to the model (their ids share an embedding bucket, all else
    equal) and sit at ranks 3 and 4: with k = 3, one of the twins is the k-th item, tied with the (k+1)-th."""
    pool = [f"t{i}" for i in range(120)]
    _, user, items = features(len(pool))
    flat = {name: [column[0]] * len(pool) for name, column in items.items()}
    x = ranker.explain_inputs(ranker.feed(pool, user, flat))
    twins = next((a, b) for a in range(len(pool)) for b in range(a + 1, len(pool)) if np.array_equal(x[a], x[b]))
    others = [i for i in range(len(pool)) if i not in twins][:8]
    candidates = [pool[i] for i in [others[0], twins[0], *others[1:4], twins[1], *others[4:]]]
    clicks = {candidates[0]: 7, candidates[2]: 6, candidates[1]: 3, candidates[5]: 3}
    columns = {name: column[: len(candidates)] for name, column in flat.items()}
    columns[STRONG] = [clicks.get(c, 0) for c in candidates]
    return candidates, user, columns


def test_the_kth_item_at_a_tie_is_classified_as_the_decision_ordered_it_alone_or_in_a_batch(engine):
    _, versions, _ = contract_registry()
    models = engine.models(versions[0])
    ranker = models.ranker
    candidates, user, items = tied_at_the_edge(ranker)
    feed = ranker.feed(candidates, user, items)
    scores, logits = (np.asarray(a, dtype=np.float64) for a in ranker.score(feed))
    order = list(np.argsort(greedy_ranks(logits)))
    kth, next_one = order[2], order[3]
    assert {candidates[kth], candidates[next_one]} == {candidates[1], candidates[5]}  # the twins, at the edge
    assert abs(scores[kth] - scores[next_one]) < 1e-6

    # one decision shows the k-th twin greedily, another the (k+1)-th by exploration in the last slot
    def slot(row: int, draw: str) -> Slot:
        return Slot(candidates[row], order.index(row) + 1, draw)

    shown = [slot(order[0], "greedy"), slot(order[1], "greedy")]
    for last, draw, in_top_k in ((kth, "greedy", True), (next_one, "exploration", False)):
        slate = [*shown, slot(last, draw)]
        inputs = decision_inputs(candidates, 3, feed)
        item = engine.explain(versions[0], inputs, slate)["items"][2]
        assert item["in_top_k_by_score"] is in_top_k and item["anchor"]["explains"].startswith(
            "in" if in_top_k else "not"
        )

        facts = shown_slate(candidates, scores, logits, slate, 3, versions[0]).items[2]
        scorer = TowerScorer(
            models, CandidateTable.build(candidates, items, ranker.input_kinds), ranker.explain_inputs(feed)
        )
        classify = TopKClassifier(scorer, facts, scores)
        rows = scorer.table.matrix
        alone, batch = classify(rows[last])[0], classify(rows)[last]
        repeated = classify(np.repeat(rows[last : last + 1], 7, axis=0))
        assert alone == batch == in_top_k and set(repeated) == {int(in_top_k)}
        # its twin's values are the item's own to the model (another id, the same x): a tie, kept as recorded
        twin = next_one if last == kth else kth
        assert classify(rows[twin])[0] == int(in_top_k)


# -- a rule below the precision target is not the reason -----------------------------------------------------


def test_a_rule_below_the_precision_target_is_never_given_as_the_reason():
    conditions = ["your thumbs up on this item in the last 7d <= 0.00", "item feature 0 > 0.42"]
    greedy = ShownItem(row=0, position=2, rank=2, in_top_k=True, draw="greedy", source="decision", rival=1)
    explored = ShownItem(row=5, position=3, rank=11, in_top_k=False, draw="exploration", source="decision", rival=2)
    for item in (greedy, explored):
        weak = shown_sentence(item, 3, 20, conditions, precision=0.34, target=0.95)
        assert "because" not in weak and "no rule reached the 95% precision target" in weak and "34%" in weak
        assert " AND ".join(conditions) in weak  # the best rule is named, as the best found, not as the reason
        strong = shown_sentence(item, 3, 20, conditions, precision=0.97, target=0.95)
        assert "because " + " AND ".join(conditions) in strong
    assert shown_sentence(greedy, 3, 20, conditions, precision=0.94999, target=0.95).count("94.9%") == 1
    assert shown_sentence(greedy, 3, 20, [], precision=0.5, target=0.95).startswith("shown by score (rank 2 of 20")
    assert shown_sentence(explored, 3, 20, conditions, 0.34, 0.95).startswith(
        "shown by exploration: by score alone it would not be (rank 11 of 20 by score); no rule reached"
    )


def test_an_item_whose_anchor_misses_the_target_is_not_explained_by_it(engine):
    """The issue's case: a k-th item whose best short rule holds only part of the time."""
    _, versions, _ = contract_registry()
    candidates, user, items = features(20, strong_item=4)
    ranker = engine.models(versions[0]).ranker
    inputs = decision_inputs(candidates, 3, ranker.feed(candidates, user, items))
    short_rules = ExplanationEngine(
        engine.config.model_copy(update={"anchor": QUICK_ANCHORS.model_copy(update={"max_anchor_size": 1})})
    )
    explanation = short_rules.explain(versions[0], inputs, None)
    missed = [i for i in explanation["items"] if i["anchor"]["precision"] < i["anchor"]["precision_target"]]
    assert missed, "no anchor below the target in the crafted case"
    for item in explanation["items"]:
        anchor = item["anchor"]
        assert anchor["meets_precision_target"] == (anchor["precision"] >= anchor["precision_target"])
        assert ("because" in anchor["readable"]) == anchor["meets_precision_target"], anchor
    for item in missed:
        assert item["anchor"]["readable"].startswith("shown by score (rank ")
        assert "no rule reached the 95% precision target" in item["anchor"]["readable"]


def test_a_decision_record_refuses_a_greedy_slot_ranked_below_its_position():
    def decision(rank: int) -> Decision:
        return Decision(
            request_id="r-1",
            ts=datetime(2026, 12, 6, tzinfo=UTC),
            model_version="v1",
            variant="stable",
            inputs={},
            candidates=[Candidate(item_id="17", position=2, score=0.4, rank=rank, draw="greedy")],
            policy=PolicyInfo(name="epsilon_greedy", epsilon=0.1),
        )

    assert decision(2).candidates[0].draw == "greedy"
    with pytest.raises(ValueError, match="a greedy draw takes the best remaining item"):
        decision(3)
