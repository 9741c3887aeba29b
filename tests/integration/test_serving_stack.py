"""The local serving stack as `kfloop serve` runs it: transformer -> router -> predictor(s), explainer, audit sink,
each a real process (kserve.ModelServer for the model servers) on a testbed (SQLite Feast store, contract-model
versions in a registry). One stack for the whole module: TensorFlow makes every model server take 20-30 s.

The tests run in order: ranking (V1, a standard V2 client, bad input, cold start), logged propensities against
observed frequencies, the audit trail (every decision, background and on-demand explanations), then the canary:
deploy, a split per request, a canary crash that leaves stable serving, promote, rollback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from kfloop.audit import is_sampled
from kfloop.audit.record import parse_record, with_context
from kfloop.cli.commands import audit as audit_commands
from kfloop.cli.commands import serve as serve_commands
from tests.support import testbed
from tests.support.stack import MODEL, Stack, running_stack, wait_for
from tests.unit.test_deploy import deploy_command_args

pytestmark = [pytest.mark.serving, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
SAMPLE_RATE = 0.05
START_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("serving-stack")
    bed = testbed.build(root, versions=2, n_items=12)
    manifest = yaml.safe_load((REPO / "manifests" / "serving" / "inferenceservice.yaml").read_text())
    for env in manifest["spec"]["predictor"]["containers"][0]["env"]:
        if env["name"] == "STORAGE_URI":
            env["value"] = f"s3://bucket/registry/{bed.versions[0]}"
    (root / "isvc.yaml").write_text(yaml.safe_dump(manifest))
    config = testbed.stack_config(bed, manifest=root / "isvc.yaml", explanation_rate=SAMPLE_RATE)
    config["predictor"]["policy"] = {"seed": 5}
    config["router"] = {"seed": 9}
    config["stack"].update(start_timeout_s=START_TIMEOUT_S, restart_backoff_s=0.5, poll_interval_s=0.25)
    with running_stack(bed, config, start_timeout_s=START_TIMEOUT_S) as running:
        yield running


def cli_args(stack: Stack, **extra: Any) -> argparse.Namespace:
    return deploy_command_args(stack.config, operator="tester", **extra)


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=60) as c:
        yield c


def test_a_known_user_gets_a_slate_with_propensities(stack, client):
    answer = stack.rank(client, testbed.CLICKER, request_id="it-req-1")
    assert answer["request_id"] == "it-req-1" and answer["variant"] == "stable"
    assert answer["model_version"] == stack.bed.versions[0]
    assert [s["position"] for s in answer["slate"]] == [1, 2, 3]
    assert len({s["item_id"] for s in answer["slate"]}) == 3 and all(0 < s["propensity"] <= 1 for s in answer["slate"])
    assert set(answer["scores"]) == set(stack.bed.items)  # default candidates: the whole catalog
    assert max(answer["scores"], key=answer["scores"].get) == testbed.CLICKED_ITEM  # clicked 4 times this week


def test_a_standard_open_inference_protocol_client_works_unchanged(stack):
    import asyncio

    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def call():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        try:
            ready = await client.is_model_ready(stack.url, MODEL)
            request = InferRequest(
                MODEL,
                [InferInput("user_id", [1], "BYTES", [testbed.CLICKER]), InferInput("k", [1], "INT32", [2])],
                request_id="it-v2-1",
            )
            return ready, await client.infer(stack.url, request, model_name=MODEL)
        finally:
            await client.close()

    ready, response = asyncio.run(call())
    assert ready
    outputs = {o.name: o for o in response.outputs}
    assert set(outputs) == {"item_id", "position", "propensity", "score", "candidate_id", "candidate_score"}
    assert response.id == "it-v2-1" and list(outputs["position"].as_numpy()) == [1, 2]
    assert outputs["propensity"].datatype == "FP64" and outputs["item_id"].datatype == "BYTES"
    assert response.parameters["model_version"] == stack.bed.versions[0]
    metadata = httpx.get(f"{stack.url}/v2/models/{MODEL}").json()
    assert [i["name"] for i in metadata["inputs"]] == ["user_id", "candidates", "k"]


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        (f"/v1/models/{MODEL}:predict", b"{not json", "Unrecognized request format"),
        (f"/v1/models/{MODEL}:predict", b'{"instances": [{"user_id": "jane@example.com"}]}', "email"),
        (f"/v1/models/{MODEL}:predict", b'{"instances": [{"user_id": "u", "k": 0}]}', "instances[0].k"),
        (f"/v1/models/{MODEL}:predict", b'{"instances": [{"user_id": "u", "colour": 1}]}', "colour"),
        (
            f"/v2/models/{MODEL}/infer",
            b'{"inputs": [{"name": "k", "shape": [1], "datatype": "INT32", "data": [2]}]}',
            "user_id",
        ),
    ],
)
def test_malformed_requests_are_400_with_the_reason(stack, client, path, body, reason):
    response = client.post(stack.url + path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "MalformedRequest"
    assert reason in response.json()["message"]


def test_unknown_users_and_items_are_served_from_cold_start_defaults(stack, client):
    answer = stack.rank(client, "u-brand-new", candidates=["1", "2", "not-in-catalog"], k=3)
    assert {s["item_id"] for s in answer["slate"]} == {"1", "2", "not-in-catalog"}


def test_logged_propensities_match_observed_frequencies_at_each_position(stack, client):
    """Acceptance: for a fixed user, each shown item's logged propensity is how often it is shown there."""
    # request ids outside the explanation sample: 2,000 background explanations would only slow the rest down
    ids = (rid for rid in (f"it-p-{i}" for i in range(10_000)) if not is_sampled(rid, SAMPLE_RATE))
    counts: Counter[tuple[str, int]] = Counter()
    logged: dict[tuple[str, int], float] = {}
    slates = 0
    for _ in range(40):
        instances = [{"user_id": testbed.BROWSER, "request_id": next(ids)} for _ in range(50)]
        response = client.post(f"{stack.url}/v1/models/{MODEL}:predict", json={"instances": instances})
        for answer in response.json()["predictions"]:
            slates += 1
            for shown in answer["slate"]:
                key = (shown["item_id"], shown["position"])
                counts[key] += 1
                assert logged.setdefault(key, shown["propensity"]) == pytest.approx(shown["propensity"])
    assert slates == 2000 and len(logged) > 12  # exploration put items elsewhere than their greedy slot
    for key, propensity in logged.items():
        tolerance = 4.5 * np.sqrt(propensity * (1 - propensity) / slates) + 1 / slates
        assert abs(counts[key] / slates - propensity) <= tolerance, (key, counts[key] / slates, propensity)


def sink_records(stack: Stack, request_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.endpoints['audit_sink']}/v1/decisions/{request_id}")
    return [row["record"] for row in response.json()["records"]] if response.status_code == 200 else []


def test_requests_are_spread_over_the_replicas_of_a_version(stack, client):
    replicas = stack.refresh()["predictors"][stack.bed.versions[0]]
    assert len(replicas) == 2

    def decisions(url: str) -> float:
        metrics = httpx.get(f"{url}/metrics").text
        lines = [line for line in metrics.splitlines() if line.startswith("kfloop_predictor_decisions_total{")]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    before = [decisions(r["url"]) for r in replicas]
    for _ in range(20):
        stack.rank(client, testbed.BROWSER)
    served = [decisions(r["url"]) - b for r, b in zip(replicas, before, strict=True)]
    assert sum(served) == 20 and min(served) >= 5  # one at a time: the replicas take turns


def sink_decision(stack: Stack, request_id: str) -> dict[str, Any]:
    """The decision as the sink returns it, its inputs whole (with the item context it refers to put back)."""
    records = wait_for(lambda: sink_records(stack, request_id), 60, f"{request_id} in the audit sink")
    (decision,) = [r for r in records if r["kind"] == "decision"]
    ref = decision["inputs"].get("item_context")
    if ref is not None:
        (context,) = [r for r in records if r["kind"] == "item_context"]
        assert context["context_id"] == ref
        decision["inputs"] = with_context(decision["inputs"], parse_record(context))
    return decision


def test_every_decision_reaches_the_audit_sink_with_its_exact_inputs(stack):
    decision = sink_decision(stack, "it-req-1")
    assert decision["kind"] == "decision" and decision["model_version"] == stack.bed.versions[0]
    assert decision["variant"] == "stable" and decision["user_id"] == testbed.CLICKER
    assert decision["inputs"]["candidates"] == stack.bed.items
    assert decision["inputs"]["items_mostly"]["ui_clicks_7d"] == {"value": 0, "except": [[3, 4]]}
    assert [c["position"] for c in decision["candidates"]] == [1, 2, 3]


# out of the background-explanation sample, so a request's records are exactly its decision and the context
CONTEXT_IDS = [rid for rid in (f"it-ctx-{i}" for i in range(100)) if not is_sampled(rid, SAMPLE_RATE)][:4]


def test_decisions_refer_to_the_item_context_recorded_once_and_the_sink_returns_it_with_them(stack, client):
    # both replicas have ranked with this catalog before (the test above): each records it once and refers to it
    rankings = [stack.rank(client, testbed.CLICKER, request_id=request_id) for request_id in CONTEXT_IDS]
    for ranking in rankings:
        records = wait_for(lambda r=ranking: sink_records(stack, r["request_id"]), 60, "the decision in the sink")
        assert [r["kind"] for r in records] == ["item_context", "decision"]  # in chain order
        context, decision = records
        assert decision["inputs"]["item_context"] == context["context_id"]
        assert context["content"]["candidates"] == stack.bed.items and "items" not in decision["inputs"]
        whole = with_context(decision["inputs"], parse_record(context))
        assert whole["items_mostly"]["ui_clicks_7d"] == {"value": 0, "except": [[3, 4]]}
        assert [c["item_id"] for c in decision["candidates"]] == [s["item_id"] for s in ranking["slate"]]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux SCHED_IDLE")
def test_the_audit_sink_and_the_explainer_run_on_idle_cpu_only(stack):
    # their work is off the ranking path: a burst of it must not take a core from rankings
    for name in ("audit_sink", "explainer"):
        pid = stack.refresh()["services"][name]["pid"]
        wait_for(lambda pid=pid: sched_policies(pid) == {os.SCHED_IDLE} or None, 120, f"{name} under SCHED_IDLE")
    ranking_pid = stack.endpoints["services"]["router"]["pid"]
    assert sched_policies(ranking_pid) == {os.SCHED_OTHER}


def sched_policies(pid: int) -> set[int]:
    policies = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            policies.add(os.sched_getscheduler(int(tid)))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    return policies


def test_a_sample_of_decisions_is_explained_in_the_background(stack, client):
    sampled = [f"it-sampled-{i}" for i in range(400) if is_sampled(f"it-sampled-{i}", SAMPLE_RATE)][:2]
    for request_id in sampled:
        stack.rank(client, testbed.CLICKER, request_id=request_id)

    def explained() -> list[dict[str, Any]]:
        found = [r for rid in sampled for r in sink_records(stack, rid) if r["kind"] == "explanation"]
        return found if len(found) == len(sampled) else []

    for explanation in wait_for(explained, 180, "background explanations in the audit sink"):
        assert explanation["trigger"] == "sampled"
        items = explanation["explanation"]["items"]
        assert [i["position"] for i in items] == [1, 2, 3]
        # each slot as the decision recorded it: its rank and draw, the same in both parts of the explanation
        slots = sink_decision(stack, explanation["request_id"])["candidates"]
        for slot, item in zip(sorted(slots, key=lambda c: c["position"]), items, strict=True):
            assert (item["draw"], item["rank_by_score"], item["slot_source"]) == (
                slot["draw"],
                slot["rank"],
                "decision",
            )
            assert item["anchor"]["explains"] == ("in_top_k" if item["in_top_k_by_score"] else "not_in_top_k")


def test_explain_through_the_transformer(stack, client):
    response = client.post(f"{stack.url}/v1/models/{MODEL}:explain", json={"instances": [{"user_id": testbed.CLICKER}]})
    assert response.status_code == 200, response.text
    (explanation,) = response.json()["explanations"]
    top = explanation["items"][0]
    assert top["item_id"] == testbed.CLICKED_ITEM
    assert top["integrated_gradients"]["top"][0]["feature"] == "ui_clicks_7d"
    assert top["anchor"]["readable"].startswith("shown because")


def test_any_past_decision_is_explained_on_demand_and_kept(stack, monkeypatch, tmp_path, capsys):
    config = tmp_path / "audit.yaml"
    config.write_text(
        yaml.safe_dump(
            {"store": {"url": f"sqlite:///{stack.root / 'audit.db'}"}, "explainer": "serving.explainer.audit:explainer"}
        )
    )
    monkeypatch.setenv("KFLOOP_SERVING_CONFIG", str(stack.root / "state" / "serving.effective.yaml"))
    request_id = CONTEXT_IDS[-1]  # it refers to its item context (the test above): explained from the inputs made whole
    args = argparse.Namespace(request_id=request_id, config=str(config), store_url=None, explainer=None)
    assert audit_commands.explain(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["trigger"] == "on_demand" and printed["request_id"] == request_id and printed["decision_hash"]
    assert [i["item_id"] for i in printed["explanation"]["items"]] == [
        c["item_id"] for c in sink_decision(stack, request_id)["candidates"]
    ]
    kept = wait_for(
        lambda: [r for r in sink_records(stack, request_id) if r.get("trigger") == "on_demand"], 30, "the explanation"
    )
    assert kept[0]["explanation"]["model_version"] == stack.bed.versions[0]


def test_a_canary_gets_its_share_of_requests(stack, client):
    stable, canary = stack.bed.versions
    assert serve_commands.deploy(cli_args(stack, version=canary, canary=50)) == 0
    # while the canary's model loads, it answers 503 and is not routed
    url = wait_for(lambda: stack.refresh()["predictors"][canary][0]["url"], 30, "the canary process")
    early = wait_for(
        lambda: httpx.post(f"{url}/v1/models/{MODEL}:predict", json={}).status_code, 60, "an answer", interval_s=0.1
    )
    assert early == 503  # the model takes seconds to load; the server answers (503) from the start
    assert stack.routes()["canary"] is None
    wait_for(lambda: (stack.routes().get("canary") or {}).get("version") == canary, START_TIMEOUT_S, "the canary route")
    answers = [stack.rank(client, testbed.BROWSER) for _ in range(300)]
    by_variant = Counter((a["variant"], a["model_version"]) for a in answers)
    assert set(by_variant) == {("stable", stable), ("canary", canary)}
    assert abs(by_variant[("canary", canary)] / 300 - 0.5) <= 4.5 * np.sqrt(0.25 / 300)


def test_a_crashing_canary_leaves_stable_serving(stack, client):
    stable, canary = stack.bed.versions
    for replica in stack.refresh()["predictors"][canary]:
        os.kill(replica["pid"], signal.SIGKILL)
    answers = [stack.rank(client, testbed.BROWSER) for _ in range(100)]  # every one answered
    assert {a["model_version"] for a in answers[-20:]} == {stable}
    wait_for(
        lambda: (stack.routes().get("canary") or {}).get("version") == canary,
        START_TIMEOUT_S,
        "the restarted canary's route",
    )


def test_promote_then_rollback(stack, client):
    stable, canary = stack.bed.versions
    assert serve_commands.promote(cli_args(stack)) == 0
    wait_for(
        lambda: stack.routes()["stable"]["version"] == canary and stack.routes()["canary"] is None,
        60,
        "the promoted route",
    )
    answers = [stack.rank(client, testbed.BROWSER) for _ in range(30)]
    assert {(a["variant"], a["model_version"]) for a in answers} == {("stable", canary)}
    assert serve_commands.rollback(cli_args(stack)) == 0
    # the previous stable version kept its process: the rollback only re-routes
    wait_for(lambda: stack.routes()["stable"]["version"] == stable, 10, "the rolled-back route", interval_s=0.1)
    answers = [stack.rank(client, testbed.BROWSER) for _ in range(30)]
    assert {(a["variant"], a["model_version"]) for a in answers} == {("stable", stable)}
