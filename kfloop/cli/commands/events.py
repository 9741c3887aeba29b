"""`kfloop events ...` handlers."""

from __future__ import annotations

import argparse
import json


def schema(args: argparse.Namespace) -> int:
    from kfloop.events import event_json_schema

    print(json.dumps(event_json_schema(), indent=2))
    return 0


def count(args: argparse.Namespace) -> int:
    from kfloop.cli.commands.data import log_config_from
    from kfloop.eventlog import read_events

    config = log_config_from(args.config)
    table = read_events(config.log_uri, columns=["type", "signal"])
    counts: dict[tuple[str, str], int] = {}
    for kind, signal in zip(table.column("type").to_pylist(), table.column("signal").to_pylist(), strict=True):
        counts[(kind, signal)] = counts.get((kind, signal), 0) + 1
    print(f"{'type':<12} {'signal':<9} {'events':>9}")
    for (kind, signal), n in sorted(counts.items()):
        print(f"{kind:<12} {signal:<9} {n:>9}")
    print(f"{'total':<22} {table.num_rows:>9}")
    return 0
