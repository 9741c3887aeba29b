"""`kfloop explainer` and `python -m serving.explainer`: the one declaration of their flags (argparse only)."""

from __future__ import annotations

import argparse

from serving.common.flags import add_kserve_arguments, add_role_arguments

HELP = "explain ranking decisions with Alibi (KServe explainer)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_role_arguments(parser, "explainer")
    parser.add_argument("--registry-uri", help="the model registry (overrides explainer.registry_uri)")
    parser.add_argument("--model-version", help="version for requests that name none (default: latest deployable)")
    add_kserve_arguments(parser)
