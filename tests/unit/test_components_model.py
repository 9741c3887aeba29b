"""Transform, Train and Evaluate on a small OBD span: the exported model, its explainer, the evaluation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components import examples_io
from components.contract import DEFAULT_SCHEMA
from components.evaluate.config import EvaluateConfig
from components.examplegen.logic import generate
from components.train.config import TrainConfig
from components.train.logic import example_weights
from components.transform.config import TransformConfig
from kfloop import model_contract as contract
from kfloop.data import fetch_obd, import_obd
from kfloop.eventlog import EventLog, EventLogConfig
from pipelines.config import PipelineConfig

pytestmark = pytest.mark.pipeline

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
SMALL = TrainConfig(epochs=1, hidden_units=[8], batch_size=512)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    fetch_obd(DATA_DIR)
    root = tmp_path_factory.mktemp("model")
    log = EventLogConfig(wal_dir=root / "wal", log_uri=str(root / "events"))
    with EventLog(log, writer_id="obd") as writer:
        import_obd(DATA_DIR, writer, progress=lambda _: None)
    config = PipelineConfig.model_validate(
        {
            "features": {
                "event_log": log.model_dump(mode="json"),
                "store": {"repo_dir": str(root / "feast"), "obd_data_dir": str(DATA_DIR)},
            },
            "registry": {"uri": str(root / "registry")},
            "window": {"max_requests": 2500},
        }
    )
    generate(config.examplegen_task(), root / "examples", now=datetime.now(UTC))
    return root


@pytest.fixture(scope="module")
def trained(workdir: Path) -> Path:
    from components.train.logic import train
    from components.transform.logic import analyze
    from components.validate.logic import load_schema

    analyze(workdir / "examples", load_schema(DEFAULT_SCHEMA), TransformConfig(), workdir / "transform")
    train(workdir / "examples", workdir / "transform", SMALL, workdir / "model")
    return workdir / "model"


def raw_inputs(signature, frame: pd.DataFrame) -> dict:
    import tensorflow as tf

    inputs = {}
    for name, spec in signature.structured_input_signature[1].items():
        if spec.dtype == tf.string:
            inputs[name] = tf.constant(frame[name].astype(str).to_numpy().astype(object))
        else:
            inputs[name] = tf.constant(frame[name].fillna(0).to_numpy(), dtype=spec.dtype)
    return inputs


def test_weights_are_the_signal_weight_times_the_clipped_inverse_propensity():
    frame = pd.DataFrame(
        {"signal": ["implicit", "implicit", "explicit", "explicit"], "propensity": [0.5, 1e-4, 0.25, None]}
    )
    weights = example_weights(frame, TrainConfig(implicit_weight=3, explicit_weight=1, max_inverse_propensity=100))
    assert weights.tolist() == [6.0, 300.0, 4.0, 1.0]


def test_the_serving_model_carries_the_transform_and_scores_at_the_fixed_position(workdir: Path, trained: Path):
    import tensorflow as tf

    model = tf.saved_model.load(str(trained / contract.MODEL_DIR))
    frame = examples_io.read_split(workdir / "examples", "eval").head(64)
    serving = model.signatures["serving_default"]
    inputs = raw_inputs(serving, frame)
    assert "position" not in inputs and "label" not in inputs, "serving needs only model inputs"
    scores = serving(**inputs)["score"].numpy()
    assert scores.shape == (64,) and np.all((scores > 0) & (scores < 1))
    info = json.loads((trained / "train_info.json").read_text())
    at_position = model.signatures["score_at_position"]
    fixed = at_position(**inputs, position=tf.fill([64], tf.constant(info["serving_position"], tf.int64)))
    np.testing.assert_allclose(fixed["score"].numpy(), scores, rtol=1e-5)
    third = at_position(**inputs, position=tf.fill([64], tf.constant(3, tf.int64)))["logit"].numpy()
    shift = info["position_bias"][3] - info["position_bias"][info["serving_position"]]
    np.testing.assert_allclose(third - serving(**inputs)["logit"].numpy(), shift, atol=1e-5)
    unseen = dict(inputs, item_id=tf.constant(["never-seen-item"] * 64))
    assert np.all(np.isfinite(serving(**unseen)["score"].numpy())), "unknown values fall into OOV buckets"


def test_the_explainer_is_a_numeric_sub_model_that_reproduces_the_serving_score(workdir: Path, trained: Path):
    import tensorflow as tf

    model = tf.saved_model.load(str(trained / contract.MODEL_DIR))
    frame = examples_io.read_split(workdir / "examples", "eval").head(32)
    inputs = raw_inputs(model.signatures["serving_default"], frame)
    x = model.signatures["explain_inputs"](**inputs)["x"]
    explainer = tf.saved_model.load(str(trained / "explainer"))
    expected = model.signatures["serving_default"](**inputs)["score"].numpy()
    np.testing.assert_allclose(explainer.signatures["serving_default"](x=x)["score"].numpy(), expected, rtol=1e-5)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = explainer.signatures["serving_default"](x=x)["score"]
    assert np.any(tape.gradient(score, x).numpy() != 0), "gradients flow to the explainer's inputs"
    folder = trained / contract.EXPLAINER_DIR
    description = contract.read_explainer_description(folder)  # valid (layout covers x), or it raises
    (kernel_0, bias_0), (kernel_1, bias_1) = contract.read_explainer_weights(folder, description)
    hidden = np.maximum(x.numpy() @ kernel_0 + bias_0, 0.0)
    logit = (hidden @ kernel_1 + bias_1)[:, 0] + description.position_bias
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), expected, rtol=1e-4)
    assert description.input_width == x.shape[1] and description.layers[0].activation == "relu"


def test_training_is_repeatable_with_the_same_seed(workdir: Path, trained: Path, tmp_path: Path):
    from components.train.logic import train

    again = train(workdir / "examples", workdir / "transform", SMALL, tmp_path / "again")
    first = json.loads((trained / "train_info.json").read_text())
    assert again["loss_by_epoch"] == first["loss_by_epoch"]
    assert again["position_bias"] == first["position_bias"]


def test_the_evaluation_reports_slices_off_policy_values_and_a_verdict(workdir: Path, trained: Path):
    from components.evaluate.logic import evaluate, report_markdown

    config = EvaluateConfig(bootstrap_resamples=100, min_slice_positives=3, min_slice_examples=50)
    result = evaluate(
        workdir / "examples", trained, registry_uri=str(workdir / "registry"), config=config, out_dir=workdir / "eval"
    )
    slices = result["metrics"]["slices"]
    assert {"overall", "position=1", "position=2", "position=3"} <= set(slices)
    assert any(name.startswith("user_feature_0=") for name in slices)
    small = [entry for entry in slices.values() if not entry["measurable"]]
    assert all(entry["reason"].startswith("too small to measure") for entry in small)
    for estimator in ("ips", "snips", "dr"):
        entry = result["ope"][estimator]
        assert entry["candidate"]["ci_low"] <= entry["candidate"]["value"] <= entry["candidate"]["ci_high"]
    assert result["ope"]["reference"] == "logging-policy"
    logged_ctr = examples_io.read_split(workdir / "examples", "eval").query("signal == 'implicit'")["label"].mean()
    assert result["ope"]["ips"]["reference"]["value"] == pytest.approx(logged_ctr)
    blessing = result["blessing"]
    assert blessing["low_evidence"] and not blessing["blessed"], "a few clicks cannot bless under the default rule"
    report = report_markdown(result)
    assert "NOT BLESSED (low evidence)" in report and "| DR |" in report
