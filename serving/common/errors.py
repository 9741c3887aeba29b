"""KfloopError on the KServe side: KServe maps its own exception types to HTTP; ours carry the status."""

from __future__ import annotations

from prometheus_client import Counter

from kfloop.errors import KfloopError
from serving.common.names import MODEL_NAME

REJECTED = Counter("kfloop_predictor_rejected_total", "Requests answered with an error, by HTTP status.", ["status"])


def to_kserve_error(exc: KfloopError) -> Exception:
    """KServe maps its own exception types to HTTP; ours carry the status, so translate once here."""
    from kserve.errors import InferenceError, InvalidInput, ModelNotReady

    REJECTED.labels(str(exc.http_status)).inc()
    if exc.http_status in (400, 413, 422):
        return InvalidInput(exc.message)
    if exc.http_status == 503:
        return ModelNotReady(MODEL_NAME, exc.message)
    return InferenceError(exc.message, status=str(exc.http_status))
