"""The loop's phases after the shift: detection, retraining, the candidate's canary and promotion, recovery; then a
deliberately bad version forced in, which the controller must roll back.

Today the controller deploys a blessed retrained version as a canary (`retrain.canary_percent`) and rolls canaries
back on CanaryErrorRateHigh; it does not promote. Until issue 19's stage walk lands, the demo promotes a canary that
served `canary_hold_s` without a canary alert (recorded as the demo's promotion); once the controller walks stages
and promotes by itself, the demo sees the candidate become stable and only records it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from prometheus_client.parser import text_string_to_metric_families

from kfloop.cli.demo.run import get_json, wait_until
from kfloop.cli.demo.watch import now_iso
from kfloop.deploy import read_state
from monitoring.controller.config import read_token

if TYPE_CHECKING:
    from kfloop.cli.demo.flow import Demo

BAD_REASON = "kfloop demo: a deliberately bad version (it fails every full ranking)"
BAD_MODEL = """
import sys
from pathlib import Path
from kfloop.registry import ModelRegistry
from tests.support.contract_model import ContractSpec, register
spec = ContractSpec(seed=13, fail_above_candidates=2)
print(register(ModelRegistry(sys.argv[1]), Path(sys.argv[2]), spec, blessed=False))
"""
"""The bad version: a model with the trainer's export contract that loads and passes the predictor's warm-up but
fails every ranking of the whole candidate set (the tests' broken-version builder, run in its own process)."""


def controller(demo: Demo) -> tuple[str, str]:
    """The controller's URL and token."""
    live = demo.watcher.status()
    port = next(p["port"] for p in live["parts"] if p["kind"] == "controller")
    return f"http://127.0.0.1:{port}", read_token(demo.files.state / "controller" / "token")


def actions(demo: Demo, kind: str | None = None) -> list[dict[str, Any]]:
    url, token = controller(demo)
    return get_json(f"{url}/v1/actions?limit=500" + (f"&kind={kind}" if kind else ""), token)


def serving(demo: Demo) -> Any:
    return read_state(demo.files.state / "serving")


def retrain_after_shift(demo: Demo) -> dict[str, Any] | None:
    """The first retraining decision the controller recorded after the shift (a run started, or refused)."""
    later = [a for a in actions(demo, "retrain") if a["created_at"] >= demo.events["shift_at"][:19]]
    return min(later, key=lambda a: a["created_at"]) if later else None


def candidate(demo: Demo) -> str | None:
    """A version other than v1 serving as canary or stable."""
    state = serving(demo)
    for placement in (state.canary, state.stable):
        if placement is not None and placement.version != demo.events["v1"]:
            return placement.version
    return None


def canary_alert(demo: Demo) -> bool:
    return any(a["name"].startswith("Canary") and a["state"] == "firing" for a in demo.watcher.latest.get("alerts", []))


def closed_loop(demo: Demo) -> None:
    config = demo.config
    with demo.clock.phase("preference shift: the loop detects it") as phase:
        found = wait_until(lambda: retrain_after_shift(demo), config.detect_timeout_s, 2.0)
        demo.note("detected", found)
        if found is None:
            phase["notes"].append(f"no retraining decision within {config.detect_timeout_s:g} s of the shift")
            return
        alerts = ",".join(sorted({a.get("alertname", "?") for a in found.get("alerts", [])}))
        phase["notes"].append(
            f"retrain decided at {found['created_at']} on {alerts}: {found['outcome'] or found['phase']}"
        )
    with demo.clock.phase("retraining; the candidate deployed as canary") as phase:
        version = wait_until(lambda: candidate(demo), config.retrain_timeout_s, 2.0)
        demo.note("candidate", version)
        if version is None:
            phase["notes"].append(f"no candidate deployed within {config.retrain_timeout_s:g} s")
            return
        demo.note("candidate_deployed_at", now_iso())
        phase["notes"].append(f"candidate {version}")
    promote(demo, version)
    with demo.clock.phase("recovery: traffic on the promoted version"):
        time.sleep(config.recover_s)


def promote(demo: Demo, version: str) -> None:
    """Issue 19's stages when the controller walks them; until then: hold the canary, then promote it."""
    with demo.clock.phase("canary stages and promotion") as phase:
        wait_until(lambda: serving(demo).stable.version == version or canary_alert(demo), demo.config.canary_hold_s)
        state = serving(demo)
        if state.stable.version == version:
            demo.note("promoted", {"at": now_iso(), "by": "controller"})
            phase["notes"].append("promoted by the controller")
        elif state.canary is not None and state.canary.version == version and not canary_alert(demo):
            demo.kfloop("promote", "--config", serving_config(demo), "--operator", "kfloop-demo", timeout=120)
            demo.note("promoted", {"at": now_iso(), "by": "kfloop-demo (until issue 19's stage walk)"})
            phase["notes"].append(f"promoted by the demo after {demo.config.canary_hold_s:g} s without a canary alert")
        else:
            demo.note("promoted", None)
            phase["notes"].append("the candidate was not promoted (rolled back or alerting)")


def serving_config(demo: Demo) -> str:
    return next(p["config"] for p in demo.watcher.status()["parts"] if p["name"] == "serving")


def bad_version(demo: Demo) -> None:
    with demo.clock.phase("a bad version forced in; the controller rolls it back") as phase:
        built = subprocess.run(
            [sys.executable, "-c", BAD_MODEL, str(demo.files.registry), str(demo.files.state / "bad-model")],
            capture_output=True, text=True, cwd=demo.repo, timeout=600, check=True,
        )  # fmt: skip
        bad = built.stdout.strip().splitlines()[-1]
        demo.kfloop(
            "deploy", bad, "--canary", str(demo.config.bad_canary_percent), "--force", "--reason", BAD_REASON,
            "--config", serving_config(demo), timeout=120,
        )  # fmt: skip
        demo.note("bad", {"version": bad, "deployed_at": now_iso()})
        # its predictor starts first (TensorFlow: minutes on a busy host); the rollback is timed from its first answer
        wait_until(lambda: sum(canary_requests(demo).values()) > 0, demo.config.start_timeout_s, 0.5)
        demo.note("bad", demo.events["bad"] | {"first_answer_at": now_iso()})
        gone = wait_until(lambda: not on_canary(demo, bad), demo.config.rollback_timeout_s, 0.5)
        demo.note("bad", demo.events["bad"] | {"rolled_back_at": now_iso() if gone else None})
        time.sleep(3)  # the router's last counts of the canary
        demo.note("bad", demo.events["bad"] | {"router": canary_requests(demo)})
        phase["notes"].append(f"{bad} " + ("rolled back" if gone else "NOT rolled back"))


def on_canary(demo: Demo, version: str) -> bool:
    state = serving(demo)
    return state.canary is not None and state.canary.version == version


def canary_requests(demo: Demo) -> dict[str, float]:
    """The router's count of ranking requests it sent to a canary, by answer code."""
    import json
    import urllib.request

    endpoints = json.loads((demo.files.state / "serving" / "endpoints.json").read_text())
    with urllib.request.urlopen(f"{endpoints['router']}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kfloop_ranking_requests_total" and sample.labels.get("variant") == "canary":
                code = sample.labels.get("code", "?")
                counts[code] = counts.get(code, 0.0) + sample.value
    return counts
