"""The model registry: one folder per version under a local path or an object store URI.

    {uri}/{version}/model/            SavedModel with the tf.Transform graph inside (what serving loads)
    {uri}/{version}/explainer/        numeric post-transform sub-model (what an explainer differentiates)
                                      (both as kfloop.model_contract describes them)
    {uri}/{version}/...               other files the pipeline keeps (baseline histograms, reports)
    {uri}/{version}/status.json       state (blessed | unblessed | forced) and its history
    {uri}/{version}/model_card.json   written last: a version exists once its card does
    {uri}/index.json                  summary of every version, rebuilt after each change (the folders rule)

Every version the pipeline trains is registered; only blessed or operator-forced ones are deployable.
Registering the same inputs twice (same fingerprint) returns the existing version.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kfloop.errors import InvalidInput, NotFound
from kfloop.model_contract import EXPLAINER_DIR, MODEL_DIR
from kfloop.registry.card import Blessing, ModelCard, State, StatusChange, VersionStatus
from kfloop.registry.files import Location
from kfloop.registry.versions import fingerprint, is_version_id, version_id

CARD = "model_card.json"
STATUS = "status.json"
INDEX = "index.json"
PIPELINE = "pipeline"


@dataclass(frozen=True)
class Registered:
    """What `register` did."""

    version: str
    created: bool
    status: VersionStatus


@dataclass(frozen=True)
class Candidate:
    """A trained model and what its card says, before it has a version id."""

    data_version: str
    schema_version: str
    code_version: str
    parameters: dict[str, Any]
    blessing: Blessing
    data: dict[str, Any]
    metrics: dict[str, Any]
    ope: dict[str, Any]
    pipeline_run: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(
            data_version=self.data_version,
            schema_version=self.schema_version,
            code_version=self.code_version,
            parameters=self.parameters,
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ModelRegistry:
    """Read and write the versions under one registry location."""

    def __init__(self, uri: str | Path) -> None:
        self.location = Location(str(uri))

    @property
    def uri(self) -> str:
        return self.location.uri

    def versions(self) -> list[str]:
        """Every registered version id, oldest first."""
        return [v for v in self.location.subdirectories() if is_version_id(v) and self.location.exists(v, CARD)]

    def card(self, version: str) -> ModelCard:
        self._require(version)
        return ModelCard.model_validate(self.location.read_json(version, CARD))

    def status(self, version: str) -> VersionStatus:
        self._require(version)
        if not self.location.exists(version, STATUS):
            return VersionStatus(state=State.UNBLESSED, history=[])
        return VersionStatus.model_validate(self.location.read_json(version, STATUS))

    def artifact_uri(self, version: str, name: str = MODEL_DIR) -> str:
        """Where a file of a version lives (`model` is the SavedModel serving loads)."""
        self._require(version)
        return self.location.uri_of(version, name)

    def local_copy(self, version: str, name: str, directory: Path) -> Path:
        """A local path of a version's file: itself for a local registry, else a copy under `directory`."""
        self._require(version)
        if self.location.local:
            return Path(self.location.path(version, name))
        return self.location.copy_out(Path(directory) / version / name, version, name)

    def deployable(self) -> list[str]:
        """Versions offered for deployment (blessed, or forced by an operator), oldest first."""
        return [v for v in self.versions() if self.status(v).deployable]

    def latest_deployable(self) -> str | None:
        deployable = self.deployable()
        return deployable[-1] if deployable else None

    def find(self, fingerprint_hex: str) -> str | None:
        """The version registered with this fingerprint, if any."""
        for version in reversed(self.versions()):
            if version.endswith(fingerprint_hex[:8]) and self.card(version).fingerprint == fingerprint_hex:
                return version
        return None

    def register(
        self,
        candidate: Candidate,
        *,
        model_dir: Path,
        explainer_dir: Path | None = None,
        files: dict[str, Path] | None = None,
        created_at: datetime | None = None,
    ) -> Registered:
        """Add a version (or return the one with the same fingerprint); its state follows the blessing."""
        existing = self.find(candidate.fingerprint)
        if existing is not None:
            return Registered(existing, False, self.status(existing))
        moment = created_at or _now()
        version = version_id(moment, candidate.fingerprint)
        artifacts = {MODEL_DIR: MODEL_DIR} | ({EXPLAINER_DIR: EXPLAINER_DIR} if explainer_dir else {})
        artifacts |= {name: name for name in (files or {})}
        card = ModelCard(
            version=version,
            created_at=_iso(moment),
            fingerprint=candidate.fingerprint,
            data_version=candidate.data_version,
            data=candidate.data,
            schema_version=candidate.schema_version,
            code_version=candidate.code_version,
            parameters=candidate.parameters,
            metrics=candidate.metrics,
            ope=candidate.ope,
            blessing=candidate.blessing,
            artifacts=artifacts,
            pipeline_run=candidate.pipeline_run,
        )
        state = State.BLESSED if candidate.blessing.blessed else State.UNBLESSED
        reason = "; ".join(candidate.blessing.reasons) or ("blessed" if candidate.blessing.blessed else "not blessed")
        status = VersionStatus(
            state=state, history=[StatusChange(at=card.created_at, state=state, by=PIPELINE, reason=reason)]
        )
        sources = {MODEL_DIR: model_dir} | ({EXPLAINER_DIR: explainer_dir} if explainer_dir else {}) | (files or {})
        self._write_version(version, card, status, sources)
        self._write_index()
        return Registered(version, True, status)

    def force(self, version: str, *, operator: str, reason: str) -> VersionStatus:
        """Offer an unblessed version for deployment because an operator says so; recorded in its history."""
        if not operator.strip() or not reason.strip():
            raise InvalidInput("forcing a version needs the operator's name and a reason")
        status = self.status(version)
        if status.deployable:
            return status
        change = StatusChange(at=_iso(_now()), state=State.FORCED, by=operator.strip(), reason=reason.strip())
        status = VersionStatus(state=State.FORCED, history=[*status.history, change])
        self.location.write_json(status.model_dump(mode="json"), version, STATUS)
        self._write_index()
        return status

    def index(self) -> list[dict[str, Any]]:
        """One summary row per version, oldest first."""
        rows = []
        for version in self.versions():
            card, status = self.card(version), self.status(version)
            rows.append(
                {
                    "version": version,
                    "created_at": card.created_at,
                    "state": status.state.value,
                    "deployable": status.deployable,
                    "low_evidence": card.blessing.low_evidence,
                    "data_version": card.data_version,
                    "code_version": card.code_version,
                }
            )
        return rows

    def record_rejection(self, data_version: str, report: str) -> str:
        """Keep the report of a span that failed validation under `rejected/` (never a version); its URI."""
        name = f"rejected/{data_version[:16]}/anomalies.md"
        self.location.write_bytes(report.encode(), name)
        return self.location.uri_of(name)

    def _require(self, version: str) -> None:
        if not is_version_id(version) or not self.location.exists(version, CARD):
            raise NotFound(f"no version {version!r} in the registry at {self.uri}")

    def _write_version(self, version: str, card: ModelCard, status: VersionStatus, sources: dict[str, Path]) -> None:
        # Locally: build under a dot-name readers skip, then rename. Object stores: the card goes last.
        folder = f".staging-{uuid.uuid4().hex}" if self.location.local else version
        for name, source in sources.items():
            self.location.copy_in(source, folder, name)
        self.location.write_json(status.model_dump(mode="json"), folder, STATUS)
        self.location.write_json(card.model_dump(mode="json"), folder, CARD)
        if self.location.local:
            self.location.move(folder, version)

    def _write_index(self) -> None:
        self.location.write_json({"versions": self.index()}, INDEX)
