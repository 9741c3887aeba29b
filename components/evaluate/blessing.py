"""The blessing gate: rules from config over the evaluator's numbers, with reasons a person can read.

Rules:
1. Off-policy value: the paired 95% lower bound of DR(candidate) - DR(reference) must not be below
   -dr_margin. Undecided when either policy's estimate is low-evidence.
2. Fairness by slice (only against a production model): on every measurable slice, the candidate's AUC may
   not be more than max_slice_auc_drop below the production model's. A slice too small to measure is named
   and skipped; if no slice at all is measurable the rule is undecided.
3. Sanity: the candidate's overall AUC and log loss are numbers (when the overall slice is measurable).

A failed rule blocks. Otherwise, an undecided rule means the evidence is too thin: `on_low_evidence`
decides (block, or bless flagged as low-evidence). Otherwise blessed.
"""

from __future__ import annotations

from typing import Any

from components.evaluate.config import BlessingConfig
from kfloop.registry import Blessing

PASS, FAIL, UNDECIDED = "pass", "fail", "undecided"
CANDIDATE, PRODUCTION = "candidate", "production"


def ope_rule(ope: dict[str, Any], config: BlessingConfig) -> tuple[str, str]:
    dr = ope["dr"]
    difference = dr["difference"]
    candidate = dr["candidate"]
    numbers = (
        f"DR candidate {candidate['value']:.5f} [{candidate['ci_low']:.5f}, {candidate['ci_high']:.5f}], "
        f"reference {dr['reference']['value']:.5f}; difference {difference['value']:+.5f} "
        f"[{difference['ci_low']:+.5f}, {difference['ci_high']:+.5f}], margin {config.dr_margin}"
    )
    if difference["low_evidence"]:
        return UNDECIDED, f"off-policy value: undecided, low evidence ({'; '.join(difference['reasons'])}). {numbers}"
    if difference["ci_low"] < -config.dr_margin:
        return (
            FAIL,
            f"off-policy value: FAIL, the candidate may be worse than the reference by more than the margin. {numbers}",
        )
    return PASS, f"off-policy value: pass. {numbers}"


def slice_rule(slices: dict[str, Any], has_production: bool, config: BlessingConfig) -> tuple[str, str]:
    if not has_production:
        return PASS, "slice AUC: no production model to compare with (first model): not applied"
    measured, drops, skipped = 0, [], []
    for name, entry in slices.items():
        if not entry["measurable"]:
            skipped.append(f"{name} ({entry['reason']})")
            continue
        candidate = entry["models"].get(CANDIDATE, {}).get("auc")
        production = entry["models"].get(PRODUCTION, {}).get("auc")
        if candidate is None or production is None:
            skipped.append(f"{name} (no AUC)")
            continue
        measured += 1
        if production - candidate > config.max_slice_auc_drop:
            drops.append(f"{name}: {candidate:.4f} vs production {production:.4f}")
    skipped_text = f" Not measured: {'; '.join(skipped)}." if skipped else ""
    if drops:
        return FAIL, f"slice AUC: FAIL, drop over {config.max_slice_auc_drop} on {', '.join(drops)}.{skipped_text}"
    if measured == 0:
        return UNDECIDED, f"slice AUC: undecided, no slice large enough to measure.{skipped_text}"
    return PASS, f"slice AUC: pass on {measured} measurable slice(s).{skipped_text}"


def sanity_rule(slices: dict[str, Any]) -> tuple[str, str]:
    overall = slices.get("overall")
    if overall is None or not overall["measurable"]:
        return UNDECIDED, "sanity: overall metrics not measurable (too few examples or clicks)"
    metrics = overall["models"].get(CANDIDATE, {})
    if metrics.get("auc") is None or metrics.get("binary_crossentropy") is None:
        return FAIL, f"sanity: FAIL, overall AUC or log loss is not a number ({metrics})"
    return PASS, f"sanity: pass (AUC {metrics['auc']:.4f}, log loss {metrics['binary_crossentropy']:.5f})"


def decide(
    ope: dict[str, Any], slices: dict[str, Any], *, reference: str, has_production: bool, config: BlessingConfig
) -> Blessing:
    results = [ope_rule(ope, config), slice_rule(slices, has_production, config), sanity_rule(slices)]
    outcomes = {outcome for outcome, _ in results}
    reasons = [text for _, text in results]
    if FAIL in outcomes:
        return Blessing(blessed=False, low_evidence=UNDECIDED in outcomes, reasons=reasons, reference=reference)
    if UNDECIDED in outcomes:
        flagged = config.on_low_evidence == "bless_flagged"
        verdict = "blessed, flagged low-evidence" if flagged else "blocked: evidence too thin to decide"
        return Blessing(
            blessed=flagged,
            low_evidence=True,
            reasons=[*reasons, f"verdict: {verdict} (on_low_evidence = {config.on_low_evidence})"],
            reference=reference,
        )
    return Blessing(blessed=True, reasons=[*reasons, "verdict: blessed"], reference=reference)
