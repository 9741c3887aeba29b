"""`kfloop transformer` and `python -m serving.transformer`: the one declaration of their flags (argparse only)."""

from __future__ import annotations

import argparse

from serving.common.flags import add_kserve_arguments, add_role_arguments

HELP = "look up features in front of the predictor (KServe transformer; the local stack's front door)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_role_arguments(parser, "transformer")
    parser.add_argument("--predictor-url", help="base URL of the predictor (overrides transformer.predictor_url)")
    parser.add_argument("--explainer-url", help="base URL of the explainer (overrides transformer.explainer_url)")
    add_kserve_arguments(parser)
