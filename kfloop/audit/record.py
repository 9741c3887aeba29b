"""What the audit trail records: ranking decisions, their explanations, KServe's logged payloads, and what the
controller did about alerts.

Records are validated strictly (unknown fields are errors) and frozen. Each has a `record_id`, derived from
its content, that the store deduplicates on: a resend after a crash adds nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    model_serializer,
    model_validator,
)

from kfloop.audit.canonical import canonical_json, rfc3339
from kfloop.audit.json_values import PARSED_JSON as _PARSED_JSON
from kfloop.audit.json_values import json_object as _json_object
from kfloop.audit.json_values import json_value as _json_value
from kfloop.events.schema import Consent, Identifier, PseudonymousId, Timestamp

DECISION = "decision"
EXPLANATION = "explanation"
KSERVE_REQUEST = "kserve_request"
KSERVE_RESPONSE = "kserve_response"
ITEM_CONTEXT = "item_context"
CONTROLLER_ACTION = "controller_action"
SHADOW = "shadow"
"""The variant of a shadow's decisions (mirrored requests, never served)."""
RECORD_TAGS = frozenset({DECISION, EXPLANATION, KSERVE_REQUEST, KSERVE_RESPONSE, ITEM_CONTEXT, CONTROLLER_ACTION})
CONTEXT_REF = "item_context"
"""The key, in a decision's inputs, of the item context's id the inputs leave out (see ItemContext)."""
GREEDY = "greedy"
EXPLORATION = "exploration"
SlotDraw = Literal["greedy", "exploration"]
"""How the policy filled a slot: greedy when its draw took the best remaining item by score (see
kfloop.ope.policies.greedy_slots), exploration otherwise."""
CONTEXT_FIELDS = ("candidates", "items")
"""The inputs an item context holds: the candidates and their per-candidate columns (the catalog's item
features, the same for every request until the catalog changes)."""


UtcTimestamp = Annotated[Timestamp, PlainSerializer(rfc3339, return_type=str)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _AuditModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Candidate(_AuditModel):
    """One item the decision returned."""

    item_id: Identifier
    """The item."""
    position: int = Field(ge=1, le=1000)
    """1-based slot it was shown in."""
    score: float = Field(allow_inf_nan=False)
    """The model's score for it."""
    propensity: float | None = Field(default=None, gt=0.0, le=1.0)
    """Probability that the policy put this item at this position (off-policy evaluation needs it)."""
    rank: int | None = Field(default=None, ge=1)
    """Its place among all the decision's candidates by score, 1 = best (ties to the earlier candidate), as
    the policy ordered them; None in records made before it was recorded."""
    draw: SlotDraw | None = None
    """How the policy filled this slot: greedy (the best remaining item by score) or exploration; None in
    records made before it was recorded (explanations then infer it from recomputed scores, and say so)."""


class PolicyInfo(_AuditModel):
    """The policy that turned scores into the shown slate."""

    name: Identifier
    """Policy name, e.g. epsilon_greedy."""
    epsilon: float | None = Field(default=None, ge=0.0, le=1.0)
    """Exploration rate, where the policy has one."""


class Decision(_AuditModel):
    """One ranking decision, as the predictor made it."""

    kind: Literal["decision"] = DECISION
    """Record kind."""
    request_id: Identifier
    """The decision's id (returned to the caller; feedback events refer to it)."""
    ts: UtcTimestamp
    """When the decision was made, RFC 3339 with a timezone; stored in UTC."""
    model_version: Identifier
    """Model version that scored the candidates."""
    variant: Identifier
    """Traffic variant that served it (e.g. stable, canary)."""
    user_id: PseudonymousId | None = None
    """Pseudonymous user id, never an email or other direct identifier."""
    inputs: JsonObject
    """The feature values the model was given, exactly (an explanation is recomputed from them)."""
    candidates: list[Candidate] = Field(max_length=1000)
    """The items returned, with positions, scores and propensities."""
    policy: PolicyInfo
    """The logging policy."""
    consent: Consent | None = None
    """The user's consent as the ranking request gave it (or the serving config's default): without
    personalization, the user's features were not read and the slate is not logged as impressions for training.
    Absent from decisions recorded before consent was (their records and hashes stay as they were)."""
    experiment: Identifier | None = None
    """The experiment the decision was made in (the router names it while one runs); absent outside one."""
    arm: Literal["control", "candidate", "shadow"] | None = None
    """Its arm in that experiment: control (stable), candidate (canary), or shadow (mirrored, never served)."""
    slot_probabilities: dict[Identifier, list[Probability]] | None = Field(default=None, max_length=1000)
    """A shadow's decision only: its policy's probability of each candidate at each slot (item -> [P(slot 1),
    ...]), so production's served slots of the same request are weighed exactly (kfloop.experiments.shadow)."""

    @model_serializer(mode="wrap")
    def _without_unknown_consent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        # absent, not null: older records keep their hashes
        for optional in ("consent", "experiment", "arm", "slot_probabilities"):
            if data.get(optional, True) is None:
                del data[optional]
        return data

    @model_validator(mode="after")
    def _slate_is_consistent(self) -> Self:
        positions = [c.position for c in self.candidates]
        if len(set(positions)) != len(positions):
            raise ValueError("candidates: two candidates share a position")
        items = [c.item_id for c in self.candidates]
        if len(set(items)) != len(items):
            raise ValueError("candidates: an item appears twice")
        ranks = [c.rank for c in self.candidates if c.rank is not None]
        if len(set(ranks)) != len(ranks):
            raise ValueError("candidates: two candidates share a rank")
        for c in self.candidates:
            # before slot p only p - 1 items are taken, so the best remaining one ranks p or better
            if c.draw == GREEDY and c.rank is not None and c.rank > c.position:
                raise ValueError(
                    f"candidates: item {c.item_id} is a greedy draw at position {c.position} with rank {c.rank}; "
                    "a greedy draw takes the best remaining item, ranked at most its position"
                )
        return self


class Explanation(_AuditModel):
    """Why a decision came out as it did, computed from the decision's stored inputs and model version."""

    kind: Literal["explanation"] = EXPLANATION
    """Record kind."""
    explanation_id: Identifier = Field(default_factory=lambda: uuid.uuid4().hex)
    """This explanation's own id (one decision may be explained more than once)."""
    request_id: Identifier
    """The decision explained."""
    ts: UtcTimestamp
    """When the explanation was computed."""
    model_version: Identifier
    """Model version explained (the decision's)."""
    variant: Identifier | None = None
    """The decision's variant."""
    user_id: PseudonymousId | None = None
    """The decision's user (so a pull for one user includes explanations of their decisions)."""
    trigger: Literal["sampled", "on_demand"]
    """Computed for a background sample, or asked for later."""
    explainer: Identifier
    """Which explainer (method and version) produced it."""
    decision_hash: Sha256Hex | None = None
    """Chain hash of the stored decision it was computed from, when it was computed from the store."""
    explanation: JsonObject
    """The explainer's output."""


class KServeMessage(_AuditModel):
    """A request or response logged by KServe's payload logger (one CloudEvent)."""

    kind: Literal["kserve_request", "kserve_response"]
    """Which half of the exchange (ce-type ...inference.request or ...inference.response)."""
    request_id: Identifier
    """The CloudEvent id: KServe's request id (the request's Ce-Id header, else a generated UUID)."""
    ts: UtcTimestamp
    """ce-time, else when the sink received it."""
    source: str = Field(min_length=1, max_length=2048)
    """ce-source."""
    inference_service: Identifier | None = None
    """ce-inferenceservicename."""
    namespace: Identifier | None = None
    """ce-namespace."""
    component: Identifier | None = None
    """ce-component (predictor, transformer, ...)."""
    endpoint: Identifier | None = None
    """ce-endpoint (default or canary): the traffic variant."""
    model_version: Identifier | None = None
    """Model version, where the payload or metadata names it."""
    metadata: JsonValue = None
    """ce-metadata: request headers KServe was configured to log."""
    content_type: str | None = Field(default=None, max_length=256)
    """Content-Type of the payload."""
    body: JsonValue = None
    """The payload, when it is JSON."""
    body_base64: str | None = None
    """The payload, base64, when it is not JSON."""

    @model_validator(mode="after")
    def _one_body(self) -> Self:
        if self.body is not None and self.body_base64 is not None:
            raise ValueError("body and body_base64 are exclusive")
        _json_value(self.body, "body")
        return self


class ItemContext(_AuditModel):
    """Inputs many decisions share, stored once and referred to by their digest.

    A decision's candidates and their item features are the same for every request until the catalog
    changes: ~85% of a decision record. The predictor records them once as an item context and each decision
    names it in `inputs["item_context"]` instead; the store, an export and `audit explain` put them back."""

    kind: Literal["item_context"] = ITEM_CONTEXT
    """Record kind."""
    context_id: Sha256Hex
    """sha256 of the content's canonical JSON: the same content always has the same id."""
    ts: UtcTimestamp
    """When it was first recorded (a later copy with another time is a duplicate of the one stored)."""
    content: JsonObject
    """The inputs it holds: `candidates` and `items`, as a decision's inputs would hold them."""

    @model_validator(mode="after")
    def _id_is_the_digest(self) -> Self:
        if set(self.content) != set(CONTEXT_FIELDS):
            raise ValueError(f"content: an item context holds exactly {', '.join(CONTEXT_FIELDS)}")
        if context_digest(self.content) != self.context_id:
            raise ValueError("context_id is not the sha256 of the content's canonical JSON")
        return self

    @classmethod
    def of(cls, content: dict[str, Any], ts: datetime) -> ItemContext:
        return cls(context_id=context_digest(content), ts=ts, content=content)


class AlertEvidence(_AuditModel):
    """One alert a controller action answered, with the evidence it carried (as Alertmanager sent it)."""

    alertname: str = Field(min_length=1, max_length=256)
    """The alert's name (its `alertname` label)."""
    fingerprint: str = Field(min_length=1, max_length=256)
    """Alertmanager's fingerprint of the alert's labels."""
    starts_at: UtcTimestamp
    """When the alert started firing; with the fingerprint, the key the controller deduplicates on."""
    status: Literal["firing", "resolved"]
    """The alert's status in the notification."""
    labels: dict[str, str]
    """Every label (the rule's, e.g. severity, action, model_version, variant, feature)."""
    annotations: dict[str, str]
    """Every annotation (summary and description carry the measured value in words)."""
    value: float | None = Field(default=None, allow_inf_nan=False)
    """The measured value, where the rule exports it as an annotation named `value`."""


class ControllerAction(_AuditModel):
    """What the controller decided and did about alerts: one record per outcome of an action (a retraining run
    has one when it starts and one when it ends)."""

    kind: Literal["controller_action"] = CONTROLLER_ACTION
    """Record kind."""
    action_id: Identifier
    """The action's id in the controller's state (the same in each record of one action)."""
    ts: UtcTimestamp
    """When this outcome was reached."""
    action: Identifier
    """What was called for: rollback, retrain, none (alerts that ask for no action), ..."""
    outcome: Identifier
    """How it ended (rolled_back, no_canary, deployed, not_deployed, failed, paused, busy, cooldown, recorded)
    or, for a step on the way, what happened (started)."""
    reason: str = Field(max_length=4096)
    """The outcome in words."""
    actor: Identifier
    """Who or what made it: the controller's name, or the operator who paused it."""
    alerts: list[AlertEvidence] = Field(max_length=1000)
    """The alerts that called for it."""
    details: JsonObject
    """What the action used and produced: the run's id and log, the serving change, the version deployed."""
    model_version: Identifier | None = None
    """The model version acted on, where there is one (the canary rolled back, the version deployed)."""
    variant: Identifier | None = None
    """Its variant (canary)."""


def context_digest(content: Any) -> str:
    return hashlib.sha256(canonical_json(content)).hexdigest()


def context_ref(record: Mapping[str, Any]) -> str | None:
    """The item context a decision record refers to, if it refers to one."""
    inputs = record.get("inputs") if record.get("kind") == DECISION else None
    ref = inputs.get(CONTEXT_REF) if isinstance(inputs, Mapping) else None
    return ref if isinstance(ref, str) else None


def without_context(inputs: dict[str, Any], context_id: str) -> dict[str, Any]:
    """A decision's inputs with their item context left out and named instead."""
    kept = {name: value for name, value in inputs.items() if name not in CONTEXT_FIELDS}
    return {**kept, CONTEXT_REF: context_id}


def with_context(inputs: dict[str, Any], context: ItemContext) -> dict[str, Any]:
    """The inputs exactly as the model was given them: the item context put back in."""
    if inputs.get(CONTEXT_REF) != context.context_id:
        raise ValueError(f"the inputs refer to item context {inputs.get(CONTEXT_REF)!r}, not {context.context_id}")
    kept = {name: value for name, value in inputs.items() if name != CONTEXT_REF}
    return {**kept, **context.content}


AnyRecord = Decision | Explanation | KServeMessage | ItemContext | ControllerAction
AuditRecord = Annotated[AnyRecord, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(AuditRecord)


def parse_record(data: Any, *, parsed_json: bool = False) -> AnyRecord:
    """Validate one record (a dict; `kind` defaults to decision). Raises pydantic.ValidationError.

    `parsed_json`: `data` was just parsed from JSON text by a parser that refuses NaN and Infinity, so its
    values need no second check that they are JSON (the sink's batches: a third of its CPU went to it)."""
    if isinstance(data, dict) and "kind" not in data:
        data = {**data, "kind": DECISION}
    return _ADAPTER.validate_python(data, context={_PARSED_JSON: parsed_json})


def record_json(record: AnyRecord) -> dict[str, Any]:
    """The record as the JSON object that is stored and hashed."""
    return record.model_dump(mode="json")


def record_id_of(record: Mapping[str, Any]) -> str:
    """The dedup key, from the record's JSON: a decision per request id (a shadow's apart); KServe messages per
    payload; an item context per content."""
    kind, request_id = record.get("kind"), record.get("request_id")
    if kind == ITEM_CONTEXT:
        return f"{kind}:{record.get('context_id')}"
    if kind == EXPLANATION:
        return f"{kind}:{request_id}:{record.get('explanation_id')}"
    if kind == CONTROLLER_ACTION:
        return f"{kind}:{record.get('action_id')}:{record.get('outcome')}"
    if kind == DECISION and record.get("variant") == SHADOW:
        # a shadow decides on a copy of a request a served decision answered: its own record, beside that one
        return f"{kind}:{request_id}:{SHADOW}"
    if kind in (KSERVE_REQUEST, KSERVE_RESPONSE):
        # A client may reuse a Ce-Id for different requests; only an identical resend is a duplicate.
        payload = canonical_json([record.get("body"), record.get("body_base64")])
        digest = hashlib.sha256(payload).hexdigest()[:16]
        return f"{kind}:{record.get('inference_service')}:{record.get('component')}:{request_id}:{digest}"
    return f"{kind}:{request_id}"


def index_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The columns stored beside a record for querying; verify recomputes them to catch edited columns. An
    item context's request_id column is its context id; a controller action's, its action id."""
    return {
        "record_id": record_id_of(record),
        "kind": record.get("kind"),
        "request_id": record.get(_ID_COLUMN.get(record.get("kind"), "request_id")),
        "ts": record.get("ts"),
        "model_version": record.get("model_version"),
        "variant": record.get("variant") or record.get("endpoint"),
        "user_id": record.get("user_id"),
    }


_ID_COLUMN = {ITEM_CONTEXT: "context_id", CONTROLLER_ACTION: "action_id"}
"""The field stored in the request_id column, for kinds that have no request id."""


def utc_now() -> datetime:
    return datetime.now(UTC)
