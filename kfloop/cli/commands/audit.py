"""`kfloop audit pull | verify | explain` handlers (`audit sink` is the sink's own: serving/audit)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from pydantic import Field

from kfloop.audit.config import AuditStoreConfig, store_url_given
from kfloop.config import StrictModel, load_config
from kfloop.errors import ConfigError, InvalidInput, KfloopError


class AuditClientConfig(StrictModel):
    """A command-line tool reading (and, for explanations, appending to) the audit store."""

    store: AuditStoreConfig = Field(default_factory=AuditStoreConfig)
    """The audit store (same section as the sink's config)."""
    explainer: str | None = "serving.explainer.audit:explainer"
    """`module:factory` building the explainer for `kfloop audit explain` (called with no arguments, or with the
    `serving_config` and `registry_uri` keywords when `--serving-config` or `--registry` is given); the default is
    the serving stack's Alibi explainer, run in the serving environment."""


def _config(args: argparse.Namespace) -> AuditClientConfig:
    store_url = store_url_given(getattr(args, "store_url", None), os.environ)
    overrides = {"store.url": store_url, "explainer": getattr(args, "explainer", None)}
    return load_config(AuditClientConfig, getattr(args, "config", None), overrides)


def parse_when(text: str | None, name: str) -> datetime | None:
    """RFC 3339 with a timezone, or a date (midnight UTC)."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--{name} {text!r} is not a date or an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"--{name} {text!r} needs a timezone (Z or +hh:mm)")
    return parsed.astimezone(UTC)


def _fail(exc: KfloopError) -> int:
    print(f"kfloop audit: {exc.message}", file=sys.stderr)
    return 2


def pull(args: argparse.Namespace) -> int:
    """Export records (ts in [since, until), optionally one model version / user / kinds) with chain hashes,
    and the item contexts their decisions refer to."""
    from kfloop.audit.contexts import rows_with_contexts
    from kfloop.audit.export import write_export
    from kfloop.audit.store import RowQuery, open_store

    try:
        config = _config(args)
        query = RowQuery(
            since=parse_when(args.since, "since"),
            until=parse_when(args.until, "until"),
            model_version=args.model_version,
            user_id=args.user,
            kinds=tuple(args.kind or ()),
        )
        output = None if args.output in (None, "-") else Path(args.output)
        store = open_store(config.store)
        try:
            summary = write_export(rows_with_contexts(store, query), output or sys.stdout, args.format)
        finally:
            store.close()
    except KfloopError as exc:
        return _fail(exc)
    where = str(output) if output else "stdout"
    print(
        f"exported {summary.rows} records (seq {summary.first_seq}..{summary.last_seq}) as {args.format} "
        f"to {where}"
        + (f"; {summary.gaps} seq jumps (filtered out): verify it with --allow-gaps" if summary.gaps else ""),
        file=sys.stderr,
    )
    return 0


def verify(args: argparse.Namespace) -> int:
    """Verify the store's whole chain, or an export file; print a JSON report; exit 1 if a record fails."""
    from kfloop.audit.store import open_store
    from kfloop.audit.verify import verify_file, verify_store

    try:
        if args.file:
            report = verify_file(Path(args.file), fmt=args.format, allow_gaps=args.allow_gaps)
        else:
            store = open_store(_config(args).store)
            try:
                report = verify_store(store)
            finally:
                store.close()
    except KfloopError as exc:
        return _fail(exc)
    except FileNotFoundError as exc:
        print(f"kfloop audit: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2))
    print(report.summary(), file=sys.stderr)
    return 0 if report.ok else 1


def explain(args: argparse.Namespace) -> int:
    """Explain a past decision from its stored inputs and model version; store and print the explanation."""
    from kfloop.audit.explain import explain_decision
    from kfloop.audit.store import open_store

    try:
        config = _config(args)
        given = {
            "serving_config": getattr(args, "serving_config", None),
            "registry_uri": getattr(args, "registry", None),
        }
        explainer = load_explainer(config.explainer, **{k: v for k, v in given.items() if v is not None})
        store = open_store(config.store)
        try:
            explanation, appended = explain_decision(store, args.request_id, explainer)
        finally:
            store.close()
    except KfloopError as exc:
        return _fail(exc)
    print(json.dumps({"seq": appended.seq, "status": appended.status, **explanation.model_dump(mode="json")}))
    return 0


def load_explainer(spec: str | None, **options: Any) -> Any:
    if not spec:
        raise ConfigError("no explainer configured: set `explainer: module:factory` in the config or --explainer")
    module_name, _, factory_name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"explainer {spec!r} cannot be loaded: {exc}") from None
    if options and not _takes(factory, options):
        raise ConfigError(f"explainer {spec!r} does not take {sorted(options)} (a factory of no arguments)")
    return factory(**options)


def _takes(factory: Any, options: dict[str, Any]) -> bool:
    import inspect

    try:
        inspect.signature(factory).bind(**options)
    except TypeError:
        return False
    return True
