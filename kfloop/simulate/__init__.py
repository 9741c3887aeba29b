"""`kfloop simulate`: synthetic users from the OBD cohorts, with a known click model, driving the running system.

Core library, HTTP only: it ranks through the transformer's V1 endpoint and sends clicks to the collector, and
keeps the ground truth (each served slate's expected clicks) in `{out_dir}/{run_id}/rankings.jsonl`.
"""

from kfloop.simulate.config import ShiftConfig, SimulateConfig
from kfloop.simulate.runner import Simulation
from kfloop.simulate.scenarios import SCENARIOS
from kfloop.simulate.truth import read_rankings
from kfloop.simulate.world import ClickWorld, Population, draw_population, slate_truth

__all__ = [
    "SCENARIOS",
    "ClickWorld",
    "Population",
    "ShiftConfig",
    "SimulateConfig",
    "Simulation",
    "draw_population",
    "read_rankings",
    "slate_truth",
]
