"""Generated files are committed and current (`make generate` rewrites them)."""

from kfloop.cli.commands.generate import stale_files


def test_generated_files_are_current():
    assert stale_files() == [], "run `make generate` and commit the result"
