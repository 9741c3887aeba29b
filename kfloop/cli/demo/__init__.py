"""`kfloop demo`: the whole feedback loop on one machine, driven phase by phase, and its HTML report.

CLI layer (it starts the system, the pipeline and the simulator as `kfloop` subcommands and reads their state);
the report is built from the files a run records (`run/` in the report folder), so it can be rebuilt and tested
without servers.
"""
