"""The entry point every model-serving role shares, once `kfloop ROLE` or `python -m serving.ROLE` parsed its
flags: load the role's section of the serving config once, check what the role needs, serve; a config problem
is one line on stderr and exit code 2 (a supervisor or kubelet shows it)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from kfloop.config import load_section
from kfloop.errors import KfloopError
from serving.common.flags import hand_kserve_its_flags

Overrides = Callable[[argparse.Namespace], dict[str, Any]]
Prepare = Callable[[Any, argparse.Namespace], Callable[[], None]]


def run_role(
    role: str,
    args: argparse.Namespace,
    config_type: type,
    section: str,
    overrides: Overrides,
    prepare: Prepare,
) -> int:
    """`config_type` is the role's own section (`section` in the serving YAML); `prepare(config, args)`
    checks what the role needs (raising a KfloopError) and returns what serves."""
    hand_kserve_its_flags(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_section(config_type, args.config, section, overrides(args))
        serve = prepare(config, args)
    except KfloopError as exc:
        print(f"{role}: {exc.message}", file=sys.stderr)
        return 2
    serve()
    return 0
