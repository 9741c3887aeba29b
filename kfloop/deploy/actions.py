"""deploy / promote / rollback: transitions of the serving state, checked against the model registry.

- deploy VERSION --canary P: VERSION takes P% of requests beside stable (with no stable yet, it becomes
  stable). An unknown version is an error naming the deployable ones; an undeployable (unblessed) one needs
  --force and a --reason, both recorded with the operator in the registry (`ModelRegistry.force`). Replacing a canary
  that is already running also needs --force.
- promote: the canary becomes stable (100%); the old stable is kept as `previous_stable`.
- rollback: with a canary, drop it (stable takes every request again); without one, return to the stable
  version before the last promotion. `canary_only` (what the controller asks for): drop the canary, and with no
  canary change nothing (NoCanary), so a repeated rollback is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfloop.deploy.state import (
    CanaryPlacement,
    HistoryEntry,
    Placement,
    ServingState,
    locked,
    now_iso,
    read_manifest,
    read_state,
    seed_state,
    write_state,
)
from kfloop.errors import InvalidInput, NotFound
from kfloop.registry import ModelRegistry


@dataclass(frozen=True)
class Change:
    """What an action did: the new state and one line for the operator."""

    before: ServingState
    after: ServingState
    summary: str
    cluster_patch: dict[str, Any] | None = None
    """What the InferenceService patch set, when the change went to a cluster too."""


class NoCanary(InvalidInput):
    """A canary-only rollback found no canary: nothing to do (it may have been rolled back already)."""


def load_or_seed(state_dir: Path, manifest: Path, registry: ModelRegistry) -> ServingState:
    """The current state; the first time, seeded from the manifest (and written)."""
    with locked(state_dir):
        state = read_state(state_dir)
        if state is None:
            facts = read_manifest(manifest)
            deployable = registry.deployable()
            version = facts.version if facts.version in deployable else (deployable[-1] if deployable else None)
            state = seed_state(facts, version)
            write_state(state_dir, state)
        return state


def _require_version(registry: ModelRegistry, version: str) -> None:
    if version not in registry.versions():
        deployable = registry.deployable()
        offered = ", ".join(deployable[-5:]) if deployable else "none"
        raise NotFound(f"model version {version!r} is not in the registry at {registry.uri}; deployable: {offered}")


def deploy(
    state: ServingState,
    registry: ModelRegistry,
    version: str,
    percent: int,
    *,
    force: bool = False,
    operator: str,
    reason: str = "",
) -> Change:
    if not 0 <= percent <= 100:
        raise InvalidInput(f"--canary must be a percentage 0-100, got {percent}")
    _require_version(registry, version)
    notes = []
    if not registry.status(version).deployable:
        if not force:
            state_name = registry.status(version).state.value
            raise InvalidInput(f"model version {version} is {state_name}, not deployable; --force deploys it anyway")
        if not reason.strip():  # a compliance record: who forced an unblessed model out, and why
            raise InvalidInput(f"--reason: required to deploy the unblessed version {version} with --force")
        registry.force(version, operator=operator, reason=reason.strip())
        notes.append("forced (recorded in the registry)")
    if state.stable is not None and state.stable.version == version:
        raise InvalidInput(f"model version {version} is already the stable version")
    if state.canary is not None and state.canary.version != version and not force:
        raise InvalidInput(
            f"canary {state.canary.version} is running; promote or roll it back first, or --force to replace it"
        )
    if state.canary is not None and state.canary.version != version:
        notes.append(f"replaced canary {state.canary.version}")
    at = now_iso()
    if state.stable is None:
        after = state.model_copy(update={"stable": Placement(version=version, since=at), "canary": None})
        summary = f"{version} is stable (there was no stable version), serving every request"
        percent_set = None
    else:
        after = state.model_copy(update={"canary": CanaryPlacement(version=version, since=at, percent=percent)})
        summary = f"{version} is the canary at {percent}% beside stable {state.stable.version}"
        percent_set = percent
    entry = HistoryEntry(
        at=at, action="deploy", version=version, percent=percent_set, by=operator, note="; ".join(notes)
    )
    return Change(state, after.model_copy(update={"history": [*state.history, entry]}), summary)


def stage(
    state: ServingState,
    registry: ModelRegistry,
    version: str,
    placement: dict[str, Any],
    *,
    operator: str,
    reason: str,
) -> Change:
    """VERSION as the canary in an experiment's stage: `placement` is its percent, mode (canary or shadow) and
    experiment id. Only a deployable version, beside a stable one, replacing no other canary; the same version
    moves from stage to stage."""
    _require_version(registry, version)
    if not registry.status(version).deployable:
        raise InvalidInput(f"model version {version} is {registry.status(version).state.value}, not deployable")
    if state.stable is None or state.stable.version == version:
        raise InvalidInput(f"an experiment needs a stable version other than {version} to compare with")
    if state.canary is not None and state.canary.version != version:
        raise InvalidInput(f"canary {state.canary.version} is running; it ends before {version}'s experiment starts")
    at = now_iso()
    canary = CanaryPlacement(version=version, since=at, **placement)
    entry = HistoryEntry(at=at, action="stage", version=version, percent=canary.percent, by=operator, note=reason)
    after = state.model_copy(update={"canary": canary, "history": [*state.history, entry]})
    share = "mirrored, serving nobody" if canary.mode == "shadow" else f"{canary.percent}% of users"
    summary = f"{version} is the candidate of {canary.experiment} ({share}) beside stable {state.stable.version}"
    return Change(state, after, summary)


def promote(state: ServingState, *, operator: str) -> Change:
    if state.canary is None:
        raise InvalidInput("there is no canary to promote")
    at = now_iso()
    previous = state.stable.version if state.stable else None
    after = state.model_copy(
        update={
            "stable": Placement(version=state.canary.version, since=at),
            "canary": None,
            "previous_stable": previous,
            "history": [
                *state.history,
                HistoryEntry(at=at, action="promote", version=state.canary.version, percent=100, by=operator),
            ],
        }
    )
    return Change(state, after, f"{state.canary.version} is stable (was {previous}); no canary")


def rollback(state: ServingState, *, operator: str, reason: str = "", canary_only: bool = False) -> Change:
    """`reason` is kept in the history entry's note."""
    at = now_iso()
    if state.canary is not None:
        entry = HistoryEntry(
            at=at, action="rollback", version=state.canary.version, percent=0, by=operator, note=reason.strip()
        )
        after = state.model_copy(update={"canary": None, "history": [*state.history, entry]})
        stable = state.stable.version if state.stable else "none"
        return Change(state, after, f"canary {state.canary.version} removed; stable {stable} serves every request")
    if canary_only:
        raise NoCanary("there is no canary to roll back")
    if state.previous_stable is None:
        raise InvalidInput("nothing to roll back: no canary, and no earlier stable version recorded")
    note = f"from {state.stable.version if state.stable else 'none'}"
    note += f"; {reason.strip()}" if reason.strip() else ""
    entry = HistoryEntry(at=at, action="rollback", version=state.previous_stable, by=operator, note=note)
    after = state.model_copy(
        update={
            "stable": Placement(version=state.previous_stable, since=at),
            "previous_stable": None,
            "history": [*state.history, entry],
        }
    )
    return Change(state, after, f"stable is back to {state.previous_stable}")


def apply_change(
    state_dir: Path,
    manifest: Path,
    registry: ModelRegistry,
    action: Callable[[ServingState], Change],
    before_write: Callable[[Change], None] | None = None,
) -> Change:
    """Run `action(state) -> Change` on the current state under the lock and save the result; `before_write`
    (e.g. the cluster patch) runs first, and if it fails the local state is left as it was."""
    load_or_seed(state_dir, manifest, registry)
    with locked(state_dir):
        state = read_state(state_dir)
        assert state is not None
        change = action(state)
        if before_write is not None:
            before_write(change)
        write_state(state_dir, change.after)
    return change
