"""The controller: the one part of kfloop that acts on alerts.

Alertmanager posts its webhook (version 4) with a bearer token; each firing alert never seen before (by
fingerprint and start time) calls for what its `action` label says: `rollback` (the canary to 0%, through the
code `kfloop rollback [--cluster]` runs), `retrain` (the training pipeline, one run at a time with a cooldown;
a blessed result becomes the canary), or `none` (recorded). Decisions and each step are in SQLite before
anything is done, so a restart neither repeats nor forgets an action; every action is in the audit trail
(`controller_action` records). `kfloop pause | resume` is the kill switch.

Modules: alerts (the payload), store (the state), actions (the Action kinds, rollback), retrain and runners
(the run), engine (observe, decide, act, record), app (HTTP), metrics, config, flags, runwrap.
"""
