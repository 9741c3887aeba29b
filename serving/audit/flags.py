"""`kfloop audit sink` and `python -m serving.audit`: the one declaration of their flags (argparse only)."""

from __future__ import annotations

import argparse

HELP = "run the audit sink (decision records and KServe payload CloudEvents into the hash-chained store)"


def add_store_url(parser: argparse.ArgumentParser) -> None:
    """The audit store's URL: the sink's, and `kfloop audit pull | verify | explain`'s."""
    parser.add_argument(
        "--store-url",
        help="sqlite:///path.db or postgresql://user@host:port/db (overrides store.url; default "
        "$KFLOOP_AUDIT_STORE_URL, where a URL with a password belongs: a command line is visible in ps)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="the audit sink's YAML (defaults apply where omitted)")
    parser.add_argument("--host", help="bind address (overrides the config)")
    parser.add_argument("--port", type=int, help="port (overrides the config)")
    add_store_url(parser)
