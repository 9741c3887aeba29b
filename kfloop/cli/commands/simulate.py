"""`kfloop simulate`: drive the running system with synthetic OBD users (see kfloop/simulate/).

Arguments (wired in kfloop/cli/app.py): --config FILE (a YAML SimulateConfig), and flags that override it:
    --transformer-url, --collector-url, --rate, --duration, --requests, --max-in-flight, --seed, --world-seed,
    --run-id, --users, --logit-shift, --interaction-scale, --scenario, --shift-at, --shift-share, --shift-kind,
    --consent/--no-consent, --dwell, --data-dir, --out-dir, --quiet
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from kfloop.errors import KfloopError

_OVERRIDES = {
    "transformer_url": "transformer_url",
    "collector_url": "collector_url",
    "rate": "rate",
    "duration_s": "duration",
    "requests": "requests",
    "max_in_flight": "max_in_flight",
    "seed": "seed",
    "world_seed": "world_seed",
    "run_id": "run_id",
    "users": "users",
    "logit_shift": "logit_shift",
    "interaction_scale": "interaction_scale",
    "scenario": "scenario",
    "shift.at_s": "shift_at",
    "shift.share": "shift_share",
    "shift.kind": "shift_kind",
    "consent": "consent",
    "dwell": "dwell",
    "data_dir": "data_dir",
    "out_dir": "out_dir",
}


def simulate(args: argparse.Namespace) -> int:
    from kfloop.config import load_config
    from kfloop.simulate import ClickWorld, SimulateConfig, Simulation

    try:
        overrides = {key: getattr(args, name) for key, name in _OVERRIDES.items()}
        overrides["progress"] = False if args.quiet else None
        config = load_config(SimulateConfig, args.config, overrides)
        world = ClickWorld.from_obd(
            config.data_dir,
            logit_shift=config.logit_shift,
            interaction_scale=config.interaction_scale,
            world_seed=config.world_seed,
        )
        simulation = Simulation(config, world)
    except KfloopError as exc:
        print(f"kfloop simulate: {exc.message}", file=sys.stderr)
        return 2
    _announce(simulation.describe())
    _stop_on_signals()
    summary = simulation.run()
    print(json.dumps({"run_id": simulation.run_id, "output": str(simulation.run_dir), **summary}, indent=2))
    return 0 if summary["answered"] else 1


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM end the run early, with its summary written: also when the process was started with
    SIGINT ignored (a background job of a shell), which Python would otherwise keep."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _announce(description: dict) -> None:
    world, config = description["world"], description["config"]
    print(
        f"kfloop simulate: run {description['run_id']} -> {description['output']}\n"
        f"  {description['requests']} rankings at {config['rate']:g}/s, {world['users']} users from "
        f"{world['cohorts']} OBD cohorts; {description['scenario']}\n"
        f"  base rate: logit_shift {world['logit_shift']:+g}: CTR per slot {100 * world['uniform_ctr']:.2f}% for a "
        f"random slate, {100 * world['best_ctr']:.2f}% for each cohort's best items\n"
        f"  rankings to {config['transformer_url']}, feedback to {config['collector_url']}",
        file=sys.stderr,
        flush=True,
    )
