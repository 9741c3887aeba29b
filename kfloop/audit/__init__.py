"""The tamper-evident audit trail: decisions, explanations, KServe payloads and the controller's actions in a
hash-chained store.

    from kfloop.audit import AuditStoreConfig, open_store, parse_record, verify_store
    store = open_store(AuditStoreConfig(url="sqlite:///audit.db"))
    store.append([parse_record({...})])          # -> [Appended(record_id, status, seq)]
    report = verify_store(store)                  # report.ok, report.problem (seq, request_id, reason)

Predictor side: `AuditRecorder(SpoolConfig(...))` spools records durably and ships them to the sink. Decisions
may name an `ItemContext` (their candidates and item features, recorded once) instead of carrying it; readers
put it back (`kfloop.audit.contexts`).
"""

from kfloop.audit.canonical import canonical_json, rfc3339
from kfloop.audit.chain import GENESIS, ChainHead, StoredRow
from kfloop.audit.config import AuditStoreConfig, ExplanationSamplingConfig, SpoolConfig
from kfloop.audit.explain import BackgroundExplainer, Explainer, explain_decision, is_sampled
from kfloop.audit.export import FORMATS, write_export
from kfloop.audit.record import (
    RECORD_TAGS,
    AlertEvidence,
    Candidate,
    ControllerAction,
    Decision,
    Explanation,
    ItemContext,
    KServeMessage,
    PolicyInfo,
    parse_record,
    record_id_of,
)
from kfloop.audit.shipper import AuditRecorder, HttpSink, Receipt, Shipper, store_delivery
from kfloop.audit.spool import Spool
from kfloop.audit.store import ACCEPTED, CONFLICT, DUPLICATE, Appended, RowQuery, SqlStore, make_store, open_store
from kfloop.audit.verify import Problem, VerifyReport, verify_file, verify_store

__all__ = [
    "ACCEPTED",
    "CONFLICT",
    "DUPLICATE",
    "FORMATS",
    "GENESIS",
    "RECORD_TAGS",
    "AlertEvidence",
    "Appended",
    "AuditRecorder",
    "AuditStoreConfig",
    "BackgroundExplainer",
    "Candidate",
    "ChainHead",
    "ControllerAction",
    "Decision",
    "Explainer",
    "Explanation",
    "ExplanationSamplingConfig",
    "HttpSink",
    "ItemContext",
    "KServeMessage",
    "PolicyInfo",
    "Problem",
    "Receipt",
    "RowQuery",
    "Shipper",
    "Spool",
    "SpoolConfig",
    "SqlStore",
    "StoredRow",
    "VerifyReport",
    "canonical_json",
    "explain_decision",
    "is_sampled",
    "make_store",
    "open_store",
    "parse_record",
    "record_id_of",
    "rfc3339",
    "store_delivery",
    "verify_file",
    "verify_store",
    "write_export",
]
