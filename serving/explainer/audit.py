"""The explainer for `kfloop audit explain REQUEST_ID` (config `explainer: serving.explainer.audit:explainer`).

The audit command calls the factory with the options it was given (`--serving-config`, `--registry`), else with
none; the serving config comes from `serving_config`, else $KFLOOP_SERVING_CONFIG, else
manifests/serving/serving.yaml (run from the repository), else the defaults; `registry_uri` overrides its
`explainer.registry_uri` (a system run with its own state directory, e.g. `kfloop demo`'s). The explanation is computed
in-process from the decision's stored inputs with the version that made it (so it needs the serving
environment: TensorFlow and Alibi).
"""

from __future__ import annotations

import os
from pathlib import Path

from kfloop.config import load_section
from serving.explainer.config import ExplainerConfig
from serving.explainer.engine import ExplanationEngine

CONFIG_ENV = "KFLOOP_SERVING_CONFIG"
DEFAULT_CONFIG = Path("manifests/serving/serving.yaml")


def explainer(serving_config: Path | None = None, registry_uri: str | None = None) -> ExplanationEngine:
    configured = serving_config or os.environ.get(CONFIG_ENV)
    path = Path(configured) if configured else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    return ExplanationEngine(load_section(ExplainerConfig, path, "explainer", {"registry_uri": registry_uri}))
