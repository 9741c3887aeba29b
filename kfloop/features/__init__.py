"""Features on Feast: the one list of feature names (`names`), windowed aggregates computed the same way
online (the feature updater) and offline (training tables), the fast serving reader, cold-start defaults.

Nothing here imports Feast at module level except `redis_store`; `names` imports only the standard library.
"""
