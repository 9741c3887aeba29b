"""The loop's phases after the shift: detection, retraining, the candidate's experiment and promotion, recovery;
then a deliberately bad version forced in, which the controller must roll back.

The controller does every step by itself: it retrains on the shift's alerts, hands a blessed result to an
experiment and walks its stages (shadow, canary stages each gated by a sequential test, then 100%). The demo only
waits for each step, with a limit, and records what it saw; it changes nothing but the forced bad version.
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
from kfloop.contract_model import ContractSpec, register
from kfloop.registry import ModelRegistry
spec = ContractSpec(seed=13, fail_above_candidates=2)
print(register(ModelRegistry(sys.argv[1]), Path(sys.argv[2]), spec, blessed=False))
"""
"""The bad version: a model with the trainer's export contract that loads and passes the predictor's warm-up but
fails every ranking of the whole candidate set (kfloop.contract_model's broken version; its own process, since it
imports TensorFlow)."""


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
    with demo.clock.phase("retraining; the blessed candidate enters its experiment") as phase:
        version = wait_until(lambda: candidate(demo), config.retrain_timeout_s, 2.0)
        demo.note("candidate", version)
        if version is None:
            phase["notes"].append(f"no candidate deployed within {config.retrain_timeout_s:g} s")
            return
        demo.note("candidate_deployed_at", now_iso())
        phase["notes"].append(f"candidate {version}")
    if not walked(demo, version):
        return
    with demo.clock.phase("recovery: traffic on the promoted version"):
        time.sleep(config.recover_s)


def walked(demo: Demo, version: str) -> bool:
    """Waits while the controller walks the candidate's stages; True once it promoted it to stable."""
    with demo.clock.phase("experiment stages and promotion, by the controller") as phase:
        stages: list[str] = []

        def ended() -> str | None:
            state = serving(demo)
            if state.canary is not None and state.canary.version == version:
                stage = f"{state.canary.mode} {state.canary.percent}%"
                if not stages or stages[-1] != stage:
                    stages.append(stage)
                return None
            return "promoted" if state.stable is not None and state.stable.version == version else "removed"

        outcome = wait_until(ended, demo.config.promote_timeout_s, 1.0)
        demo.note("stages_seen", stages)
        promoted = outcome == "promoted"
        demo.note("promoted", {"at": now_iso(), "by": "controller"} if promoted else None)
        phase["notes"].append(f"stages seen: {', '.join(stages) or 'none'}")
        phase["notes"].append(
            {"promoted": "promoted by the controller", "removed": "rolled back by the controller"}.get(
                outcome or "", f"still in its experiment after {demo.config.promote_timeout_s:g} s"
            )
        )
        return promoted


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
        wait_until(lambda: sum(canary_requests(demo, bad).values()) > 0, demo.config.start_timeout_s, 0.5)
        demo.note("bad", demo.events["bad"] | {"first_answer_at": now_iso()})
        gone = wait_until(lambda: not on_canary(demo, bad), demo.config.rollback_timeout_s, 0.5)
        demo.note("bad", demo.events["bad"] | {"rolled_back_at": now_iso() if gone else None})
        time.sleep(3)  # the router's last counts of the canary
        demo.note("bad", demo.events["bad"] | {"router": canary_requests(demo, bad)})
        phase["notes"].append(f"{bad} " + ("rolled back" if gone else "NOT rolled back"))


def on_canary(demo: Demo, version: str) -> bool:
    state = serving(demo)
    return state.canary is not None and state.canary.version == version


def canary_requests(demo: Demo, version: str) -> dict[str, float]:
    """The router's count of ranking requests it sent to `version` as the canary, by answer code (the counter
    is the router's since it started: the candidate's canary stages are in it too, under their own version)."""
    import json
    import urllib.request

    endpoints = json.loads((demo.files.state / "serving" / "endpoints.json").read_text())
    with urllib.request.urlopen(f"{endpoints['router']}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "kfloop_ranking_requests_total"
                and labels.get("variant") == "canary"
                and (labels.get("model_version") == version)
            ):
                code = labels.get("code", "?")
                counts[code] = counts.get(code, 0.0) + sample.value
    return counts
