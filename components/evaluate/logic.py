"""Evaluate: TFMA metrics by slice and off-policy value against a reference, then the blessing verdict.

The reference is the production model (the newest deployable version in the registry) when one exists and
can score this data; otherwise the logging policy. Writes `evaluation.json` (metrics, OPE, blessing) and a
Markdown report.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from components import examples_io
from components.beam import BeamConfig
from components.contract import POSITION
from components.evaluate.blessing import CANDIDATE, PRODUCTION, decide
from components.evaluate.config import EvaluateConfig
from components.evaluate.metrics import tfma_metrics
from components.evaluate.ope import off_policy, ope_rows, reward_grid
from components.evaluate.scoring import Scorer
from kfloop.model_contract import MODEL_DIR

EVALUATION_FILE = "evaluation.json"
LOGGING_POLICY = "logging-policy"
SKEW_SHARE = 0.05  # more of the reference's own rows than this disagreeing with their recomputation: say skew


def production_scorer(registry_uri: str, workdir: Path, needed: set[str]) -> tuple[str | None, Scorer | None, str]:
    """(version, scorer, note) of the newest deployable version, if there is one that can score the data."""
    from kfloop.registry import ModelRegistry

    registry = ModelRegistry(registry_uri)
    version = registry.latest_deployable()
    if version is None:
        return None, None, "no deployable version in the registry yet: compared with the logging policy"
    try:
        scorer = Scorer(registry.local_copy(version, MODEL_DIR, workdir))
    except Exception as exc:  # an unreadable model must not stop the evaluation: say so, use the logging policy
        return version, None, f"production {version} could not be loaded ({exc}): compared with the logging policy"
    missing = sorted(set(scorer.inputs) - needed)
    if missing:
        return (
            version,
            None,
            f"production {version} needs inputs this data lacks {missing}: compared with the logging policy",
        )
    return version, scorer, f"compared with production {version}"


def evaluate(
    examples: Path,
    model_dir: Path,
    *,
    registry_uri: str,
    config: EvaluateConfig,
    out_dir: Path,
    beam: BeamConfig | None = None,
) -> dict[str, Any]:
    """Metrics (TFMA on the `beam` runner), off-policy values, the verdict; writes evaluation.json."""
    from components.train.logic import TRAIN_INFO

    out_dir.mkdir(parents=True, exist_ok=True)
    evaluation = examples_io.read_split(examples, "eval")
    candidates = examples_io.read_candidates(examples)
    info = json.loads((model_dir / TRAIN_INFO).read_text())
    candidate = Scorer(model_dir / MODEL_DIR)
    with tempfile.TemporaryDirectory() as workdir:
        version, production, note = production_scorer(registry_uri, Path(workdir), set(evaluation.columns))
        positions = evaluation[POSITION].fillna(0).to_numpy(dtype=np.int64)
        predictions = {CANDIDATE: candidate.scores_at(evaluation, positions)}
        if production is not None:
            predictions[PRODUCTION] = production.scores_at(evaluation, positions)
        slices = tfma_metrics(evaluation, predictions, config, out_dir / "tfma", beam)
        rows, requests, catalog = ope_rows(evaluation, candidates, config.slate_size)
        shape = (len(requests), len(catalog))
        candidate_logits = candidate.logits(candidates).reshape(shape)
        reference_logits = production.logits(candidates).reshape(shape) if production is not None else None
    q_grid = reward_grid(candidate_logits, info["position_bias"], info["serving_position"], config.slate_size)
    served_by = version if production is not None else None
    ope = off_policy(rows, candidate_logits, reference_logits, q_grid, config, reference_version=served_by)
    reference = f"production:{version}" if production is not None else LOGGING_POLICY
    ope["reference"], ope["reference_note"] = reference, note
    ope["policy"] = _policy_name(config)
    blessing = decide(ope, slices, reference=reference, has_production=production is not None, config=config.blessing)
    result = {
        "metrics": {"slices": slices, "prediction": "P(click) at the logged position"},
        "ope": ope,
        "blessing": blessing.model_dump(mode="json"),
    }
    (out_dir / EVALUATION_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _policy_name(config: EvaluateConfig) -> str:
    if config.exploration == "epsilon_greedy":
        return f"epsilon-greedy(epsilon={config.epsilon}) over the catalog, slate of {config.slate_size}"
    return f"softmax(temperature={config.temperature}) over the catalog, slate of {config.slate_size}"


def report_markdown(result: dict[str, Any]) -> str:
    blessing, ope = result["blessing"], result["ope"]
    verdict = "BLESSED" if blessing["blessed"] else "NOT BLESSED"
    flag = " (low evidence)" if blessing["low_evidence"] else ""
    lines = [
        f"# Evaluation: {verdict}{flag}",
        "",
        f"Reference: {ope['reference_note']}.",
        f"Policy: {ope['policy']}.",
        "",
    ]
    lines += ["## Blessing rules", "", *[f"- {reason}" for reason in blessing["reasons"]], ""]
    lines += [
        f"## Off-policy value (clicks per impression slot; {ope['rows']} logged rows, {ope['clicks']} clicks)",
        "",
        "| estimator | candidate [95%] | reference [95%] | difference [95%] | low evidence |",
        "|---|---|---|---|---|",
    ]
    for name in ("ips", "snips", "dr"):
        entry = ope[name]
        cells = [_interval(entry[k]) for k in ("candidate", "reference", "difference")]
        low = "yes" if entry["difference"]["low_evidence"] else "no"
        lines.append(f"| {name.upper()} | {' | '.join(cells)} | {low} |")
    reasons = ope["dr"]["difference"]["reasons"]
    if reasons:
        lines += ["", "Why the evidence is low (DR): " + "; ".join(reasons) + "."]
    lines += ["", f"Rows left out: {ope['dropped']}.", *_served_check_lines(ope.get("served_check"))]
    lines += ["", "## Metrics by slice (TFMA)", ""]
    lines += [
        "| slice | model | examples | positives | AUC | log loss | calibration | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in result["metrics"]["slices"].items():
        for model, values in entry["models"].items():
            note = entry["reason"] or ""
            if not entry["measurable"]:
                values = {}  # numbers on a slice this small would mislead; evaluation.json keeps them
            lines.append(
                f"| {name} | {model} | {entry['examples']} | {entry['positives']} | {_number(values.get('auc'))} | "
                f"{_number(values.get('binary_crossentropy'))} | {_number(values.get('calibration'))} | {note} |"
            )
    return "\n".join(lines) + "\n"


def _served_check_lines(check: dict[str, Any] | None) -> list[str]:
    if not check or not check["rows"]:
        return []
    text = (
        f"The reference's own served rows ({check['rows']}) weigh by their logged propensities. Recomputed on the "
        f"offline features, its policy gives them ESS {check['ess']:.0f} of {check['rows']} (max weight "
        f"{check['max_weight']:.2f}; {check['disagreeing']} rows more than 5% off)"
    )
    if check["disagreeing"] > SKEW_SHARE * check["rows"]:
        text += ": the offline features do not reproduce serving's decisions (training/serving skew)"
    return ["", text + "."]


def _interval(estimate: dict[str, Any]) -> str:
    return f"{estimate['value']:.5f} [{estimate['ci_low']:.5f}, {estimate['ci_high']:.5f}]"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
