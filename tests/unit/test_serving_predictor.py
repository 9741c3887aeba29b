"""The predictor in-process (its HTTP side is in the integration test): the SavedModel through its signature,
requests checked against the model's inputs, decisions recorded exactly (and compactly) before the answer,
V1 and V2, errors raised with their HTTP statuses (tests/unit/test_error_shape.py: as answered over HTTP),
versions resolved with clear errors."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
from hypothesis import given, settings
from kserve import InferRequest

from kfloop.audit import Candidate, Decision, PolicyInfo
from kfloop.audit.record import ItemContext, parse_record, with_context
from kfloop.audit.spool import decode_line
from kfloop.errors import InvalidInput as KfloopInvalidInput
from kfloop.errors import KfloopError, MalformedRequest, NotFound, NotReady
from kfloop.processes import free_port
from serving.common.model_io import SavedRanker, import_tensorflow
from serving.common.protocol import parse_v2
from serving.common.request_bodies import expand_mostly, v2_request_json
from serving.common.versions import resolve
from serving.predictor import main as predictor_main
from serving.predictor.config import PolicyConfig, PredictorAuditConfig, PredictorConfig
from serving.predictor.decisions import DecisionWriter, RemoteExplainer, decision_inputs
from serving.predictor.item_contexts import ItemContexts
from serving.predictor.server import RankerPredictor
from tests.unit.serving_junk import ranking_bodies
from tests.unit.test_serving_support import STRONG, contract_registry, features, recording_predictor

pytestmark = pytest.mark.serving


@pytest.fixture(scope="module")
def registry():
    return contract_registry()


@pytest.fixture(scope="module")
def ranker(registry) -> SavedRanker:
    uri, versions, root = registry
    return SavedRanker(resolve(uri, versions[0], None, root / "cache").model_path)


def test_the_packed_call_gives_what_the_signature_gives_feature_by_feature(registry, ranker):
    uri, versions, root = registry
    candidates, user, items = features(10, strong_item=4)
    scores, logits = ranker.score(ranker.feed(candidates, user, items))
    tf = import_tensorflow()
    signature = tf.saved_model.load(str(resolve(uri, versions[0], None, root / "cache").model_path)).signatures[
        "serving_default"
    ]
    columns = {**{n: [v] * 10 for n, v in user.items()}, **items, "item_id": candidates}
    specs = signature.structured_input_signature[1]
    reference = signature(**{n: tf.constant(columns[n], spec.dtype) for n, spec in specs.items()})
    np.testing.assert_allclose(scores, reference["score"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(logits, reference["logit"].numpy(), rtol=1e-6)
    assert int(np.argmax(scores)) == 4  # the contract model weighs the user's clicks on an item


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda user, items: items.pop(STRONG), f"feature {STRONG} is missing"),
        (lambda user, items: items.__setitem__(STRONG, ["a"] * 5), f"feature {STRONG} must be numbers"),
        (lambda user, items: items.__setitem__(STRONG, [0.5] * 5), f"feature {STRONG} must be whole numbers"),
        (lambda user, items: items.__setitem__(STRONG, [1] * 4), f"feature {STRONG}: 4 values for 5 candidates"),
        (lambda user, items: items.__setitem__("ui_ctr_7d", [float("nan")] * 5), "ui_ctr_7d must be finite"),
        (lambda user, items: items.__setitem__(STRONG, [[1]] * 5), f"feature {STRONG} must be numbers"),
        (lambda user, items: items.__setitem__(STRONG, [1, 2, "3", 4, 5]), f"feature {STRONG} must be numbers"),
        (lambda user, items: items.__setitem__(STRONG, "12345"), f"feature {STRONG}: not a list of values"),
        (lambda user, items: user.__setitem__("user_feature_0", 7), "user_feature_0 must be a string"),
        (lambda user, items: user.__setitem__("u_clicks_1h", True), "u_clicks_1h must be a finite number"),
        (lambda user, items: user.__setitem__("u_ctr_7d", 2**1100), "u_ctr_7d is beyond the 64-bit float range"),
    ],
)
def test_a_missing_or_mistyped_feature_is_a_400_that_names_it(ranker, change, reason):
    candidates, user, items = features(5)
    change(user, items)
    with pytest.raises(MalformedRequest) as caught:
        ranker.feed(candidates, user, items)
    assert reason in caught.value.message and caught.value.http_status == 400


def test_whole_numbers_for_a_float_feature_are_taken_as_floats(ranker):
    candidates, user, items = features(5)
    items["ui_ctr_7d"] = [0, 1, 0, 0, 2]
    column = ranker._groups["float"].index("ui_ctr_7d")
    assert ranker.feed(candidates, user, items).tensors["float"][:, column].tolist() == [0.0, 1.0, 0.0, 0.0, 2.0]


def test_recorded_inputs_are_exact_and_columns_of_mostly_one_value_are_recorded_once(ranker):
    candidates, user, items = features(40, strong_item=7)
    feed = ranker.feed(candidates, user, items)
    recorded = decision_inputs(candidates, 3, feed)
    assert recorded["items_mostly"][STRONG] == {"value": 0, "except": [[7, 6]]}
    assert "item_feature_0" in recorded["items"]  # varies: recorded per candidate
    rebuilt = dict(recorded["items"])
    rebuilt.update({n: expand_mostly(n, m, 40) for n, m in recorded["items_mostly"].items()})
    for name in rebuilt:
        assert rebuilt[name] == items[name], name
    assert {n: recorded["user"][n] for n in user} == user


def test_the_compact_form_feeds_the_model_as_the_columns_do_and_is_recorded_as_sent(ranker):
    candidates, user, items = features(40, strong_item=7)
    dense = ranker.feed(candidates, user, items)
    compact_items = {n: v for n, v in items.items() if n != STRONG}
    mostly = {STRONG: {"value": 0, "except": [[7, 6.0]]}}
    compact = ranker.feed(candidates, user, compact_items, mostly)
    for kind in dense.tensors:
        np.testing.assert_array_equal(compact.tensors[kind], dense.tensors[kind])
    assert compact.recorded_mostly[STRONG] == {"value": 0, "except": [[7, 6]]}  # typed as the model takes it
    np.testing.assert_array_equal(ranker.score(compact)[0], ranker.score(dense)[0])


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"value": "zero", "except": []}, f"feature {STRONG} must be a finite number"),
        ({"value": 0, "except": [[1, 0.5]]}, f"feature {STRONG} must be a whole number"),
        ({"value": 0, "except": [[9, 1]]}, "not [candidate index below 5, value]"),
        ({"value": 2**64, "except": []}, f"feature {STRONG} is beyond the 64-bit integer range"),
    ],
)
def test_a_bad_compact_feature_is_a_400_that_names_it(ranker, entry, reason):
    candidates, user, items = features(5)
    del items[STRONG]
    with pytest.raises(MalformedRequest) as caught:
        ranker.feed(candidates, user, items, {STRONG: entry})
    assert reason in caught.value.message and caught.value.http_status == 400


@pytest.fixture(scope="module")
def predictor(registry, tmp_path_factory):
    _, versions, _ = registry
    spool_dir = tmp_path_factory.mktemp("spool")
    # a sink nobody listens on: records stay in the spool, where the test reads them
    model = recording_predictor(spool_dir, PolicyConfig(seed=7))
    yield model, spool_dir / versions[0]
    model.stop()


def spooled(spool_dir: Path) -> dict[str, dict]:
    records = {}
    for segment in sorted(spool_dir.glob("*.spool")):
        for line in segment.read_bytes().splitlines(keepends=True):
            record = decode_line(line)
            if record is not None:
                records[record.get("request_id") or record["context_id"]] = record
    return records


def v1_body(request_id: str, n: int = 12, **extra):
    candidates, user, items = features(n, strong_item=2)
    instance = {"user_id": "u-7", "request_id": request_id, "candidates": candidates}
    return {"instances": [instance | {"features": {"user": user, "items": items}} | extra]}


def test_a_ranking_is_recorded_exactly_before_it_is_answered(predictor):
    model, spool_dir = predictor
    response = asyncio.run(model.predict(v1_body("req-a", k=3), {"x-kfloop-variant": "canary"}))
    (answer,) = response["predictions"]
    assert answer["request_id"] == "req-a" and answer["variant"] == "canary"
    assert answer["model_version"] == model.version and len(answer["slate"]) == 3 and len(answer["scores"]) == 12
    assert [s["position"] for s in answer["slate"]] == [1, 2, 3]
    record = spooled(spool_dir)["req-a"]  # durable before predict() returned
    assert record["kind"] == "decision" and record["variant"] == "canary" and record["user_id"] == "u-7"
    assert record["policy"] == {"name": "epsilon_greedy", "epsilon": 0.1}
    assert [(c["item_id"], c["position"], c["propensity"]) for c in record["candidates"]] == [
        (s["item_id"], s["position"], s["propensity"]) for s in answer["slate"]
    ]
    assert record["inputs"]["candidates"] == [str(i) for i in range(12)] and record["inputs"]["k"] == 3
    assert record["inputs"]["items_mostly"][STRONG] == {"value": 0, "except": [[2, 6]]}
    # each slot: its item's rank among the answer's scores, and greedy exactly when it took the best remaining one
    scores = answer["scores"]
    taken: set[int] = set()
    for slot in record["candidates"]:
        rank = 1 + sum(score > scores[slot["item_id"]] for score in scores.values())
        assert slot["rank"] == rank
        assert slot["draw"] == ("greedy" if rank == min(set(range(1, 13)) - taken) else "exploration")
        taken.add(rank)


def test_an_item_context_seen_again_is_recorded_once_and_referred_to(predictor):
    model, spool_dir = predictor
    for i in range(3):
        asyncio.run(model.predict(v1_body(f"req-ctx-{i}", n=17, k=3), {}))
    records = spooled(spool_dir)
    first, second, third = (records[f"req-ctx-{i}"]["inputs"] for i in range(3))
    assert first["candidates"] == [str(i) for i in range(17)] and "item_context" not in first  # first sight: whole
    ref = second["item_context"]
    assert third["item_context"] == ref and not {"candidates", "items"} & {*second, *third}
    context = parse_record(records[ref])
    assert isinstance(context, ItemContext) and with_context(second, context) == first


def test_item_contexts_are_remembered_up_to_capacity_and_forgotten_after_a_failed_append():
    contexts = ItemContexts(capacity=2)

    def kinds(*inputs: dict) -> list[str]:
        decisions = [recorded_decision(i) for i in inputs]
        return [
            r.kind if r.kind == "item_context" else "ref" if "item_context" in r.inputs else "whole"
            for r in contexts.records(decisions)
        ]

    a, b, c = ({"candidates": [x], "items": {"f": [1]}, "k": 1} for x in "abc")
    assert kinds(a, a, a) == ["whole", "item_context", "ref", "ref"]
    assert kinds(b, c, a) == ["whole", "whole", "whole"]  # a was the oldest of three: forgotten
    assert kinds(c) == ["item_context", "ref"]
    contexts.forget()
    assert kinds(c, c) == ["whole", "item_context", "ref"]
    assert kinds({"k": 1, "user": {}}) == ["whole"]  # nothing to refer to


def recorded_decision(inputs: dict) -> Decision:
    return Decision(
        request_id="r",
        ts=datetime.now(UTC),
        model_version="v",
        variant="stable",
        inputs=inputs,
        candidates=[],
        policy=PolicyInfo(name="epsilon_greedy"),
    )


def test_a_stop_in_the_middle_of_a_request_refuses_it_rather_than_answer_unrecorded(registry, tmp_path, monkeypatch):
    """KServe calls stop() from a SIGTERM handler, which runs between any two bytecodes of the request's code."""
    uri, versions, root = registry
    audit = PredictorAuditConfig.model_validate(
        {"spool": {"dir": str(tmp_path), "sink_url": f"http://127.0.0.1:{free_port()}"}, "drain_on_stop_s": 0}
    )
    config = PredictorConfig(registry_uri=uri, cache_dir=root / "cache", audit=audit)
    model = RankerPredictor(config, resolve(uri, versions[0], None, config.cache_dir))
    model.load()
    score = model.ranker.score

    def score_then_stop(feed):
        model.stop()  # SIGTERM arrives once the request is past the readiness check
        return score(feed)

    monkeypatch.setattr(model.ranker, "score", score_then_stop)
    with pytest.raises(NotReady):
        asyncio.run(model.predict(v1_body("req-stopped"), {}))
    assert "req-stopped" not in spooled(tmp_path / versions[0])


def test_a_decision_submitted_as_the_writer_stops_is_refused_not_left_hanging(monkeypatch):
    class Recorder:
        def record(self, *records):
            pass

    writer = DecisionWriter(Recorder())  # type: ignore[arg-type]
    writer.start()
    put = writer._queue.put

    def stop_then_put(item):  # stop() runs between submit's check and its put, as a signal handler can
        monkeypatch.setattr(writer._queue, "put", put)
        writer.stop()
        put(item)

    monkeypatch.setattr(writer._queue, "put", stop_then_put)
    future = writer.submit(recorded_decision({}))
    with pytest.raises(NotReady, match="stopping"):
        future.result(timeout=5)
    with pytest.raises(NotReady, match="stopping"):
        writer.submit(recorded_decision({}))


def test_during_an_experiment_the_answer_and_the_decision_name_it_and_the_arm(predictor):
    model, spool_dir = predictor
    headers = {"x-kfloop-variant": "canary", "x-kfloop-experiment": "exp-42"}
    (answer,) = asyncio.run(model.predict(v1_body("req-exp", k=2), headers))["predictions"]
    assert answer["experiment"] == {"id": "exp-42", "arm": "candidate"}
    record = spooled(spool_dir)["req-exp"]
    assert (record["experiment"], record["arm"], record["variant"]) == ("exp-42", "candidate", "canary")
    (outside,) = asyncio.run(model.predict(v1_body("req-out", k=2), {"x-kfloop-variant": "stable"}))["predictions"]
    assert "experiment" not in outside and "experiment" not in spooled(spool_dir)["req-out"]
    with pytest.raises(MalformedRequest, match="x-kfloop-experiment"):
        asyncio.run(model.predict(v1_body("req-bad"), {"x-kfloop-experiment": "no spaces allowed"}))


def test_a_shadows_decision_carries_its_whole_distribution_and_no_one_elses_does(predictor):
    """The shadow stage weighs production's served slots by it (kfloop.experiments.shadow)."""
    model, spool_dir = predictor
    headers = {"x-kfloop-variant": "shadow", "x-kfloop-experiment": "exp-42"}
    asyncio.run(model.predict(v1_body("req-shadow", k=3), headers))
    record = spooled(spool_dir)["req-shadow"]
    table = record["slot_probabilities"]
    assert sorted(table, key=int) == [str(i) for i in range(12)] and all(len(row) == 3 for row in table.values())
    assert [sum(row[j] for row in table.values()) for j in range(3)] == pytest.approx([1.0] * 3)
    for slot in record["candidates"]:  # the shown items' propensities are entries of the same table
        assert table[slot["item_id"]][slot["position"] - 1] == pytest.approx(slot["propensity"])
    asyncio.run(model.predict(v1_body("req-served", k=3), {**headers, "x-kfloop-variant": "stable"}))
    assert "slot_probabilities" not in spooled(spool_dir)["req-served"]


def test_v2_tensors_in_and_out(predictor):
    model, _ = predictor
    from kserve.protocol.rest.v2_datamodels import InferenceRequest

    body = v1_body("req-v2")["instances"][0]
    from serving.common.protocol import Ranking

    ranking = Ranking("u-7", "req-v2", body["candidates"], 2, body["features"]["user"], body["features"]["items"])
    request = InferRequest.from_inference_request(
        InferenceRequest.model_validate(v2_request_json(ranking, include_features=True)), "kfloop-ranker"
    )
    response = asyncio.run(model.predict(request, {}))
    outputs = {o.name: o for o in response.outputs}
    assert response.id == "req-v2" and response.model_version == model.version
    assert outputs["position"].data == [1, 2] and len(outputs["candidate_score"].data) == 12
    assert response.parameters == {"model_version": model.version, "variant": "stable", "request_id": "req-v2"}
    shadow = asyncio.run(model.predict(request, {"x-kfloop-variant": "shadow", "x-kfloop-experiment": "exp-42"}))
    assert (shadow.parameters["experiment"], shadow.parameters["arm"]) == ("exp-42", "shadow")


def test_request_problems_are_400_and_a_loading_model_is_503(predictor, registry):
    model, _ = predictor
    with pytest.raises(MalformedRequest, match=r"instances\[0\].user_id") as caught:
        asyncio.run(model.predict({"instances": [{"user_id": "a@b.c"}]}, {}))
    assert caught.value.http_status == 400 and caught.value.details[0]["field"] == "instances[0].user_id"
    body = v1_body("req-bad")
    del body["instances"][0]["features"]["items"][STRONG]
    with pytest.raises(MalformedRequest, match=f"feature {STRONG} is missing"):
        asyncio.run(model.predict(body, {}))
    with pytest.raises(MalformedRequest, match=r"x-kfloop-variant"):
        asyncio.run(model.predict(v1_body("req-h"), {"x-kfloop-variant": "no spaces allowed"}))
    uri, versions, root = registry
    loading = RankerPredictor(
        PredictorConfig(registry_uri=uri, audit=PredictorAuditConfig(enabled=False)),
        resolve(uri, versions[0], None, root / "cache"),
    )
    with pytest.raises(NotReady) as caught:
        asyncio.run(loading.predict(v1_body("req-early"), {}))
    assert caught.value.http_status == 503


def test_softmax_propensities_match_observed_frequencies_for_a_fixed_user(registry):
    uri, versions, root = registry
    config = PredictorConfig(
        registry_uri=uri,
        policy=PolicyConfig(exploration="softmax", temperature=0.5, seed=1),
        audit=PredictorAuditConfig(enabled=False),
    )
    model = RankerPredictor(config, resolve(uri, versions[0], None, root / "cache"))
    model.load()
    body = v1_body("ignored", n=6)
    instance = body["instances"][0]
    del instance["request_id"]
    batch = {"instances": [instance] * 50}
    counts: dict[tuple[str, int], int] = {}
    logged: dict[tuple[str, int], float] = {}
    draws = 0
    for _ in range(60):
        for answer in asyncio.run(model.predict(batch, {}))["predictions"]:
            draws += 1
            for shown in answer["slate"]:
                key = (shown["item_id"], shown["position"])
                counts[key] = counts.get(key, 0) + 1
                assert logged.setdefault(key, shown["propensity"]) == pytest.approx(shown["propensity"])
    for key, propensity in logged.items():
        tolerance = 4.5 * np.sqrt(propensity * (1 - propensity) / draws) + 1 / draws
        assert abs(counts[key] / draws - propensity) <= tolerance, key


def test_an_unknown_version_is_refused_with_the_deployable_ones_named(registry, capsys):
    uri, versions, root = registry
    with pytest.raises(NotFound) as caught:
        resolve(uri, "v20991231T000000Z-deadbeef", None, root / "cache")
    assert versions[0] in caught.value.message and versions[1] in caught.value.message
    with pytest.raises(KfloopInvalidInput, match="unblessed, not deployable"):
        resolve(uri, versions[2], None, root / "cache")
    assert resolve(uri, None, None, root / "cache").version == versions[1]  # latest deployable
    assert predictor_main.main(["--registry-uri", uri, "--model-version", "v20991231T000000Z-deadbeef"]) == 2
    assert "is not in the registry" in capsys.readouterr().err


def test_a_version_folder_on_disk_is_served_as_the_storage_initializer_leaves_it(registry):
    uri, versions, root = registry
    folder = Path(uri) / versions[1]
    resolved = resolve("unused", None, folder, root / "cache")
    assert resolved.version == versions[1] and resolved.model_path == folder / "model"
    with pytest.raises(NotFound, match=r"model_card\.json"):
        resolve("unused", None, root, root / "cache")


class _ExplainerStandIn(ThreadingHTTPServer):
    """Answers :explain with the given statuses in turn (then 200 with an explanation)."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), _ExplainHandler)
        self.statuses = statuses

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ExplainHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        body = json.dumps({"explanations": [{"ok": True}]} if status == 200 else {"error": "not ready"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize(("status", "retried"), [(503, True), (502, True), (504, True), (400, False), (500, False)])
def test_the_remote_explainer_says_which_failures_are_worth_another_try(status, retried):
    server = _ExplainerStandIn([status])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        explainer = RemoteExplainer(server.url, "kfloop-ranker", timeout_s=5)
        with pytest.raises(NotReady if retried else KfloopError) as caught:
            explainer(_a_decision())
        assert isinstance(caught.value, NotReady) == retried
        assert explainer(_a_decision()) == {"ok": True}  # the next answer is a 200
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(NotReady, match="unreachable"):  # nobody listening: down or not started yet
        RemoteExplainer(f"http://127.0.0.1:{free_port()}", "kfloop-ranker", timeout_s=5)(_a_decision())


def _a_decision() -> Decision:
    return Decision(
        request_id="req-1",
        ts=datetime.now(UTC),
        model_version="v1",
        variant="stable",
        user_id="u-1",
        inputs={"candidates": ["1"], "k": 1},
        candidates=[Candidate(item_id="1", position=1, score=0.5, propensity=1.0)],
        policy=PolicyInfo(name="epsilon_greedy", epsilon=0.1),
    )


@settings(max_examples=150, deadline=None)
@given(body=ranking_bodies)
def test_no_request_body_crashes_the_predictor(predictor, body):
    model, _ = predictor
    try:
        response = asyncio.run(model.predict(body, {}))
    except MalformedRequest:  # a 400 naming the field
        return
    assert response["predictions"]


def test_a_body_that_is_json_but_not_an_object_is_a_400():
    with pytest.raises(MalformedRequest, match=r"must be a JSON object \(V1: .*\), not an array"):
        parse_v2([1, 2], with_features=True)
    with pytest.raises(MalformedRequest, match="not null"):
        parse_v2(None, with_features=False)
