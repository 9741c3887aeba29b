"""Sticky arms: during an experiment a user stays in one arm, so the arms are independent cohorts.

A user's bucket is a number in [0, 100) from a hash of the experiment id and the user id; the user is in the
candidate arm while the bucket is below the candidate's share. The hash does not change within an experiment,
so a user keeps an arm however often they come back, and a user in the candidate arm at 10% is still in it at
50% (the stages of one experiment share its id). Another experiment (another id) shuffles users afresh.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Arm = Literal["control", "candidate", "shadow"]
CONTROL: Arm = "control"
CANDIDATE: Arm = "candidate"
SHADOW: Arm = "shadow"
ARM_OF_VARIANT: dict[str, Arm] = {"stable": CONTROL, "canary": CANDIDATE, "shadow": SHADOW}
"""The arm a traffic variant is in, during an experiment."""
EXPERIMENT_HEADER = "x-kfloop-experiment"
"""Set by the router during an experiment, to every predictor: its id (recorded with each decision and answer,
beside the arm its variant is in)."""
_SCALE = 100.0 / 2**64


def bucket(experiment: str, user_id: str) -> float:
    """The user's place in the experiment, uniform in [0, 100) over users (the first 8 bytes of a sha256)."""
    digest = hashlib.sha256(f"{experiment}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") * _SCALE


def arm_of(experiment: str, user_id: str, candidate_percent: float) -> Arm:
    """`candidate` for the users whose bucket is below the candidate's share, else `control`."""
    return CANDIDATE if bucket(experiment, user_id) < candidate_percent else CONTROL
