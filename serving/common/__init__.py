"""Helpers shared by the HTTP services at the edge (collector, router, audit sink)."""
