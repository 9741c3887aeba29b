"""`kfloop pipeline compile | run --local | submit | propose-schema` handlers (pipeline environment).

Arguments (wired in kfloop/cli/app.py; every subcommand also takes --config FILE):
    compile:        --output PATH (default: training.yaml)
    run:            --local (required: the only runner here), --registry URI, --force, --operator NAME,
                    --reason TEXT, --timings-dir DIR
    submit:         --host URL (required), --schedule CRON (5 or 6 fields), --experiment NAME (default kfloop)
    propose-schema: --output PATH (default: pipelines/schema/schema.proposed.pbtxt)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _config(args: argparse.Namespace) -> Any:
    from kfloop.config import load_config
    from pipelines.config import PipelineConfig

    return load_config(PipelineConfig, args.config, overrides={"registry.uri": getattr(args, "registry", None)})


def compile_command(args: argparse.Namespace) -> int:
    from pipelines.runner import compile_pipeline

    path = compile_pipeline(_config(args), Path(args.output))
    print(f"wrote {path}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from pipelines.runner import run_local

    if not args.local:
        print(
            "kfloop pipeline run: only --local is supported here; use `kfloop pipeline submit` for a cluster",
            file=sys.stderr,
        )
        return 2
    result = run_local(
        _config(args),
        force=args.force,
        operator=args.operator or "",
        force_reason=args.reason or "",
        timings_dir=args.timings_dir or "",
    )
    print(json.dumps(result.pushed, indent=2))
    return 0


def submit_command(args: argparse.Namespace) -> int:
    from pipelines.runner import submit

    submitted = submit(_config(args), host=args.host, schedule=args.schedule, experiment=args.experiment)
    print(json.dumps(submitted.__dict__, indent=2))
    return 0


def propose_schema_command(args: argparse.Namespace) -> int:
    from pipelines.schema_proposal import propose

    proposal, diff = propose(_config(args), Path(args.output))
    print(diff or "no change: the data matches the committed schema's inference")
    print(f"wrote {proposal} for review; the committed schema is unchanged", file=sys.stderr)
    return 0
