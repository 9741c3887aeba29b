"""The command-line layer: the one layer allowed to import deployables (serving, monitoring, pipelines)."""

from kfloop.cli.app import main

__all__ = ["main"]
