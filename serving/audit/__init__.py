"""The audit sink: receives decision records (from predictors' spools) and KServe logger CloudEvents into
the hash-chained audit store."""
