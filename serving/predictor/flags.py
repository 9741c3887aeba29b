"""`kfloop predictor` and `python -m serving.predictor`: the one declaration of their flags (argparse only)."""

from __future__ import annotations

import argparse

from serving.common.flags import add_kserve_arguments, add_role_arguments

HELP = "serve one ranker version (KServe predictor)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_role_arguments(parser, "predictor")
    parser.add_argument("--model-version", help="version to serve (default: the latest deployable)")
    parser.add_argument("--model-dir", help="a registry version folder on disk (the storage initializer's /mnt/models)")
    parser.add_argument("--registry-uri", help="the model registry (overrides predictor.registry_uri)")
    parser.add_argument("--variant", help="variant reported when the router names none (default: stable)")
    parser.add_argument("--seed", type=int, help="seed of the exploration policy (tests)")
    parser.add_argument("--spool-dir", help="root of the audit spool (the process uses {root}/{version})")
    add_kserve_arguments(parser)
