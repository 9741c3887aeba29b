"""`kfloop serve` and `python -m serving.local.stack`: the one declaration of their flags (argparse only).
`kfloop deploy | promote | rollback | serving status` read the same state with `add_state_arguments`."""

from __future__ import annotations

import argparse

HELP = "run the local serving stack (transformer, predictors, explainer, router, audit sink)"


def add_state_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the local serving state is: the serving YAML, its state directory, the registry."""
    parser.add_argument("--config", help="the serving YAML (default: manifests/serving/serving.yaml)")
    parser.add_argument("--state-dir", help="local serving state directory (overrides stack.state_dir)")
    parser.add_argument("--registry-uri", help="the model registry (overrides predictor and explainer registry_uri)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_state_arguments(parser)
    parser.add_argument("--host", help="address the router and audit sink bind (overrides stack.host)")
    parser.add_argument(
        "--port", type=int, help="the front door's (transformer's) port (overrides stack.transformer_port)"
    )
    parser.add_argument(
        "--predictor-replicas", type=int, help="predictor processes per version (overrides stack.predictor_replicas)"
    )
