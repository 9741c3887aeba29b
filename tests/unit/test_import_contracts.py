"""The house plan is checked by a machine: import-linter's contracts (pyproject.toml) pass on the tree as it is,
and fail once a forbidden import is added to a scratch copy, so the check can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kfloop", "serving", "monitoring", "components", "pipelines")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="lint-imports is not installed here")


def scratch_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    copy.mkdir()
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    # the scratch tree first on the path, ahead of the editable install of the real one
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


def add_import(module: Path, statement: str) -> None:
    module.write_text(module.read_text() + f"\n{statement}  # a forbidden import, added by the test\n")


def test_the_contracts_hold_on_a_copy_of_the_tree(tmp_path):
    result = lint_imports(scratch_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("kfloop/audit/record.py", "import serving.predictor.server", "The core imports no deployable"),
        ("serving/predictor/ranking.py", "import components.train.logic", "The serving side never imports"),
        ("components/train/logic.py", "import serving.common.protocol", "The pipeline side never imports"),
        ("kfloop/registry/files.py", "import kfloop.cli.app", "Inside kfloop, the CLI is on top of the core"),
        ("serving/predictor/ranking.py", "import serving.explainer.engine", "Serving roles are independent"),
        ("monitoring/controller/engine.py", "import pipelines.runner", "The controller runs the pipeline"),
        ("monitoring/controller/engine.py", "import serving.audit.app", "The controller uses the serving side's"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, statement, contract):
    tree = scratch_copy(tmp_path)
    add_import(tree / module, statement)
    result = lint_imports(tree)
    assert result.returncode != 0
    broken = result.stdout[result.stdout.index("Broken contracts") :]
    assert contract in broken, result.stdout
