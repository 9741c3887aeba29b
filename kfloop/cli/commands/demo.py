"""`kfloop demo`: the whole feedback loop on one machine, then its report (kfloop/cli/demo/).

Arguments (wired in kfloop/cli/app.py): --config FILE (a DemoConfig YAML), --fast (small sizes and short windows,
for tests), --report-dir DIR, --state-dir DIR, --report-only (rebuild the report from a recorded run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kfloop.errors import KfloopError

REPO = Path(__file__).resolve().parents[3]


def demo(args: argparse.Namespace) -> int:
    from kfloop.cli.demo.flow import Demo
    from kfloop.cli.demo.report import write_report
    from kfloop.cli.demo.settings import FAST, DemoConfig
    from kfloop.config import load_config

    overrides = (FAST if args.fast else {}) | {"report_dir": args.report_dir, "state_dir": args.state_dir}
    began = time.monotonic()
    try:
        config = load_config(DemoConfig, args.config, overrides)
        run_dir = config.report_dir.resolve() / "run"
        if not args.report_only:
            Demo(config, REPO).run()
        report = write_report(run_dir, config.report_dir.resolve())
    except KfloopError as exc:
        print(f"kfloop demo: {exc.message}", file=sys.stderr)
        return 1
    print(f"kfloop demo: done in {time.monotonic() - began:.0f} s; the report: {report}")
    return 0
