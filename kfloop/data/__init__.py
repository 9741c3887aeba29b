"""Real data in: the Open Bandit Dataset sample, fetched by hash and imported as feedback events."""

from kfloop.data.import_obd import ImportSummary, LogImport, import_obd
from kfloop.data.obd import (
    LOGS,
    FetchError,
    fetch_obd,
    obd_item_context_csv,
    obd_log_csv,
    verify_obd,
)

__all__ = [
    "LOGS",
    "FetchError",
    "ImportSummary",
    "LogImport",
    "fetch_obd",
    "import_obd",
    "obd_item_context_csv",
    "obd_log_csv",
    "verify_obd",
]
