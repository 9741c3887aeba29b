"""Test doubles and fixtures shared by tests and benchmarks (a synthetic contract model, a serving testbed)."""
